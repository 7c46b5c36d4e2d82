//! The slave's side of its master: load a full sync or go straight to streaming, apply each
//! record in LSN order, acknowledge.
//!
//! Records are applied whole (a MULTI/EXEC is one record: never half visible to a reader on
//! the slave) and journaled with the master's LSNs, so the slave can be promoted with the full
//! history or feed a further slave. Acks say how far the slave has received, made durable and
//! applied; the master's sync modes wait on them.

use std::time::Instant;

use super::msg::{self, Ack, RepairEnd, RepairFile, SyncBegin, SyncEnd};
use super::peer::Peer;
use crate::journal::Lsn;
use crate::server::Engine;
use crate::server::engine::FullSync;

enum State {
    /// IDENT sent: waiting for STREAM or SYNC_BEGIN.
    Waiting,
    Loading(Box<FullSync>),
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
    /// A rejoin's repair: items and whole-file items received so far.
    repair_keys: u64,
    repair_items: u64,
    /// How this connection came into sync: "" until it did, then "a partial resync from LSN N"
    /// or "a full sync of N items in S s".
    pub sync_summary: String,
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
            sync_summary: String::new(),
        }
    }
}

impl Follow {
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Waiting => "handshake",
            State::Loading(_) => "full sync",
            State::Streaming => "streaming",
        }
    }

    /// Progress of a full sync being loaded: items so far, of how many.
    pub fn loading_items(&self) -> Option<(u64, u64)> {
        match &self.state {
            State::Loading(fs) => Some((fs.items, fs.items_total)),
            _ => None,
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
                self.sync_summary = format!("a partial resync from LSN {from}");
                self.state = State::Streaming;
                log::info!("link: streaming from the master from LSN {from}");
                Ok(())
            }
            msg::T_SYNC_BEGIN => {
                let begin = SyncBegin::decode(payload).map_err(|e| e.to_string())?;
                self.abort_loading(eng);
                let fs = eng
                    .begin_full_sync(&begin)
                    .map_err(|e| format!("cannot start the full sync: {e}"))?;
                self.full_syncs += 1;
                self.state = State::Loading(Box::new(fs));
                Ok(())
            }
            msg::T_SYNC_CHUNK => {
                let State::Loading(fs) = &mut self.state else {
                    return Err("a snapshot chunk outside a full sync".into());
                };
                let (file, items) =
                    msg::decode_chunk(payload, 256 << 20).map_err(|e| e.to_string())?;
                fs.add(&file, &items)
                    .map_err(|e| format!("loading the full sync: {e}"))
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
                let lsn = fs.lsn;
                let (items, began) = (fs.items, fs.started);
                eng.finish_full_sync(*fs)
                    .map_err(|e| format!("cannot switch to the full sync: {e}"))?;
                self.received = lsn;
                self.sync_summary = format!(
                    "a full sync of {items} items in {:.1} s",
                    began.elapsed().as_secs_f64()
                );
                self.state = State::Streaming;
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
                eng.finish_repair(&end)
            }
        }
    }

    /// Drops a full sync being loaded (the old copy stays live).
    pub fn abort_loading(&mut self, eng: &mut Engine) {
        if let State::Loading(fs) = std::mem::replace(&mut self.state, State::Waiting) {
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
