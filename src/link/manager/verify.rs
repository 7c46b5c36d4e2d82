//! The link's part in the canary and online verify: writing them on a master (between client
//! turns), taking them as a slave applies them, the alarms, and carrying the verify frames
//! (see [`crate::verify`]).

use std::time::Instant;

use super::{Conn, Job, Link};
use crate::datadir::hex;
use crate::link::msg;
use crate::server::{Engine, SysApplied};
use crate::txn::{Op, Value};
use crate::verify::runs::{Frame, Out};

fn frame_type(f: Frame) -> u8 {
    match f {
        Frame::Sums => msg::T_VERIFY_SUMS,
        Frame::Narrow => msg::T_VERIFY_NARROW,
        Frame::Items => msg::T_VERIFY_ITEMS,
        Frame::Result => msg::T_VERIFY_RESULT,
    }
}

/// The key a fed slave is known by in the verifier (its node id).
fn peer_key(c: &Conn) -> String {
    c.node.map(|n| hex(&n)).unwrap_or_else(|| c.peer.label())
}

fn is_streaming_feed(c: &Conn) -> bool {
    matches!(&c.job, Job::Feed(f) if f.state_name() == "streaming")
}

impl Link {
    /// HB.VERIFY: a run is asked for; its marker is written between the next turns.
    pub fn request_verify(&mut self, eng: &Engine) -> Result<u64, String> {
        if eng.is_slave() {
            return Err("verify is started on the master: its marker flows down the chain".into());
        }
        if let Some(r) = eng.role_refusal() {
            return Err(format!("this master takes no writes now: {r}"));
        }
        if self.settings.peers.is_empty() {
            return Err("this master has no slaves ([link] peers is empty)".into());
        }
        self.verifier.request()
    }

    pub fn verifier(&self) -> &crate::verify::Verifier {
        &self.verifier
    }

    pub fn canary_status(&self) -> crate::verify::canary::CanaryStatus {
        self.canary.status()
    }

    /// Slaves fed now (streaming), whose verify outcomes a new marker expects.
    fn fed_now(&self) -> u32 {
        self.conns
            .iter()
            .flatten()
            .filter(|c| is_streaming_feed(c))
            .count() as u32
    }

    /// Whether a canary or a verify marker is due here (a master with slaves).
    pub fn sys_write_due(&self, eng: &Engine) -> bool {
        let now = Instant::now();
        let master = !eng.is_slave() && eng.role_refusal().is_none();
        master
            && !self.settings.peers.is_empty()
            && (self.canary.is_due(now) || self.verifier.marker_due(now))
    }

    /// Between turns (no client write open): writes the due canary and verify marker.
    pub fn write_sys(&mut self, eng: &mut Engine) {
        let now = Instant::now();
        if let Some((n, t, op)) = self.canary.due(now) {
            match eng.write_sys(vec![op], false) {
                Ok((lsn, _)) => self.canary.written(lsn, n, t),
                Err(e) => log::debug!("canary #{n} not written: {e}"),
            }
        }
        if let Some((id, op)) = self.verifier.due_marker(now, true) {
            let value = match &op {
                Op::Put {
                    value: Value::Str(v),
                    ..
                } => v.clone(),
                _ => Vec::new(),
            };
            let fed = self.fed_now();
            match eng.write_sys(vec![op], true) {
                Ok((lsn, Some(view))) => self.verifier.marked(&value, lsn, view, true, fed),
                Ok((lsn, None)) => self
                    .verifier
                    .marker_failed(id, format!("no snapshot at LSN {lsn}")),
                Err(e) => self.verifier.marker_failed(id, e),
            }
        }
    }

    /// After each turn: takes the `sys/...` records applied from upstream, runs the canary
    /// alarms, and sends what the verifier has to send.
    pub fn verify_tick(&mut self, eng: &mut Engine) {
        let now = Instant::now();
        self.canary.set_slave(eng.is_slave());
        for a in eng.take_sys_applied() {
            match a {
                SysApplied::Canary { lsn, value } => self.canary.applied(lsn, &value),
                SysApplied::Marker {
                    lsn,
                    value,
                    view: Some(view),
                } => {
                    let fed = self.fed_now();
                    self.verifier.marked(&value, lsn, view, false, fed);
                }
                SysApplied::Marker {
                    lsn, view: None, ..
                } => {
                    log::warn!(
                        "verify marker at LSN {lsn} applied without a snapshot: not compared here"
                    )
                }
            }
        }
        if eng.is_slave() {
            self.canary.check_here(now);
        }
        for i in 0..self.targets.len() {
            let applied = self.targets[i]
                .conn
                .and_then(|slot| self.conns.get(slot))
                .and_then(Option::as_ref)
                .and_then(|c| match &c.job {
                    Job::Feed(f) => Some(f.ack.applied),
                    _ => None,
                });
            let label = self.targets[i].addr.clone();
            self.canary.check_peer(now, &label, applied);
        }
        let outs = self.verifier.poll();
        self.route(outs, None);
        for c in self.conns.iter_mut().flatten() {
            if !is_streaming_feed(c) {
                continue;
            }
            for payload in self.verifier.sums_for(&peer_key(c)) {
                c.peer.send(msg::T_VERIFY_SUMS, &payload);
            }
        }
        if let Some((text, json)) = self.verifier.take_persist() {
            eng.save_local("verify.last_text", &text);
            eng.save_local("verify.last", &json);
        }
    }

    /// A verify frame from `c`. Err: the link must be closed.
    pub(super) fn on_verify_frame(
        &mut self,
        c: &mut Conn,
        ty: u8,
        payload: &[u8],
    ) -> Result<(), String> {
        let from_master = matches!(c.job, Job::Follow(_));
        let from_slave = matches!(c.job, Job::Feed(_));
        let outs = match ty {
            msg::T_VERIFY_SUMS if from_master => self.verifier.on_sums(&c.peer.label(), payload),
            msg::T_VERIFY_ITEMS if from_master => self.verifier.on_items(payload),
            msg::T_VERIFY_NARROW if from_slave => self.verifier.on_narrow(&peer_key(c), payload),
            msg::T_VERIFY_RESULT if from_slave => self.verifier.on_result(&c.peer.label(), payload),
            other => Err(format!("unexpected verify frame type {other}")),
        }?;
        self.route(outs, Some(c));
        Ok(())
    }

    /// Sends the verifier's frames: upstream on the link to this node's master, to a peer on
    /// its feed. `current` is the connection being served (taken out of `conns` meanwhile).
    fn route(&mut self, outs: Vec<Out>, mut current: Option<&mut Conn>) {
        for o in outs {
            let (want_master, key, frame, payload) = match o {
                Out::Upstream(f, p) => (true, None, f, p),
                Out::Peer(k, f, p) => (false, Some(k), f, p),
            };
            let fits = |c: &Conn| {
                if want_master {
                    matches!(c.job, Job::Follow(_))
                } else {
                    matches!(c.job, Job::Feed(_)) && key.as_deref() == Some(peer_key(c).as_str())
                }
            };
            let ty = frame_type(frame);
            if let Some(c) = current.as_deref_mut().filter(|c| fits(c)) {
                c.peer.send(ty, &payload);
                continue;
            }
            match self.conns.iter_mut().flatten().find(|c| fits(c)) {
                Some(c) => c.peer.send(ty, &payload),
                None if want_master => {
                    log::debug!("verify: no master connected to send {frame:?} to")
                }
                None => log::info!("verify: slave {key:?} is not connected; {frame:?} dropped"),
            }
        }
    }
}
