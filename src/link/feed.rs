//! The master's side of one slave: choose partial or full sync, then ship.
//!
//! A [`Feed`] starts from the slave's IDENT. If the slave holds this database and the journal
//! still has everything after the slave's LSN, the feed streams the journal from there
//! (partial resync). Otherwise it ships a snapshot: a redb read transaction at LSN L, in lz4
//! chunks of one file each, while the master keeps taking writes; then the journal from L+1.
//! What the master has written is shipped without waiting for its fsync (up to
//! [`crate::server::engine::SHIP_AHEAD`] records past its durable LSN), so that a sync mode's
//! write pays for the two fsyncs side by side. A crash of the master's machine may lose records
//! a slave already holds (never acknowledged to a client: that needs them durable here too):
//! at the next handshake the slave's last records are checked against the journal (their
//! digests, IDENT's `tail`), and a slave holding records this master lacks is told where
//! they start (FORK); it exports and rewinds them, then resyncs. Shipping stops while the slave's socket is backed up ([`FEED_HIGH_WATER`]):
//! a stalled slave costs the master no memory, only journal retention.

use std::ops::ControlFlow;
use std::time::Instant;

use super::filter::LoggedFilter;
use super::msg::{
    self, Ack, Ident, RepairEnd, RepairFile, RepairKey, Role, SyncBegin, SyncEnd, Writer,
};
use super::peer::Peer;
use crate::journal::{JournalReader, Lsn};
use crate::server::Engine;
use crate::store::rewind::RewindState;
use crate::store::{Reader, View};
use crate::txn::{Op, Transaction};

/// Stop producing frames for a slave while this much is queued for it.
pub const FEED_HIGH_WATER: usize = 4 << 20;
/// Target size of one snapshot chunk (before compression) and one RECORDS frame.
const CHUNK_BYTES: usize = 256 << 10;
/// What is queued goes to the socket whenever this much has piled up: the slave starts on a
/// snapshot's first chunks while the next are read and compressed (before, the feed queued up
/// to [`FEED_HIGH_WATER`] of compressed chunks first, and the two sides took turns idling).
const FLUSH_BYTES: usize = 256 << 10;
/// How long one [`Feed::pump`] may produce frames before the event loop takes its turn.
pub const PUMP_BUDGET: std::time::Duration = std::time::Duration::from_millis(10);

enum State {
    /// Reading the journal from a rejoining slave's fork point for file-level ops.
    RepairScan(Box<RepairScan>),
    /// Repairing a rejoining slave's rewound items before streaming from its fork point.
    Repair(Box<Repair>),
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

/// Before a rejoining slave's repair: the journal from its fork point to the snapshot's LSN,
/// read for the files a file-level op touched in between.
struct RepairScan {
    view: View,
    upto: Lsn,
    from: Lsn,
    /// None: nothing to read (the snapshot is at the fork point).
    reader: Option<JournalReader>,
    file_ops: std::collections::HashSet<String>,
    /// What the slave's exported records touched.
    rewind: RewindState,
    /// The slave's catalog.
    catalog: Vec<(String, bool)>,
    /// Records read so far, and since when.
    scanned: u64,
    started: Instant,
}

/// Records a repair scan reads between two checks of the pump's budget.
const SCAN_STEP: usize = 256;

impl RepairScan {
    /// Reads up to [`SCAN_STEP`] records. Ok(true): the scan is complete.
    fn step(&mut self) -> Result<bool, String> {
        let Some(r) = self.reader.as_mut() else {
            return Ok(true);
        };
        for _ in 0..SCAN_STEP {
            let Some(rec) = r
                .next_record()
                .map_err(|e| format!("reading the journal for a repair: {e}"))?
            else {
                return Ok(true);
            };
            let txn = Transaction::decode(&rec.payload)
                .map_err(|e| format!("journal record LSN {} does not decode: {e}", rec.lsn))?;
            self.scanned += 1;
            for op in &txn.ops {
                if matches!(
                    op,
                    Op::CreateFile { .. }
                        | Op::SetLogged { .. }
                        | Op::DropFile { .. }
                        | Op::ClearFile { .. }
                ) {
                    self.file_ops.insert(op.file().to_string());
                }
            }
        }
        Ok(false)
    }

