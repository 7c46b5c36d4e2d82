//! The link manager: this node's hot-backup port and its connections, driven by the event loop.
//!
//! It listens on the link port in every role (a master answers too, so that two nodes that
//! both believe they are master meet), dials the peers it feeds (a master: its `peers`; a
//! slave: its `downstream`), authenticates every connection both ways before anything else is
//! read, exchanges IDENT, and hands the connection to a [`Feed`] (we ship to a slave) or a
//! [`Follow`] (we receive from our master). It keeps heartbeats both ways, declares a silent
//! peer down after `peer_timeout`, re-dials with backoff, and keeps the slots: how far each
//! slave has acknowledged, which decides how much journal must be retained.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use super::auth::{self, DialerAuth, ListenerAuth, PeerId};
use super::feed::Feed;
use super::follow::Follow;
use super::frame::Side;
use super::msg::{self, Ident, Role};
use super::peer::{Peer, Phase, ReadEnd};
use super::stats::{self, ConnFigures, LinkStat, LinkState};
use crate::datadir::hex;
use crate::journal::Lsn;
use crate::server::Engine;
use crate::store::Slot;

/// When a client's write is acknowledged, relative to the slaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaSync {
    /// As soon as it is durable here.
    Async,
    /// When enough slaves have received it.
    Received,
    /// When enough slaves have made it durable.
    Durable,
    /// When enough slaves have applied it (readers there see it).
    Applied,
}

#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// This node's link port (None: no listener).
    pub listen: Option<SocketAddr>,
    /// The partner nodes: a master dials and feeds them; a slave follows one of them.
    pub peers: Vec<String>,
    /// Slaves a slave feeds itself (cascading).
    pub downstream: Vec<String>,
    /// Where clients reach this node ("host:port"; an unspecified host means the address the
    /// peer sees this node at).
    pub client_addr: String,
    /// Where this node answers as a Sentinel ("" when it does not).
    pub sentinel_addr: String,
    pub key: Option<Vec<u8>>,
    pub name: String,
    pub heartbeat: Duration,
    pub peer_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub max_frame: usize,
    pub max_retained_bytes: u64,
    pub sync: ReplicaSync,
    pub min_sync_slaves: usize,
    pub sync_timeout: Duration,
    pub refuse_on_timeout: bool,
    /// Switchover: new writes get TRYAGAIN (else they wait).
    pub switchover_refuse: bool,
    pub switchover_timeout: Duration,
    /// The master writes a canary this often (zero: never).
    pub canary_interval: Duration,
    pub canary_alarm: Duration,
    /// Online verify this often on a master (zero: only when asked).
    pub verify_interval: Duration,
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings {
            listen: None,
            peers: Vec::new(),
            downstream: Vec::new(),
            client_addr: String::new(),
            sentinel_addr: String::new(),
            key: None,
            name: String::new(),
            heartbeat: Duration::from_secs(1),
            peer_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            max_frame: 64 << 20,
            max_retained_bytes: 1 << 30,
            sync: ReplicaSync::Async,
            min_sync_slaves: 1,
            sync_timeout: Duration::from_secs(1),
            refuse_on_timeout: false,
            switchover_refuse: false,
            switchover_timeout: Duration::from_secs(10),
            canary_interval: Duration::from_secs(5),
            canary_alarm: Duration::from_secs(30),
            verify_interval: Duration::ZERO,
        }
    }
}

enum Job {
    /// Authenticating or identifying.
    None,
    /// We ship to this slave.
    Feed(Box<Feed>),
    /// This is our master.
    Follow(Box<Follow>),
}

struct Conn {
    peer: Peer,
    job: Job,
    /// Index in `targets` when we dialled it.
    target: Option<usize>,
    token: Token,
    /// The slave's node id (for its slot), once identified.
    node: Option<[u8; 16]>,
    /// Where clients reach the peer (from its IDENT).
    client_addr: String,
    /// Where the peer answers as a Sentinel (from its IDENT).
    sentinel_addr: String,
    last_slot_write: Instant,
    /// The link this connection belongs to in the statistics: the configured address it was
    /// dialled at or accepted from ("" when no configured peer matches it uniquely).
    stats_key: String,
    /// The link came up on this connection (it fed or followed).
    was_up: bool,
    /// A follow replaced by a newer connection: what it had done, for the statistics.
    frozen: Option<ConnFigures>,
    /// FORKs sent on this connection (see `manager/fork.rs`).
    fork_rounds: u32,
    /// The peer sent REFUSE on this connection.
    refused_by_peer: bool,
}

struct Target {
    addr: String,
    /// Whether this peer was heard from (IDENT exchanged) since the process started.
    heard: bool,
    next_try: Instant,
    backoff: Duration,
    conn: Option<usize>,
    last_error: Option<String>,
    failures: u64,
    /// The slave refused the link after it came up (it has no room for a full sync), and has
    /// not acknowledged anything since: its next refusals are logged, not raised again, and
    /// the re-dials back off to `reconnect_max`.
    refusing: bool,
}

/// What INFO and `status` show of one link.
#[derive(Debug, Clone)]
pub struct PeerStatus {
    pub addr: String,
    pub name: String,
    /// Where clients reach it ("" when unknown).
    pub client_addr: String,
    /// Where it answers as a Sentinel ("" when it does not).
    pub sentinel_addr: String,
    /// "slave" (we feed it) or "master" (we follow it), or "-" while unidentified.
    pub role: &'static str,
    pub state: String,
    pub sent: Lsn,
    pub acked_received: Lsn,
    pub acked_durable: Lsn,
    pub acked_applied: Lsn,
    pub lag_entries: u64,
    pub lag_bytes: u64,
    /// How long the slave has been behind (0: it has everything durable here).
    pub lag_ms: u64,
    pub last_ack_ms: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connected_s: u64,
    pub full_syncs: u64,
    pub partial_syncs: u64,
    /// How this connection came into sync ("" until it did; see `Follow::sync_summary`).
    pub sync_summary: String,
    /// A full sync or repair this node is receiving from the master it follows.
    pub progress: Option<super::follow::SyncProgress>,
}

/// Counters over the life of the process.
#[derive(Debug, Default, Clone)]
pub struct LinkStats {
    pub accepted: u64,
    pub dials: u64,
    pub auth_failures: u64,
    pub disconnects: u64,
    pub full_syncs: u64,
    pub partial_syncs: u64,
    pub sync_timeouts: u64,
    pub slots_dropped: u64,
}

pub struct Link {
    settings: LinkSettings,
    listener: Option<TcpListener>,
    listener_token: Token,
    base: usize,
    conns: Vec<Option<Conn>>,
    targets: Vec<Target>,
    me: PeerId,
    scratch: Vec<u8>,
    pub stats: LinkStats,
    /// A sync-mode write timed out and the policy is to refuse: since when.
    pub refusing_since: Option<Instant>,
    /// The role the dial targets were made for (None: not yet made).
    dialling_as_slave: Option<bool>,
    /// The master this slave follows: (name, client address), once identified.
    master: Option<(String, String)>,
    /// A switchover in progress (this node is the master handing over).
    switchover: Option<switchover::Switchover>,
    /// What the last switchover came to.
    switchover_outcome: Option<String>,
    /// The link broke after this master asked its slave to take over: the next contact
    /// settles who is the master.
    handing_over: bool,
    /// Peers whose link went down (by node id): since when, and their label; a link-up
    /// incident ends it.
    down_since: std::collections::HashMap<[u8; 16], (Instant, String)>,
    verifier: crate::verify::Verifier,
    canary: crate::verify::Canary,
    /// Each link's counters across reconnects (see [`stats`]).
    book: stats::Book,
    /// Connections whose frames were not all handled when their [`FRAME_BUDGET`] ran out:
    /// handled on at the next loop iteration, without waiting for the socket.
    backlog: Vec<usize>,
    /// A feed had more to send when its [`crate::link::feed::PUMP_BUDGET`] ran out: the event
    /// loop comes back at once rather than waiting for an event.
    pump_more: bool,
}

