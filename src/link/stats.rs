//! Per-link statistics (D3's "Show statistics"): what each link of this node has done since the
//! daemon started.
//!
//! A link is a peer: each configured `[link] peers`/`downstream` address, and a peer that
//! connected from an address matching none of them uniquely. The [`Book`] keeps, per link and
//! keyed by that configured address (so they survive reconnects), the counters of its closed
//! connections: frames and bytes both ways, how often it came up, went down or failed before
//! coming up, full and partial syncs, the last acknowledged LSNs and the last error. The link
//! manager adds the live connection's own figures when asked ([`LinkStat`]). Everything here is
//! in memory and resets when the daemon restarts, as D3's statistics did: the journal, not the
//! statistics, is what must survive a crash, and a restart is itself a reconnect of every link.
//!
//! It owns no socket and decides nothing about the link; the manager calls it.

use std::collections::BTreeMap;
use std::time::Instant;

use super::msg::Ack;
use crate::journal::Lsn;

/// Where a link is. The names are those of `hotbackup stats` and the metrics' `state` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkState {
    /// No connection (a dial failed, the peer is silent, or it has not connected yet).
    Down,
    /// TCP connect in progress.
    Connecting,
    /// Mutual HMAC challenge-response.
    Authenticating,
    /// Authenticated; IDENTs being exchanged, or waiting for the master's first frame.
    Handshake,
    /// A snapshot is shipped / loaded.
    FullSync,
    /// A rejoining slave's divergent items are repaired.
    Repair,
    /// Journal records flow.
    Streaming,
}

impl LinkState {
    pub const ALL: [LinkState; 7] = [
        LinkState::Down,
        LinkState::Connecting,
        LinkState::Authenticating,
        LinkState::Handshake,
        LinkState::FullSync,
        LinkState::Repair,
        LinkState::Streaming,
    ];

    /// The name for people ("full sync").
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Down => "down",
            LinkState::Connecting => "connecting",
            LinkState::Authenticating => "authenticating",
            LinkState::Handshake => "handshake",
            LinkState::FullSync => "full sync",
            LinkState::Repair => "repair",
            LinkState::Streaming => "streaming",
        }
    }

    /// The name as a label value or JSON word ("full_sync").
    pub fn label(self) -> &'static str {
        match self {
            LinkState::FullSync => "full_sync",
            s => s.name(),
        }
    }

    /// From a feed's or follow's state name.
    pub fn from_job(name: &str) -> LinkState {
        match name {
            "streaming" => LinkState::Streaming,
            "full sync" => LinkState::FullSync,
            "repair" => LinkState::Repair,
            _ => LinkState::Handshake,
        }
    }

    /// How far along a connection is (to pick the most advanced of several to one peer).
    fn rank(self) -> u8 {
        match self {
            LinkState::Down => 0,
            LinkState::Connecting => 1,
            LinkState::Authenticating => 2,
            LinkState::Handshake => 3,
            LinkState::FullSync | LinkState::Repair => 4,
            LinkState::Streaming => 5,
        }
    }
}

/// The counters of one link, over the connections that ended.
#[derive(Debug, Clone, Default)]
struct Totals {
    /// "slave" (we feed it) or "master" (we follow it), as last seen or expected.
    role: &'static str,
    /// Its instance name, once it authenticated.
    name: String,
    frames_in: u64,
    frames_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// Times the link came up (authenticated, identified, feeding or following).
    ups: u64,
    /// Times a link that was up went down.
    downs: u64,
    /// Connections that ended before the link came up (refused, failed authentication, …).
    failed: u64,
    full_syncs: u64,
    partial_syncs: u64,
    /// The last acknowledgement (from the slave we feed, or ours to the master we follow).
    ack: Ack,
    /// The last LSN shipped to it.
    sent: Lsn,
    last_error: String,
    /// Since when it has had no connection (None: it has one, or never had one).
    down_since: Option<Instant>,
}

