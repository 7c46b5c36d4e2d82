//! Online verify runs: the marker a master puts into the stream, the checksums each node
//! computes at exactly the marker's LSN, the comparison a slave makes with its upstream, the
//! narrowing of a mismatch to items, and the outcomes kept and reported up the chain.
//!
//! A run is keyed by the marker's id. On the node that wrote the marker, and on every slave
//! when it applies it, the engine hands over a read snapshot at the marker's LSN; a thread
//! computes the sums from it (writes go on meanwhile). A node that feeds slaves sends its sums
//! to each of them (VERIFY_SUMS); a slave compares them with its own, asks its feeder for the
//! (id, hash) lists of the few differing buckets (VERIFY_NARROW / VERIFY_ITEMS), names the
//! differing items, and reports the outcome upstream (VERIFY_RESULT), where it is kept and
//! relayed further up: the master that started the run sees every slave of a cascading chain.
//! The snapshots are held only while slaves may still ask for items.
//!
//! This module decides what to send; the link manager sends it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use super::report::{FileOutcome, Outcome};
use super::sums::{self, FileVerdict, ItemDiff, Sums};
use super::wire::{ItemsMsg, NarrowMsg, SumsMsg};
use crate::incident::{self, Kind};
use crate::journal::Lsn;
use crate::store::View;
use crate::txn::{Op, Value};

/// The marker's file and item.
pub const FILE: &str = "sys/verify";
pub const ID: &[u8] = b"marker";

/// Runs kept (newest last).
const KEEP_RUNS: usize = 20;
/// A run not complete after this is closed as incomplete.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// A snapshot is held at most this long for slaves to narrow a mismatch.
const VIEW_HOLD: Duration = Duration::from_secs(120);

/// The marker's value: `id=N time_ms=T origin=NAME`.
pub fn marker_value(id: u64, time_ms: u64, origin: &str) -> Vec<u8> {
    format!("id={id} time_ms={time_ms} origin={origin}").into_bytes()
}

/// (id, time_ms, origin) of a marker value.
pub fn decode_marker(v: &[u8]) -> Option<(u64, u64, String)> {
    let text = std::str::from_utf8(v).ok()?;
    let (mut id, mut time, mut origin) = (None, None, None);
    for part in text.split_whitespace() {
        if let Some(x) = part.strip_prefix("id=") {
            id = x.parse().ok();
        } else if let Some(x) = part.strip_prefix("time_ms=") {
            time = x.parse().ok();
        } else if let Some(x) = part.strip_prefix("origin=") {
            origin = Some(x.to_string());
        }
    }
    Some((id?, time?, origin?))
}

/// Which verify frame an [`Out`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    Sums,
    Narrow,
    Items,
    Result,
}

/// A frame to send.
#[derive(Debug)]
pub enum Out {
    /// To this node's master, if connected.
    Upstream(Frame, Vec<u8>),
    /// To one fed slave, by its link label.
    Peer(String, Frame, Vec<u8>),
}

enum Done {
    Sums {
        id: u64,
        secs: f64,
        result: Result<Sums, String>,
    },
    PeerItems {
        id: u64,
        peer: String,
        file: String,
        buckets: Vec<u16>,
        result: Result<Vec<(Vec<u8>, u128)>, String>,
    },
    FileDiff {
        id: u64,
        file: String,
        result: Result<Vec<ItemDiff>, String>,
    },
}

/// One run as this node sees it.
pub struct Run {
    pub id: u64,
    pub lsn: Lsn,
    pub origin: String,
    pub time_ms: u64,
    started: Instant,
    /// This node wrote the marker.
    pub here: bool,
    view: Option<Arc<View>>,
    /// This node's sums (None while computing).
    pub own: Option<Result<Sums, String>>,
    own_secs: f64,
    /// The feeder's sums, and who sent them.
    upstream: Option<(String, Sums)>,
    /// Files being narrowed to items: the outcome so far.
    narrowing: BTreeMap<String, FileOutcome>,
    compared: bool,
    /// This slave's comparison with its upstream.
    pub mine: Option<Outcome>,
    /// Outcomes reported by slaves downstream (relayed ones too).
    pub reports: Vec<Outcome>,
    /// Slaves this node fed when the marker came: their outcomes are expected.
    pub fed: u32,
    sums_sent: BTreeSet<String>,
}

