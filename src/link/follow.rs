//! The slave's side of its master: load a full sync or go straight to streaming, apply each
//! record in LSN order, acknowledge.
//!
//! Records are applied whole (a MULTI/EXEC is one record: never half visible to a reader on
//! the slave) and journaled with the master's LSNs, so the slave can be promoted with the full
//! history or feed a further slave. Acks say how far the slave has received, made durable and
//! applied; the master's sync modes wait on them.

use std::time::{Duration, Instant};

use super::msg::{self, Ack, RepairEnd, RepairFile, SyncBegin, SyncEnd};
use super::peer::Peer;
use crate::journal::Lsn;
use crate::server::Engine;
use crate::server::engine::{EngineError, FullSync};

enum State {
    /// IDENT sent: waiting for STREAM or SYNC_BEGIN.
    Waiting,
    Loading(Box<FullSync>),
    /// SYNC_END received: the loader thread makes the new copy durable. Frames after it
    /// wait in the connection's buffer (and the socket) until the switch.
    Finishing(Box<FullSync>),
    Streaming,
}

pub struct Follow {
    state: State,
    /// Last LSN received and applied.
    pub received: Lsn,
    last_ack: Ack,
    pub full_syncs: u64,
    pub partial_syncs: u64,
    /// The master's durable LSN, from its last heartbeat.
    pub master_durable: Lsn,
    pub started: Instant,
    /// A rejoin's repair: items and whole-file items received so far, their bytes, and when
    /// the master's STREAM opened it.
    repair_keys: u64,
    repair_items: u64,
    repair_bytes: u64,
    repair_started: Option<Instant>,
    /// How this connection came into sync: "" until it did, then "a partial resync from LSN N"
    /// or "a full sync of N items in S s".
    pub sync_summary: String,
    /// A full sync was refused or stopped for want of room on this node's disk (the link
    /// closes, with a disk_full incident rather than link_down).
    pub no_room: bool,
}

impl Default for Follow {
    fn default() -> Self {
        Follow {
            state: State::Waiting,
            received: 0,
            last_ack: Ack::default(),
            full_syncs: 0,
            partial_syncs: 0,
            master_durable: 0,
            started: Instant::now(),
            repair_keys: 0,
            repair_items: 0,
            repair_bytes: 0,
            repair_started: None,
            sync_summary: String::new(),
            no_room: false,
        }
    }
}