/// What one connection contributes to its link's figures, read by the manager.
#[derive(Debug, Clone, Default)]
pub struct ConnFigures {
    pub state: Option<LinkState>,
    pub role: &'static str,
    pub name: String,
    /// Whether the link came up on this connection.
    pub up: bool,
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub full_syncs: u64,
    pub partial_syncs: u64,
    pub ack: Ack,
    pub sent: Lsn,
    /// Feed: the record bytes shipped and not yet applied; follow: 0.
    pub lag_bytes: u64,
    /// How long the peer has been behind (ms; 0: it is not).
    pub lag_ms: u64,
    /// Feed: the master's durable LSN minus what the slave received; follow: the master's
    /// durable LSN (from its heartbeats) minus what this slave received.
    pub queue_depth: u64,
    /// The oldest transaction shipped or due and not yet received by the slave (0: none).
    pub sending: Lsn,
    pub connected_ms: u64,
    pub last_ack_ms: u64,
}

/// One link's statistics, as `hotbackup stats`, `INFO replication` and the metrics show them.
#[derive(Debug, Clone, Default)]
pub struct LinkStat {
    /// The configured address (or, for a peer that matches none uniquely, its name and IP).
    pub peer: String,
    pub name: String,
    pub role: &'static str,
    /// Whether this node dials it (a target of its role) or waits for it to connect.
    pub dials: bool,
    pub state: Option<LinkState>,
    /// Why it is down, when it is.
    pub last_error: String,
    /// How long it has been in its state (up: this connection; down: since it went down or
    /// since the daemon started), ms.
    pub state_ms: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Times the link came up, and came up again after being up (= ups - 1, from 0).
    pub connects: u64,
    pub reconnects: u64,
    /// Times it went down after being up; connections that ended before it came up.
    pub disconnects: u64,
    pub failed_connects: u64,
    pub full_syncs: u64,
    pub partial_syncs: u64,
    pub acked_received: Lsn,
    pub acked_durable: Lsn,
    pub acked_applied: Lsn,
    pub sent: Lsn,
    pub sending: Lsn,
    pub queue_depth: u64,
    pub lag_entries: u64,
    pub lag_bytes: u64,
    pub lag_ms: u64,
    pub last_ack_ms: u64,
}

impl LinkStat {
    /// Every figure as (name, value): the fields of HB.STATS, `hotbackup stats --json` and the
    /// `linkN:` lines of INFO replication.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("peer", self.peer.clone()),
            ("name", self.name.clone()),
            ("role", self.role.to_string()),
            (
                "direction",
                if self.dials { "dial" } else { "accept" }.to_string(),
            ),
            (
                "state",
                self.state.unwrap_or(LinkState::Down).label().to_string(),
            ),
            ("last_error", self.last_error.clone()),
            ("state_ms", self.state_ms.to_string()),
            ("frames_in", self.frames_in.to_string()),
            ("frames_out", self.frames_out.to_string()),
            ("bytes_in", self.bytes_in.to_string()),
            ("bytes_out", self.bytes_out.to_string()),
            ("connects", self.connects.to_string()),
            ("reconnects", self.reconnects.to_string()),
            ("disconnects", self.disconnects.to_string()),
            ("failed_connects", self.failed_connects.to_string()),
            ("full_syncs", self.full_syncs.to_string()),
            ("partial_syncs", self.partial_syncs.to_string()),
            ("sent_lsn", self.sent.to_string()),
            ("sending_lsn", self.sending.to_string()),
            ("acked_received", self.acked_received.to_string()),
            ("acked_durable", self.acked_durable.to_string()),
            ("acked_applied", self.acked_applied.to_string()),
            ("queue_depth", self.queue_depth.to_string()),
            ("lag_entries", self.lag_entries.to_string()),
            ("lag_bytes", self.lag_bytes.to_string()),
            ("lag_ms", self.lag_ms.to_string()),
            ("last_ack_ms", self.last_ack_ms.to_string()),
        ]
    }

    /// The state for people: "streaming", "down (connection refused)".
    pub fn state_text(&self) -> String {
        let s = self.state.unwrap_or(LinkState::Down);
        if s == LinkState::Down && !self.last_error.is_empty() {
            format!("down ({})", self.last_error)
        } else {
            s.name().to_string()
        }
    }
}

/// The links of this node and their counters.
pub struct Book {
    started: Instant,
    links: BTreeMap<String, Totals>,
}