impl Run {
    /// Slave outcomes expected in all (this node's slaves and theirs, as far as known).
    pub fn expected(&self) -> u32 {
        self.fed + self.reports.iter().map(|r| r.downstream).sum::<u32>()
    }

    /// Whether every expected outcome is in (or the run timed out).
    pub fn complete(&self) -> bool {
        self.reports.len() as u32 >= self.expected()
    }

    /// running, match, mismatch, incomplete (some outcome could not be made) or failed.
    pub fn state(&self) -> &'static str {
        if let Some(Err(_)) = &self.own {
            return "failed";
        }
        let all: Vec<&Outcome> = self.mine.iter().chain(self.reports.iter()).collect();
        if all.iter().any(|o| o.error.is_none() && !o.matches()) {
            return "mismatch";
        }
        if !self.complete() || (!self.here && self.mine.is_none()) {
            if self.started.elapsed() < RUN_TIMEOUT {
                return "running";
            }
            return "incomplete";
        }
        if all.iter().any(|o| o.error.is_some()) {
            "incomplete"
        } else {
            "match"
        }
    }

    /// The run as text: a header, then each outcome.
    pub fn render(&self) -> String {
        let mut s = format!(
            "verify {} at LSN {} (marker by {}): {}; {} of {} slave outcome(s){}\n",
            self.id,
            self.lsn,
            self.origin,
            self.state(),
            self.reports.len(),
            self.expected(),
            match &self.own {
                Some(Ok(sums)) => format!(
                    "; {} logged file(s), {} item(s) summed here in {:.2} s",
                    sums.len(),
                    sums.values().map(|f| f.items).sum::<u64>(),
                    self.own_secs
                ),
                Some(Err(e)) => format!("; sums here failed: {e}"),
                None => "; sums here being computed".into(),
            }
        );
        for o in self.mine.iter().chain(self.reports.iter()) {
            s.push_str(&o.render());
        }
        s
    }

    pub fn to_json(&self) -> String {
        let outs: Vec<String> = self
            .mine
            .iter()
            .chain(self.reports.iter())
            .map(Outcome::to_json)
            .collect();
        crate::json::Object::new()
            .num("id", self.id)
            .num("lsn", self.lsn)
            .str("origin", &self.origin)
            .num("time_ms", self.time_ms)
            .str("state", self.state())
            .num("expected", self.expected())
            .raw("outcomes", &format!("[{}]", outs.join(",")))
            .finish()
    }
}

/// The verify runs of one node.
pub struct Verifier {
    name: String,
    interval: Duration,
    next_periodic: Instant,
    requested: Option<u64>,
    last_id: u64,
    runs: VecDeque<Run>,
    tx: Sender<Done>,
    rx: Receiver<Done>,
    /// A run's (text, JSON) to keep in the store (the last finished run).
    persist: Option<(String, String)>,
    /// Item lists being made for slaves (bounded: a slave cannot make us start threads
    /// without end).
    narrow_jobs: usize,
}

/// Item lists made for slaves at once, at most.
const MAX_NARROW_JOBS: usize = 8;

impl Verifier {
    pub fn new(name: String, interval: Duration) -> Verifier {
        let (tx, rx) = channel();
        Verifier {
            name,
            interval,
            next_periodic: Instant::now() + interval,
            requested: None,
            last_id: 0,
            runs: VecDeque::new(),
            tx,
            rx,
            persist: None,
            narrow_jobs: 0,
        }
    }

    /// How this node names itself in outcomes.
    pub fn set_name(&mut self, name: String) {
        self.name = name;
    }

    pub fn set_interval(&mut self, interval: Duration) {
        if interval != self.interval {
            self.next_periodic = Instant::now() + interval;
        }
        self.interval = interval;
    }

    pub fn runs(&self) -> impl Iterator<Item = &Run> {
        self.runs.iter()
    }

    pub fn run(&self, id: u64) -> Option<&Run> {
        self.runs.iter().find(|r| r.id == id)
    }

