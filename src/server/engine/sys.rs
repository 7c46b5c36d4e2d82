//! hotbackup's own records in the stream: the canary and the verify marker (`sys/...` files).
//!
//! A master writes them in small turns of their own between client turns
//! ([`Engine::write_sys`]). A slave notes them as it applies them; a verify marker also
//! gets a read snapshot at exactly its LSN, taken before the next record is applied
//! ([`Engine::take_sys_applied`]).

use super::{Engine, TurnOutcome, WriteRefused};
use crate::journal::Lsn;
use crate::store::View;
use crate::txn::{Op, Value};

/// Applied records kept for the link at most (older ones are dropped).
const KEEP_APPLIED: usize = 100;

/// A `sys/...` record this node applied from upstream.
pub enum SysApplied {
    Canary {
        lsn: Lsn,
        value: Vec<u8>,
    },
    /// A verify marker and the store exactly at its LSN (None: no snapshot could be taken).
    Marker {
        lsn: Lsn,
        value: Vec<u8>,
        view: Option<View>,
    },
}

impl Engine {
    /// Writes `ops` as one transaction in a turn of its own (the caller has ended the client
    /// turn) and, if `want_view`, takes a snapshot exactly at it. The sync is requested by the
    /// event loop's next turn end. Refused like a client's write (slave, fenced, paused, disk
    /// full, ...).
    pub fn write_sys(
        &mut self,
        ops: Vec<Op>,
        want_view: bool,
    ) -> Result<(Lsn, Option<View>), String> {
        if self.turn_dirty || self.journal.pending() > 0 {
            return Err("a turn is open".into());
        }
        if self.write_pause.is_some() {
            return Err(WriteRefused::Paused.to_string());
        }
        for op in ops {
            if let Err(e) = self.write(op) {
                self.txn_ops.clear();
                let _ = self.end_turn();
                return Err(e.to_string());
            }
        }
        self.end_txn();
        let lsn = match self.end_turn() {
            TurnOutcome::Committed(lsn) => lsn,
            TurnOutcome::ReadOnly => return Err("nothing was written".into()),
            TurnOutcome::Failed { message, .. } => return Err(message),
        };
        if !want_view {
            return Ok((lsn, None));
        }
        match self.snapshot() {
            Ok(v) if v.lsn() == lsn => Ok((lsn, Some(v))),
            Ok(v) => Err(format!(
                "the snapshot is at LSN {} instead of {lsn}",
                v.lsn()
            )),
            Err(e) => Err(format!("cannot take a snapshot: {e}")),
        }
    }

    /// Notes the `sys/...` ops of a record just applied from upstream. A verify marker ends
    /// the turn here so that the snapshot holds exactly up to it.
    pub(super) fn note_sys_applied(&mut self, lsn: Lsn, ops: &[Op]) {
        for op in ops {
            let Op::Put {
                file,
                value: Value::Str(value),
                ..
            } = op
            else {
                continue;
            };
            let entry = if file == crate::verify::canary::FILE {
                SysApplied::Canary {
                    lsn,
                    value: value.clone(),
                }
            } else if file == crate::verify::runs::FILE {
                let view = if self.opts.slave {
                    match self.end_turn() {
                        TurnOutcome::Failed { message, .. } => {
                            log::warn!("verify marker at LSN {lsn}: {message}");
                            None
                        }
                        _ => match self.snapshot() {
                            Ok(v) if v.lsn() == lsn => Some(v),
                            Ok(v) => {
                                log::warn!(
                                    "verify marker at LSN {lsn}: the snapshot is at LSN {}",
                                    v.lsn()
                                );
                                None
                            }
                            Err(e) => {
                                log::warn!("verify marker at LSN {lsn}: no snapshot: {e}");
                                None
                            }
                        },
                    }
                } else {
                    None
                };
                SysApplied::Marker {
                    lsn,
                    value: value.clone(),
                    view,
                }
            } else {
                continue;
            };
            if self.sys_applied.len() >= KEEP_APPLIED {
                self.sys_applied.remove(0);
            }
            self.sys_applied.push(entry);
        }
    }

    /// The `sys/...` records applied since the last call, oldest first.
    pub fn take_sys_applied(&mut self) -> Vec<SysApplied> {
        std::mem::take(&mut self.sys_applied)
    }

    /// Keeps a local text setting (durable with the next checkpoint).
    pub fn save_local(&mut self, key: &str, value: &str) {
        let result = match self.batch() {
            Ok(b) => b.set_local(key, Some(value)),
            Err(e) => Err(crate::store::StoreError::Corrupt(e.to_string())),
        };
        if let Err(e) = result {
            log::warn!("cannot keep {key} in the store: {e}");
        }
    }

    /// A local text setting, as committed.
    pub fn load_local(&self, key: &str) -> Option<String> {
        self.store
            .as_ref()
            .and_then(|s| s.local(key).ok().flatten())
    }
}
