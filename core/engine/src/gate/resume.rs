//! A gate's part in resuming sessions: a client whose hello offered `resume` sends `Resume`
//! first; the gate asks the player's game (`ResumeClient`, through the player's dispatcher)
//! and places no boot entity unless that fails.
//!
//! LIFECYCLE per client: `No` (a login: boot entity asked at connect) | `Awaiting` (hello
//! offered resume) --`Resume`--> `Asked { player }` --(the player's `CreateEntity` arrives,
//! after `Resumed`)--> `No` | --(`ResumeRefused`, or no answer in [`RESUME_TIMEOUT`])--> the
//! client gets `Error ResumeRefused` and a boot entity (a login), `No`. A first message other
//! than `Resume` from an `Awaiting` client makes it a login at once.

use std::time::{Duration, Instant};

use log::debug;
use oxworld_net::Id;
use oxworld_net::app::{ConnId, Outbox};
use oxworld_net::client_proto::{ClientMsg, ErrorCode, ServerMsg};
use oxworld_net::msg::{ClientConnected, ResumeClient, ResumeRefused};
use oxworld_net::wire::DecodeError;

use super::GateApp;

/// How long a `Resume` waits for the game's answer before it counts as refused.
pub(crate) const RESUME_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a client stands with resuming a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResumeState {
    /// A login (or a resume that ended).
    No,
    /// Its hello offered resume: its first message should be `Resume`.
    Awaiting,
    /// It asked for `player` back at `since`.
    Asked { player: Id, since: Instant },
}

impl ResumeState {
    pub(super) fn is_no(&self) -> bool {
        *self == ResumeState::No
    }
}

impl GateApp {
    /// The resume part of handling a client message: true if it was consumed.
    pub(super) fn resume_step(&mut self, conn: ConnId, msg: &Result<ClientMsg, DecodeError>, out: &mut Outbox) -> bool {
        let now = self.now;
        let gate = self.cfg.id;
        let Some(c) = self.clients.get_mut(&conn) else { return true };
        match (c.resume, msg) {
            (ResumeState::Awaiting, Ok(ClientMsg::Resume { client: old_client, player, token })) => {
                c.resume = ResumeState::Asked { player: *player, since: now };
                let m = ResumeClient {
                    entity: *player,
                    gate,
                    client: c.id,
                    old_client: *old_client,
                    token: *token,
                    new_token: c.token,
                };
                debug!("gate{gate}: client {} resumes the session of {old_client} (player {player})", c.id);
                self.links.send(player.dispatcher_index(self.links.len()), &m, out);
                true
            }
            (ResumeState::Awaiting, _) => {
                // Not a resume after all: a login.
                c.resume = ResumeState::No;
                self.start_boot(conn, out);
                false
            }
            (_, Ok(ClientMsg::Resume { player, .. })) => {
                self.stats.error(ErrorCode::ResumeRefused);
                let why = "Resume is the first message of a connection whose hello offered resume";
                Self::reply(out, conn, &ServerMsg::error(ErrorCode::ResumeRefused, *player, 0, why));
                true
            }
            _ => false,
        }
    }

    /// Asks for client `conn`'s boot entity (its login).
    pub(super) fn start_boot(&mut self, conn: ConnId, out: &mut Outbox) {
        let Some(c) = self.clients.get(&conn) else { return };
        let (boot, client, token) = (c.boot, c.id, c.token);
        let d = boot.dispatcher_index(self.links.len());
        self.links.send(d, &ClientConnected { boot, gate: self.cfg.id, client, token }, out);
    }

    /// The player's game (or its dispatcher) refused a resume.
    pub(super) fn on_resume_refused(&mut self, m: &ResumeRefused, out: &mut Outbox) {
        let Some(&conn) = self.by_client.get(&m.client) else { return };
        self.resume_failed(conn, m.entity, &m.reason, out);
    }

    /// Resumes that got no answer in time count as refused.
    pub(super) fn resume_timeouts(&mut self, now: Instant, out: &mut Outbox) {
        let late: Vec<(ConnId, Id)> = self
            .clients
            .iter()
            .filter_map(|(conn, c)| match c.resume {
                ResumeState::Asked { player, since } if now.saturating_duration_since(since) > RESUME_TIMEOUT => {
                    Some((*conn, player))
                }
                _ => None,
            })
            .collect();
        for (conn, player) in late {
            self.resume_failed(conn, player, "no answer from the player's game in time", out);
        }
    }

    fn resume_failed(&mut self, conn: ConnId, player: Id, reason: &str, out: &mut Outbox) {
        let Some(c) = self.clients.get_mut(&conn) else { return };
        if !matches!(c.resume, ResumeState::Asked { .. }) {
            return;
        }
        c.resume = ResumeState::No;
        debug!("gate{}: client {} could not resume {player}: {reason}", self.cfg.id, c.id);
        self.stats.error(ErrorCode::ResumeRefused);
        let err = ServerMsg::error(ErrorCode::ResumeRefused, player, 0, format!("resume refused: {reason}; log in"));
        Self::reply(out, conn, &err);
        self.start_boot(conn, out);
    }
}