    /// The newest run.
    pub fn last(&self) -> Option<&Run> {
        self.runs.back()
    }

    /// HB.VERIFY: asks for a run; its marker is written at the next opportunity. Returns its
    /// id. Refused while this node's sums of an earlier run are still being computed.
    pub fn request(&mut self) -> Result<u64, String> {
        if let Some(id) = self.requested {
            return Ok(id);
        }
        if let Some(r) = self.runs.iter().find(|r| r.here && r.own.is_none()) {
            return Err(format!(
                "verify {} is still computing its checksums; try again when it is done",
                r.id
            ));
        }
        let id = self.last_id.max(crate::txn::now_ms()) + 1;
        self.last_id = id;
        self.requested = Some(id);
        Ok(id)
    }

    /// Whether [`Verifier::due_marker`] would give a marker (on a master).
    pub fn marker_due(&self, now: Instant) -> bool {
        self.requested.is_some() || (!self.interval.is_zero() && now >= self.next_periodic)
    }

    /// The marker to write now, if a run was asked for or the schedule says so (`master`:
    /// this node is a writable master that feeds slaves; only then does the schedule run).
    pub fn due_marker(&mut self, now: Instant, master: bool) -> Option<(u64, Op)> {
        let id = match self.requested.take() {
            Some(id) => id,
            None => {
                if !master || self.interval.is_zero() || now < self.next_periodic {
                    return None;
                }
                self.next_periodic = now + self.interval;
                if self.runs.iter().any(|r| r.here && r.own.is_none()) {
                    return None;
                }
                let id = self.last_id.max(crate::txn::now_ms()) + 1;
                self.last_id = id;
                id
            }
        };
        let op = Op::Put {
            file: FILE.into(),
            id: ID.to_vec(),
            value: Value::Str(marker_value(id, crate::txn::now_ms(), &self.name)),
        };
        Some((id, op))
    }

    /// The marker could not be written: the run is recorded as failed.
    pub fn marker_failed(&mut self, id: u64, why: String) {
        log::warn!("verify {id}: the marker could not be written: {why}");
        self.push(Run {
            own: Some(Err(format!("the marker could not be written: {why}"))),
            ..self.new_run(id, 0, self.name.clone(), crate::txn::now_ms(), true, 0)
        });
    }

    fn new_run(
        &self,
        id: u64,
        lsn: Lsn,
        origin: String,
        time_ms: u64,
        here: bool,
        fed: u32,
    ) -> Run {
        Run {
            id,
            lsn,
            origin,
            time_ms,
            started: Instant::now(),
            here,
            view: None,
            own: None,
            own_secs: 0.0,
            upstream: None,
            narrowing: BTreeMap::new(),
            compared: false,
            mine: None,
            reports: Vec::new(),
            fed,
            sums_sent: BTreeSet::new(),
        }
    }

    fn push(&mut self, run: Run) {
        self.runs.retain(|r| r.id != run.id);
        self.runs.push_back(run);
        while self.runs.len() > KEEP_RUNS {
            self.runs.pop_front();
        }
    }

    /// A marker is at `lsn` here (written by this node, or applied from upstream) and `view`
    /// is the store exactly at it: the sums are computed in a thread. `fed`: slaves this node
    /// feeds now, whose outcomes are expected.
    pub fn marked(&mut self, value: &[u8], lsn: Lsn, view: View, here: bool, fed: u32) {
        let Some((id, time_ms, origin)) = decode_marker(value) else {
            log::warn!("a verify marker at LSN {lsn} does not decode; ignored");
            return;
        };
        self.last_id = self.last_id.max(id);
        let view = Arc::new(view);
        let mut run = self.new_run(id, lsn, origin, time_ms, here, fed);
        // Sums a feeder sent before this node applied the marker.
        if let Some(old) = self.runs.iter_mut().find(|r| r.id == id) {
            run.upstream = old.upstream.take();
        }
        run.view = Some(view.clone());
        self.push(run);
        let tx = self.tx.clone();
        let spawned = std::thread::Builder::new()
            .name("verify-sums".into())
            .spawn(move || {
                let t = Instant::now();
                let result = sums::compute(&*view).map_err(|e| e.to_string());
                let _ = tx.send(Done::Sums {
                    id,
                    secs: t.elapsed().as_secs_f64(),
                    result,
                });
            });
        if let Err(e) = spawned {
            self.set_own(id, Err(format!("cannot start a thread: {e}")), 0.0);
        }
        log::info!("verify {id}: marker at LSN {lsn}; computing checksums");
    }

