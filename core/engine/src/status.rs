//! What a process's logic reports about itself, for its status record (`oxworld-host` writes it
//! to `--status-file` every second; `oxworld start|status|reload` read it): its [`ProcState`]
//! and, for games, the facts of a hot swap ([`SwapReport`]), in the process's own clock.

use std::fmt;
use std::time::Instant;

/// Where a process stands. LIFECYCLE: `starting` -> `ready` (dispatcher: listening; game and
/// gate: linked to every dispatcher; back to `starting` while a link is down) -> `stopping`
/// (SIGTERM) -> `stopped`. A game's hot swap: `ready` -> `freezing` (SIGHUP, dispatchers
/// holding its traffic) -> `frozen` (written, process exited); the new binary: `restoring` ->
/// `ready` once every dispatcher released what it held, or `restore-failed` (the freeze is
/// kept). `failed`: the process stopped on an error (its `reason` says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcState {
    /// Coming up: not yet linked to every dispatcher.
    Starting,
    /// Serving.
    Ready,
    /// A game asked the dispatchers to hold its traffic and is freezing.
    Freezing,
    /// A game wrote its freeze and exited for the new binary.
    Frozen,
    /// A game rebuilt from a freeze, waiting for every dispatcher to release its traffic.
    Restoring,
    /// A game could not restore its freeze (kept for another try).
    RestoreFailed,
    /// Stopping after SIGTERM (a game saves its persistent entities first).
    Stopping,
    /// Stopped cleanly.
    Stopped,
    /// Stopped on an error.
    Failed,
}

impl ProcState {
    /// Every state, in lifecycle order.
    pub const ALL: [ProcState; 9] = [
        ProcState::Starting,
        ProcState::Ready,
        ProcState::Freezing,
        ProcState::Frozen,
        ProcState::Restoring,
        ProcState::RestoreFailed,
        ProcState::Stopping,
        ProcState::Stopped,
        ProcState::Failed,
    ];

    /// The name in status records: `starting`, `ready`, `freezing`, `frozen`, `restoring`,
    /// `restore-failed`, `stopping`, `stopped`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcState::Starting => "starting",
            ProcState::Ready => "ready",
            ProcState::Freezing => "freezing",
            ProcState::Frozen => "frozen",
            ProcState::Restoring => "restoring",
            ProcState::RestoreFailed => "restore-failed",
            ProcState::Stopping => "stopping",
            ProcState::Stopped => "stopped",
            ProcState::Failed => "failed",
        }
    }

    /// Reads [`ProcState::as_str`]'s names back.
    pub fn parse(s: &str) -> Option<ProcState> {
        ProcState::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// True for the states of a game whose freeze was written and not yet restored: starting
    /// that game again must restore it, not start it empty.
    pub fn holds_a_freeze(self) -> bool {
        matches!(self, ProcState::Frozen | ProcState::Restoring | ProcState::RestoreFailed)
    }
}

impl fmt::Display for ProcState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A game's hot swap so far, in its own clock (the host turns instants into milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwapReport {
    /// Entities frozen (freezing side) or restored (restoring side).
    pub entities: u64,
    /// When the game asked the dispatchers to hold its traffic.
    pub freeze_began: Option<Instant>,
    /// When the last dispatcher released the held traffic to the restored game.
    pub thawed_at: Option<Instant>,
    /// Held messages delivered after the restore.
    pub released: u64,
    /// Held messages answered with an error because the game was away too long.
    pub failed: u64,
}

/// Implemented by each process's logic (dispatcher, gate, game).
pub trait Report {
    /// The process's state now.
    fn state(&self) -> ProcState;
    /// A game's hot swap, if one is under way or just finished.
    fn swap(&self) -> Option<SwapReport> {
        None
    }
    /// What the process holds, for its status record: `("clients", n)` for gates,
    /// `("entities", n)` for games, `("routes", n)` for dispatchers.
    fn holds(&self) -> Option<(&'static str, u64)> {
        None
    }
    /// Why the process stopped on its own, if it did.
    fn fatal(&self) -> Option<&str> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        for s in ProcState::ALL {
            assert_eq!(ProcState::parse(s.as_str()), Some(s));
        }
        assert_eq!(ProcState::parse("stalled"), None, "stalled is computed by readers, never written");
        assert!(ProcState::RestoreFailed.holds_a_freeze() && !ProcState::Ready.holds_a_freeze());
    }
}
