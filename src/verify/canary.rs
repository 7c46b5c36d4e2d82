//! The canary: a small record the master writes to `sys/canary` every `canary_interval`
//! through the normal write path (journal, store, link, slave apply), so that its arrival
//! proves the whole chain works and its age measures the lag end to end.
//!
//! This module owns the canary's value, the list of canaries a node holds (written here or
//! applied from upstream), and the alarms: on a slave, no canary applied for `canary_alarm` or
//! the last one applied older than `canary_alarm` (by the master's clock: the clocks must
//! agree, as NTP keeps them);
//! on a node that feeds slaves, a canary older than `canary_alarm` that a slave has not
//! acknowledged as applied. Each alarm is an incident, and its end a recovery incident.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::incident::{self, Kind};
use crate::journal::Lsn;
use crate::txn::{Op, Value};

/// The canary's file and item.
pub const FILE: &str = "sys/canary";
pub const ID: &[u8] = b"canary";

/// One canary a node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub lsn: Lsn,
    pub counter: u64,
    /// The master's wall clock when it wrote it (ms since the epoch).
    pub time_ms: u64,
    /// When this node wrote or applied it.
    pub got: Instant,
    /// This node's wall clock minus the master's at apply (0 on the master).
    pub lag_ms: u64,
}

/// The value of a canary: `counter=N time_ms=T origin=NAME`.
pub fn encode(counter: u64, time_ms: u64, origin: &str) -> Vec<u8> {
    format!("counter={counter} time_ms={time_ms} origin={origin}").into_bytes()
}

/// (counter, time_ms) of a canary value.
pub fn decode(value: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut counter = None;
    let mut time = None;
    for part in text.split_whitespace() {
        if let Some(v) = part.strip_prefix("counter=") {
            counter = v.parse().ok();
        } else if let Some(v) = part.strip_prefix("time_ms=") {
            time = v.parse().ok();
        }
    }
    Some((counter?, time?))
}

/// The canary's state on one node.
pub struct Canary {
    interval: Duration,
    alarm: Duration,
    origin: String,
    counter: u64,
    next_due: Instant,
    /// Canaries held, oldest first (a bounded window).
    recent: VecDeque<Seen>,
    /// When this node started waiting for canaries as a slave (None: it is a master).
    waiting_since: Option<Instant>,
    /// The local alarm (a slave without canaries) is raised.
    late_here: bool,
    /// Per fed slave (by link label): last applied LSN it acknowledged, and whether its alarm
    /// is raised.
    peers: BTreeMap<String, PeerCanary>,
}

#[derive(Debug, Default, Clone)]
struct PeerCanary {
    applied: Lsn,
    late: bool,
}

/// What `status` shows of the canary.
#[derive(Debug, Clone, Default)]
pub struct CanaryStatus {
    pub enabled: bool,
    pub last: Option<Seen>,
    /// Seconds since the last canary was written or applied here.
    pub age_s: Option<f64>,
    pub late_here: bool,
    /// Fed slaves whose canary is late.
    pub late_peers: Vec<String>,
}

impl Canary {
    pub fn new(interval: Duration, alarm: Duration, origin: String) -> Canary {
        Canary {
            interval,
            alarm,
            origin,
            counter: 0,
            next_due: Instant::now() + interval,
            recent: VecDeque::new(),
            waiting_since: None,
            late_here: false,
            peers: BTreeMap::new(),
        }
    }

    pub fn reconfigure(&mut self, interval: Duration, alarm: Duration) {
        if interval != self.interval {
            self.next_due = Instant::now() + interval;
        }
        self.interval = interval;
        self.alarm = alarm;
    }

    /// How this node names itself in the canaries it writes.
    pub fn set_origin(&mut self, origin: String) {
        self.origin = origin;
    }

    pub fn enabled(&self) -> bool {
        !self.interval.is_zero()
    }

    /// Sets the role: a slave waits for canaries from now on (a master does not).
    pub fn set_slave(&mut self, slave: bool) {
        match (slave, self.waiting_since.is_some()) {
            (true, false) => self.waiting_since = Some(Instant::now()),
            (false, true) => {
                self.waiting_since = None;
                if std::mem::take(&mut self.late_here) {
                    incident::raise(
                        Kind::CanaryRecovered,
                        "canary alarm ended: this node is no longer a slave",
                        &[],
                    );
                }
            }
            _ => {}
        }
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.enabled() && now >= self.next_due
    }