    fn find(&mut self, id: u64) -> Option<&mut Run> {
        self.runs.iter_mut().find(|r| r.id == id)
    }

    fn set_own(&mut self, id: u64, result: Result<Sums, String>, secs: f64) {
        if let Some(r) = self.find(id) {
            if let Err(e) = &result {
                log::error!("verify {id}: checksums at LSN {} failed: {e}", r.lsn);
            }
            r.own = Some(result);
            r.own_secs = secs;
        }
    }

    /// VERIFY_SUMS from this node's feeder.
    pub fn on_sums(&mut self, from_label: &str, payload: &[u8]) -> Result<Vec<Out>, String> {
        let m = SumsMsg::decode(payload).map_err(|e| e.to_string())?;
        log::debug!("verify {}: checksums from {} ({from_label})", m.id, m.from);
        let label = m.from.clone();
        match self.find(m.id) {
            Some(r) => r.upstream = Some((label, m.sums)),
            None => {
                // The marker is not applied here yet: keep the sums until it is.
                let mut run = self.new_run(m.id, m.lsn, m.from.clone(), 0, false, 0);
                run.upstream = Some((label, m.sums));
                self.push(run);
            }
        }
        Ok(self.try_compare(m.id))
    }

    /// Compares once both sums are here; returns the narrowing requests.
    fn try_compare(&mut self, id: u64) -> Vec<Out> {
        let name = self.name.clone();
        let Some(r) = self.find(id) else {
            return Vec::new();
        };
        if r.compared || r.here {
            return Vec::new();
        }
        let (Some(Ok(own)), Some((up_name, up))) = (&r.own, &r.upstream) else {
            return Vec::new();
        };
        r.compared = true;
        let mut out = Vec::new();
        let mut files = Vec::new();
        for (file, verdict) in sums::compare(up, own) {
            let mut fo = FileOutcome {
                file: file.clone(),
                status: String::new(),
                upstream_items: 0,
                local_items: 0,
                items: Vec::new(),
                note: String::new(),
            };
            match verdict {
                FileVerdict::Match { items } => {
                    fo.status = "match".into();
                    fo.upstream_items = items;
                    fo.local_items = items;
                }
                FileVerdict::Missing { items } => {
                    fo.status = "missing".into();
                    fo.upstream_items = items;
                    fo.note = "the file is not on the slave".into();
                }
                FileVerdict::Extra { items } => {
                    fo.status = "extra".into();
                    fo.local_items = items;
                    fo.note = "the file is only on the slave".into();
                }
                FileVerdict::Differs {
                    upstream_items,
                    local_items,
                    buckets,
                } => {
                    fo.status = "mismatch".into();
                    fo.upstream_items = upstream_items;
                    fo.local_items = local_items;
                    if buckets.len() > sums::MAX_NARROW_BUCKETS {
                        fo.note = format!(
                            "{} of {} buckets differ: too many to list items; resync this slave",
                            buckets.len(),
                            sums::BUCKETS
                        );
                    } else {
                        out.push(Out::Upstream(
                            Frame::Narrow,
                            NarrowMsg {
                                id,
                                file: file.clone(),
                                buckets,
                            }
                            .encode(),
                        ));
                        r.narrowing.insert(file.clone(), fo);
                        continue;
                    }
                }
            }
            files.push(fo);
        }
        let up_name = up_name.clone();
        if r.narrowing.is_empty() {
            let o = Outcome {
                id,
                lsn: r.lsn,
                node: name,
                upstream: up_name,
                time_ms: crate::txn::now_ms(),
                downstream: r.fed,
                files,
                error: None,
            };
            out.extend(self.finish(id, o));
        } else {
            // The other files wait beside the ones being narrowed (status "mismatch" until
            // their items are in) and are reported with them.
            r.narrowing
                .extend(files.into_iter().map(|f| (f.file.clone(), f)));
        }
        out
    }

