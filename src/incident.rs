//! Incidents: every abnormal event (link down, authentication failure, fencing, canary late,
//! verify mismatch, disk full, …), and the recovery that ends it.
//!
//! [`raise`] gives the incident an id, a severity, a time, its message and fields, and sends it
//! to three places:
//! - the log, as a record with journald fields (`MESSAGE_ID` fixed per kind,
//!   `HOTBACKUP_INCIDENT`, `HOTBACKUP_INCIDENT_ID`, `HOTBACKUP_ROLE`, `HOTBACKUP_PEER` when the
//!   incident concerns a peer, plus the logger's `HOTBACKUP_INSTANCE` and `PRIORITY`), so
//!   `journalctl -u … -p warning` and `journalctl MESSAGE_ID=…` find them; its text starts with
//!   `INCIDENT`. The role is set before the engine opens ([`set_role`]), so incidents raised
//!   while it opens (a cut journal tail) carry it too;
//! - the node's incident list: the most recent [`KEEP`] in memory (`HB.INCIDENTS`,
//!   `hotbackup incidents`), also kept in the store by the event loop ([`take_unsaved`]) so that
//!   they survive a restart. Not replicated: an incident is one node's view of the pair (a
//!   slave's "link down" is not the master's), and recording one must not depend on the journal
//!   or the link working — often the very thing that failed;
//! - the notify list ([`notify`]): users' terminals, mail, hooks, rate-limited per kind.
//!
//! The recorder is process-wide (incidents come from the engine, the link and the event loop
//! alike) and cheap when nothing is configured.

pub mod notify;

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock};

use log::Level;

/// How many incidents a node keeps (in memory and in its store).
pub const KEEP: usize = 1000;

/// The kinds of incident. Each has a fixed journald `MESSAGE_ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    LinkDown,
    LinkUp,
    AuthFailure,
    PeerRefused,
    SequenceGap,
    CanaryLate,
    CanaryRecovered,
    SlotDropped,
    SyncTimeout,
    SyncRecovered,
    Fenced,
    TwoMasters,
    Promoted,
    LostTransactions,
    Switchover,
    VerifyMismatch,
    VerifyMatch,
    DiskFull,
    DiskRecovered,
    JournalTruncated,
    ArchiveFailed,
}

impl Kind {
    pub const ALL: [Kind; 21] = [
        Kind::LinkDown,
        Kind::LinkUp,
        Kind::AuthFailure,
        Kind::PeerRefused,
        Kind::SequenceGap,
        Kind::CanaryLate,
        Kind::CanaryRecovered,
        Kind::SlotDropped,
        Kind::SyncTimeout,
        Kind::SyncRecovered,
        Kind::Fenced,
        Kind::TwoMasters,
        Kind::Promoted,
        Kind::LostTransactions,
        Kind::Switchover,
        Kind::VerifyMismatch,
        Kind::VerifyMatch,
        Kind::DiskFull,
        Kind::DiskRecovered,
        Kind::JournalTruncated,
        Kind::ArchiveFailed,
    ];

