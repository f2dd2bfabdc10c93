//! Panics in game code: [`catch`] runs one entity handler, hook or timer and turns a panic into
//! an error carrying the panic's message and source location, so one bad method cannot end a
//! game. [`install_hook`] (called once by the game process) keeps the default hook from
//! printing panics that are caught here; the world logs them itself, rate-limited.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, PanicHookInfo};

thread_local! {
    /// Depth of [`catch`] on this thread.
    static CATCHING: Cell<u32> = const { Cell::new(0) };
    /// What the hook saw of the last panic caught on this thread.
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs a panic hook that records panics inside [`catch`] (message and location) instead
/// of printing them, and hands every other panic to the hook installed before.
pub fn install_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
        if CATCHING.with(Cell::get) > 0 {
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            let text = format!("{}{at}", message(info.payload()));
            LAST.with(|l| *l.borrow_mut() = Some(text));
        } else {
            previous(info);
        }
    }));
}

/// Runs `f`; a panic comes back as `Err(message)` (with its location when the hook of
/// [`install_hook`] is installed).
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    CATCHING.with(|c| c.set(c.get() + 1));
    let r = std::panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get().saturating_sub(1)));
    r.map_err(|payload| LAST.with(|l| l.borrow_mut().take()).unwrap_or_else(|| message(payload.as_ref())))
}

/// The text of a panic payload (`panic!` with a message gives a `&str` or a `String`).
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_normal_results_pass() {
        assert_eq!(catch(|| 7), Ok(7));
        let e = catch(|| -> u8 { panic!("boom {}", 3) }).expect_err("panicked");
        assert!(e.starts_with("boom 3"), "{e}");
        let e = catch(|| -> u8 { std::panic::panic_any(5u32) }).expect_err("panicked");
        assert_eq!(e, "a panic without a message");
    }
}