    /// VERIFY_NARROW from a fed slave: the (id, hash) lists of those buckets, from the snapshot
    /// at the marker, computed in a thread.
    pub fn on_narrow(&mut self, peer: &str, payload: &[u8]) -> Result<Vec<Out>, String> {
        let m = NarrowMsg::decode(payload).map_err(|e| e.to_string())?;
        if self.narrow_jobs >= MAX_NARROW_JOBS {
            let reply = ItemsMsg {
                id: m.id,
                file: m.file,
                buckets: m.buckets,
                items: Err(format!(
                    "{MAX_NARROW_JOBS} item lists are being made already; run verify again"
                )),
            };
            return Ok(vec![Out::Peer(
                peer.to_string(),
                Frame::Items,
                reply.encode(),
            )]);
        }
        let view = self.find(m.id).and_then(|r| r.view.clone());
        let Some(view) = view else {
            let reply = ItemsMsg {
                id: m.id,
                file: m.file,
                buckets: m.buckets,
                items: Err(
                    "the snapshot of this run is no longer held here; run verify again".into(),
                ),
            };
            return Ok(vec![Out::Peer(
                peer.to_string(),
                Frame::Items,
                reply.encode(),
            )]);
        };
        let tx = self.tx.clone();
        let peer = peer.to_string();
        let spawned = std::thread::Builder::new()
            .name("verify-items".into())
            .spawn(move || {
                let result =
                    sums::bucket_items(&*view, &m.file, &m.buckets).map_err(|e| e.to_string());
                let _ = tx.send(Done::PeerItems {
                    id: m.id,
                    peer,
                    file: m.file,
                    buckets: m.buckets,
                    result,
                });
            });
        spawned.map_err(|e| format!("cannot start a thread: {e}"))?;
        self.narrow_jobs += 1;
        Ok(Vec::new())
    }

