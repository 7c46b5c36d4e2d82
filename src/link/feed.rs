//! The master's side of one slave: choose partial or full sync, then ship.
//!
//! A [`Feed`] starts from the slave's IDENT. If the slave holds this database and the journal
//! still has everything after the slave's LSN, the feed streams the journal from there
//! (partial resync). Otherwise it ships a snapshot: a redb read transaction at LSN L, in lz4
//! chunks of one file each, while the master keeps taking writes; then the journal from L+1.
//! Only what is durable on the master is ever shipped, so a slave's history is always a prefix
//! of its master's. Shipping stops while the slave's socket is backed up ([`FEED_HIGH_WATER`]):
//! a stalled slave costs the master no memory, only journal retention.

use std::ops::ControlFlow;
use std::time::Instant;

use super::filter::LoggedFilter;
use super::msg::{self, Ack, Ident, Role, SyncBegin, SyncEnd, Writer};
use super::peer::Peer;
use crate::journal::{JournalReader, Lsn};
use crate::server::Engine;
use crate::store::{Reader, View};
use crate::txn::Transaction;

/// Stop producing frames for a slave while this much is queued for it.
pub const FEED_HIGH_WATER: usize = 4 << 20;
/// Target size of one snapshot chunk (before compression) and one RECORDS frame.
const CHUNK_BYTES: usize = 256 << 10;

enum State {
    /// Shipping the snapshot.
    Snapshot(Box<Snapshot>),
    /// All chunks sent; SYNC_END waits until the snapshot's LSN is durable here.
    SnapshotDone { lsn: Lsn, items: u64, chunks: u64 },
    /// Shipping journal records.
    Streaming,
}

struct Snapshot {
    view: View,
    lsn: Lsn,
    /// Logged files still to ship, and where in the current one we are.
    files: Vec<String>,
    after: Option<Vec<u8>>,
    items: u64,
    chunks: u64,
}

pub struct Feed {
    state: State,
    follower: Option<JournalReader>,
    filter: LoggedFilter,
    /// Last LSN shipped.
    pub sent: Lsn,
    /// The slave's latest acknowledgement.
    pub ack: Ack,
    pub ack_at: Instant,
    /// How this feed started.
    pub full_sync: bool,
    pub started: Instant,
    /// Record bytes shipped, and how many of them the slave has applied.
    pub bytes_sent: u64,
    pub bytes_acked: u64,
    /// (last LSN of a RECORDS frame, bytes shipped up to and including it), not yet acked.
    inflight: std::collections::VecDeque<(Lsn, u64)>,
    /// Since when the slave has been behind (None: it has everything durable here).
    pub behind_since: Option<Instant>,
}

/// Why the master will not feed this peer.
#[derive(Debug)]
pub enum Refusal {
    /// The peer is a master too.
    PeerIsMaster,
    /// The slave holds records this master does not have.
    SlaveAhead {
        slave: Lsn,
        master: Lsn,
    },
    Internal(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::PeerIsMaster => write!(f, "the peer is a master too"),
            Refusal::SlaveAhead { slave, master } => write!(
                f,
                "the slave holds LSN {slave} but this master only has up to LSN {master}: it must rejoin"
            ),
            Refusal::Internal(e) => write!(f, "{e}"),
        }
    }
}