    /// The repair the scan calls for, and the catalog the stream's filter starts from.
    fn into_repair(self) -> (Repair, Vec<(String, bool)>) {
        let RepairScan {
            view,
            upto,
            from,
            file_ops,
            rewind,
            mut catalog,
            ..
        } = self;
        // Files a file-level op touched since the fork are repaired whole (an item's value
        // at `upto` says nothing of a drop or clear of its file in between).
        let mut whole: std::collections::BTreeSet<String> = rewind.files.clone();
        for (f, _) in &rewind.keys {
            if file_ops.contains(f) || view.file_info(f).is_none_or(|i| !i.logged) {
                whole.insert(f.clone());
            }
        }
        let keys: Vec<(String, Vec<u8>)> = rewind
            .keys
            .iter()
            .filter(|(f, _)| !whole.contains(f))
            .cloned()
            .collect();
        // The filter starts from the slave's catalog, except for files repaired whole: their
        // state is the master's (records before `upto` do not touch them on the slave).
        for f in &whole {
            catalog.retain(|(n, _)| n != f);
            if let Some(i) = view.file_info(f) {
                catalog.push((f.clone(), i.logged));
            }
        }
        let whole: Vec<String> = whole.into_iter().collect();
        let repair = Repair {
            view,
            upto,
            keys,
            files: whole.clone(),
            file_started: false,
            after: None,
            whole,
            keys_sent: 0,
            items_sent: 0,
            from,
        };
        (repair, catalog)
    }
}

/// The repair of a rejoining slave: the values at LSN `upto` of the items its exported
/// records touched (whole files where a file-level op is involved).
struct Repair {
    view: View,
    upto: Lsn,
    /// Items still to send.
    keys: Vec<(String, Vec<u8>)>,
    /// Whole files still to send, and whether the current one's REPAIR_FILE went out.
    files: Vec<String>,
    file_started: bool,
    after: Option<Vec<u8>>,
    /// Every file repaired whole (for REPAIR_END).
    whole: Vec<String>,
    keys_sent: u64,
    items_sent: u64,
    /// Where streaming starts (the fork point).
    from: Lsn,
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
    /// The slave's history forks from this master's and it holds records past the fork.
    SlaveDiverged {
        fork: Lsn,
        slave: Lsn,
    },
    /// The slave holds records from `fork` on that are not this master's (see
    /// [`msg::T_FORK`]): it is told to export and rewind them.
    SlaveUnconfirmed {
        fork: Lsn,
        slave: Lsn,
        master: Lsn,
    },
    /// The slave has seen a newer generation than this master.
    SlaveNewer {
        slave: u64,
        master: u64,
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
            Refusal::SlaveDiverged { fork, slave } => write!(
                f,
                "the slave's history forks from this master's at LSN {fork} and it holds up to LSN {slave}: it must rejoin (it exports what it holds past the fork)"
            ),
            Refusal::SlaveUnconfirmed {
                fork,
                slave,
                master,
            } => write!(
                f,
                "the slave holds LSN {fork}-{slave}, which this node (at LSN {master}) does not have as it does: it lost them before they were durable here (a crash of its machine, or a rewind of its own); the slave exports and rewinds them"
            ),
            Refusal::SlaveNewer { slave, master } => write!(
                f,
                "the slave has seen generation {slave}, newer than this master's {master}: this master is outdated"
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
        let shippable = eng.shippable_lsn();
        let written = eng.journal().written_lsn();
        let journal_first = eng.journal().first_lsn();
        let same_db = slave.db_id == me.db_id;
        let my_gen = me.history.last().map_or(1, |g| g.generation);
        let slave_gen = slave.history.last().map_or(1, |g| g.generation);
        if same_db && slave_gen > my_gen {
            return Err(Refusal::SlaveNewer {
                slave: slave_gen,
                master: my_gen,
            });
        }
        let fork = crate::server::engine::fork_point(&slave.history, &me.history);
        if same_db && fork.is_some_and(|f| slave.lsn >= f) {
            return Err(Refusal::SlaveDiverged {
                fork: fork.unwrap_or(0),
                slave: slave.lsn,
            });
        }
        let history_ok = slave
            .history
            .iter()
            .all(|g| me.history.iter().any(|m| m == g));
        if same_db && history_ok && slave.rewind.is_none() {
            // Records shipped before they were durable here may have been lost in a crash of
            // this machine, and others written since at the same LSNs: the slave's last
            // records must be this node's, as they are here.
            match eng.fork_in_tail(&slave.tail, slave.lsn) {
                Ok(Some(fork)) => {
                    return Err(Refusal::SlaveUnconfirmed {
                        fork,
                        slave: slave.lsn,
                        master: written,
                    });
                }
                Ok(None) => {}
                Err(e) => return Err(Refusal::Internal(e)),
            }
        }
        if same_db && slave.lsn > written {
            return Err(Refusal::SlaveAhead {
                slave: slave.lsn,
                master: written,
            });
        }
        let now = Instant::now();
        if same_db && history_ok && slave.lsn + 1 >= journal_first && slave.rewind.is_some() {
            return Self::start_repair(eng, peer, slave, now);
        }
        if same_db && history_ok && slave.lsn + 1 >= journal_first {
            let from = slave.lsn + 1;
            let follower = JournalReader::follow(eng.journal().dir(), from, shippable)
                .map_err(|e| Refusal::Internal(e.to_string()))?;
            peer.send(msg::T_STREAM, &msg::encode_stream(from));
            log::info!(
                "link {}: partial resync from LSN {from} (master at {written})",
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
        let items_total = logged.iter().map(|f| view.count(f).unwrap_or(0)).sum();
        let begin = SyncBegin {
            lsn,
            db_id: me.db_id,
            history: me.history.clone(),
            catalog: catalog.clone(),
            items_total,
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

    /// A rejoining slave whose fork point the journal covers: repair what its exported records
    /// touched, then stream from the fork point. The journal since the fork is scanned for
    /// file-level ops first, a budget at a time in [`Feed::pump`] (it may be long: the event
    /// loop keeps serving meanwhile).
    fn start_repair(
        eng: &mut Engine,
        peer: &mut Peer,
        slave: &Ident,
        now: Instant,
    ) -> Result<Feed, Refusal> {
        let rw = slave.rewind.clone().unwrap_or_default();
        let from = slave.lsn + 1;
        let view = eng
            .snapshot()
            .map_err(|e| Refusal::Internal(format!("cannot take a snapshot: {e}")))?;
        let upto = view.lsn();
        let reader = if upto >= from {
            Some(
                JournalReader::open(eng.journal().dir(), from, Some(upto)).map_err(|e| {
                    Refusal::Internal(format!("reading the journal from LSN {from}: {e}"))
                })?,
            )
        } else {
            None
        };
        log::info!(
            "link {}: rejoining slave: scanning the journal from its fork point {from} to LSN {upto} before the repair",
            peer.label()
        );
        Ok(Feed {
            state: State::RepairScan(Box::new(RepairScan {
                view,
                upto,
                from,
                reader,
                file_ops: Default::default(),
                rewind: rw,
                catalog: slave.catalog.clone(),
                scanned: 0,
                started: now,
            })),
            follower: None,
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
            State::RepairScan(s) => s.from,
            State::Repair(r) => r.from,
            State::Snapshot(s) => s.lsn + 1,
            State::SnapshotDone { lsn, .. } => lsn + 1,
            State::Streaming => self.ack.durable.min(self.sent) + 1,
        }
    }

    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::RepairScan(_) | State::Repair(_) => "repair",
            State::Snapshot(_) | State::SnapshotDone { .. } => "full sync",
            State::Streaming => "streaming",
        }
    }

    /// Queues what can be sent now, handing it to the socket as it goes, for at most
    /// [`PUMP_BUDGET`]. Ok(true): the budget ran out with more to send (call again soon).
    /// Err: the feed cannot go on (the link must be closed).
    pub fn pump(&mut self, peer: &mut Peer, eng: &mut Engine) -> Result<bool, String> {
        let started = Instant::now();
        loop {
            if let Some(more) = pause(peer, started)? {
                return Ok(more);
            }
            match &mut self.state {
                State::RepairScan(scan) => {
                    if !scan.step()? {
                        continue;
                    }
                    let State::RepairScan(scan) =
                        std::mem::replace(&mut self.state, State::Streaming)
                    else {
                        continue;
                    };
                    let (scanned, took) = (scan.scanned, scan.started.elapsed());
                    let (repair, catalog) = scan.into_repair();
                    peer.send(msg::T_STREAM, &msg::encode_stream(repair.from));
                    log::info!(
                        "link {}: rejoining slave: {scanned} journal record(s) since its fork point scanned in {} ms; repairing {} item(s) and {} whole file(s) at LSN {}, then streaming from its fork point {}",
                        peer.label(),
                        took.as_millis(),
                        repair.keys.len(),
                        repair.whole.len(),
                        repair.upto,
                        repair.from
                    );
                    self.filter = LoggedFilter::new(&catalog);
                    self.state = State::Repair(Box::new(repair));
                }
                State::Repair(r) => {
                    if send_repair(r, peer)? {
                        continue;
                    }
                    if eng.durable_lsn() < r.upto {
                        return Ok(false);
                    }
                    peer.send(
                        msg::T_REPAIR_END,
                        &RepairEnd {
                            upto: r.upto,
                            files: r.whole.clone(),
                            keys: r.keys_sent,
                            items: r.items_sent,
                        }
                        .encode(),
                    );
                    let from = r.from;
                    let follower =
                        JournalReader::follow(eng.journal().dir(), from, eng.durable_lsn())
                            .map_err(|e| format!("the journal no longer holds LSN {from}: {e}"))?;
                    self.follower = Some(follower);
                    self.state = State::Streaming;
                }
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
                        return Ok(false);
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
                State::Streaming => return self.send_records(peer, eng, started),
            }
        }
    }

    fn send_records(
        &mut self,
        peer: &mut Peer,
        eng: &mut Engine,
        started: Instant,
    ) -> Result<bool, String> {
        let Some(follower) = self.follower.as_mut() else {
            return Ok(false);
        };
        follower.set_upto(eng.shippable_lsn());
        loop {
            if let Some(more) = pause(peer, started)? {
                return Ok(more);
            }
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
                return Ok(false);
            }
            self.bytes_sent += w.0.len() as u64;
            self.inflight.push_back((self.sent, self.bytes_sent));
            peer.send(msg::T_RECORDS, &w.0);
        }
    }
}

/// Hands what piled up to the socket; Some: the pump stops here (Some(true): its budget ran
/// out with more to send; Some(false): the slave's socket is backed up).
fn pause(peer: &mut Peer, started: Instant) -> Result<Option<bool>, String> {
    if peer.unsent() >= FLUSH_BYTES {
        peer.flush()?;
    }
    if peer.unsent() >= FEED_HIGH_WATER {
        return Ok(Some(false));
    }
    Ok((started.elapsed() >= PUMP_BUDGET).then_some(true))
}

/// Queues the next repair frame. Ok(false) when everything was sent.
fn send_repair(r: &mut Repair, peer: &mut Peer) -> Result<bool, String> {
    if !r.keys.is_empty() {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while bytes < CHUNK_BYTES {
            let Some((file, id)) = r.keys.pop() else {
                break;
            };
            let raw = r
                .view
                .get_raw(&file, &id)
                .map_err(|e| format!("reading the snapshot: {e}"))?;
            bytes += file.len() + id.len() + raw.as_ref().map_or(0, Vec::len) + 16;
            batch.push(RepairKey { file, id, raw });
        }
        r.keys_sent += batch.len() as u64;
        peer.send(msg::T_REPAIR_KEYS, &msg::encode_repair_keys(&batch));
        return Ok(true);
    }
    let Some(file) = r.files.first().cloned() else {
        return Ok(false);
    };
    if !r.file_started {
        let logged = r.view.file_info(&file).map(|i| i.logged);
        peer.send(
            msg::T_REPAIR_FILE,
            &RepairFile {
                file: file.clone(),
                logged,
            }
            .encode(),
        );
        r.file_started = true;
        if logged != Some(true) {
            r.files.remove(0);
            r.file_started = false;
        }
        return Ok(true);
    }
    let next = next_chunk(&r.view, &file, r.after.as_deref())?;
    if next.items > 0 {
        r.items_sent += next.items as u64;
        peer.send(msg::T_REPAIR_ITEMS, &next.chunk);
    }
    r.after = next.after;
    if r.after.is_none() {
        r.files.remove(0);
        r.file_started = false;
    }
    Ok(true)
}

/// One chunk of a file's items, encoded and compressed, and what comes after it.
struct NextChunk {
    chunk: Vec<u8>,
    items: usize,
    /// The last item's id: where the next chunk starts (Some when more items follow).
    after: Option<Vec<u8>>,
}

/// The items of `file` after key `after` (from the start if None), up to [`CHUNK_BYTES`],
/// as a chunk; and, when more follow, the key to go on from.
fn next_chunk(view: &View, file: &str, after: Option<&[u8]>) -> Result<NextChunk, String> {
    let mut c = msg::ChunkWriter::new(file, CHUNK_BYTES + (CHUNK_BYTES >> 3));
    let mut last: Vec<u8> = Vec::new();
    let mut more = false;
    view.scan_from(file, after.unwrap_or_default(), &mut |k, v| {
        if after == Some(k) {
            return ControlFlow::Continue(());
        }
        if c.encoded_len() >= CHUNK_BYTES {
            more = true;
            return ControlFlow::Break(());
        }
        c.push(k, v);
        last.clear();
        last.extend_from_slice(k);
        ControlFlow::Continue(())
    })
    .map_err(|e| format!("reading the snapshot: {e}"))?;
    let items = c.len();
    Ok(NextChunk {
        chunk: if items > 0 { c.finish() } else { Vec::new() },
        items,
        after: more.then_some(last),
    })
}

/// Queues the next snapshot chunk. Ok(false) when the snapshot is all sent.
fn send_chunk(s: &mut Snapshot, peer: &mut Peer) -> Result<bool, String> {
    let Some(file) = s.files.first().cloned() else {
        return Ok(false);
    };
    let next = next_chunk(&s.view, &file, s.after.as_deref())?;
    if next.items > 0 {
        s.items += next.items as u64;
        s.chunks += 1;
        peer.send(msg::T_SYNC_CHUNK, &next.chunk);
    }
    s.after = next.after;
    if s.after.is_none() {
        s.files.remove(0);
    }
    Ok(true)
}