impl Follow {
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Waiting => "handshake",
            State::Loading(_) | State::Finishing(_) => "full sync",
            State::Streaming => "streaming",
        }
    }

    /// How far a full sync being loaded, or a rejoin's repair being received, has come.
    /// A repair is under way from the master's STREAM until REPAIR_END, while this node's
    /// rewind waits for it.
    pub fn progress(&self, eng: &Engine) -> Option<SyncProgress> {
        match &self.state {
            State::Loading(fs) | State::Finishing(fs) => Some(SyncProgress {
                phase: Phase::FullSync,
                items: fs.items,
                items_total: fs.items_total,
                files_total: 0,
                bytes: fs.bytes,
                elapsed: fs.started.elapsed(),
            }),
            State::Streaming => {
                let started = self.repair_started?;
                let rw = eng.rewind_state().filter(|r| r.upto.is_none())?;
                Some(SyncProgress {
                    phase: Phase::Repair,
                    items: self.repair_keys + self.repair_items,
                    items_total: rw.keys.len() as u64,
                    files_total: rw.files.len() as u64,
                    bytes: self.repair_bytes,
                    elapsed: started.elapsed(),
                })
            }
            State::Waiting => None,
        }
    }

    /// Handles one frame from the master. Err: the link must be closed (and resynced).
    pub fn on_frame(&mut self, ty: u8, payload: &[u8], eng: &mut Engine) -> Result<(), String> {
        match ty {
            msg::T_STREAM => {
                let from = msg::decode_stream(payload).map_err(|e| e.to_string())?;
                let have = eng.visible_lsn();
                if from != have + 1 {
                    return Err(format!(
                        "master streams from LSN {from} but this slave holds up to {have}"
                    ));
                }
                self.abort_loading(eng);
                self.received = have;
                self.partial_syncs += 1;
                // A rewound node's repair comes first (until REPAIR_END).
                self.repair_started = eng
                    .rewind_state()
                    .is_some_and(|r| r.upto.is_none())
                    .then(Instant::now);
                self.sync_summary = format!("a partial resync from LSN {from}");
                self.state = State::Streaming;
                log::info!("link: streaming from the master from LSN {from}");
                Ok(())
            }
            msg::T_SYNC_BEGIN => {
                let begin = SyncBegin::decode(payload).map_err(|e| e.to_string())?;
                self.abort_loading(eng);
                let fs = eng.begin_full_sync(&begin).map_err(|e| {
                    self.no_room = matches!(e, EngineError::NoSpace(_));
                    format!("cannot start the full sync: {e}")
                })?;
                self.full_syncs += 1;
                self.state = State::Loading(Box::new(fs));
                Ok(())
            }
            msg::T_SYNC_CHUNK => {
                let State::Loading(fs) = &mut self.state else {
                    return Err("a snapshot chunk outside a full sync".into());
                };
                let (file, items) =
                    msg::decode_chunk_items(payload, 256 << 20).map_err(|e| e.to_string())?;
                eng.add_full_sync_chunk(fs, file, items).map_err(|e| {
                    self.no_room = matches!(e, EngineError::NoSpace(_));
                    format!("loading the full sync: {e}")
                })
            }
            msg::T_SYNC_END => {
                let end = SyncEnd::decode(payload).map_err(|e| e.to_string())?;
                let State::Loading(fs) = std::mem::replace(&mut self.state, State::Waiting) else {
                    return Err("SYNC_END outside a full sync".into());
                };
                if fs.items != end.items || fs.chunks != end.chunks {
                    let msg = format!(
                        "full sync incomplete: {} items in {} chunks received, the master sent {} in {}",
                        fs.items, fs.chunks, end.items, end.chunks
                    );
                    eng.abort_full_sync(*fs);
                    return Err(msg);
                }
                let mut fs = fs;
                eng.end_full_sync(&mut fs);
                log::info!(
                    "full sync: all {} items received; making the new copy durable",
                    fs.items
                );
                self.state = State::Finishing(fs);
                Ok(())
            }
            msg::T_REPAIR_KEYS | msg::T_REPAIR_FILE | msg::T_REPAIR_ITEMS | msg::T_REPAIR_END => {
                if !matches!(self.state, State::Streaming) {
                    return Err("a repair before the stream was set up".into());
                }
                self.on_repair(ty, payload, eng)
            }
            msg::T_RECORDS => {
                if !matches!(self.state, State::Streaming) {
                    return Err("records before the stream was set up".into());
                }
                let records = msg::decode_records(payload).map_err(|e| e.to_string())?;
                for rec in &records {
                    if let Err(e) = eng.apply_remote(rec) {
                        if matches!(e, crate::server::engine::ApplyError::NoSpace(_)) {
                            // The link closes; the master keeps the journal from here and
                            // resumes from it when it reconnects with space back.
                            return Err(format!(
                                "cannot apply LSN {}: {e}; the master resends from there once there is space",
                                rec.lsn
                            ));
                        }
                        if matches!(e, crate::server::engine::ApplyError::Gap { .. }) {
                            crate::incident::raise(
                                crate::incident::Kind::SequenceGap,
                                format!("records from the master: {e}; resyncing"),
                                &[("lsn", rec.lsn.to_string())],
                            );
                        }
                        return Err(format!("applying LSN {}: {e}", rec.lsn));
                    }
                    self.received = rec.lsn;
                }
                Ok(())
            }
            msg::T_HEARTBEAT => {
                let hb = msg::Heartbeat::decode(payload).map_err(|e| e.to_string())?;
                self.master_durable = hb.durable;
                Ok(())
            }
            other => Err(format!("unexpected frame type {other} from the master")),
        }
    }

    /// A rejoin's repair frames (see `engine/rejoin.rs`).
    fn on_repair(&mut self, ty: u8, payload: &[u8], eng: &mut Engine) -> Result<(), String> {
        match ty {
            msg::T_REPAIR_KEYS => {
                let keys = msg::decode_repair_keys(payload).map_err(|e| e.to_string())?;
                self.repair_keys += keys.len() as u64;
                self.repair_bytes += keys
                    .iter()
                    .map(|k| {
                        (k.file.len() + k.id.len() + k.raw.as_ref().map_or(0, Vec::len)) as u64
                    })
                    .sum::<u64>();
                eng.apply_repair_keys(&keys)
            }
            msg::T_REPAIR_FILE => {
                let f = RepairFile::decode(payload).map_err(|e| e.to_string())?;
                eng.apply_repair_file(&f)
            }
            msg::T_REPAIR_ITEMS => {
                let (file, items) =
                    msg::decode_chunk(payload, 256 << 20).map_err(|e| e.to_string())?;
                self.repair_items += items.len() as u64;
                self.repair_bytes += items
                    .iter()
                    .map(|(id, raw)| (id.len() + raw.len()) as u64)
                    .sum::<u64>();
                eng.apply_repair_items(&file, &items)
            }
            _ => {
                let end = RepairEnd::decode(payload).map_err(|e| e.to_string())?;
                if end.keys != self.repair_keys || end.items != self.repair_items {
                    return Err(format!(
                        "repair incomplete: {} item(s) and {} file item(s) received, the master sent {} and {}",
                        self.repair_keys, self.repair_items, end.keys, end.items
                    ));
                }
                eng.finish_repair(&end)?;
                self.repair_started = None;
                Ok(())
            }
        }
    }

    /// Whether frames must wait: a full sync's new copy is being made durable, and what the
    /// master streams after it applies to that copy.
    pub fn paused(&self) -> bool {
        matches!(self.state, State::Finishing(_))
    }

    /// Switches to a full sync's new copy once the loader has made it durable. Ok(true): it
    /// did, and the frames that waited can be handled. Err: the link must resync.
    pub fn poll_finish(&mut self, eng: &mut Engine) -> Result<bool, String> {
        if !matches!(&self.state, State::Finishing(fs) if fs.ready()) {
            return Ok(false);
        }
        self.switch(eng).map(|()| true)
    }

    fn switch(&mut self, eng: &mut Engine) -> Result<(), String> {
        let State::Finishing(fs) = std::mem::replace(&mut self.state, State::Waiting) else {
            return Ok(());
        };
        let lsn = fs.lsn;
        let (items, began) = (fs.items, fs.started);
        eng.finish_full_sync(*fs).map_err(|e| {
            self.no_room = matches!(e, EngineError::NoSpace(_));
            format!("cannot switch to the full sync: {e}")
        })?;
        self.received = lsn;
        self.sync_summary = format!(
            "a full sync of {items} items in {:.1} s",
            began.elapsed().as_secs_f64()
        );
        self.state = State::Streaming;
        Ok(())
    }

    /// The connection to the master ends. A full sync still loading is dropped (the old copy
    /// stays live); one wholly received is completed first (waiting for its checkpoint), so
    /// that the next connection resumes from its LSN.
    pub fn on_close(&mut self, eng: &mut Engine) {
        if matches!(self.state, State::Finishing(_)) {
            log::info!("link closed while the full sync's new copy is made durable: completing it");
            if let Err(e) = self.switch(eng) {
                log::warn!("{e}; the previous copy stays live");
            }
            return;
        }
        self.abort_loading(eng);
    }

    /// Drops a full sync being loaded (the old copy stays live).
    pub fn abort_loading(&mut self, eng: &mut Engine) {
        if let State::Loading(fs) | State::Finishing(fs) =
            std::mem::replace(&mut self.state, State::Waiting)
        {
            log::warn!(
                "full sync abandoned after {} items; the previous copy stays live",
                fs.items
            );
            eng.abort_full_sync(*fs);
        }
    }

    /// The last acknowledgement sent to the master.
    pub fn acked(&self) -> Ack {
        self.last_ack
    }

    /// Sends an ACK when something moved. Err: the slave's state went back (a local write
    /// failed), so the link must resync.
    pub fn ack(&mut self, peer: &mut Peer, eng: &Engine) -> Result<(), String> {
        if !matches!(self.state, State::Streaming) {
            return Ok(());
        }
        if eng.visible_lsn() < self.received {
            return Err(format!(
                "this slave lost records it had received (now at LSN {}, had {}): resyncing",
                eng.visible_lsn(),
                self.received
            ));
        }
        let ack = Ack {
            received: self.received,
            durable: eng.durable_lsn().min(self.received),
            applied: self.received,
        };
        if ack != self.last_ack {
            peer.send(msg::T_ACK, &ack.encode());
            self.last_ack = ack;
        }
        Ok(())
    }
}