impl Feed {
    /// Decides how to bring the slave up to date and queues the first frames.
    pub fn start(eng: &mut Engine, peer: &mut Peer, slave: &Ident) -> Result<Feed, Refusal> {
        if slave.role == Role::Master {
            return Err(Refusal::PeerIsMaster);
        }
        let me = eng.ident();
        let durable = eng.durable_lsn();
        let journal_first = eng.journal().first_lsn();
        let same_db = slave.db_id == me.db_id;
        if same_db && slave.lsn > durable {
            return Err(Refusal::SlaveAhead {
                slave: slave.lsn,
                master: durable,
            });
        }
        let history_ok = slave
            .history
            .iter()
            .all(|g| me.history.iter().any(|m| m == g));
        let now = Instant::now();
        if same_db && history_ok && slave.lsn + 1 >= journal_first {
            let from = slave.lsn + 1;
            let follower = JournalReader::follow(eng.journal().dir(), from, durable)
                .map_err(|e| Refusal::Internal(e.to_string()))?;
            peer.send(msg::T_STREAM, &msg::encode_stream(from));
            log::info!(
                "link {}: partial resync from LSN {from} (master at {durable})",
                peer.label()
            );
            return Ok(Feed {
                state: State::Streaming,
                follower: Some(follower),
                filter: LoggedFilter::new(&slave.catalog),
                sent: slave.lsn,
                ack: Ack {
                    received: slave.lsn,
                    durable: slave.lsn,
                    applied: slave.lsn,
                },
                ack_at: now,
                full_sync: false,
                started: now,
                bytes_sent: 0,
                bytes_acked: 0,
                inflight: Default::default(),
                behind_since: None,
            });
        }
        let view = eng
            .snapshot()
            .map_err(|e| Refusal::Internal(format!("cannot take a snapshot: {e}")))?;
        let lsn = view.lsn();
        let files = view.files();
        let catalog: Vec<(String, bool)> =
            files.iter().map(|(n, i)| (n.clone(), i.logged)).collect();
        let logged: Vec<String> = files
            .into_iter()
            .filter(|(_, i)| i.logged)
            .map(|(n, _)| n)
            .collect();
        let begin = SyncBegin {
            lsn,
            db_id: me.db_id,
            history: me.history.clone(),
            catalog: catalog.clone(),
        };
        peer.send(msg::T_SYNC_BEGIN, &begin.encode());
        log::info!(
            "link {}: full sync of a snapshot at LSN {lsn} ({}; {} logged file(s))",
            peer.label(),
            if same_db {
                "the slave is too far behind for the journal"
            } else {
                "the slave holds another database or none"
            },
            logged.len()
        );
        Ok(Feed {
            state: State::Snapshot(Box::new(Snapshot {
                view,
                lsn,
                files: logged,
                after: None,
                items: 0,
                chunks: 0,
            })),
            follower: None,
            filter: LoggedFilter::new(&catalog),
            sent: lsn,
            ack: Ack::default(),
            ack_at: now,
            full_sync: true,
            started: now,
            bytes_sent: 0,
            bytes_acked: 0,
            inflight: Default::default(),
            behind_since: Some(now),
        })
    }

    /// Takes the slave's acknowledgement.
    pub fn on_ack(&mut self, ack: Ack, durable_here: Lsn) {
        self.ack = ack;
        self.ack_at = Instant::now();
        while let Some(&(lsn, bytes)) = self.inflight.front() {
            if lsn > ack.applied {
                break;
            }
            self.bytes_acked = bytes;
            self.inflight.pop_front();
        }
        self.note_lag(durable_here);
    }

    /// Updates since when the slave has been behind this node's durable LSN.
    pub fn note_lag(&mut self, durable_here: Lsn) {
        let behind = !matches!(self.state, State::Streaming) || self.ack.applied < durable_here;
        match (behind, self.behind_since) {
            (false, _) => self.behind_since = None,
            (true, None) => self.behind_since = Some(Instant::now()),
            (true, Some(_)) => {}
        }
    }

    /// Bytes shipped the slave has not applied yet.
    pub fn lag_bytes(&self) -> u64 {
        self.bytes_sent - self.bytes_acked
    }