    /// The name in lists, hooks and `HOTBACKUP_INCIDENT=`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::LinkDown => "link_down",
            Kind::LinkUp => "link_up",
            Kind::AuthFailure => "auth_failure",
            Kind::PeerRefused => "peer_refused",
            Kind::SequenceGap => "sequence_gap",
            Kind::CanaryLate => "canary_late",
            Kind::CanaryRecovered => "canary_recovered",
            Kind::SlotDropped => "slot_dropped",
            Kind::SyncTimeout => "sync_timeout",
            Kind::SyncRecovered => "sync_recovered",
            Kind::Fenced => "fenced",
            Kind::TwoMasters => "two_masters",
            Kind::Promoted => "promoted",
            Kind::LostTransactions => "lost_transactions",
            Kind::Switchover => "switchover",
            Kind::VerifyMismatch => "verify_mismatch",
            Kind::VerifyMatch => "verify_match",
            Kind::DiskFull => "disk_full",
            Kind::DiskRecovered => "disk_recovered",
            Kind::JournalTruncated => "journal_truncated",
            Kind::ArchiveFailed => "archive_failed",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// journald's `MESSAGE_ID` (128 bits, hex), fixed forever per kind.
    pub fn message_id(self) -> &'static str {
        match self {
            Kind::LinkDown => "13fbc8af529147a4922be2f31b28c49b",
            Kind::LinkUp => "a956984d15b4463da71516ea9ad8973c",
            Kind::AuthFailure => "110588704d52486c9f7473fb887d82c8",
            Kind::PeerRefused => "52266c04bac7458b944f19554163c612",
            Kind::SequenceGap => "869fd33adbc44fbf9b45a3cad4587d3b",
            Kind::CanaryLate => "e920978d5df143de9d55907aea88b31c",
            Kind::CanaryRecovered => "fc3d544985f34b8d945556db37eab825",
            Kind::SlotDropped => "060e9b0706f446a19caeae7b53dfa80f",
            Kind::SyncTimeout => "16b44a362d014ea6ad6b8bb584a84c90",
            Kind::SyncRecovered => "e6ad384907714d1b913dcbd5c83f1a5d",
            Kind::Fenced => "2e0933817ef44fb590ccde18df76b45f",
            Kind::TwoMasters => "88218c9b98e544a09c13e4aff7d72928",
            Kind::Promoted => "2f3493af878f4448bcd9510dd087b9d1",
            Kind::LostTransactions => "184f541313f2443cab88d96317d9f96a",
            Kind::Switchover => "f02ea00dfe144d2586db3c5124c6779d",
            Kind::VerifyMismatch => "5ffb7cf5f2254405b4a883f1efd9dc81",
            Kind::VerifyMatch => "4a42e1b966c74bf3b93fbd0e8808051a",
            Kind::DiskFull => "bf4568547a6c4e6d860951f037c3de7e",
            Kind::DiskRecovered => "a045781a7bef49c2b0de08d39aef2f86",
            Kind::JournalTruncated => "3b9515fa30e94de2a3d69cdbfaa73585",
            Kind::ArchiveFailed => "d07f4d8c144a4e278e0613cd86c742e1",
        }
    }

    /// How bad it is (the log level, hence journald's priority).
    pub fn severity(self) -> Level {
        match self {
            Kind::LinkUp
            | Kind::CanaryRecovered
            | Kind::SyncRecovered
            | Kind::VerifyMatch
            | Kind::DiskRecovered => Level::Info,
            Kind::LinkDown
            | Kind::SyncTimeout
            | Kind::Promoted
            | Kind::Switchover
            | Kind::JournalTruncated
            | Kind::PeerRefused => Level::Warn,
            _ => Level::Error,
        }
    }

    /// The kind whose incidents this one ends (a recovery), if it is one.
    pub fn recovers(self) -> Option<Kind> {
        match self {
            Kind::LinkUp => Some(Kind::LinkDown),
            Kind::CanaryRecovered => Some(Kind::CanaryLate),
            Kind::SyncRecovered => Some(Kind::SyncTimeout),
            Kind::DiskRecovered => Some(Kind::DiskFull),
            _ => None,
        }
    }
}

/// One incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// Increasing on this node (across restarts).
    pub id: u64,
    pub kind: Kind,
    pub severity: Level,
    /// Wall clock, ms since the epoch.
    pub time_ms: u64,
    pub message: String,
    /// Extra facts: `peer`, `lsn`, `file`, …
    pub fields: Vec<(String, String)>,
}