mod fork;
mod switchover;
mod verify;

const READ_LIMIT: usize = 16 << 20;

/// How long one connection's buffered frames are handled in one go before the event loop
/// takes its turn (clients, `status`, heartbeats, acks). Loading a full sync's chunk takes a
/// while (tens of milliseconds, far more in a debug build or on a busy machine); a slave that
/// loaded all it had buffered at once answered nobody for seconds and its master declared it
/// silent. The loop is held at most this long plus one frame.
const FRAME_BUDGET: Duration = Duration::from_millis(50);

/// A frame out of sequence, with a damaged header or failing its MAC is an incident of its own (the link-down one
/// follows when the connection is closed).
fn frame_incident(e: &super::frame::FrameError, peer: &str) {
    use super::frame::FrameError;
    let kind = match e {
        FrameError::BadSeq { .. } => crate::incident::Kind::SequenceGap,
        // A damaged header is damaged data like a failing MAC (caught earlier).
        FrameError::BadMac { .. } | FrameError::BadHeader { .. } => {
            crate::incident::Kind::AuthFailure
        }
        _ => return,
    };
    crate::incident::raise(
        kind,
        format!("link {peer}: {e}; nothing of it is applied, the link is resynced"),
        &[("peer", peer.to_string())],
    );
}

/// How this node names itself in canaries and verify outcomes: instance@host:client-port.
fn node_label(s: &LinkSettings) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let port = s
        .client_addr
        .parse::<SocketAddr>()
        .map(|a| format!(":{}", a.port()))
        .unwrap_or_default();
    format!("{}@{host}{port}", s.name)
}

impl Link {
    /// Binds the link port (or takes the socket systemd passed) and registers it.
    pub fn new(
        settings: LinkSettings,
        node_id: [u8; 16],
        registry: &Registry,
        listener_token: Token,
        base: usize,
        inherited: Option<std::net::TcpListener>,
    ) -> std::io::Result<Link> {
        let mut listener = match (inherited, settings.listen) {
            (Some(l), _) => {
                l.set_nonblocking(true)?;
                Some(TcpListener::from_std(l))
            }
            (None, Some(addr)) => Some(TcpListener::bind(addr)?),
            (None, None) => None,
        };
        if let Some(l) = listener.as_mut() {
            registry.register(l, listener_token, Interest::READABLE)?;
            if let Ok(a) = l.local_addr() {
                log::info!("link: listening on {a}");
            }
        }
        let who = node_label(&settings);
        Ok(Link {
            verifier: crate::verify::Verifier::new(who.clone(), settings.verify_interval),
            canary: crate::verify::Canary::new(
                settings.canary_interval,
                settings.canary_alarm,
                who,
            ),
            me: PeerId {
                node_id,
                name: settings.name.clone(),
            },
            settings,
            listener,
            listener_token,
            base,
            conns: Vec::new(),
            targets: Vec::new(),
            scratch: vec![0u8; 256 * 1024],
            stats: LinkStats::default(),
            refusing_since: None,
            dialling_as_slave: None,
            master: None,
            switchover: None,
            switchover_outcome: None,
            handing_over: false,
            down_since: Default::default(),
            book: stats::Book::default(),
            backlog: Vec::new(),
            pump_more: false,
        })
    }

    /// Makes the dial targets fit the engine's role (which promote and rejoin change while
    /// running): a master dials its peers, a slave its downstream. Connections made for the
    /// other role are closed; both sides reconnect in their new roles.
    fn sync_role(&mut self, eng: &mut Engine, registry: &Registry) {
        let slave = eng.is_slave();
        if self.dialling_as_slave == Some(slave) {
            return;
        }
        let first = self.dialling_as_slave.is_none();
        self.dialling_as_slave = Some(slave);
        if !first {
            log::info!("link: this node is now a {}; reconnecting", eng.role_name());
            for slot in 0..self.conns.len() {
                if let Some(c) = self.conns[slot].take() {
                    self.close(c, "the role of this node changed", eng, registry);
                }
            }
            self.master = None;
        }
        let now = Instant::now();
        // Every configured link is listed in the statistics, up or not: a slave's peers are
        // the masters it may follow, everything else is a slave this node may feed.
        for p in &self.settings.peers {
            self.book.expect(p, if slave { "master" } else { "slave" });
        }
        for p in &self.settings.downstream {
            self.book.expect(p, "slave");
        }
        let dial = if slave {
            &self.settings.downstream
        } else {
            &self.settings.peers
        };
        self.targets = dial
            .iter()
            .map(|addr| Target {
                addr: addr.clone(),
                heard: false,
                next_try: now,
                backoff: self.settings.reconnect_min,
                conn: None,
                last_error: None,
                failures: 0,
                refusing: false,
            })
            .collect();
    }

    /// At start, a master that has fed a slave before does not take writes until it has
    /// heard from a peer: the peer may have been promoted meanwhile (then this node is fenced).
    /// `hotbackup promote` on it ends the wait by hand.
    pub fn start_peer_check(&mut self, eng: &mut Engine) {
        if eng.is_slave() || self.settings.peers.is_empty() || !eng.has_fed_slaves() {
            return;
        }
        log::warn!(
            "this master has fed a slave before: it takes no writes until it has heard from a peer ({}) — the peer may have been promoted meanwhile; `hotbackup promote` ends the wait",
            self.settings.peers.join(", ")
        );
        eng.set_checking_peers(true);
    }

    /// Where clients reach this node (the bound client port, known once it is bound).
    pub fn set_client_addr(&mut self, addr: String) {
        self.settings.client_addr = addr;
        let who = node_label(&self.settings);
        self.verifier.set_name(who.clone());
        self.canary.set_origin(who);
    }

    /// Where this node answers as a Sentinel (the bound Sentinel port).
    pub fn set_sentinel_addr(&mut self, addr: String) {
        self.settings.sentinel_addr = addr;
    }

    /// The IDENT this node sends.
    fn ident(&self, eng: &mut Engine) -> Ident {
        let mut i = eng.ident();
        i.client_addr = self.settings.client_addr.clone();
        i.sentinel_addr = self.settings.sentinel_addr.clone();
        i
    }

    /// Where clients reach the peer: its advertised address, with an unspecified host replaced
    /// by the address we reach it at.
    fn client_addr_of(theirs: &Ident, peer_addr: Option<SocketAddr>) -> String {
        Self::resolve_unspecified(&theirs.client_addr, peer_addr)
    }