    /// VERIFY_ITEMS from the feeder: this node's own lists, compared in a thread.
    pub fn on_items(&mut self, payload: &[u8]) -> Result<Vec<Out>, String> {
        let m = ItemsMsg::decode(payload).map_err(|e| e.to_string())?;
        let Some(r) = self.find(m.id) else {
            return Ok(Vec::new());
        };
        let upstream = match m.items {
            Ok(items) => items,
            Err(e) => {
                let _ = self.tx.send(Done::FileDiff {
                    id: m.id,
                    file: m.file,
                    result: Err(e),
                });
                return Ok(Vec::new());
            }
        };
        let Some(view) = r.view.clone() else {
            let _ = self.tx.send(Done::FileDiff {
                id: m.id,
                file: m.file,
                result: Err("this slave's snapshot was released".into()),
            });
            return Ok(Vec::new());
        };
        let tx = self.tx.clone();
        let (id, file, buckets) = (m.id, m.file, m.buckets);
        std::thread::Builder::new()
            .name("verify-items".into())
            .spawn(move || {
                let result = sums::bucket_items(&*view, &file, &buckets)
                    .map(|local| sums::diff_items(&upstream, &local))
                    .map_err(|e| e.to_string());
                let _ = tx.send(Done::FileDiff { id, file, result });
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        Ok(Vec::new())
    }

    /// VERIFY_RESULT from a fed slave (its own or one it relays): kept, and relayed upstream.
    pub fn on_result(&mut self, peer: &str, payload: &[u8]) -> Result<Vec<Out>, String> {
        let o = Outcome::decode(payload).map_err(|e| e.to_string())?;
        if o.error.is_some() {
            log::warn!("{} (reported by {peer})", o.summary());
        } else if o.matches() {
            log::info!("{}", o.summary());
        } else {
            incident::raise(
                Kind::VerifyMismatch,
                o.summary(),
                &[("peer", o.node.clone())],
            );
        }
        let id = o.id;
        let relay = Out::Upstream(Frame::Result, payload.to_vec());
        if let Some(r) = self.find(id) {
            r.reports.retain(|x| x.node != o.node);
            r.reports.push(o);
            if r.complete() && r.here {
                self.persist = Some((r.render(), r.to_json()));
            }
        }
        Ok(vec![relay])
    }

    /// The sums to send to a fed slave that has not had them (`label`: its link label).
    pub fn sums_for(&mut self, label: &str) -> Vec<Vec<u8>> {
        let name = self.name.clone();
        let mut out = Vec::new();
        for r in self.runs.iter_mut() {
            if r.started.elapsed() > RUN_TIMEOUT || r.sums_sent.contains(label) {
                continue;
            }
            if let Some(Ok(sums)) = &r.own {
                r.sums_sent.insert(label.to_string());
                out.push(
                    SumsMsg {
                        id: r.id,
                        lsn: r.lsn,
                        from: name.clone(),
                        sums: sums.clone(),
                    }
                    .encode(),
                );
            }
        }
        out
    }

    /// Takes finished work from the threads, closes runs that timed out, releases snapshots.
    pub fn poll(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        while let Ok(d) = self.rx.try_recv() {
            match d {
                Done::Sums { id, secs, result } => {
                    if let Ok(s) = &result {
                        log::info!(
                            "verify {id}: checksums of {} logged file(s), {} item(s) in {secs:.2} s",
                            s.len(),
                            s.values().map(|f| f.items).sum::<u64>()
                        );
                    }
                    self.set_own(id, result, secs);
                    out.extend(self.try_compare(id));
                }
                Done::PeerItems {
                    id,
                    peer,
                    file,
                    buckets,
                    result,
                } => {
                    self.narrow_jobs = self.narrow_jobs.saturating_sub(1);
                    let m = ItemsMsg {
                        id,
                        file,
                        buckets,
                        items: result,
                    };
                    out.push(Out::Peer(peer, Frame::Items, m.encode()));
                }
                Done::FileDiff { id, file, result } => {
                    out.extend(self.file_done(id, &file, result))
                }
            }
        }
        let now = Instant::now();
        let name = self.name.clone();
        let mut timed_out = Vec::new();
        for r in self.runs.iter_mut() {
            let age = now.duration_since(r.started);
            let waiting_reports = !r.complete();
            if r.view.is_some()
                && (age > VIEW_HOLD
                    || (!waiting_reports && r.narrowing.is_empty() && (r.here || r.mine.is_some())))
            {
                r.view = None;
            }
            if !r.here && r.mine.is_none() && age > RUN_TIMEOUT {
                let why = match (&r.own, &r.upstream) {
                    (_, None) => "the feeder's checksums never arrived".to_string(),
                    (None, _) => "this node's checksums were not computed".to_string(),
                    (Some(Err(e)), _) => format!("this node's checksums failed: {e}"),
                    _ => "the narrowing to items did not finish".to_string(),
                };
                timed_out.push((r.id, why));
            }
        }
        for (id, why) in timed_out {
            let (lsn, up, fed) = match self.find(id) {
                Some(r) => (
                    r.lsn,
                    r.upstream.as_ref().map(|u| u.0.clone()).unwrap_or_default(),
                    r.fed,
                ),
                None => continue,
            };
            let o = Outcome {
                id,
                lsn,
                node: name.clone(),
                upstream: up,
                time_ms: crate::txn::now_ms(),
                downstream: fed,
                files: Vec::new(),
                error: Some(why),
            };
            out.extend(self.finish(id, o));
        }
        out
    }

    fn file_done(
        &mut self,
        id: u64,
        file: &str,
        result: Result<Vec<ItemDiff>, String>,
    ) -> Vec<Out> {
        let name = self.name.clone();
        let Some(r) = self.find(id) else {
            return Vec::new();
        };
        let Some(fo) = r.narrowing.get_mut(file) else {
            return Vec::new();
        };
        match result {
            Ok(diffs) => {
                let total = diffs.len();
                fo.items = diffs
                    .iter()
                    .take(sums::MAX_ITEMS_SHOWN)
                    .map(|d| (d.id().to_vec(), d.what().to_string()))
                    .collect();
                if total > sums::MAX_ITEMS_SHOWN {
                    fo.note = format!(
                        "{total} items differ; the first {} are listed",
                        sums::MAX_ITEMS_SHOWN
                    );
                }
            }
            Err(e) => fo.note = format!("items not listed: {e}"),
        }
        fo.status = "mismatch-done".into();
        if r.narrowing.values().any(|f| f.status == "mismatch") {
            return Vec::new();
        }
        let files: Vec<FileOutcome> = std::mem::take(&mut r.narrowing)
            .into_values()
            .map(|mut f| {
                if f.status == "mismatch-done" {
                    f.status = "mismatch".into();
                }
                f
            })
            .collect();
        let o = Outcome {
            id,
            lsn: r.lsn,
            node: name,
            upstream: r.upstream.as_ref().map(|u| u.0.clone()).unwrap_or_default(),
            time_ms: crate::txn::now_ms(),
            downstream: r.fed,
            files,
            error: None,
        };
        self.finish(id, o)
    }

    /// This slave's outcome is known: incident, kept, reported upstream.
    fn finish(&mut self, id: u64, o: Outcome) -> Vec<Out> {
        if o.error.is_some() {
            log::warn!("{}", o.summary());
        } else if o.matches() {
            incident::raise(Kind::VerifyMatch, o.summary(), &[]);
        } else {
            incident::raise(Kind::VerifyMismatch, o.summary(), &[]);
        }
        let payload = o.encode();
        if let Some(r) = self.find(id) {
            r.mine = Some(o);
            self.persist = Some((r.render(), r.to_json()));
        }
        vec![Out::Upstream(Frame::Result, payload)]
    }

    /// The last finished run's (text, JSON), to keep in the store (taken once).
    pub fn take_persist(&mut self) -> Option<(String, String)> {
        self.persist.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_value_round_trips() {
        let v = marker_value(17, 1_700_000_000_000, "db1@a");
        assert_eq!(
            decode_marker(&v),
            Some((17, 1_700_000_000_000, "db1@a".to_string()))
        );
        assert_eq!(decode_marker(b"id=1 time_ms=2"), None);
        assert_eq!(decode_marker(b"\xff"), None);
    }

    #[test]
    fn a_request_gives_one_marker_with_a_fresh_id() {
        let mut v = Verifier::new("a".into(), Duration::ZERO);
        let id = v.request().unwrap();
        assert_eq!(
            v.request().unwrap(),
            id,
            "asked twice before the marker: one run"
        );
        let (mid, op) = v.due_marker(Instant::now(), true).unwrap();
        assert_eq!(mid, id);
        match op {
            Op::Put {
                file,
                value: Value::Str(s),
                ..
            } => {
                assert_eq!(file, FILE);
                assert_eq!(decode_marker(&s).map(|m| m.0), Some(id));
            }
            other => panic!("{other:?}"),
        }
        assert!(v.due_marker(Instant::now(), true).is_none(), "no schedule");
        assert!(v.request().unwrap() > id);
    }

    #[test]
    fn a_slave_cannot_start_item_lists_without_end() {
        let mut v = Verifier::new("a".into(), Duration::ZERO);
        let ask = NarrowMsg {
            id: 1,
            file: "main".into(),
            buckets: vec![3],
        }
        .encode();
        let reply = |outs: Vec<Out>| match outs.as_slice() {
            [Out::Peer(p, Frame::Items, payload)] => {
                assert_eq!(p, "b");
                ItemsMsg::decode(payload).unwrap().items.unwrap_err()
            }
            other => panic!("{other:?}"),
        };
        // No run 1 here: answered at once, no thread.
        assert!(reply(v.on_narrow("b", &ask).unwrap()).contains("no longer held"));
        v.narrow_jobs = MAX_NARROW_JOBS;
        assert!(reply(v.on_narrow("b", &ask).unwrap()).contains("already"));
        assert!(v.on_narrow("b", b"garbage").is_err());
    }

    #[test]
    fn the_schedule_marks_only_a_master() {
        let mut v = Verifier::new("a".into(), Duration::from_millis(1));
        let later = Instant::now() + Duration::from_millis(5);
        assert!(v.due_marker(later, false).is_none());
        assert!(v.due_marker(later, true).is_some());
    }
}
