//! Switchover: a planned role swap with zero loss, driven by the master.
//!
//! 1. The master pauses new writes (they wait in the event loop, or get TRYAGAIN); writes
//!    already executed complete.
//! 2. When everything it executed is durable and the slave has applied all of it, it sends
//!    PROMOTE with that LSN. If the slave is not there within `switchover_timeout`, the master
//!    resumes writes: the switchover is aborted, nothing changed.
//! 3. The slave checks that it holds exactly that LSN, promotes itself (a new generation) and
//!    answers PROMOTED. The master becomes a slave (not fenced: it holds nothing the new master
//!    lacks) and lets the paused writes go: they get READONLY naming the new master.
//!
//! If the link breaks after PROMOTE, the master cannot know whether the slave took over: it
//! takes no writes (as a starting master does) until it hears from the slave, and then follows
//! it if it did take over, or resumes if it did not.

use std::time::Instant;

use super::{Conn, Job, Link};
use crate::link::msg::{self, Promoted};
use crate::server::Engine;

pub(super) enum Phase {
    /// Waiting until the slave has applied everything.
    CatchingUp,
    /// PROMOTE sent at this LSN.
    Promoting { lsn: u64 },
}

pub(super) struct Switchover {
    target: [u8; 16],
    target_name: String,
    target_client: String,
    pub(super) started: Instant,
    deadline: Instant,
    phase: Phase,
}

impl Link {
    /// Starts a switchover to the most caught-up streaming slave. Ok: its name.
    pub fn start_switchover(&mut self, eng: &mut Engine) -> Result<String, String> {
        if eng.is_slave() {
            return Err("this node is a slave: a switchover is run on the master".into());
        }
        if let Some(why) = eng.fenced() {
            return Err(format!("this node is fenced ({why})"));
        }
        if eng.checking_peers() {
            return Err(
                "this node is still checking with its peers whether it is the master".into(),
            );
        }
        if self.switchover.is_some() {
            return Err("a switchover is already in progress".into());
        }
        let best = self
            .conns
            .iter()
            .flatten()
            .filter_map(|c| match (&c.job, c.node) {
                (Job::Feed(f), Some(node)) if f.state_name() == "streaming" => {
                    Some((f.ack.applied, node, c.peer.label(), c.client_addr.clone()))
                }
                _ => None,
            })
            .max_by_key(|t| t.0);
        let Some((_, target, target_name, target_client)) = best else {
            return Err(
                "no slave is streaming from this master: there is nobody to hand over to".into(),
            );
        };
        let now = Instant::now();
        log::warn!(
            "switchover to {target_name}: new writes {} until it has everything and takes over",
            if self.settings.switchover_refuse {
                "get TRYAGAIN"
            } else {
                "wait"
            }
        );
        eng.set_write_pause(Some(self.settings.switchover_refuse));
        self.switchover = Some(Switchover {
            target,
            target_name: target_name.clone(),
            target_client,
            started: now,
            deadline: now + self.settings.switchover_timeout,
            phase: Phase::CatchingUp,
        });
        self.switchover_outcome = Some(format!("in progress: handing over to {target_name}"));
        Ok(target_name)
    }

    /// Moves a switchover on (after each turn and on timer ticks).
    pub(super) fn drive_switchover(&mut self, eng: &mut Engine) {
        let Some(sw) = &self.switchover else {
            return;
        };
        let now = Instant::now();
        let conn = self
            .conns
            .iter_mut()
            .flatten()
            .find(|c| c.node == Some(sw.target) && matches!(c.job, Job::Feed(_)));
        match sw.phase {
            Phase::CatchingUp => {
                let Some(c) = conn else {
                    self.abort_switchover(eng, "the slave disconnected before it took over");
                    return;
                };
                let Job::Feed(feed) = &c.job else {
                    return;
                };
                let durable = eng.durable_lsn();
                let caught_up = !eng.turn_has_writes()
                    && eng.visible_lsn() == durable
                    && feed.sent >= durable
                    && feed.ack.applied >= durable;
                if caught_up {
                    c.peer.send(msg::T_PROMOTE, &durable.to_le_bytes());
                    let _ = c.peer.flush();
                    log::info!(
                        "switchover: {} has applied LSN {durable}; asking it to take over",
                        sw.target_name
                    );
                    if let Some(sw) = self.switchover.as_mut() {
                        sw.phase = Phase::Promoting { lsn: durable };
                    }
                } else if now >= sw.deadline {
                    let why = format!(
                        "the slave did not catch up within {:?} (it has applied LSN {} of {durable})",
                        self.settings.switchover_timeout, feed.ack.applied
                    );
                    self.abort_switchover(eng, &why);
                }
            }
            Phase::Promoting { lsn } => {
                let grace = sw.deadline + self.settings.peer_timeout;
                if conn.is_none() || now >= grace {
                    self.handover_unknown(eng, lsn);
                }
            }
        }
    }