impl Incident {
    /// A field's value, if it has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// As stored: id, kind, severity, time, message, fields (length-prefixed).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = crate::codec::Writer::default();
        w.u64(self.id)
            .bytes(self.kind.name().as_bytes())
            .u8(self.severity as u8)
            .u64(self.time_ms)
            .bytes(self.message.as_bytes())
            .u32(self.fields.len() as u32);
        for (k, v) in &self.fields {
            w.bytes(k.as_bytes()).bytes(v.as_bytes());
        }
        w.0
    }

    pub fn decode(b: &[u8]) -> Result<Incident, crate::codec::MsgError> {
        let mut r = crate::codec::Reader::new(b, "incident");
        let id = r.u64()?;
        let kind = Kind::from_name(&r.string()?).ok_or(r.err("unknown kind"))?;
        let severity = match r.u8()? {
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            4 => Level::Debug,
            5 => Level::Trace,
            _ => return Err(r.err("bad severity")),
        };
        let time_ms = r.u64()?;
        let message = r.string()?;
        let n = r.count(8)?;
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            fields.push((r.string()?, r.string()?));
        }
        r.end()?;
        Ok(Incident {
            id,
            kind,
            severity,
            time_ms,
            message,
            fields,
        })
    }

    /// One line for people: time, id, kind, message, fields.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} #{} {} {}: {}",
            crate::systemd::format_unix_millis(
                (self.time_ms / 1000) as i64,
                (self.time_ms % 1000) as u32
            ),
            self.id,
            self.severity.as_str().to_ascii_lowercase(),
            self.kind.name(),
            self.message
        );
        for (k, v) in &self.fields {
            s.push_str(&format!(" {k}={v}"));
        }
        s
    }

    /// A JSON object (for hooks and `--json`).
    pub fn to_json(&self) -> String {
        let q = |s: &str| {
            let mut o = String::new();
            crate::json::string(&mut o, s);
            o
        };
        let mut s = format!(
            "{{\"id\":{},\"kind\":{},\"severity\":{},\"time_ms\":{},\"message\":{},\"fields\":{{",
            self.id,
            q(self.kind.name()),
            q(&self.severity.as_str().to_ascii_lowercase()),
            self.time_ms,
            q(&self.message)
        );
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!("{}:{}", q(k), q(v)));
        }
        s.push_str("}}");
        s
    }
}

struct Recorder {
    next_id: u64,
    recent: VecDeque<Incident>,
    unsaved: Vec<Incident>,
    role: &'static str,
    notifier: Option<notify::Notifier>,
}

fn recorder() -> MutexGuard<'static, Recorder> {
    static R: OnceLock<Mutex<Recorder>> = OnceLock::new();
    let m = R.get_or_init(|| {
        Mutex::new(Recorder {
            next_id: 1,
            recent: VecDeque::new(),
            unsaved: Vec::new(),
            role: "",
            notifier: None,
        })
    });
    // A panic while holding it cannot leave it inconsistent (plain pushes): go on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// At start: the incidents kept in the store (oldest first), so ids go on increasing and the
/// list survives restarts.
pub fn restore(saved: Vec<Incident>) {
    let mut r = recorder();
    for i in saved {
        r.next_id = r.next_id.max(i.id + 1);
        r.recent.push_back(i);
        if r.recent.len() > KEEP {
            r.recent.pop_front();
        }
    }
}

/// The node's role, for `HOTBACKUP_ROLE=`: set from the config before the engine opens, from
/// the store's recorded role as soon as it is read, and again whenever it changes.
pub fn set_role(role: &'static str) {
    recorder().role = role;
}

/// Starts (or replaces) the notifier for the config's notify list.
pub fn set_notifier(n: Option<notify::Notifier>) {
    recorder().notifier = n;
}