    /// The next canary to write when one is due: (counter, time_ms, op). Call
    /// [`Canary::written`] when it is in the journal.
    pub fn due(&mut self, now: Instant) -> Option<(u64, u64, Op)> {
        if !self.enabled() || now < self.next_due {
            return None;
        }
        self.next_due = now + self.interval;
        let counter = self.recent.back().map_or(self.counter, |s| s.counter) + 1;
        let time_ms = crate::txn::now_ms();
        let op = Op::Put {
            file: FILE.into(),
            id: ID.to_vec(),
            value: Value::Str(encode(counter, time_ms, &self.origin)),
        };
        Some((counter, time_ms, op))
    }

    /// A canary this master wrote at `lsn`.
    pub fn written(&mut self, lsn: Lsn, counter: u64, time_ms: u64) {
        self.counter = counter;
        self.push(Seen {
            lsn,
            counter,
            time_ms,
            got: Instant::now(),
            lag_ms: 0,
        });
    }

    /// A canary record applied here from upstream.
    pub fn applied(&mut self, lsn: Lsn, value: &[u8]) {
        let Some((counter, time_ms)) = decode(value) else {
            log::warn!("a canary record at LSN {lsn} does not decode; ignored");
            return;
        };
        self.counter = counter;
        self.push(Seen {
            lsn,
            counter,
            time_ms,
            got: Instant::now(),
            lag_ms: crate::txn::now_ms().saturating_sub(time_ms),
        });
    }

    fn push(&mut self, s: Seen) {
        self.recent.push_back(s);
        // Keep what an alarm may still look at: everything younger than twice the alarm,
        // and always the last one.
        let keep = self.alarm * 2 + self.interval;
        while self.recent.len() > 1 && self.recent.front().is_some_and(|f| f.got.elapsed() > keep) {
            self.recent.pop_front();
        }
        while self.recent.len() > 10_000 {
            self.recent.pop_front();
        }
    }

    /// A slave's alarm: no canary applied for `canary_alarm`, or the last one applied is older
    /// than `canary_alarm` (its lag at apply by the master's clock, plus the time since): a
    /// slave applying a backlog of old canaries gets them steadily but is still behind. Raises
    /// the alarm or ends it once a fresh canary has been applied.
    pub fn check_here(&mut self, now: Instant) {
        let Some(since) = self.waiting_since else {
            return;
        };
        if !self.enabled() {
            return;
        }
        let last = self.recent.back().copied().filter(|s| s.got > since);
        let quiet = now.saturating_duration_since(last.map_or(since, |s| s.got));
        let age =
            last.map(|s| Duration::from_millis(s.lag_ms) + now.saturating_duration_since(s.got));
        let late = quiet > self.alarm || age.is_some_and(|a| a > self.alarm);
        if late && !self.late_here {
            self.late_here = true;
            let (message, fields) = match (last, age) {
                (Some(s), Some(age)) if quiet <= self.alarm => (
                    format!(
                        "the last canary applied here (#{} at LSN {}) was written {:.1} s ago by the master's clock (canary_alarm {:?}): this slave applies old transactions, the link or the apply is behind",
                        s.counter,
                        s.lsn,
                        age.as_secs_f64(),
                        self.alarm
                    ),
                    vec![
                        ("lsn", s.lsn.to_string()),
                        ("canary_age_ms", age.as_millis().to_string()),
                    ],
                ),
                _ => {
                    let what = match self.recent.back() {
                        Some(s) => format!(
                            "the last one (#{} at LSN {}) was applied {:.0} s ago",
                            s.counter,
                            s.lsn,
                            now.saturating_duration_since(s.got).as_secs_f64()
                        ),
                        None => "none was applied since this node started following".into(),
                    };
                    (
                        format!(
                            "no canary from the master for {:.0} s (canary_alarm {:?}): transaction logging or the link is not working; {what}",
                            quiet.as_secs_f64(),
                            self.alarm
                        ),
                        Vec::new(),
                    )
                }
            };
            incident::raise(Kind::CanaryLate, message, &fields);
        } else if !late && self.late_here {
            self.late_here = false;
            let lag = last.map_or(0, |s| s.lag_ms);
            incident::raise(
                Kind::CanaryRecovered,
                format!("canaries flow again from the master (lag {lag} ms)"),
                &[],
            );
        }
    }