    /// PROMOTED from the slave.
    pub(super) fn on_promoted(
        &mut self,
        c: &Conn,
        eng: &mut Engine,
        payload: &[u8],
    ) -> Result<(), String> {
        let p = Promoted::decode(payload).map_err(|e| e.to_string())?;
        let Some(sw) = &self.switchover else {
            if p.ok && eng.is_slave() {
                // The takeover was already seen (the new master dialled first).
                return Ok(());
            }
            return Err("PROMOTED without a switchover".into());
        };
        if c.node != Some(sw.target) {
            return Err("PROMOTED from a slave that was not asked".into());
        }
        if !p.ok {
            let why = format!("{} refused to take over: {}", sw.target_name, p.message);
            self.abort_switchover(eng, &why);
            return Ok(());
        }
        let pause = sw.started.elapsed();
        let name = sw.target_name.clone();
        let client = sw.target_client.clone();
        self.switchover = None;
        if let Err(e) = eng.become_slave() {
            log::error!("switchover: cannot become a slave: {e}");
        }
        eng.set_master_addr(Some(client.clone()));
        eng.set_write_pause(None);
        let outcome = format!(
            "done: {name} ({client}) is the master, generation {}; writes paused {} ms",
            p.generation,
            pause.as_millis()
        );
        log::warn!("switchover {outcome}; this node is now its slave");
        self.switchover_outcome = Some(outcome);
        Ok(())
    }

    fn abort_switchover(&mut self, eng: &mut Engine, why: &str) {
        let Some(sw) = self.switchover.take() else {
            return;
        };
        eng.set_write_pause(None);
        let outcome = format!(
            "aborted after {} ms: {why}; this node stays the master and takes writes again",
            sw.started.elapsed().as_millis()
        );
        crate::incident::raise(
            crate::incident::Kind::Switchover,
            format!("switchover {outcome}"),
            &[],
        );
        self.switchover_outcome = Some(outcome);
    }

    /// The link broke after PROMOTE: take no writes until the slave is heard from.
    fn handover_unknown(&mut self, eng: &mut Engine, lsn: u64) {
        let Some(sw) = self.switchover.take() else {
            return;
        };
        eng.set_write_pause(None);
        eng.set_checking_peers(true);
        self.handing_over = true;
        let outcome = format!(
            "unsettled: the link to {} broke after it was asked to take over at LSN {lsn}; this node takes no writes until it hears from it, then follows it if it took over",
            sw.target_name
        );
        crate::incident::raise(
            crate::incident::Kind::Switchover,
            format!("switchover {outcome}"),
            &[],
        );
        self.switchover_outcome = Some(outcome);
    }

    /// Whether this master asked its slave to take over and has not heard back: a newer
    /// master met now is that slave, having taken over.
    pub(super) fn expecting_takeover(&self) -> bool {
        self.handing_over
            || matches!(
                &self.switchover,
                Some(Switchover {
                    phase: Phase::Promoting { .. },
                    ..
                })
            )
    }

    /// What the last switchover came to (INFO `switchover`).
    pub fn switchover_outcome(&self) -> Option<&str> {
        self.switchover_outcome.as_deref()
    }

    /// The slave's side: PROMOTE from our master.
    pub(super) fn on_promote(&mut self, c: &mut Conn, eng: &mut Engine, payload: &[u8]) {
        let lsn = match <[u8; 8]>::try_from(payload) {
            Ok(b) => u64::from_le_bytes(b),
            Err(_) => {
                let reply = Promoted {
                    ok: false,
                    generation: 0,
                    message: "malformed PROMOTE".into(),
                };
                c.peer.send(msg::T_PROMOTED, &reply.encode());
                return;
            }
        };
        let have = eng.visible_lsn();
        let reply = if have != lsn {
            Promoted {
                ok: false,
                generation: eng.generation(),
                message: format!("this slave holds up to LSN {have}, not {lsn}"),
            }
        } else {
            match eng.promote(&self.settings.name) {
                Ok(g) => {
                    log::warn!(
                        "switchover: {} handed over; this node is the master, generation {g}",
                        c.peer.label()
                    );
                    Promoted {
                        ok: true,
                        generation: g,
                        message: String::new(),
                    }
                }
                Err(e) => Promoted {
                    ok: false,
                    generation: eng.generation(),
                    message: e.to_string(),
                },
            }
        };
        c.peer.send(msg::T_PROMOTED, &reply.encode());
        let _ = c.peer.flush();
    }
}
