//! The wake-up bell between the logic thread and the IO workers: a `mio::Waker` that rings
//! only when the other side is (about to be) asleep.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering, fence};

use mio::Waker;

/// A `mio::Waker` that only makes the wake-up syscall when the other thread is (about to be)
/// asleep in its poll; while it is busy it will find the new work in its channel anyway.
/// Dekker-style handshake: the sleeper stores `sleeping = true`, fences, then re-checks its
/// channel; the ringer pushes to the channel, fences, then swaps `sleeping` off.
pub(crate) struct Bell {
    pub(crate) waker: Waker,
    sleeping: AtomicBool,
}

impl Bell {
    pub(crate) fn new(waker: Waker) -> Self {
        Bell { waker, sleeping: AtomicBool::new(false) }
    }

    pub(crate) fn ring(&self) -> io::Result<()> {
        fence(Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::SeqCst) { self.waker.wake() } else { Ok(()) }
    }

    /// Called before polling with a non-zero timeout; returns false if work already arrived
    /// (`pending()`), in which case the caller must not sleep.
    pub(crate) fn prepare_sleep(&self, pending: impl FnOnce() -> bool) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if pending() {
            self.sleeping.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    pub(crate) fn awake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }
}