    /// A fed slave's alarm: a canary held here longer than `canary_alarm` that the slave has
    /// not acknowledged as applied (`applied`: its last acknowledged applied LSN, None while it
    /// is not connected: the last one known counts).
    pub fn check_peer(&mut self, now: Instant, label: &str, applied: Option<Lsn>) {
        if !self.enabled() {
            return;
        }
        let p = self.peers.entry(label.to_string()).or_default();
        if let Some(a) = applied {
            p.applied = p.applied.max(a);
        }
        let overdue = self
            .recent
            .iter()
            .find(|s| s.lsn > p.applied)
            .filter(|s| now.saturating_duration_since(s.got) > self.alarm);
        match (overdue, p.late) {
            (Some(s), false) => {
                p.late = true;
                incident::raise(
                    Kind::CanaryLate,
                    format!(
                        "slave {label} has not applied canary #{} (LSN {}) written {:.0} s ago (canary_alarm {:?}): transaction logging or the link is not working",
                        s.counter,
                        s.lsn,
                        now.saturating_duration_since(s.got).as_secs_f64(),
                        self.alarm
                    ),
                    &[("peer", label.to_string())],
                );
            }
            (None, true) => {
                p.late = false;
                incident::raise(
                    Kind::CanaryRecovered,
                    format!(
                        "slave {label} applies canaries again (up to LSN {})",
                        p.applied
                    ),
                    &[("peer", label.to_string())],
                );
            }
            _ => {}
        }
    }

    pub fn status(&self) -> CanaryStatus {
        let last = self.recent.back().copied();
        CanaryStatus {
            enabled: self.enabled(),
            last,
            age_s: last.map(|s| s.got.elapsed().as_secs_f64()),
            late_here: self.late_here,
            late_peers: self
                .peers
                .iter()
                .filter(|(_, p)| p.late)
                .map(|(k, _)| k.clone())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canary_value_round_trips_and_garbage_is_refused() {
        let v = encode(7, 1_700_000_000_123, "db1@a");
        assert_eq!(decode(&v), Some((7, 1_700_000_000_123)));
        assert_eq!(decode(b"counter=x time_ms=1"), None);
        assert_eq!(decode(b"time_ms=1"), None);
        assert_eq!(decode(&[0xff, 0xfe]), None);
    }

    #[test]
    fn due_counts_up_and_waits_for_the_interval() {
        let mut c = Canary::new(Duration::from_secs(5), Duration::from_secs(30), "a".into());
        let t0 = Instant::now();
        assert!(c.due(t0).is_none(), "not before the first interval");
        let (n, _, op) = c.due(t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(n, 1);
        assert!(matches!(op, Op::Put { ref file, .. } if file == FILE));
        c.written(10, n, 0);
        assert!(c.due(t0 + Duration::from_secs(6)).is_none());
        let (n, _, _) = c.due(t0 + Duration::from_secs(11)).unwrap();
        assert_eq!(n, 2);
        let mut off = Canary::new(Duration::ZERO, Duration::from_secs(1), "a".into());
        assert!(off.due(t0 + Duration::from_secs(100)).is_none());
    }

    #[test]
    fn a_peer_is_late_when_an_old_canary_is_not_acknowledged_and_recovers_when_it_is() {
        let alarm = Duration::from_millis(50);
        let mut c = Canary::new(Duration::from_millis(10), alarm, "a".into());
        c.written(5, 1, 0);
        let later = Instant::now() + Duration::from_millis(60);
        c.check_peer(Instant::now(), "b", Some(4));
        assert!(
            c.status().late_peers.is_empty(),
            "not yet older than the alarm"
        );
        c.check_peer(later, "b", None);
        assert_eq!(c.status().late_peers, vec!["b".to_string()]);
        c.check_peer(later, "b", Some(5));
        assert!(c.status().late_peers.is_empty());
    }

    #[test]
    fn a_slave_without_canaries_is_late_and_recovers_when_one_is_applied() {
        let alarm = Duration::from_millis(50);
        let mut c = Canary::new(Duration::from_millis(10), alarm, "b".into());
        c.set_slave(true);
        c.check_here(Instant::now());
        assert!(!c.status().late_here);
        c.check_here(Instant::now() + Duration::from_millis(60));
        assert!(c.status().late_here);
        c.applied(9, &encode(3, crate::txn::now_ms(), "a"));
        c.check_here(Instant::now());
        assert!(!c.status().late_here);
        assert_eq!(c.status().last.map(|s| s.counter), Some(3));
    }

    #[test]
    fn a_slave_applying_old_canaries_is_late_though_they_arrive_steadily() {
        let alarm = Duration::from_millis(500);
        let mut c = Canary::new(Duration::from_millis(10), alarm, "b".into());
        c.set_slave(true);
        let now_ms = crate::txn::now_ms();
        // Just applied, but written 2 s ago by the master.
        c.applied(9, &encode(3, now_ms - 2000, "a"));
        c.check_here(Instant::now());
        assert!(c.status().late_here, "a 2 s old canary with a 500 ms alarm");
        // More old ones keep it late.
        c.applied(10, &encode(4, now_ms - 1500, "a"));
        c.check_here(Instant::now());
        assert!(c.status().late_here);
        // A fresh one ends it.
        c.applied(11, &encode(5, crate::txn::now_ms(), "a"));
        c.check_here(Instant::now());
        assert!(!c.status().late_here);
    }
}