    /// "host:port" with an unspecified host replaced by the peer's address.
    fn resolve_unspecified(addr: &str, peer_addr: Option<SocketAddr>) -> String {
        match (addr.parse::<SocketAddr>(), peer_addr) {
            (Ok(a), Some(p)) if a.ip().is_unspecified() => {
                SocketAddr::new(p.ip(), a.port()).to_string()
            }
            _ => addr.to_string(),
        }
    }

    /// The master this slave follows: (name, client address).
    pub fn master(&self) -> Option<&(String, String)> {
        self.master.as_ref()
    }

    /// Compares the peer's generation with ours when this node is a master. A newer master
    /// (or a peer that has seen a newer generation) fences this node; an older master is told
    /// so by our IDENT and fences itself. Err: do not go on with this connection.
    fn check_generation(
        &mut self,
        c: &Conn,
        eng: &mut Engine,
        theirs: &Ident,
    ) -> Result<(), String> {
        if eng.is_slave() {
            return Ok(());
        }
        let ours = eng
            .history()
            .last()
            .map_or(1, |g| g.generation)
            .max(eng.generation());
        let their_gen = theirs.history.last().map_or(1, |g| g.generation);
        let name = c.peer.label();
        let client = Self::client_addr_of(theirs, c.peer.stream.peer_addr().ok());
        if their_gen > ours && self.expecting_takeover() && theirs.role == Role::Master {
            // The slave we asked to take over did (its answer may still be on the way, or was
            // lost with the link): follow it.
            self.handing_over = false;
            let paused = self
                .switchover
                .take()
                .map(|sw| format!("; writes paused {} ms", sw.started.elapsed().as_millis()))
                .unwrap_or_default();
            eng.set_write_pause(None);
            eng.set_checking_peers(false);
            if let Err(e) = eng.become_slave() {
                log::error!("switchover: cannot become a slave: {e}");
            }
            eng.set_master_addr(Some(client.clone()));
            let outcome =
                format!("done: {name} ({client}) took over, generation {their_gen}{paused}");
            log::warn!("switchover {outcome}; this node is now its slave");
            self.switchover_outcome = Some(outcome);
            return Err("this node is now a slave (switchover)".into());
        }
        if their_gen > ours {
            let why = format!(
                "{name} is {} at generation {their_gen} (this node: generation {ours}); the master's clients address is {client}",
                match theirs.role {
                    Role::Master => "the master",
                    Role::Slave => "a slave",
                }
            );
            eng.fence(why.clone());
            eng.set_fenced_master(Some(client));
            eng.set_checking_peers(false);
            return Err(format!("this node is fenced: {why}"));
        }
        if theirs.role == Role::Master {
            if their_gen < ours {
                return Err(format!(
                    "{name} is an older master (generation {their_gen}, this node {ours}); it fences itself when it reads this node's IDENT"
                ));
            }
            let why = format!(
                "two masters of generation {ours}: this node and {name}; neither feeds the other — promote one (`hotbackup promote`) and rejoin the other (`hotbackup rejoin`)"
            );
            crate::incident::raise(
                crate::incident::Kind::TwoMasters,
                why.clone(),
                &[("peer", name.clone())],
            );
            return Err(why);
        }
        Ok(())
    }

    /// A link that had gone down is up again: the recovery incident.
    fn note_link_up(&mut self, c: &Conn) {
        let Some(node) = c.node else {
            return;
        };
        if let Some((since, label)) = self.down_since.remove(&node) {
            crate::incident::raise(
                crate::incident::Kind::LinkUp,
                format!(
                    "link {} up again after {:.1} s (was {label})",
                    c.peer.label(),
                    since.elapsed().as_secs_f64()
                ),
                &[("peer", c.peer.label())],
            );
        }
    }

    /// A peer answered (and is not newer): a starting master may take writes.
    fn mark_heard(&mut self, c: &Conn, eng: &mut Engine) {
        if let Some(t) = c.target.and_then(|t| self.targets.get_mut(t)) {
            t.heard = true;
        }
        if self.handing_over {
            self.handing_over = false;
            let outcome = format!(
                "aborted: {} did not take over before the link broke; this node stays the master",
                c.peer.label()
            );
            crate::incident::raise(
                crate::incident::Kind::Switchover,
                format!("switchover {outcome}"),
                &[],
            );
            self.switchover_outcome = Some(outcome);
        }
        if eng.checking_peers() && eng.fenced().is_none() {
            log::info!(
                "link {}: heard from a peer; this master takes writes",
                c.peer.label()
            );
            eng.set_checking_peers(false);
        }
    }

    /// The address the link port is bound to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Whether a token belongs to the link.
    pub fn owns(&self, token: Token) -> bool {
        token == self.listener_token || token.0 >= self.base
    }

    pub fn settings(&self) -> &LinkSettings {
        &self.settings
    }

    /// Takes the settings a SIGHUP may change (timers, retention, sync mode); the rest keeps
    /// its value until a restart. Returns what changed and what was ignored.
    pub fn reload(&mut self, new: &LinkSettings) -> Vec<String> {
        let mut notes = Vec::new();
        let old = self.settings.clone();
        macro_rules! take {
            ($($f:ident),*) => {$(
                if format!("{:?}", old.$f) != format!("{:?}", new.$f) {
                    notes.push(format!("link.{} changed", stringify!($f)));
                    self.settings.$f = new.$f.clone();
                }
            )*};
        }
        take!(
            heartbeat,
            peer_timeout,
            reconnect_min,
            reconnect_max,
            max_retained_bytes,
            sync,
            min_sync_slaves,
            sync_timeout,
            refuse_on_timeout,
            switchover_refuse,
            switchover_timeout,
            canary_interval,
            canary_alarm,
            verify_interval
        );
        self.canary
            .reconfigure(self.settings.canary_interval, self.settings.canary_alarm);
        self.verifier.set_interval(self.settings.verify_interval);
        for (what, changed) in [
            ("listen", old.listen != new.listen),
            (
                "peers/downstream",
                old.peers != new.peers || old.downstream != new.downstream,
            ),
            ("key_file", old.key != new.key),
            ("max_frame", old.max_frame != new.max_frame),
        ] {
            if changed {
                notes.push(format!(
                    "link {what} changed in the file but needs a restart"
                ));
            }
        }
        notes
    }

    /// Handles a readiness event of one of the link's tokens.
    pub fn on_event(&mut self, token: Token, eng: &mut Engine, registry: &Registry) {
        if token == self.listener_token {
            self.accept(registry);
            return;
        }
        let slot = token.0 - self.base;
        self.service(slot, eng, registry);
    }