impl Default for Book {
    fn default() -> Self {
        Book {
            started: Instant::now(),
            links: BTreeMap::new(),
        }
    }
}

impl Book {
    /// Makes sure a configured link is listed (with the role it is expected to have).
    pub fn expect(&mut self, peer: &str, role: &'static str) {
        let t = self.links.entry(peer.to_string()).or_default();
        t.role = role;
    }

    /// The link came up on a connection.
    pub fn up(&mut self, peer: &str, role: &'static str, name: &str) {
        let t = self.links.entry(peer.to_string()).or_default();
        t.ups += 1;
        t.role = role;
        if !name.is_empty() {
            t.name = name.to_string();
        }
        t.down_since = None;
        t.last_error.clear();
    }

    /// A connection ended: its figures join the link's totals.
    pub fn closed(&mut self, peer: &str, c: &ConnFigures, why: &str, others_live: bool) {
        let t = self.links.entry(peer.to_string()).or_default();
        t.frames_in += c.frames_in;
        t.frames_out += c.frames_out;
        t.bytes_in += c.bytes_in;
        t.bytes_out += c.bytes_out;
        t.full_syncs += c.full_syncs;
        t.partial_syncs += c.partial_syncs;
        if c.up {
            t.downs += 1;
            t.ack = c.ack;
            t.sent = c.sent;
        } else {
            t.failed += 1;
        }
        if !c.role.is_empty() && c.role != "-" {
            t.role = c.role;
        }
        if !c.name.is_empty() {
            t.name = c.name.clone();
        }
        t.last_error = why.to_string();
        if !others_live && t.down_since.is_none() {
            t.down_since = Some(Instant::now());
        }
    }