/// Which catch-up a [`SyncProgress`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A snapshot of the master being loaded beside the live copy.
    FullSync,
    /// A rejoining node's rewound items being repaired from the master's values.
    Repair,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::FullSync => "full sync",
            Phase::Repair => "repair",
        }
    }
}

/// How far a slave's full sync or repair has come: for `hotbackup status`, INFO replication
/// and `hotbackup rejoin`. Rate and ETA come from what was observed since it began.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncProgress {
    pub phase: Phase,
    /// Items loaded (full sync), or items and whole-file items received (repair).
    pub items: u64,
    /// Full sync: the items of the master's snapshot. Repair: the items this node asked for
    /// (the master sends fewer when some lie in files it repairs whole, and those files' items
    /// besides), so a repair has no ETA.
    pub items_total: u64,
    /// Repair: files this node asked to have repaired whole.
    pub files_total: u64,
    /// Bytes of item data so far (ids and values, uncompressed).
    pub bytes: u64,
    pub elapsed: Duration,
}

impl SyncProgress {
    /// Items per second so far.
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.items as f64 / s } else { 0.0 }
    }

    /// Bytes per second so far.
    pub fn byte_rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.bytes as f64 / s } else { 0.0 }
    }

    /// Percent of the items (full sync; 100 when the snapshot is empty).
    pub fn percent(&self) -> f64 {
        if self.items_total == 0 {
            100.0
        } else {
            (self.items.min(self.items_total) as f64 * 100.0) / self.items_total as f64
        }
    }

    /// Time left at the rate observed so far (full sync only; None before the first items).
    pub fn eta(&self) -> Option<Duration> {
        if self.phase != Phase::FullSync {
            return None;
        }
        let rate = self.rate();
        (rate > 0.0).then(|| {
            Duration::from_secs_f64(self.items_total.saturating_sub(self.items) as f64 / rate)
        })
    }

    /// For a link's state: "full sync (1200 of 5000 items loaded, 1.2 MiB, 3400 items/s,
    /// ETA 1 s)", "repair (12 item(s) received; 40 item(s) and 0 whole file(s) asked for;
    /// 0.0 MiB, 0.3 s)".
    pub fn state_text(&self) -> String {
        let mib = self.bytes as f64 / (1 << 20) as f64;
        match self.phase {
            Phase::FullSync => format!(
                "full sync ({} of {} items loaded, {mib:.1} MiB, {:.0} items/s, ETA {})",
                self.items,
                self.items_total,
                self.rate(),
                self.eta().map_or_else(
                    || "unknown".to_string(),
                    |d| format!("{:.0} s", d.as_secs_f64())
                )
            ),
            Phase::Repair => format!(
                "repair ({} item(s) received; {} item(s) and {} whole file(s) asked for; {mib:.1} MiB, {:.1} s)",
                self.items,
                self.items_total,
                self.files_total,
                self.elapsed.as_secs_f64()
            ),
        }
    }

    /// One line for people: "full sync: 1200 of 5000 items (24%), 1.2 MiB (0.5 MiB/s),
    /// 3400 items/s, ETA 1 s".
    pub fn line(&self) -> String {
        let mib = |b: f64| b / (1 << 20) as f64;
        match self.phase {
            Phase::FullSync => format!(
                "full sync: {} of {} items ({:.0}%), {:.1} MiB ({:.1} MiB/s), {:.0} items/s, ETA {}",
                self.items,
                self.items_total,
                self.percent(),
                mib(self.bytes as f64),
                mib(self.byte_rate()),
                self.rate(),
                self.eta().map_or_else(
                    || "unknown".to_string(),
                    |d| format!("{:.0} s", d.as_secs_f64())
                )
            ),
            Phase::Repair => format!(
                "repair: {} item(s) received ({} asked for, and {} file(s) repaired whole), {:.1} MiB, {:.1} s",
                self.items,
                self.items_total,
                self.files_total,
                mib(self.bytes as f64),
                self.elapsed.as_secs_f64()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(items: u64, total: u64, secs: u64) -> SyncProgress {
        SyncProgress {
            phase: Phase::FullSync,
            items,
            items_total: total,
            files_total: 0,
            bytes: items * 100,
            elapsed: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_full_sync_eta_comes_from_the_rate_so_far() {
        let p = full(1000, 5000, 2);
        assert_eq!(p.rate(), 500.0);
        assert_eq!(p.eta(), Some(Duration::from_secs(8)));
        assert_eq!(p.percent(), 20.0);
        assert_eq!(
            p.state_text(),
            "full sync (1000 of 5000 items loaded, 0.1 MiB, 500 items/s, ETA 8 s)"
        );
        assert!(
            p.line()
                .starts_with("full sync: 1000 of 5000 items (20%), 0.1 MiB")
        );
        // Nothing loaded yet: no rate, no ETA.
        assert_eq!(full(0, 5000, 1).eta(), None);
        assert!(full(0, 5000, 1).state_text().ends_with("ETA unknown)"));
        assert_eq!(full(0, 0, 0).percent(), 100.0);
    }

    #[test]
    fn a_repair_shows_counts_and_no_eta() {
        let p = SyncProgress {
            phase: Phase::Repair,
            items: 12,
            items_total: 40,
            files_total: 2,
            bytes: 0,
            elapsed: Duration::from_millis(300),
        };
        assert_eq!(p.eta(), None);
        assert_eq!(
            p.state_text(),
            "repair (12 item(s) received; 40 item(s) and 2 whole file(s) asked for; 0.0 MiB, 0.3 s)"
        );
    }
}