    fn accept(&mut self, registry: &Registry) {
        loop {
            let Some(l) = self.listener.as_ref() else {
                return;
            };
            match l.accept() {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    self.stats.accepted += 1;
                    let matching = self.peers_at(addr.ip());
                    if matching.is_empty() {
                        crate::incident::raise(
                            crate::incident::Kind::PeerRefused,
                            format!(
                                "link: refused a connection from {addr}: not one of this node's [link] peers"
                            ),
                            &[("peer", addr.to_string())],
                        );
                        continue;
                    }
                    let peer = Peer::new(
                        stream,
                        addr.to_string(),
                        Side::Listener,
                        self.settings.max_frame,
                    );
                    let key = match &matching[..] {
                        [only] => only.clone(),
                        _ => String::new(),
                    };
                    self.add(peer, None, key, registry);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("link: accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// The configured peers whose address is `ip` (resolved now: a peer's name may point
    /// elsewhere after a failover). None: a stranger.
    fn peers_at(&self, ip: std::net::IpAddr) -> Vec<String> {
        let canon = |ip: std::net::IpAddr| match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        let ip = canon(ip);
        let accept = self.settings.peers.iter().chain(&self.settings.downstream);
        accept
            .into_iter()
            .filter(|p| {
                p.to_socket_addrs()
                    .map(|mut addrs| addrs.any(|a| canon(a.ip()) == ip))
                    .unwrap_or(false)
            })
            .cloned()
            .collect()
    }

    fn add(
        &mut self,
        mut peer: Peer,
        target: Option<usize>,
        stats_key: String,
        registry: &Registry,
    ) -> Option<usize> {
        let slot = match self.conns.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        let token = Token(self.base + slot);
        if let Err(e) = registry.register(
            &mut peer.stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("link: cannot register {}: {e}", peer.addr);
            return None;
        }
        self.conns[slot] = Some(Conn {
            peer,
            job: Job::None,
            target,
            token,
            node: None,
            client_addr: String::new(),
            sentinel_addr: String::new(),
            last_slot_write: Instant::now(),
            stats_key,
            was_up: false,
            frozen: None,
            fork_rounds: 0,
            refused_by_peer: false,
        });
        Some(slot)
    }

    /// Reads and handles what one connection sent.
    fn service(&mut self, slot: usize, eng: &mut Engine, registry: &Registry) {
        let Some(mut c) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if c.peer.closed {
            self.close(c, "replaced", eng, registry);
            return;
        }
        let result = self.drive(&mut c, eng);
        let more = matches!(result, Ok(true));
        let result = match result {
            Ok(_) => self.flush(&mut c, eng),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.conns[slot] = Some(c);
                if more && !self.backlog.contains(&slot) {
                    self.backlog.push(slot);
                }
            }
            Err(why) => self.close(c, &why, eng, registry),
        }
    }

    /// Sends what is queued for the peer. If that fails, reads what the peer had sent first: a
    /// peer that refuses mid-stream (a slave without room for a full sync) closes with our
    /// frames unread, its kernel resets the connection and our send fails, but its refusal is
    /// queued here (frames that came before a reset can still be read) and is the reason to
    /// report.
    fn flush(&mut self, c: &mut Conn, eng: &mut Engine) -> Result<(), String> {
        let Err(why) = c.peer.flush() else {
            return Ok(());
        };
        match self.drive(c, eng) {
            Err(refused) if c.refused_by_peer => Err(refused),
            _ => Err(why),
        }
    }

    /// Whether some connection has frames left from its last turn (the event loop then polls
    /// without waiting, and calls [`Link::service_backlog`]).
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty() || self.pump_more
    }

    /// Handles on the frames connections had left when their [`FRAME_BUDGET`] ran out.
    pub fn service_backlog(&mut self, eng: &mut Engine, registry: &Registry) {
        for slot in std::mem::take(&mut self.backlog) {
            self.service(slot, eng, registry);
        }
    }

    /// Reads what the connection has and handles its frames, for at most [`FRAME_BUDGET`].
    /// Ok(true): frames may be left in its buffer.
    fn drive(&mut self, c: &mut Conn, eng: &mut Engine) -> Result<bool, String> {
        if matches!(c.peer.phase, Phase::Connecting) {
            match c.peer.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return Err(format!("connect failed: {e}")),
            }
            if c.peer.stream.peer_addr().is_err() {
                return Ok(false); // still connecting
            }
            let key = self.key()?;
            let (state, hello) = DialerAuth::start(&key, &self.me).map_err(|e| e.to_string())?;
            c.peer.send(auth::T_HELLO, &hello);
            c.peer.phase = Phase::DialerAuth(Some(state));
        }
        let scratch = &mut self.scratch;
        match c.peer.read_in(scratch, READ_LIMIT) {
            Ok(()) => {}
            Err(ReadEnd::Closed(why)) => {
                // Handle what arrived before the close, then report it.
                while !Self::paused(c) {
                    let Ok(Some(f)) = c.peer.next_frame() else {
                        break;
                    };
                    self.on_frame(c, f.ty, &f.payload, eng)?;
                }
                return Err(why);
            }
            Err(ReadEnd::Bad(e)) => {
                frame_incident(&e, &c.peer.label());
                return Err(format!("bad frame: {e}"));
            }
        }
        let started = Instant::now();
        loop {
            if started.elapsed() >= FRAME_BUDGET {
                return Ok(true);
            }
            if Self::paused(c) {
                // `tick` resumes it.
                return Ok(false);
            }
            match c.peer.next_frame() {
                Ok(Some(f)) => self.on_frame(c, f.ty, &f.payload, eng)?,
                Ok(None) => return Ok(false),
                Err(ReadEnd::Bad(e)) => {
                    frame_incident(&e, &c.peer.label());
                    return Err(format!(
                        "bad frame ({e}): corrupted or injected data; reconnecting"
                    ));
                }
                Err(ReadEnd::Closed(why)) => return Err(why),
            }
        }
    }

    /// A slave's connection whose frames wait while a full sync's new copy is made durable.
    fn paused(c: &Conn) -> bool {
        matches!(&c.job, Job::Follow(f) if f.paused())
    }

    fn key(&self) -> Result<Vec<u8>, String> {
        self.settings
            .key
            .clone()
            .ok_or_else(|| "no link key configured ([link] key_file)".to_string())
    }

    fn on_frame(
        &mut self,
        c: &mut Conn,
        ty: u8,
        payload: &[u8],
        eng: &mut Engine,
    ) -> Result<(), String> {
        if ty == auth::T_REFUSE {
            c.refused_by_peer = true;
            let why = auth::parse_refuse(payload).unwrap_or_else(|e| e.to_string());
            return Err(format!("the peer refused the link: {why}"));
        }
        match std::mem::replace(&mut c.peer.phase, Phase::Ready) {
            Phase::Connecting => Err("data before the connection was up".into()),
            Phase::DialerAuth(state) => {
                if ty != auth::T_CHALLENGE {
                    return Err(format!("expected CHALLENGE, got frame type {ty}"));
                }
                let state = state.ok_or("authentication state lost")?;
                let (proof, session, who) = match state.on_challenge(payload) {
                    Ok(x) => x,
                    Err(e) => {
                        self.stats.auth_failures += 1;
                        crate::incident::raise(
                            crate::incident::Kind::AuthFailure,
                            format!(
                                "link authentication failed: {} did not prove the shared key ({e}); nothing it sent is applied",
                                c.peer.addr
                            ),
                            &[("peer", c.peer.addr.clone())],
                        );
                        return Err(format!("authentication failed: {e}"));
                    }
                };
                if who.node_id == self.me.node_id {
                    return Err("this link leads back to this very node".into());
                }
                c.peer.send(auth::T_PROOF, &proof);
                c.peer.authenticate(&session);
                c.peer.who = Some(who);
                let mine = self.ident(eng);
                c.peer.send(msg::T_IDENT, &mine.encode());
                c.peer.phase = Phase::Ident;
                Ok(())
            }
            Phase::ListenerHello => {
                if ty != auth::T_HELLO {
                    return Err(format!("expected HELLO, got frame type {ty}"));
                }
                let key = self.key()?;
                let (state, challenge, who) = ListenerAuth::on_hello(&key, &self.me, payload)
                    .map_err(|e| format!("bad HELLO: {e}"))?;
                if who.node_id == self.me.node_id {
                    return Err("this link leads back to this very node".into());
                }
                c.peer.send(auth::T_CHALLENGE, &challenge);
                c.peer.who = Some(who);
                c.peer.phase = Phase::ListenerProof(Some(state));
                Ok(())
            }
            Phase::ListenerProof(state) => {
                if ty != auth::T_PROOF {
                    return Err(format!("expected PROOF, got frame type {ty}"));
                }
                let state = state.ok_or("authentication state lost")?;
                match state.on_proof(payload) {
                    Ok(session) => {
                        c.peer.authenticate(&session);
                        c.peer.phase = Phase::Ident;
                        Ok(())
                    }
                    Err(e) => {
                        self.stats.auth_failures += 1;
                        crate::incident::raise(
                            crate::incident::Kind::AuthFailure,
                            format!(
                                "link authentication failed: {} did not prove the shared key ({e}); nothing it sent is applied",
                                c.peer.addr
                            ),
                            &[("peer", c.peer.addr.clone())],
                        );
                        Err(format!("authentication failed: {e}"))
                    }
                }
            }
            Phase::Ident => {
                if ty != msg::T_IDENT {
                    return Err(format!("expected IDENT, got frame type {ty}"));
                }
                let theirs = Ident::decode(payload).map_err(|e| e.to_string())?;
                c.node = c.peer.who.as_ref().map(|w| w.node_id);
                c.client_addr = Self::client_addr_of(&theirs, c.peer.stream.peer_addr().ok());
                c.sentinel_addr = Self::resolve_unspecified(
                    &theirs.sentinel_addr,
                    c.peer.stream.peer_addr().ok(),
                );
                match c.peer.side {
                    Side::Dialer => self.start_feed(c, eng, &theirs),
                    Side::Listener => self.answer_ident(c, eng, &theirs),
                }
            }
            Phase::Ready => self.on_ready_frame(c, ty, payload, eng),
        }
    }

    /// We dialled: the peer should be a slave we feed.
    fn start_feed(&mut self, c: &mut Conn, eng: &mut Engine, theirs: &Ident) -> Result<(), String> {
        self.check_generation(c, eng, theirs)?;
        if let Some(why) = eng.fenced() {
            return Err(format!(
                "this node is fenced ({why}); it feeds no one until `hotbackup rejoin`"
            ));
        }
        self.mark_heard(c, eng);
        match Feed::start(eng, &mut c.peer, theirs) {
            Ok(feed) => {
                if feed.full_sync {
                    self.stats.full_syncs += 1;
                } else {
                    self.stats.partial_syncs += 1;
                }
                if let Some(t) = c.target.and_then(|t| self.targets.get_mut(t)) {
                    if !t.refusing {
                        t.backoff = self.settings.reconnect_min;
                    }
                    t.last_error = None;
                }
                c.job = Job::Feed(Box::new(feed));
                c.was_up = true;
                let key = self.stats_key(c);
                self.book.up(&key, "slave", &Self::peer_name(c));
                self.note_link_up(c);
                eng.note_fed_slave();
                self.write_slot(c, eng, true);
                Ok(())
            }
            Err(refusal @ crate::link::feed::Refusal::SlaveUnconfirmed { fork, .. }) => {
                self.send_fork(c, fork, &refusal.to_string())
            }
            Err(refusal) => {
                crate::incident::raise(
                    crate::incident::Kind::PeerRefused,
                    format!("link {}: not feeding it: {refusal}", c.peer.label()),
                    &[("peer", c.peer.label())],
                );
                c.peer
                    .send(auth::T_REFUSE, &auth::refuse_payload(&refusal.to_string()));
                Err(refusal.to_string())
            }
        }
    }

    /// We were dialled: answer with our IDENT; follow the peer if it is our master.
    fn answer_ident(
        &mut self,
        c: &mut Conn,
        eng: &mut Engine,
        theirs: &Ident,
    ) -> Result<(), String> {
        // A slave whose history forks from its master's exports and rewinds what it holds past
        // the fork before it says where it is.
        if eng.is_slave() {
            let ours = eng.history().last().map_or(1, |g| g.generation);
            let their_gen = theirs.history.last().map_or(1, |g| g.generation);
            if their_gen >= ours {
                match eng.prepare_rejoin(&theirs.history, &c.peer.label()) {
                    Ok(Some(_)) => self.drop_feeds("this node rewound its journal"),
                    Ok(None) => {}
                    Err(e) => {
                        let why = format!("cannot rejoin: {e}");
                        crate::incident::raise(
                            crate::incident::Kind::PeerRefused,
                            format!("link {}: {why}", c.peer.label()),
                            &[("peer", c.peer.label())],
                        );
                        c.peer.send(auth::T_REFUSE, &auth::refuse_payload(&why));
                        return Err(why);
                    }
                }
            }
        }
        let mine = self.ident(eng);
        c.peer.send(msg::T_IDENT, &mine.encode());
        // Whoever dials feeds: a master, or a slave passing the stream on (cascading).
        if !eng.is_slave() {
            if let Err(why) = self.check_generation(c, eng, theirs) {
                c.peer.send(auth::T_REFUSE, &auth::refuse_payload(&why));
                return Err(why);
            }
            self.mark_heard(c, eng);
            let why = format!(
                "this node is a master (generation {}); it does not follow a {}",
                eng.generation(),
                match theirs.role {
                    Role::Master => "master",
                    Role::Slave => "slave",
                },
            );
            log::error!(
                "link {}: a {} (generation {}) dialled this master to feed it: {why}",
                c.peer.label(),
                match theirs.role {
                    Role::Master => "master",
                    Role::Slave => "slave",
                },
                theirs.history.last().map_or(0, |g| g.generation)
            );
            c.peer.send(auth::T_REFUSE, &auth::refuse_payload(&why));
            return Err(why);
        }
        // Never follow a stream from an older generation than this node's.
        let ours = eng.history().last().map_or(1, |g| g.generation);
        let their_gen = theirs.history.last().map_or(1, |g| g.generation);
        if their_gen < ours {
            let why = format!(
                "this node is at generation {ours}; it does not follow {} at the older generation {their_gen}",
                c.peer.label()
            );
            crate::incident::raise(
                crate::incident::Kind::PeerRefused,
                format!("link: {why}"),
                &[("peer", c.peer.label())],
            );
            c.peer.send(auth::T_REFUSE, &auth::refuse_payload(&why));
            return Err(why);
        }
        // A slave follows one master: a new connection from it replaces an old one (which
        // may be half-open after a network failure).
        let me = c.token;
        for o in self.conns.iter_mut().flatten() {
            if o.token == me || !matches!(o.job, Job::Follow(_)) {
                continue;
            }
            o.frozen = Some(Self::figures(o, eng.durable_lsn()));
            if let Job::Follow(f) = &mut o.job {
                f.on_close(eng);
            }
            log::info!(
                "link {}: replaced by a new connection from the master",
                o.peer.label()
            );
            // Nothing more from it is applied; it is closed at the next reap.
            o.job = Job::None;
            o.peer.closed = true;
        }
        log::info!("link {}: following this master", c.peer.label());
        let client = Self::client_addr_of(theirs, c.peer.stream.peer_addr().ok());
        self.master = Some((c.peer.label(), client.clone()));
        eng.set_master_addr(Some(client));
        if let Some(node) = c.node {
            eng.note_master_node(node, &c.peer.label());
        }
        c.job = Job::Follow(Box::default());
        c.was_up = true;
        let key = self.stats_key(c);
        self.book.up(&key, "master", &Self::peer_name(c));
        self.note_link_up(c);
        Ok(())
    }

    fn on_ready_frame(
        &mut self,
        c: &mut Conn,
        ty: u8,
        payload: &[u8],
        eng: &mut Engine,
    ) -> Result<(), String> {
        match (&c.job, ty) {
            (Job::Follow(_), msg::T_PROMOTE) => {
                self.on_promote(c, eng, payload);
                return Ok(());
            }
            (Job::Feed(_), msg::T_PROMOTED) => return self.on_promoted(c, eng, payload),
            (Job::Follow(_), msg::T_FORK) => return self.on_fork(c, eng, payload),
            (
                _,
                msg::T_VERIFY_SUMS
                | msg::T_VERIFY_NARROW
                | msg::T_VERIFY_ITEMS
                | msg::T_VERIFY_RESULT,
            ) => return self.on_verify_frame(c, ty, payload),
            _ => {}
        }
        match &mut c.job {
            Job::Follow(f) => {
                let r = f.on_frame(ty, payload, eng);
                if let Err(why) = &r
                    && f.no_room
                {
                    // The master hears why and backs off (its incident is raised once).
                    c.peer.send(auth::T_REFUSE, &auth::refuse_payload(why));
                }
                r
            }
            Job::Feed(feed) => match ty {
                msg::T_ACK => {
                    let ack = msg::Ack::decode(payload).map_err(|e| e.to_string())?;
                    if ack.received > feed.sent {
                        return Err(format!(
                            "the slave acknowledges LSN {} but only {} was sent",
                            ack.received, feed.sent
                        ));
                    }
                    feed.on_ack(ack, eng.durable_lsn());
                    if let Some(t) = c.target.and_then(|t| self.targets.get_mut(t))
                        && t.refusing
                    {
                        t.refusing = false;
                        t.backoff = self.settings.reconnect_min;
                    }
                    Ok(())
                }
                msg::T_HEARTBEAT => msg::Heartbeat::decode(payload)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                other => Err(format!("unexpected frame type {other} from a slave")),
            },
            Job::None => Err(format!("frame type {ty} before the handshake finished")),
        }
    }

    /// Persists a slave's position, at most once a second (or now if `force`).
    fn write_slot(&mut self, c: &mut Conn, eng: &mut Engine, force: bool) {
        let (Some(node), Job::Feed(feed)) = (c.node, &c.job) else {
            return;
        };
        if !force && c.last_slot_write.elapsed() < Duration::from_secs(1) {
            return;
        }
        c.last_slot_write = Instant::now();
        let slot = Slot {
            acked: feed.needs_from().saturating_sub(1),
            updated_ms: crate::txn::now_ms(),
            name: c.peer.label(),
        };
        eng.record_slot(&node, &slot);
    }

    fn close(&mut self, mut c: Conn, why: &str, eng: &mut Engine, registry: &Registry) {
        let _ = registry.deregister(&mut c.peer.stream);
        let _ = c.peer.flush();
        let key = self.stats_key(&c);
        let others_live = self
            .conns
            .iter()
            .flatten()
            .any(|o| o.token != c.token && self.stats_key(o) == key);
        self.book.closed(
            &key,
            &Self::figures(&c, eng.durable_lsn()),
            why,
            others_live,
        );
        if let Job::Follow(f) = &mut c.job {
            f.on_close(eng);
        }
        let was_up = matches!(c.job, Job::Feed(_) | Job::Follow(_));
        // A slave without room for a full sync raised disk_full (once); the master it refuses
        // raises link_down for the first refusal only.
        let no_room = matches!(&c.job, Job::Follow(f) if f.no_room);
        let target = c.target.and_then(|t| self.targets.get_mut(t));
        let refused_again = c.refused_by_peer && target.as_ref().is_some_and(|t| t.refusing);
        if let Some(t) = target
            && c.refused_by_peer
            && matches!(c.job, Job::Feed(_))
        {
            t.refusing = true;
        }
        if was_up {
            self.stats.disconnects += 1;
            if no_room || refused_again {
                log::warn!("link {} down: {why}", c.peer.label());
            } else {
                crate::incident::raise(
                    crate::incident::Kind::LinkDown,
                    format!("link {} down: {why}", c.peer.label()),
                    &[("peer", c.peer.label())],
                );
            }
            if let Some(node) = c.node {
                self.down_since
                    .entry(node)
                    .or_insert_with(|| (Instant::now(), c.peer.label()));
            }
        } else {
            log::info!("link {}: closed: {why}", c.peer.label());
        }
        let never_connected = matches!(c.peer.phase, Phase::Connecting);
        if let Some(t) = c.target.and_then(|t| self.targets.get_mut(t)) {
            t.conn = None;
            t.failures += 1;
            t.last_error = Some(why.to_string());
            t.next_try = Instant::now() + t.backoff;
            // A refused connection costs nothing: keep trying about once a second at most, so
            // that a slave that comes back is found quickly. Other failures back off fully.
            let cap = if never_connected {
                self.settings.reconnect_max.min(Duration::from_secs(1))
            } else {
                self.settings.reconnect_max
            };
            t.backoff = (t.backoff * 2).min(cap);
        }
    }

    /// After a turn: ship what became durable, acknowledge what arrived, flush.
    pub fn after_turn(&mut self, eng: &mut Engine, registry: &Registry) {
        self.drive_switchover(eng);
        self.sync_role(eng, registry);
        self.reap(eng, registry);
        let mut pump_more = false;
        for slot in 0..self.conns.len() {
            let Some(mut c) = self.conns[slot].take() else {
                continue;
            };
            let result = match &mut c.job {
                Job::Feed(feed) => {
                    let r = feed.pump(&mut c.peer, eng);
                    feed.note_lag(eng.durable_lsn());
                    r.map(|more| pump_more |= more)
                }
                Job::Follow(f) => f.ack(&mut c.peer, eng),
                Job::None => Ok(()),
            };
            if matches!(c.job, Job::Feed(_)) {
                self.write_slot(&mut c, eng, false);
            }
            match result.and_then(|()| self.flush(&mut c, eng)) {
                Ok(()) => self.conns[slot] = Some(c),
                Err(why) => self.close(c, &why, eng, registry),
            }
        }
        self.pump_more = pump_more;
    }

    /// Timers: dial what is due, heartbeats, silent peers.
    pub fn tick(&mut self, eng: &mut Engine, registry: &Registry) {
        self.drive_switchover(eng);
        self.sync_role(eng, registry);
        let now = Instant::now();
        for i in 0..self.targets.len() {
            if self.targets[i].conn.is_some() || self.targets[i].next_try > now {
                continue;
            }
            self.dial(i, registry);
        }
        for slot in 0..self.conns.len() {
            let Some(mut c) = self.conns[slot].take() else {
                continue;
            };
            if let Job::Follow(f) = &mut c.job
                && f.paused()
            {
                // Not reading while the loader makes the new copy durable is not the master's
                // silence; the heartbeats below keep the master from thinking it ours.
                let now = Instant::now();
                c.peer.last_recv = now;
                c.peer.last_frame = now;
                match f.poll_finish(eng) {
                    Ok(false) => {}
                    Ok(true) => {
                        // The frames that waited (the stream from the snapshot's LSN on).
                        if !self.backlog.contains(&slot) {
                            self.backlog.push(slot);
                        }
                    }
                    Err(why) => {
                        self.close(c, &why, eng, registry);
                        continue;
                    }
                }
            }
            let silent = c.peer.last_recv.elapsed();
            if silent > self.settings.peer_timeout {
                let why = format!(
                    "silent for {:.1}s (peer_timeout {:?})",
                    silent.as_secs_f64(),
                    self.settings.peer_timeout
                );
                self.close(c, &why, eng, registry);
                continue;
            }
            if let Some(why) = c.peer.stalled_frame(self.settings.peer_timeout) {
                self.close(c, &why, eng, registry);
                continue;
            }
            if matches!(c.peer.phase, Phase::Ready)
                && c.peer.last_send.elapsed() >= self.settings.heartbeat
            {
                let hb = msg::Heartbeat {
                    time_ms: crate::txn::now_ms(),
                    durable: eng.durable_lsn(),
                };
                c.peer.send(msg::T_HEARTBEAT, &hb.encode());
            }
            match self.flush(&mut c, eng) {
                Ok(()) => self.conns[slot] = Some(c),
                Err(why) => self.close(c, &why, eng, registry),
            }
        }
    }

    fn dial(&mut self, i: usize, registry: &Registry) {
        let now = Instant::now();
        let addr_text = self.targets[i].addr.clone();
        let resolved = addr_text.to_socket_addrs().ok().and_then(|mut a| a.next());
        let Some(addr) = resolved else {
            let why = format!("cannot resolve {addr_text}");
            self.book
                .closed(&addr_text, &ConnFigures::default(), &why, false);
            let t = &mut self.targets[i];
            t.last_error = Some(why);
            t.next_try = now + t.backoff;
            t.backoff = (t.backoff * 2).min(self.settings.reconnect_max);
            return;
        };
        self.stats.dials += 1;
        match TcpStream::connect(addr) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let peer = Peer::new(
                    stream,
                    addr_text.clone(),
                    Side::Dialer,
                    self.settings.max_frame,
                );
                if let Some(slot) = self.add(peer, Some(i), addr_text, registry) {
                    self.targets[i].conn = Some(slot);
                }
            }
            Err(e) => {
                self.book
                    .closed(&addr_text, &ConnFigures::default(), &e.to_string(), false);
                let t = &mut self.targets[i];
                t.last_error = Some(e.to_string());
                t.next_try = now + t.backoff;
                t.backoff = (t.backoff * 2).min(self.settings.reconnect_max);
            }
        }
    }

    /// The LSN up to which enough slaves have acknowledged, by the configured sync mode
    /// (u64::MAX in async mode: nothing to wait for).
    pub fn sync_bound(&self) -> Lsn {
        let pick = |a: &msg::Ack| match self.settings.sync {
            ReplicaSync::Async => Lsn::MAX,
            ReplicaSync::Received => a.received,
            ReplicaSync::Durable => a.durable,
            ReplicaSync::Applied => a.applied,
        };
        if self.settings.sync == ReplicaSync::Async {
            return Lsn::MAX;
        }
        let mut acks: Vec<Lsn> = self
            .conns
            .iter()
            .flatten()
            .filter_map(|c| match &c.job {
                Job::Feed(f) => Some(pick(&f.ack)),
                _ => None,
            })
            .collect();
        acks.sort_unstable_by(|a, b| b.cmp(a));
        let k = self.settings.min_sync_slaves.max(1);
        acks.get(k - 1).copied().unwrap_or(0)
    }

    /// The oldest LSN some slave may still need from the journal (None: no constraint),
    /// dropping slots that would make the journal keep more than `max_retained_bytes`.
    pub fn retention_floor(&mut self, eng: &mut Engine) -> Option<Lsn> {
        let mut needs: Vec<([u8; 16], Lsn, String)> = Vec::new();
        let mut live = std::collections::HashSet::new();
        for c in self.conns.iter().flatten() {
            if let (Some(node), Job::Feed(f)) = (c.node, &c.job) {
                needs.push((node, f.needs_from(), c.peer.label()));
                live.insert(node);
            }
        }
        for (node, slot) in eng.slots() {
            let Ok(node) = <[u8; 16]>::try_from(node.as_slice()) else {
                continue;
            };
            if !live.contains(&node) {
                needs.push((node, slot.acked + 1, slot.name));
            }
        }
        loop {
            let oldest = needs.iter().min_by_key(|n| n.1)?;
            let retained = eng.journal_bytes_from(oldest.1);
            if retained <= self.settings.max_retained_bytes {
                return Some(oldest.1);
            }
            let (node, lsn, name) = oldest.clone();
            crate::incident::raise(
                crate::incident::Kind::SlotDropped,
                format!(
                    "slot of slave {name} ({}) dropped: it needs the journal from LSN {lsn}, {retained} bytes, over max_retained_bytes ({}); it will need a full sync",
                    hex(&node),
                    self.settings.max_retained_bytes
                ),
                &[("peer", name.clone()), ("lsn", lsn.to_string())],
            );
            self.stats.slots_dropped += 1;
            eng.drop_slot(&node);
            // A connected slave that far behind is cut off too: it resyncs on reconnect.
            for c in self.conns.iter_mut().flatten() {
                if c.node == Some(node) {
                    c.peer.closed = true;
                }
            }
            needs.retain(|n| n.0 != node);
        }
    }

    /// Closes connections marked closed (replaced by a newer one, or their slot dropped).
    pub fn reap(&mut self, eng: &mut Engine, registry: &Registry) {
        for slot in 0..self.conns.len() {
            if matches!(&self.conns[slot], Some(c) if c.peer.closed) {
                if let Some(c) = self.conns[slot].take() {
                    self.close(c, "closed by this node", eng, registry);
                }
            }
        }
    }

    /// Every connection, for INFO and status.
    pub fn status(&self, eng: &Engine) -> Vec<PeerStatus> {
        let durable = eng.durable_lsn();
        let mut out = Vec::new();
        for c in self.conns.iter().flatten() {
            let p = &c.peer;
            let mut s = PeerStatus {
                addr: p.addr.clone(),
                name: p.who.as_ref().map(|w| w.name.clone()).unwrap_or_default(),
                client_addr: c.client_addr.clone(),
                sentinel_addr: c.sentinel_addr.clone(),
                role: "-",
                state: match p.phase {
                    Phase::Connecting => "connecting".into(),
                    Phase::DialerAuth(_) | Phase::ListenerHello | Phase::ListenerProof(_) => {
                        "authenticating".into()
                    }
                    Phase::Ident => "handshake".into(),
                    Phase::Ready => String::new(),
                },
                sent: 0,
                acked_received: 0,
                acked_durable: 0,
                acked_applied: 0,
                lag_entries: 0,
                lag_bytes: 0,
                lag_ms: 0,
                last_ack_ms: 0,
                frames_in: p.frames_in,
                frames_out: p.frames_out,
                bytes_in: p.bytes_in,
                bytes_out: p.bytes_out,
                connected_s: p.connected_at.elapsed().as_secs(),
                full_syncs: 0,
                partial_syncs: 0,
                sync_summary: String::new(),
                progress: None,
            };
            match &c.job {
                Job::Feed(f) => {
                    s.role = "slave";
                    s.state = f.state_name().into();
                    s.sent = f.sent;
                    s.acked_received = f.ack.received;
                    s.acked_durable = f.ack.durable;
                    s.acked_applied = f.ack.applied;
                    s.lag_entries = durable.saturating_sub(f.ack.applied);
                    s.lag_bytes = f.lag_bytes();
                    s.lag_ms = f.behind_since.map_or(0, |t| t.elapsed().as_millis() as u64);
                    s.last_ack_ms = f.ack_at.elapsed().as_millis() as u64;
                    s.full_syncs = f.full_sync as u64;
                    s.partial_syncs = (!f.full_sync) as u64;
                }
                Job::Follow(f) => {
                    s.role = "master";
                    s.progress = f.progress(eng);
                    s.state = match &s.progress {
                        Some(p) => p.state_text(),
                        None => f.state_name().into(),
                    };
                    s.acked_received = f.received;
                    // How far this slave is behind: records its master has made durable and
                    // it has not received yet, and the end-to-end lag of the last canary.
                    s.lag_entries = f.master_durable.saturating_sub(f.received);
                    s.lag_ms = self.canary_status().last.map_or(0, |l| l.lag_ms);
                    s.full_syncs = f.full_syncs;
                    s.partial_syncs = f.partial_syncs;
                    s.sync_summary = f.sync_summary.clone();
                }
                Job::None => {}
            }
            out.push(s);
        }
        for t in &self.targets {
            if t.conn.is_none() {
                out.push(PeerStatus {
                    addr: t.addr.clone(),
                    name: String::new(),
                    client_addr: String::new(),
                    sentinel_addr: String::new(),
                    role: "slave",
                    state: format!(
                        "down{}",
                        t.last_error
                            .as_ref()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    ),
                    sent: 0,
                    acked_received: 0,
                    acked_durable: 0,
                    acked_applied: 0,
                    lag_entries: 0,
                    lag_bytes: 0,
                    lag_ms: 0,
                    last_ack_ms: 0,
                    frames_in: 0,
                    frames_out: 0,
                    bytes_in: 0,
                    bytes_out: 0,
                    connected_s: 0,
                    full_syncs: 0,
                    partial_syncs: 0,
                    sync_summary: String::new(),
                    progress: None,
                });
            }
        }
        out
    }

    /// The peer's instance name, once it authenticated ("" before).
    fn peer_name(c: &Conn) -> String {
        c.peer
            .who
            .as_ref()
            .map(|w| w.name.clone())
            .unwrap_or_default()
    }

    /// The link a connection counts for: its configured address; for a peer that matches no
    /// configured address uniquely, its name (once known) and IP.
    fn stats_key(&self, c: &Conn) -> String {
        if !c.stats_key.is_empty() {
            return c.stats_key.clone();
        }
        let ip = c
            .peer
            .stream
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|_| c.peer.addr.clone());
        match c.peer.who.as_ref().map(|w| w.name.as_str()) {
            Some(name) if !name.is_empty() => format!("{name} ({ip})"),
            _ => ip,
        }
    }

    /// What one connection adds to its link's statistics now.
    fn figures(c: &Conn, durable: Lsn) -> ConnFigures {
        let p = &c.peer;
        let mut f = ConnFigures {
            state: Some(match p.phase {
                Phase::Connecting => LinkState::Connecting,
                Phase::DialerAuth(_) | Phase::ListenerHello | Phase::ListenerProof(_) => {
                    LinkState::Authenticating
                }
                Phase::Ident | Phase::Ready => LinkState::Handshake,
            }),
            role: "-",
            name: Self::peer_name(c),
            up: c.was_up,
            frames_in: p.frames_in,
            frames_out: p.frames_out,
            bytes_in: p.bytes_in,
            bytes_out: p.bytes_out,
            connected_ms: p.connected_at.elapsed().as_millis() as u64,
            ..ConnFigures::default()
        };
        match &c.job {
            Job::Feed(feed) => {
                f.role = "slave";
                f.state = Some(LinkState::from_job(feed.state_name()));
                f.full_syncs = feed.full_sync as u64;
                f.partial_syncs = (!feed.full_sync) as u64;
                f.ack = feed.ack;
                f.sent = feed.sent;
                f.lag_bytes = feed.lag_bytes();
                f.lag_ms = feed
                    .behind_since
                    .map_or(0, |t| t.elapsed().as_millis() as u64);
                f.last_ack_ms = feed.ack_at.elapsed().as_millis() as u64;
                let streaming = feed.state_name() == "streaming";
                f.queue_depth = if streaming {
                    durable.saturating_sub(feed.ack.received)
                } else {
                    durable.saturating_sub(feed.sent)
                };
                f.sending = if streaming && durable > feed.ack.received {
                    feed.ack.received + 1
                } else {
                    0
                };
            }
            Job::Follow(fo) => {
                f.role = "master";
                f.state = Some(LinkState::from_job(fo.state_name()));
                f.full_syncs = fo.full_syncs;
                f.partial_syncs = fo.partial_syncs;
                f.ack = fo.acked();
                f.sent = 0;
                f.queue_depth = fo.master_durable.saturating_sub(fo.received);
                f.last_ack_ms = p.last_recv.elapsed().as_millis() as u64;
            }
            Job::None => {
                if let Some(fr) = &c.frozen {
                    f.role = fr.role;
                    f.full_syncs = fr.full_syncs;
                    f.partial_syncs = fr.partial_syncs;
                    f.ack = fr.ack;
                    f.sent = fr.sent;
                }
            }
        }
        f
    }

    /// Each link's statistics since the daemon started (see [`stats`]): configured peers and
    /// peers that connected, with the live connections' figures added.
    pub fn link_stats(&self, eng: &Engine) -> Vec<LinkStat> {
        let durable = eng.durable_lsn();
        let live: Vec<(String, ConnFigures)> = self
            .conns
            .iter()
            .flatten()
            .map(|c| (self.stats_key(c), Self::figures(c, durable)))
            .collect();
        let dialled: Vec<String> = self.targets.iter().map(|t| t.addr.clone()).collect();
        let mut out = self.book.report(&live, &dialled, durable);
        for s in &mut out {
            if s.state == Some(LinkState::Down) && s.dials {
                if let Some(t) = self.targets.iter().find(|t| t.addr == s.peer) {
                    if let Some(e) = &t.last_error {
                        s.last_error = e.clone();
                    }
                }
            }
        }
        out
    }

    /// Whether this slave is connected to its master and streaming.
    pub fn master_link_up(&self) -> bool {
        self.conns
            .iter()
            .flatten()
            .any(|c| matches!(&c.job, Job::Follow(f) if f.state_name() == "streaming"))
    }

    /// Closes everything (shutdown).
    pub fn shutdown(&mut self, eng: &mut Engine, registry: &Registry) {
        for slot in 0..self.conns.len() {
            if let Some(c) = self.conns[slot].take() {
                self.close(c, "shutting down", eng, registry);
            }
        }
        if let Some(mut l) = self.listener.take() {
            let _ = registry.deregister(&mut l);
        }
    }
}