    /// Every link: the totals plus what its live connections (`live`: (peer, figures)) add.
    /// `durable` is this node's durable LSN (for the queue depth of a link that is down).
    pub fn report(
        &self,
        live: &[(String, ConnFigures)],
        dialled: &[String],
        durable: Lsn,
    ) -> Vec<LinkStat> {
        let mut keys: Vec<&String> = self.links.keys().collect();
        for (k, _) in live {
            if !self.links.contains_key(k) && !keys.contains(&k) {
                keys.push(k);
            }
        }
        keys.sort();
        let empty = Totals::default();
        keys.into_iter()
            .map(|k| {
                let t = self.links.get(k).unwrap_or(&empty);
                let conns: Vec<&ConnFigures> = live
                    .iter()
                    .filter(|(p, _)| p == k)
                    .map(|(_, c)| c)
                    .collect();
                let mut s = LinkStat {
                    peer: k.clone(),
                    name: t.name.clone(),
                    role: if t.role.is_empty() { "-" } else { t.role },
                    dials: dialled.contains(k),
                    state: None,
                    last_error: t.last_error.clone(),
                    state_ms: t.down_since.unwrap_or(self.started).elapsed().as_millis() as u64,
                    frames_in: t.frames_in,
                    frames_out: t.frames_out,
                    bytes_in: t.bytes_in,
                    bytes_out: t.bytes_out,
                    connects: t.ups,
                    reconnects: t.ups.saturating_sub(1),
                    disconnects: t.downs,
                    failed_connects: t.failed,
                    full_syncs: t.full_syncs,
                    partial_syncs: t.partial_syncs,
                    acked_received: t.ack.received,
                    acked_durable: t.ack.durable,
                    acked_applied: t.ack.applied,
                    sent: t.sent,
                    sending: 0,
                    // A slave that is down still needs what it has not acknowledged.
                    queue_depth: if t.role == "slave" && t.ups > 0 {
                        durable.saturating_sub(t.ack.received)
                    } else {
                        0
                    },
                    lag_entries: 0,
                    lag_bytes: 0,
                    lag_ms: 0,
                    last_ack_ms: 0,
                };
                if s.role == "slave" && t.ups > 0 {
                    s.lag_entries = durable.saturating_sub(t.ack.applied);
                }
                // The most advanced live connection speaks for the link.
                let best = conns
                    .iter()
                    .max_by_key(|c| c.state.map_or(0, LinkState::rank))
                    .copied();
                for c in &conns {
                    s.frames_in += c.frames_in;
                    s.frames_out += c.frames_out;
                    s.bytes_in += c.bytes_in;
                    s.bytes_out += c.bytes_out;
                    s.full_syncs += c.full_syncs;
                    s.partial_syncs += c.partial_syncs;
                }
                if let Some(c) = best {
                    s.state = c.state;
                    s.state_ms = c.connected_ms;
                    s.last_error.clear();
                    if !c.name.is_empty() {
                        s.name = c.name.clone();
                    }
                    if c.up {
                        s.role = c.role;
                        s.acked_received = c.ack.received;
                        s.acked_durable = c.ack.durable;
                        s.acked_applied = c.ack.applied;
                        s.sent = c.sent;
                        s.sending = c.sending;
                        s.queue_depth = c.queue_depth;
                        s.lag_bytes = c.lag_bytes;
                        s.lag_ms = c.lag_ms;
                        s.last_ack_ms = c.last_ack_ms;
                        s.lag_entries = if c.role == "slave" {
                            durable.saturating_sub(c.ack.applied)
                        } else {
                            c.queue_depth
                        };
                    }
                } else {
                    s.state = Some(LinkState::Down);
                }
                s
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(up: bool, frames: u64, bytes: u64) -> ConnFigures {
        ConnFigures {
            state: Some(if up {
                LinkState::Streaming
            } else {
                LinkState::Authenticating
            }),
            role: if up { "slave" } else { "-" },
            up,
            frames_in: frames,
            frames_out: frames,
            bytes_in: bytes,
            bytes_out: bytes,
            partial_syncs: up as u64,
            ack: Ack {
                received: 10,
                durable: 9,
                applied: 8,
            },
            sent: 10,
            ..ConnFigures::default()
        }
    }

    #[test]
    fn counters_add_up_over_reconnects_and_down_links_keep_their_last_figures() {
        let mut b = Book::default();
        b.expect("b:2000", "slave");
        let r = b.report(&[], &["b:2000".into()], 5);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].state, Some(LinkState::Down));
        assert_eq!(
            (r[0].connects, r[0].reconnects, r[0].queue_depth),
            (0, 0, 0)
        );
        assert!(r[0].dials);

        // A refused attempt, then two connections that came up and went down.
        b.closed("b:2000", &conn(false, 1, 50), "refused", false);
        for _ in 0..2 {
            b.up("b:2000", "slave", "b");
            b.closed("b:2000", &conn(true, 10, 1000), "cut", false);
        }
        let r = b.report(&[], &[], 12);
        let s = &r[0];
        assert_eq!(s.state, Some(LinkState::Down));
        assert_eq!(s.state_text(), "down (cut)");
        assert_eq!((s.connects, s.reconnects), (2, 1));
        assert_eq!((s.disconnects, s.failed_connects), (2, 1));
        assert_eq!((s.frames_in, s.bytes_out), (21, 2050));
        assert_eq!(s.partial_syncs, 2);
        assert_eq!(s.acked_received, 10);
        assert_eq!(s.queue_depth, 2);
        assert_eq!(s.lag_entries, 4);
        assert_eq!(s.name, "b");

        // Up again: the live connection adds to the totals and speaks for the state.
        b.up("b:2000", "slave", "b");
        let mut live = conn(true, 5, 500);
        live.queue_depth = 1;
        live.sending = 11;
        let r = b.report(&[("b:2000".into(), live)], &[], 12);
        let s = &r[0];
        assert_eq!(s.state, Some(LinkState::Streaming));
        assert_eq!(s.last_error, "");
        assert_eq!((s.connects, s.reconnects), (3, 2));
        assert_eq!((s.frames_out, s.bytes_in), (26, 2550));
        assert_eq!((s.queue_depth, s.sending), (1, 11));
    }

    #[test]
    fn an_unknown_peer_is_listed_and_states_have_label_names() {
        let b = Book::default();
        let r = b.report(&[("x (10.0.0.9)".into(), conn(false, 1, 1))], &[], 0);
        assert_eq!(r[0].peer, "x (10.0.0.9)");
        assert_eq!(r[0].state, Some(LinkState::Authenticating));
        for s in LinkState::ALL {
            assert!(
                s.label()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
        }
    }
}