    /// The LSN journal retention must keep for this slave (the oldest it may still need).
    pub fn needs_from(&self) -> Lsn {
        match &self.state {
            State::Snapshot(s) => s.lsn + 1,
            State::SnapshotDone { lsn, .. } => lsn + 1,
            State::Streaming => self.ack.durable.min(self.sent) + 1,
        }
    }

    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Snapshot(_) | State::SnapshotDone { .. } => "full sync",
            State::Streaming => "streaming",
        }
    }

    /// Queues what can be sent now. Err: the feed cannot go on (the link must be closed).
    pub fn pump(&mut self, peer: &mut Peer, eng: &mut Engine) -> Result<(), String> {
        loop {
            if peer.unsent() >= FEED_HIGH_WATER {
                return Ok(());
            }
            match &mut self.state {
                State::Snapshot(s) => {
                    if !send_chunk(s, peer)? {
                        let done = State::SnapshotDone {
                            lsn: s.lsn,
                            items: s.items,
                            chunks: s.chunks,
                        };
                        self.state = done;
                    }
                }
                State::SnapshotDone { lsn, items, chunks } => {
                    if eng.durable_lsn() < *lsn {
                        return Ok(());
                    }
                    let lsn = *lsn;
                    peer.send(
                        msg::T_SYNC_END,
                        &SyncEnd {
                            items: *items,
                            chunks: *chunks,
                        }
                        .encode(),
                    );
                    let follower =
                        JournalReader::follow(eng.journal().dir(), lsn + 1, eng.durable_lsn())
                            .map_err(|e| {
                                format!("the journal no longer holds LSN {}: {e}", lsn + 1)
                            })?;
                    self.follower = Some(follower);
                    self.state = State::Streaming;
                }
                State::Streaming => return self.send_records(peer, eng),
            }
        }
    }

    fn send_records(&mut self, peer: &mut Peer, eng: &mut Engine) -> Result<(), String> {
        let Some(follower) = self.follower.as_mut() else {
            return Ok(());
        };
        follower.set_upto(eng.durable_lsn());
        while peer.unsent() < FEED_HIGH_WATER {
            let mut w = Writer::default();
            while w.0.len() < CHUNK_BYTES {
                let rec = match follower.next_record() {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => return Err(format!("reading the journal to ship: {e}")),
                };
                let txn = Transaction::decode(&rec.payload)
                    .map_err(|e| format!("journal record LSN {} does not decode: {e}", rec.lsn))?;
                match self.filter.filter_ref(&txn) {
                    None => msg::push_record(&mut w, rec.lsn, rec.generation, &rec.payload),
                    Some(shipped) => {
                        msg::push_record(&mut w, rec.lsn, rec.generation, &shipped.encode())
                    }
                }
                self.sent = rec.lsn;
            }
            if w.0.is_empty() {
                break;
            }
            self.bytes_sent += w.0.len() as u64;
            self.inflight.push_back((self.sent, self.bytes_sent));
            peer.send(msg::T_RECORDS, &w.0);
        }
        Ok(())
    }
}

/// Queues the next snapshot chunk. Ok(false) when the snapshot is all sent.
fn send_chunk(s: &mut Snapshot, peer: &mut Peer) -> Result<bool, String> {
    let Some(file) = s.files.first().cloned() else {
        return Ok(false);
    };
    let mut items: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut bytes = 0;
    let mut more = false;
    let start = s.after.clone().unwrap_or_default();
    let skip = s.after.clone();
    s.view
        .scan_from(&file, &start, &mut |k, v| {
            if skip.as_deref() == Some(k) {
                return ControlFlow::Continue(());
            }
            if bytes >= CHUNK_BYTES {
                more = true;
                return ControlFlow::Break(());
            }
            bytes += k.len() + v.len() + 8;
            items.push((k.to_vec(), v.to_vec()));
            ControlFlow::Continue(())
        })
        .map_err(|e| format!("reading the snapshot: {e}"))?;
    if !items.is_empty() {
        s.items += items.len() as u64;
        s.chunks += 1;
        peer.send(msg::T_SYNC_CHUNK, &msg::encode_chunk(&file, &items));
    }
    if more {
        s.after = items.last().map(|(k, _)| k.clone());
    } else {
        s.files.remove(0);
        s.after = None;
    }
    Ok(true)
}