/// Raises an incident: logs it with its journald fields, keeps it, notifies. Returns its id.
pub fn raise(kind: Kind, message: impl Into<String>, fields: &[(&str, String)]) -> u64 {
    let message = message.into();
    RAISED[kind as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut r = recorder();
    let id = r.next_id;
    r.next_id += 1;
    let inc = Incident {
        id,
        kind,
        severity: kind.severity(),
        time_ms: crate::txn::now_ms(),
        message,
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    };
    log_incident(&inc, r.role);
    if let Some(n) = &r.notifier {
        n.send(&inc);
    }
    r.unsaved.push(inc.clone());
    r.recent.push_back(inc);
    if r.recent.len() > KEEP {
        r.recent.pop_front();
    }
    id
}

/// The incident's log record, with its journald fields. `HOTBACKUP_ROLE` and `HOTBACKUP_PEER`
/// are left out when there is nothing to say (no role known yet, no peer), never sent empty.
fn log_incident(inc: &Incident, role: &str) {
    let kind = inc.kind;
    let peer = inc.field("peer").filter(|p| !p.is_empty());
    let role = (!role.is_empty()).then_some(role);
    macro_rules! emit {
        ($($extra:tt)*) => {
            log::log!(
                inc.severity,
                message_id = kind.message_id(),
                hotbackup_incident = kind.name(),
                hotbackup_incident_id = inc.id
                $($extra)*;
                "INCIDENT {}: {}",
                kind.name(),
                inc.message
            )
        };
    }
    match (role, peer) {
        (Some(role), Some(peer)) => emit!(, hotbackup_role = role, hotbackup_peer = peer),
        (Some(role), None) => emit!(, hotbackup_role = role),
        (None, Some(peer)) => emit!(, hotbackup_peer = peer),
        (None, None) => emit!(),
    }
}

/// Incidents since `since_ms` (all kept ones with 0), oldest first.
pub fn recent(since_ms: u64) -> Vec<Incident> {
    recorder()
        .recent
        .iter()
        .filter(|i| i.time_ms >= since_ms)
        .cloned()
        .collect()
}

/// Incidents not yet written to the store (the event loop saves them).
pub fn take_unsaved() -> Vec<Incident> {
    std::mem::take(&mut recorder().unsaved)
}

/// Counts by kind of the kept incidents (metrics).
pub fn counts() -> Vec<(Kind, u64)> {
    let r = recorder();
    Kind::ALL
        .iter()
        .map(|k| (*k, r.recent.iter().filter(|i| i.kind == *k).count() as u64))
        .collect()
}

/// Incidents raised by this process, per kind (index: `kind as usize`).
static RAISED: [std::sync::atomic::AtomicU64; 64] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 64];
const _: () = assert!(Kind::ALL.len() <= 64);

/// Counts by kind of the incidents raised since the process started (metrics' counters).
pub fn raised() -> Vec<(Kind, u64)> {
    Kind::ALL
        .iter()
        .map(|k| {
            (
                *k,
                RAISED[*k as usize].load(std::sync::atomic::Ordering::Relaxed),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_unique_names_and_message_ids() {
        let mut names = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        for k in Kind::ALL {
            assert!(names.insert(k.name()));
            assert!(ids.insert(k.message_id()));
            assert_eq!(k.message_id().len(), 32);
            assert!(k.message_id().bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(Kind::from_name(k.name()), Some(k));
        }
    }

    #[test]
    fn incidents_round_trip_and_garbage_is_an_error() {
        let i = Incident {
            id: 7,
            kind: Kind::LinkDown,
            severity: Level::Warn,
            time_ms: 1_700_000_000_000,
            message: "link down: silent".into(),
            fields: vec![("peer".into(), "b:2000".into())],
        };
        assert_eq!(Incident::decode(&i.encode()), Ok(i.clone()));
        let b = i.encode();
        for n in 0..b.len() {
            assert!(Incident::decode(&b[..n]).is_err());
        }
        assert!(i.to_json().contains("\"peer\":\"b:2000\""));
        assert!(
            i.line()
                .contains("#7 warn link_down: link down: silent peer=b:2000")
        );
    }

    #[test]
    fn raise_keeps_them_in_order_with_increasing_ids() {
        let a = raise(Kind::VerifyMatch, "test a", &[]);
        let b = raise(Kind::VerifyMatch, "test b", &[("file", "main".into())]);
        assert!(b > a);
        let got = recent(0);
        let pos_a = got.iter().position(|i| i.id == a).unwrap();
        let pos_b = got.iter().position(|i| i.id == b).unwrap();
        assert!(pos_a < pos_b);
        assert_eq!(got[pos_b].field("file"), Some("main"));
    }
}
