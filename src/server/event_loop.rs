//! The event loop: one mio poll over the client listeners, client connections and signals.
//!
//! Each turn reads what clients sent, runs every complete request in arrival order and ends the
//! turn in the engine (one journal write for all writes of the turn). The fdatasync runs on the
//! journal's syncer thread while the loop serves the next turn; a turn's replies are sent once
//! everything they could have seen is durable (the syncer wakes the loop). Replies of a turn
//! whose writes failed are rewritten to errors before anyone sees them. A connection that sends a flood of pipelined requests is served in slices
//! (a budget per turn), and one that does not read its replies stops being served once its
//! output backs up, so neither delays the others beyond the group commit. After each turn the
//! loop asks whether the master this node reports moved, and publishes `+switch-master` to the
//! subscribed connections (see `commands/sentinel.rs`).

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use super::ServerError;
use super::commands::keys::ScanCursors;
use super::commands::sentinel::{MasterWatch, Switch};
use super::commands::server::{ClientDirectory, LoopStats};
use super::commands::{self, Class, Ctx, ServerInfo};
use super::conn::ConnState;
use super::engine::{Engine, TurnOutcome};
use super::settings::Settings;
use crate::config::Config;
use crate::journal::Lsn;
use crate::resp::{self, ParseError, encode};

const TCP: Token = Token(0);
const UNIX: Token = Token(1);
const SIGNALS: Token = Token(2);
const WAKER: Token = Token(3);
const LINK_LISTENER: Token = Token(4);
const SENTINEL_TCP: Token = Token(5);
const METRICS_LISTENER: Token = Token(6);
/// Link connections have tokens from here on (client connections stay below).
const LINK_BASE: usize = 1 << 30;
/// Metrics scrapes have tokens from here to `METRICS_BASE + metrics::MAX_CONNS` (client
/// connections stay below: RLIMIT_NOFILE keeps them far fewer).
const METRICS_BASE: usize = 1 << 29;
const FIRST_CONN: usize = 16;

/// Requests run for one connection in one turn before others get their go.
const TURN_BUDGET: usize = 1024;
/// Stop running a connection's requests while this much of its output is unsent.
const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// Stop reading a connection in one turn once this much unparsed input is buffered.
const READ_SLICE: usize = 4 << 20;
/// A batch kept open while a sync runs is written anyway once it holds this many bytes.
const DEFER_LIMIT: usize = 4 << 20;
/// How long a graceful stop waits for in-flight requests and unsent replies.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }
}

struct Conn {
    stream: Stream,
    inbuf: Vec<u8>,
    in_pos: usize,
    out: Vec<u8>,
    out_pos: usize,
    /// Bytes of `out` that may be sent (the rest waits for a journal sync).
    flushable: usize,
    /// Bytes dropped from the front of `out` so far (for absolute positions).
    out_base: u64,
    state: ConnState,
    /// The socket may hold unread bytes.
    readable: bool,
    /// The peer closed its side.
    eof: bool,
    /// Broken: close without flushing.
    dead: bool,
    /// Already in this turn's work list.
    queued: bool,
    /// LSN of the last record this connection's commands wrote in the current turn: its
    /// replies wait for the slaves' acknowledgement of it in a sync mode.
    wrote: Lsn,
    /// Replies held, oldest first.
    held: std::collections::VecDeque<Held>,
}

impl Conn {
    fn unsent(&self) -> usize {
        self.out.len() - self.out_pos
    }
    fn unparsed(&self) -> usize {
        self.inbuf.len() - self.in_pos
    }
}

/// A reply written while the engine's batch is open (its writes may still fail): absolute
/// positions in the client's output.
struct Entry {
    slot: usize,
    id: u64,
    start: u64,
    end: u64,
    class: Class,
}

/// Replies held until their turn is durable (and, for writes in a sync mode, replicated).
#[derive(Clone, Copy)]
struct Held {
    /// Everything up to here must be durable on this node.
    visible: Lsn,
    /// Records up to here must be acknowledged by enough slaves (0: none written).
    wrote: Lsn,
    /// End of the replies, as an absolute position in the client's output.
    end: u64,
    at: Instant,
}

struct Directory<'a> {
    conns: &'a [Option<Conn>],
}

impl ClientDirectory for Directory<'_> {
    fn count(&self) -> usize {
        self.conns.iter().flatten().count()
    }
    fn lines(&self) -> Vec<(u64, String)> {
        self.conns
            .iter()
            .flatten()
            .map(|c| (c.state.id, c.state.info_line(c.unparsed(), c.unsent())))
            .collect()
    }
}

pub struct Server {
    poll: Poll,
    tcp: Option<TcpListener>,
    /// The Sentinel port (see commands/sentinel.rs).
    sentinel_tcp: Option<TcpListener>,
    unix: Option<(UnixListener, PathBuf)>,
    signals: Signals,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    nconns: usize,
    eng: Engine,
    settings: Settings,
    stats: LoopStats,
    cursors: RefCell<ScanCursors>,
    next_id: u64,
    work: Vec<usize>,
    carry: Vec<usize>,
    log: Vec<Entry>,
    scratch: Vec<u8>,
    limits: resp::Limits,
    stopping: Option<Instant>,
    exit_error: Option<String>,
    /// Replies waiting for a journal sync: (LSN that must be durable, slot, client id, end of
    /// the replies as an absolute position in the client's output).
    /// Connections that have held replies.
    holding: Vec<usize>,
    /// Connections whose next request is a write waiting for a switchover pause to end.
    paused: Vec<usize>,
    link: crate::link::manager::Link,
    /// The Prometheus endpoint (`[metrics] listen`).
    metrics: Option<super::metrics::Endpoint>,
    syncer: Option<crate::journal::Syncer>,
    _waker: std::sync::Arc<mio::Waker>,
    last_housekeeping: Instant,
    last_watchdog: Instant,
    watchdog: Option<Duration>,
    /// Test-only: freezes the loop while a file exists (the watchdog system test).
    freeze: super::status_line::FreezeTrigger,
    /// The master this node reports, for `+switch-master` (commands/sentinel.rs).
    master_watch: MasterWatch,
}

fn bind_unix(path: &Path, mode: u32) -> Result<UnixListener, ServerError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ServerError::Bind {
                what: path.display().to_string(),
                source: io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a socket"),
            });
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServerError::Bind {
                what: path.display().to_string(),
                source: io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another server is listening on this socket",
                ),
            });
        }
        // A stale socket left by a process that died: replace it.
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path).map_err(|source| ServerError::Bind {
        what: path.display().to_string(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        ServerError::Bind {
            what: path.display().to_string(),
            source,
        }
    })?;
    Ok(l)
}

impl Server {
    /// Binds the listeners. The engine is already open (recovery done).
    pub fn new(mut eng: Engine, settings: Settings) -> Result<Server, ServerError> {
        let poll = Poll::new().map_err(ServerError::Poll)?;
        let mut tcp = None;
        let mut port = 0;
        if let Some(addr) = settings.listen {
            let mut l = TcpListener::bind(addr).map_err(|source| ServerError::Bind {
                what: addr.to_string(),
                source,
            })?;
            port = l.local_addr().map(|a| a.port()).unwrap_or(addr.port());
            poll.registry()
                .register(&mut l, TCP, Interest::READABLE)
                .map_err(ServerError::Poll)?;
            tcp = Some(l);
        }
        let mut sentinel_tcp = None;
        if let Some(addr) = settings.sentinel_listen {
            let mut l = TcpListener::bind(addr).map_err(|source| ServerError::Bind {
                what: format!("the sentinel port {addr}"),
                source,
            })?;
            poll.registry()
                .register(&mut l, SENTINEL_TCP, Interest::READABLE)
                .map_err(ServerError::Poll)?;
            sentinel_tcp = Some(l);
        }
        let mut unix = None;
        if let Some(path) = &settings.unix_socket {
            let mut l = bind_unix(path, settings.unix_socket_mode)?;
            poll.registry()
                .register(&mut l, UNIX, Interest::READABLE)
                .map_err(ServerError::Poll)?;
            unix = Some((l, path.clone()));
        }
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(ServerError::Poll)?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(ServerError::Poll)?;
        let limits = settings.limits();
        let inherited = match crate::systemd::listen_fds() {
            Ok(fds) => fds
                .into_iter()
                .find(|(name, _)| name == "link" || name == "unknown" || name.is_empty())
                .map(|(_, fd)| {
                    use std::os::fd::FromRawFd;
                    // SAFETY: systemd passed this descriptor to this process (LISTEN_PID was
                    // checked by listen_fds) and nothing else in the process owns it.
                    unsafe { std::net::TcpListener::from_raw_fd(fd) }
                }),
            Err(e) => {
                log::warn!("ignoring the sockets systemd passed: {e}");
                None
            }
        };
        let mut link = crate::link::manager::Link::new(
            settings.link.clone(),
            eng.node_id(),
            poll.registry(),
            LINK_LISTENER,
            LINK_BASE,
            inherited,
        )
        .map_err(|source| ServerError::Bind {
            what: format!(
                "the link port {}",
                settings
                    .link
                    .listen
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "(from systemd)".into())
            ),
            source,
        })?;
        if let Some(a) = tcp.as_ref().and_then(|t| t.local_addr().ok()) {
            link.set_client_addr(a.to_string());
        }
        if let Some(a) = sentinel_tcp.as_ref().and_then(|t| t.local_addr().ok()) {
            link.set_sentinel_addr(a.to_string());
        }
        link.start_peer_check(&mut eng);
        let metrics = match settings.metrics_listen {
            Some(addr) => Some(
                super::metrics::Endpoint::bind(
                    addr,
                    poll.registry(),
                    METRICS_LISTENER,
                    METRICS_BASE,
                )
                .map_err(|source| ServerError::Bind {
                    what: format!("the metrics port {addr}"),
                    source,
                })?,
            ),
            None => None,
        };
        let waker = std::sync::Arc::new(
            mio::Waker::new(poll.registry(), WAKER).map_err(ServerError::Poll)?,
        );
        let syncer = if settings.sync == crate::journal::SyncMode::Fsync {
            let w = waker.clone();
            match crate::journal::Syncer::start(move || {
                let _ = w.wake();
            }) {
                Ok(s) => Some(s),
                Err(e) => {
                    log::warn!("cannot start the journal syncer thread ({e}); syncing in the loop");
                    None
                }
            }
        } else {
            None
        };
        {
            // A full sync's loader wakes the loop when the new copy is durable.
            let w = waker.clone();
            eng.set_wake(std::sync::Arc::new(move || {
                let _ = w.wake();
            }));
        }
        let master_watch = MasterWatch::new(&eng);
        Ok(Server {
            master_watch,
            poll,
            tcp,
            sentinel_tcp,
            unix,
            signals,
            conns: Vec::new(),
            free: Vec::new(),
            nconns: 0,
            eng,
            stats: LoopStats::new(port),
            settings,
            cursors: RefCell::new(ScanCursors::default()),
            next_id: 1,
            work: Vec::new(),
            carry: Vec::new(),
            log: Vec::new(),
            scratch: vec![0u8; 64 * 1024],
            limits,
            stopping: None,
            exit_error: None,
            holding: Vec::new(),
            paused: Vec::new(),
            link,
            metrics,
            syncer,
            _waker: waker,
            last_housekeeping: Instant::now(),
            last_watchdog: Instant::now(),
            watchdog: crate::systemd::watchdog_interval(),
            freeze: super::status_line::FreezeTrigger::from_env(),
        })
    }

    /// The TCP address clients connect to (useful when the config asked for port 0).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Runs until SIGTERM/SIGINT (Ok) or a fatal error.
    pub fn run(mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(1024);
        crate::systemd::notify_ready().ok();
        self.update_status();
        loop {
            let timeout = if self.carry.is_empty() && !self.link.has_backlog() {
                Duration::from_millis(100)
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(ServerError::Poll(e));
            }
            self.work.clear();
            for slot in std::mem::take(&mut self.carry) {
                self.enqueue(slot);
            }
            // Link frames a connection's budget left over (a full sync's chunks).
            self.link
                .service_backlog(&mut self.eng, self.poll.registry());
            for ev in events.iter() {
                match ev.token() {
                    TCP => self.accept_tcp(false),
                    SENTINEL_TCP => self.accept_tcp(true),
                    UNIX => self.accept_unix(),
                    SIGNALS => self.handle_signals(),
                    WAKER => {}
                    t if self.link.owns(t) => {
                        self.link.on_event(t, &mut self.eng, self.poll.registry());
                    }
                    t if self.metrics.as_ref().is_some_and(|m| m.owns(t)) => {
                        if let Some(m) = self.metrics.as_mut() {
                            let src = super::metrics::Sources {
                                eng: &self.eng,
                                link: &self.link,
                                stats: &self.stats,
                                instance: &self.settings.instance,
                                clients: self.nconns,
                            };
                            m.on_event(t, self.poll.registry(), &src);
                        }
                    }
                    Token(t) => {
                        let slot = t - FIRST_CONN;
                        if let Some(Some(c)) = self.conns.get_mut(slot) {
                            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                                c.readable = true;
                            }
                            self.enqueue(slot);
                        }
                    }
                }
            }
            self.take_syncs();
            self.turn();
            self.take_syncs();
            self.link.after_turn(&mut self.eng, self.poll.registry());
            if !self.paused.is_empty() && !self.eng.writes_wait() {
                self.carry.append(&mut self.paused);
            }
            self.housekeeping();
            if let Some(switch) = self.master_watch.observe(&self.eng) {
                self.publish_switch(&switch);
            }
            if let Some(since) = self.stopping {
                let idle = self
                    .conns
                    .iter()
                    .flatten()
                    .all(|c| c.unsent() == 0 && !Self::has_request(c, &self.limits));
                if idle || since.elapsed() >= DRAIN_TIMEOUT || self.exit_error.is_some() {
                    break;
                }
            }
        }
        self.shutdown()
    }

    /// Publishes `+switch-master` to every connection subscribed to it (by channel or
    /// pattern), each with the addresses as that connection would be told them.
    fn publish_switch(&mut self, switch: &Switch) {
        const CHANNEL: &[u8] = b"+switch-master";
        let configured = self.link.settings().client_addr.clone();
        let now = Instant::now();
        let mut told = Vec::new();
        for (slot, c) in self.conns.iter_mut().enumerate() {
            let Some(c) = c else { continue };
            let Some(subs) = &c.state.subs else { continue };
            let msg = switch.message(&self.settings.instance, &configured, &c.state.laddr);
            if !subs.deliver(&mut c.out, c.state.proto, CHANNEL, msg.as_bytes()) {
                continue;
            }
            // A message goes after the replies already written; those still held (waiting
            // for a sync) keep it back with them.
            if c.held.is_empty() {
                c.flushable = c.out.len();
            } else {
                c.held.push_back(Held {
                    visible: 0,
                    wrote: 0,
                    end: c.out_base + c.out.len() as u64,
                    at: now,
                });
            }
            told.push(slot);
        }
        log::info!(
            "+switch-master {}: told {} subscriber(s)",
            switch.message(&self.settings.instance, &configured, ""),
            told.len(),
        );
        for slot in told {
            self.flush(slot);
        }
    }

    /// Whether a request would write (for the switchover pause): a write command outside
    /// MULTI, or EXEC.
    fn is_write(args: &[Vec<u8>], st: &crate::server::conn::ConnState) -> bool {
        let Some(name) = args.first() else {
            return false;
        };
        if name.eq_ignore_ascii_case(b"exec") {
            return st.multi.is_some();
        }
        st.multi.is_none()
            && commands::lookup(name).is_some_and(|s| s.flags & commands::flags::WRITE != 0)
    }

    fn has_request(c: &Conn, limits: &resp::Limits) -> bool {
        c.unparsed() > 0
            && !matches!(
                resp::parse_request(&c.inbuf[c.in_pos..], limits),
                Err(ParseError::Incomplete)
            )
    }

    fn enqueue(&mut self, slot: usize) {
        if let Some(Some(c)) = self.conns.get_mut(slot) {
            if !c.queued {
                c.queued = true;
                self.work.push(slot);
            }
        }
    }

    /// One turn: run requests, group commit, send replies.
    fn turn(&mut self) {
        let work = std::mem::take(&mut self.work);
        for &slot in &work {
            self.serve(slot);
        }
        // While a sync is in flight, the writes of this turn could not be synced before it
        // ends anyway: keep the batch open and let it grow until the sync is back, so that the
        // next group commit takes them all at once (fewer, larger commits; same latency).
        let defer = self.eng.turn_has_writes()
            && self.eng.sync_in_flight()
            && self.stopping.is_none()
            && self.eng.pending_bytes() < DEFER_LIMIT;
        if !defer {
            self.end_turn();
        }
        // A slave's readers need not wait for its fsync: what they see is its master's (a
        // master's crash may take back records not yet durable there, never acknowledged ones).
        let durable = self.eng.durable_lsn();
        let visible = if self.eng.is_slave() {
            durable
        } else {
            self.eng.visible_lsn()
        };
        let bound = self.sync_bound();
        let now = Instant::now();
        for &slot in &work {
            if let Some(Some(c)) = self.conns.get_mut(slot) {
                let wrote = std::mem::take(&mut c.wrote);
                if visible <= durable && wrote <= bound && c.held.is_empty() {
                    c.flushable = c.out.len();
                } else if c.flushable < c.out.len() {
                    if c.held.is_empty() {
                        self.holding.push(slot);
                    }
                    c.held.push_back(Held {
                        visible,
                        wrote,
                        end: c.out_base + c.out.len() as u64,
                        at: now,
                    });
                }
            }
            self.flush(slot);
        }
        self.work = work;
    }

    /// Ends the engine's turn: one journal write for the batch, the sync handed to the syncer.
    fn end_turn(&mut self) {
        match self.eng.end_turn() {
            TurnOutcome::ReadOnly | TurnOutcome::Committed(_) => {}
            TurnOutcome::Failed { message, fatal } => {
                self.void_replies(&message);
                if fatal {
                    log::error!(
                        "fatal: {message}; stopping so that a restart recovers from the journal"
                    );
                    self.exit_error = Some(message);
                    self.begin_stop();
                }
            }
        }
        self.log.clear();
        match &self.syncer {
            Some(s) => {
                if let Some(req) = self.eng.sync_request() {
                    s.request(req);
                }
            }
            None => self.eng.sync_now(),
        }
    }

    /// Takes the syncer's results and sends the replies they release.
    fn take_syncs(&mut self) {
        if let Some(s) = &self.syncer {
            for o in s.results() {
                self.eng.on_sync(o);
            }
        }
        if let Some(f) = self.eng.fatal() {
            if self.exit_error.is_none() {
                log::error!("fatal: {f}; stopping so that a restart recovers from the journal");
                self.exit_error = Some(f.to_string());
                self.begin_stop();
            }
            return;
        }
        if !self.eng.sync_in_flight() && self.eng.turn_has_writes() {
            // A batch was kept open while the last sync ran: its turn to be committed.
            self.end_turn();
        }
        // Not a writable master any more: what is held and not yet satisfied is dropped below.
        let demoted = self.eng.is_slave() || self.eng.fenced().is_some();
        let durable = self.eng.durable_lsn();
        let bound = self.sync_bound();
        let timeout = self.link.settings().sync_timeout;
        let mut timed_out = false;
        let mut ready = Vec::new();
        let holding = std::mem::take(&mut self.holding);
        for slot in holding {
            let Some(Some(c)) = self.conns.get_mut(slot) else {
                continue;
            };
            while let Some(&h) = c.held.front() {
                if h.visible > durable {
                    break;
                }
                if h.wrote > bound {
                    // Durable here, not yet acknowledged by enough slaves.
                    if demoted || h.at.elapsed() < timeout {
                        break;
                    }
                    timed_out = true;
                }
                c.held.pop_front();
                let upto = (h.end.saturating_sub(c.out_base)) as usize;
                c.flushable = c.flushable.max(upto.min(c.out.len()));
                if ready.last() != Some(&slot) {
                    ready.push(slot);
                }
            }
            if !c.held.is_empty() {
                self.holding.push(slot);
            }
        }
        if timed_out {
            self.sync_timed_out();
        }
        for slot in ready {
            self.flush(slot);
        }
        if demoted && !self.holding.is_empty() {
            self.drop_held();
        }
        if self.link.refusing_since.is_some() && self.link.sync_bound() >= durable {
            crate::incident::raise(
                crate::incident::Kind::SyncRecovered,
                "sync mode restored: enough slaves acknowledge again",
                &[],
            );
            self.link.refusing_since = None;
            self.eng.set_no_replicas(false);
        }
    }

    /// This node stopped being a writable master (fenced, or a slave now) while replies
    /// waited for durability or for slaves: their writes are in doubt (a rejoin may export and
    /// rewind them, and the LSNs they waited for be reused by the new master's records), so
    /// they must never be acknowledged. Their clients are disconnected, which a client takes
    /// as "outcome unknown", the truth.
    fn drop_held(&mut self) {
        let holding = std::mem::take(&mut self.holding);
        for slot in holding {
            let held = match self.conns.get(slot) {
                Some(Some(c)) if !c.held.is_empty() => c.held.len(),
                _ => continue,
            };
            if let Some(Some(c)) = self.conns.get(slot) {
                log::warn!(
                    "client id={} addr={}: {held} repl(ies) waiting for durability or slaves are in doubt now that this node is {}; disconnected without an answer",
                    c.state.id,
                    c.state.addr,
                    if self.eng.is_slave() {
                        "a slave"
                    } else {
                        "fenced"
                    }
                );
            }
            self.close(slot);
        }
    }

    /// Up to which LSN writes count as replicated enough to be acknowledged. After a sync
    /// timeout under the `async` policy, nothing is waited for until the slaves catch up.
    fn sync_bound(&self) -> Lsn {
        if self.link.refusing_since.is_some() && !self.link.settings().refuse_on_timeout {
            return Lsn::MAX;
        }
        self.link.sync_bound()
    }

    /// Writes waited longer than `sync_timeout` for the slaves: the policy applies.
    fn sync_timed_out(&mut self) {
        self.link.stats.sync_timeouts += 1;
        if self.link.refusing_since.is_some() {
            return;
        }
        let settings = self.link.settings().clone();
        crate::incident::raise(
            crate::incident::Kind::SyncTimeout,
            format!(
                "sync timeout: fewer than {} slave(s) acknowledged within {:?} (sync = {:?}); {}",
                settings.min_sync_slaves,
                settings.sync_timeout,
                settings.sync,
                if settings.refuse_on_timeout {
                    "the writes held are acknowledged (they are durable here) and new writes are refused until slaves catch up"
                } else {
                    "acknowledging in async mode until slaves catch up"
                }
            ),
            &[],
        );
        self.link.refusing_since = Some(Instant::now());
        if settings.refuse_on_timeout {
            self.eng.set_no_replicas(true);
        }
    }

    /// Reads from a connection and runs its complete requests.
    fn serve(&mut self, slot: usize) {
        let Some(mut c) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        c.queued = false;
        if c.readable && !c.dead && !c.eof {
            self.read_some(&mut c);
        }
        if !c.dead {
            self.run_requests(slot, &mut c);
        }
        self.conns[slot] = Some(c);
    }

    fn read_some(&mut self, c: &mut Conn) {
        loop {
            if c.unparsed() >= READ_SLICE && Self::has_request(c, &self.limits) {
                // Enough to chew on; the rest next turn.
                return;
            }
            match c.stream.read(&mut self.scratch) {
                Ok(0) => {
                    c.eof = true;
                    c.readable = false;
                    return;
                }
                Ok(n) => {
                    if c.in_pos > 0 && c.in_pos == c.inbuf.len() {
                        c.inbuf.clear();
                        c.in_pos = 0;
                    }
                    c.inbuf.extend_from_slice(&self.scratch[..n]);
                    if c.unparsed() > self.settings.max_request_len {
                        log::warn!(
                            "closing client id={} addr={}: request larger than max_request_len ({} bytes)",
                            c.state.id,
                            c.state.addr,
                            self.settings.max_request_len
                        );
                        encode::error(
                            &mut c.out,
                            "ERR Protocol error: request exceeds max_request_len",
                        );
                        c.state.closing = true;
                        c.readable = false;
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.readable = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    c.dead = true;
                    return;
                }
            }
        }
    }

    fn run_requests(&mut self, slot: usize, c: &mut Conn) {
        let mut budget = TURN_BUDGET;
        while !c.state.closing {
            if c.unsent() >= OUTPUT_HIGH_WATER {
                // Backpressure: resumes when the client reads its replies (flush()).
                return;
            }
            if budget == 0 {
                self.carry.push(slot);
                return;
            }
            let (args, used) = match resp::parse_request(&c.inbuf[c.in_pos..], &self.limits) {
                Ok(x) => x,
                Err(ParseError::Incomplete) => break,
                Err(ParseError::Protocol(msg)) => {
                    log::debug!("client id={} protocol error: {msg}", c.state.id);
                    encode::error(&mut c.out, &format!("ERR {msg}"));
                    c.state.closing = true;
                    break;
                }
            };
            if self.eng.writes_wait() && Self::is_write(&args, &c.state) {
                // A switchover pauses new writes: this one (and what follows it on this
                // connection) runs when the pause ends.
                if !self.paused.contains(&slot) {
                    self.paused.push(slot);
                }
                return;
            }
            c.in_pos += used;
            if args.is_empty() {
                continue;
            }
            budget -= 1;
            self.stats.commands_processed += 1;
            c.state.last_active = Instant::now();
            let start = c.out_base + c.out.len() as u64;
            let lsn_before = self.eng.visible_lsn();
            // What an admin command writes (a promotion's record) waits to be durable here,
            // not for slaves: a promoted node has none yet.
            let admin =
                commands::lookup(&args[0]).is_some_and(|s| s.flags & commands::flags::ADMIN != 0);
            let class = {
                let dir = Directory { conns: &self.conns };
                let info = ServerInfo {
                    settings: &self.settings,
                    clients: &dir,
                    stats: &self.stats,
                    cursors: &self.cursors,
                    link: &self.link,
                };
                let mut ctx = Ctx {
                    eng: &mut self.eng,
                    conn: &mut c.state,
                    out: &mut c.out,
                    srv: &info,
                };
                commands::execute(&mut ctx, args)
            };
            if let Some(action) = c.state.link_action.take() {
                match action {
                    crate::server::conn::LinkAction::Switchover => {
                        match self.link.start_switchover(&mut self.eng) {
                            Ok(to) => {
                                encode::simple(&mut c.out, &format!("OK handing over to {to}"))
                            }
                            Err(e) => encode::error(&mut c.out, &format!("ERR {e}")),
                        }
                    }
                    crate::server::conn::LinkAction::Verify => {
                        match self.link.request_verify(&self.eng) {
                            Ok(id) => encode::simple(&mut c.out, &format!("OK {id}")),
                            Err(e) => encode::error(&mut c.out, &format!("ERR {e}")),
                        }
                    }
                }
            }
            if self.eng.visible_lsn() > lsn_before && !admin {
                c.wrote = self.eng.visible_lsn();
            }
            if self.eng.turn_has_writes() {
                self.log.push(Entry {
                    slot,
                    id: c.state.id,
                    start,
                    end: c.out_base + c.out.len() as u64,
                    class,
                });
            }
        }
        if c.readable {
            // We stopped reading early: come back next turn.
            self.carry.push(slot);
        }
        if c.in_pos == c.inbuf.len() {
            c.inbuf.clear();
            c.in_pos = 0;
            if c.inbuf.capacity() > 1 << 20 {
                c.inbuf.shrink_to(64 * 1024);
            }
        } else if c.in_pos > 64 * 1024 && c.in_pos * 2 > c.inbuf.len() {
            c.inbuf.drain(..c.in_pos);
            c.in_pos = 0;
        }
    }

    /// The turn's writes failed: every data reply given since the turn's batch opened is
    /// replaced by the error (connection-level replies stay). A batch can span turns (it stays
    /// open while a sync is in flight), so replies held in its earlier turns are moved to
    /// where they now end and no longer wait for the discarded records.
    fn void_replies(&mut self, message: &str) {
        // The failed turn's records were discarded: no reply waits for them any more (those
        // of earlier, committed batches are still waited for).
        let written = self.eng.visible_lsn();
        let mut by_slot: std::collections::BTreeMap<usize, Vec<&Entry>> = Default::default();
        for e in &self.log {
            by_slot.entry(e.slot).or_default().push(e);
        }
        let mut err = Vec::new();
        encode::error(&mut err, &format!("ERR {message}"));
        for (slot, entries) in by_slot {
            let Some(Some(c)) = self.conns.get_mut(slot) else {
                continue;
            };
            let entries: Vec<&Entry> = entries.into_iter().filter(|e| e.id == c.state.id).collect();
            let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                continue;
            };
            let (first_start, last_end) = (first.start, last.end);
            // These replies were held (never sent): they are still in the buffer.
            let old = c.out.split_off((first_start - c.out_base) as usize);
            let mut at = first_start;
            for e in &entries {
                // What was written between two entries (a pub/sub message) stays.
                if e.start > at {
                    c.out.extend_from_slice(
                        &old[(at - first_start) as usize..(e.start - first_start) as usize],
                    );
                }
                at = e.end;
                match e.class {
                    Class::Other => c.out.extend_from_slice(
                        &old[(e.start - first_start) as usize..(e.end - first_start) as usize],
                    ),
                    Class::Data => c.out.extend_from_slice(&err),
                }
            }
            let tail = (last_end - first_start) as usize;
            if tail < old.len() {
                c.out.extend_from_slice(&old[tail..]);
            }
            // Replies held in earlier turns of this batch (a deferred batch spans turns) end
            // at positions of the old bytes: move each end by what the errors changed before it.
            for h in c.held.iter_mut() {
                if h.end > first_start {
                    h.end = moved_end(h.end, &entries, err.len());
                    h.visible = h.visible.min(written);
                    h.wrote = h.wrote.min(written);
                }
            }
            c.wrote = c.wrote.min(written);
        }
    }

    fn flush(&mut self, slot: usize) {
        let Some(Some(c)) = self.conns.get_mut(slot) else {
            return;
        };
        let had_backlog = c.unsent() >= OUTPUT_HIGH_WATER;
        while c.out_pos < c.flushable && !c.dead {
            match c.stream.write(&c.out[c.out_pos..c.flushable]) {
                Ok(0) => c.dead = true,
                Ok(n) => c.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => c.dead = true,
            }
        }
        if c.unsent() == 0 {
            c.out_base += c.out.len() as u64;
            c.out.clear();
            c.out_pos = 0;
            c.flushable = 0;
            if c.out.capacity() > 1 << 20 {
                c.out.shrink_to(64 * 1024);
            }
        } else if c.out_pos > 1 << 20 {
            c.out.drain(..c.out_pos);
            c.out_base += c.out_pos as u64;
            c.flushable -= c.out_pos;
            c.out_pos = 0;
        }
        let pending_request = !c.dead && Self::has_request(c, &self.limits);
        let close = c.dead || (c.unsent() == 0 && (c.state.closing || (c.eof && !pending_request)));
        let resume = !close
            && ((had_backlog && c.unsent() < OUTPUT_HIGH_WATER && c.unparsed() > 0)
                || (c.eof && pending_request && c.unsent() < OUTPUT_HIGH_WATER));
        if close {
            self.close(slot);
        } else if resume {
            self.carry.push(slot);
        }
    }

    fn close(&mut self, slot: usize) {
        if let Some(mut c) = self.conns.get_mut(slot).and_then(Option::take) {
            let _ = self.poll.registry().deregister(c.stream.source());
            self.free.push(slot);
            self.nconns -= 1;
            log::debug!("client id={} addr={} closed", c.state.id, c.state.addr);
        }
    }

    fn add_conn(&mut self, mut stream: Stream, addr: String, laddr: String) -> Option<usize> {
        self.stats.connections_received += 1;
        if self.nconns >= self.settings.maxclients || self.stopping.is_some() {
            self.stats.rejected_connections += 1;
            let _ = stream.write(b"-ERR max number of clients reached\r\n");
            return None;
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        if let Err(e) = self.poll.registry().register(
            stream.source(),
            Token(FIRST_CONN + slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("cannot register client {addr}: {e}");
            self.free.push(slot);
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        let authed = self.settings.requirepass.is_none();
        self.conns[slot] = Some(Conn {
            stream,
            inbuf: Vec::new(),
            in_pos: 0,
            out: Vec::new(),
            out_pos: 0,
            flushable: 0,
            out_base: 0,
            state: ConnState::new(id, addr, laddr, authed),
            readable: true,
            eof: false,
            dead: false,
            queued: false,
            wrote: 0,
            held: Default::default(),
        });
        self.nconns += 1;
        self.enqueue(slot);
        Some(slot)
    }

    fn accept_tcp(&mut self, sentinel: bool) {
        loop {
            let listener = if sentinel {
                self.sentinel_tcp.as_ref()
            } else {
                self.tcp.as_ref()
            };
            let Some(l) = listener else { return };
            match l.accept() {
                Ok((s, addr)) => {
                    let _ = s.set_nodelay(true);
                    let laddr = s.local_addr().map(|a| a.to_string()).unwrap_or_default();
                    if let Some(slot) = self.add_conn(Stream::Tcp(s), addr.to_string(), laddr) {
                        if let Some(Some(c)) = self.conns.get_mut(slot) {
                            c.state.sentinel = sentinel;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: log, and try again on the next event.
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn accept_unix(&mut self) {
        loop {
            let Some((l, path)) = self.unix.as_ref() else {
                return;
            };
            let laddr = path.display().to_string();
            match l.accept() {
                Ok((s, _)) => {
                    self.add_conn(Stream::Unix(s), "unix".into(), laddr);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn handle_signals(&mut self) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for sig in pending {
            match sig {
                SIGTERM | SIGINT if self.stopping.is_none() => {
                    log::info!(
                        "signal {}: stopping (finishing requests in flight, then checkpoint)",
                        if sig == SIGTERM { "SIGTERM" } else { "SIGINT" }
                    );
                    self.begin_stop();
                }
                SIGHUP => self.reload(),
                _ => {}
            }
        }
    }

    fn begin_stop(&mut self) {
        crate::systemd::notify_stopping().ok();
        self.stopping = Some(Instant::now());
        if let Some(mut l) = self.tcp.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        if let Some((mut l, path)) = self.unix.take() {
            let _ = self.poll.registry().deregister(&mut l);
            let _ = std::fs::remove_file(path);
        }
    }

    fn reload(&mut self) {
        crate::systemd::notify_reloading().ok();
        match Config::load(&self.settings.config_path) {
            Ok(cfg) => {
                let mut notes = self.settings.reload(&cfg);
                let fresh = Settings::from_config(&cfg);
                notes.extend(self.link.reload(&fresh.link));
                self.limits = self.settings.limits();
                self.eng.reload(
                    self.settings.min_free_space,
                    self.settings.logged.clone(),
                    self.settings.unlogged.clone(),
                );
                crate::systemd::set_log_level(self.settings.log_level);
                for n in notes {
                    log::info!("SIGHUP: {n}");
                }
                log::info!(
                    "configuration reloaded from {}",
                    self.settings.config_path.display()
                );
            }
            Err(e) => log::error!("SIGHUP: configuration not reloaded, keeping the old one: {e}"),
        }
        crate::systemd::notify_ready().ok();
    }

    fn housekeeping(&mut self) {
        self.freeze.check();
        let now = Instant::now();
        if let Some(iv) = self.watchdog {
            if now.duration_since(self.last_watchdog) >= iv {
                crate::systemd::notify_watchdog().ok();
                self.last_watchdog = now;
            }
        }
        self.link.tick(&mut self.eng, self.poll.registry());
        // The canary and verify markers are small turns of their own, between client turns.
        if self.stopping.is_none() && self.link.sys_write_due(&self.eng) {
            if self.eng.turn_has_writes() {
                self.end_turn();
            }
            self.link.write_sys(&mut self.eng);
            self.end_turn();
        }
        self.link.verify_tick(&mut self.eng);
        crate::incident::set_role(if self.eng.is_slave() {
            "slave"
        } else {
            "master"
        });
        let new = crate::incident::take_unsaved();
        if !new.is_empty() {
            self.eng.save_incidents(&new);
        }
        let second = now.duration_since(self.last_housekeeping) >= Duration::from_secs(1);
        let (interval, bytes) = (
            self.settings.checkpoint_interval,
            self.settings.checkpoint_bytes,
        );
        let checkpoint = self.eng.checkpoint_due(interval, bytes);
        if second || checkpoint {
            // What the slaves still need, decided right before any segment can go.
            let floor = self.link.retention_floor(&mut self.eng);
            self.eng.set_retention_floor(floor);
            self.link.reap(&mut self.eng, self.poll.registry());
        }
        self.eng.tick(checkpoint);
        if !second {
            return;
        }
        self.last_housekeeping = now;
        if let Some(m) = self.metrics.as_mut() {
            m.reap(self.poll.registry());
        }
        let timeout = self.settings.timeout;
        if !timeout.is_zero() {
            let idle: Vec<usize> = self
                .conns
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
                // As in Redis, a subscribed connection is never idle: it waits for messages.
                .filter(|(_, c)| {
                    c.state.last_active.elapsed() > timeout
                        && c.state.multi.is_none()
                        && c.state.subs.is_none()
                })
                .map(|(i, _)| i)
                .collect();
            for slot in idle {
                self.close(slot);
            }
        }
        self.update_status();
    }

    fn update_status(&self) {
        let writes = if self.eng.is_slave() {
            Some("readonly")
        } else if self.eng.fenced().is_some() {
            Some("fenced")
        } else if self.eng.checking_peers() {
            Some("checking_peers")
        } else {
            None
        };
        let peers = self.link.status(&self.eng);
        let s = super::status_line::format_status(&super::status_line::StatusInput {
            role: self.eng.role_name(),
            generation: self.eng.generation(),
            durable_lsn: self.eng.journal().durable_lsn(),
            clients: self.nconns,
            writes,
            peers: &peers,
            stopping: self.stopping.is_some(),
        });
        crate::systemd::notify_status(&s).ok();
    }

    fn shutdown(mut self) -> Result<(), ServerError> {
        let slots: Vec<usize> = (0..self.conns.len()).collect();
        for slot in slots {
            self.close(slot);
        }
        self.link.shutdown(&mut self.eng, self.poll.registry());
        if let Some(m) = self.metrics.as_mut() {
            m.shutdown(self.poll.registry());
        }
        self.syncer = None;
        if self.exit_error.is_none() {
            self.eng.sync_now();
            self.eng.checkpoint();
        }
        if let Some((_, path)) = &self.unix {
            let _ = std::fs::remove_file(path);
        }
        match self.exit_error.take() {
            Some(e) => Err(ServerError::Fatal(e)),
            None => {
                log::info!(
                    "stopped cleanly at LSN {} (checkpointed)",
                    self.eng.journal().durable_lsn()
                );
                Ok(())
            }
        }
    }
}

/// Where an output position `end` lands after [`Server::void_replies`] replaced the data
/// replies among `entries` (ascending, of one connection) with an error of `err_len` bytes.
/// A held reply's end lies between entries (a turn's end), never inside one.
fn moved_end(end: u64, entries: &[&Entry], err_len: usize) -> u64 {
    let mut moved = end as i128;
    for e in entries {
        if e.end > end {
            break;
        }
        if e.class == Class::Data {
            moved += err_len as i128 - (e.end - e.start) as i128;
        }
    }
    moved.max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(start: u64, end: u64, class: Class) -> Entry {
        Entry {
            slot: 0,
            id: 1,
            start,
            end,
            class,
        }
    }

    #[test]
    fn held_ends_move_with_the_replies_a_failed_batch_replaced() {
        // Turn 1: "+OK\r\n" (5 bytes) at 100, a pub/sub message (20 bytes) left alone at
        // 105..125, then CLIENT-level "+OK" (Other) at 125..130; turn 2: a 2000-byte GET reply.
        let e = [
            entry(100, 105, Class::Data),
            entry(125, 130, Class::Other),
            entry(130, 2130, Class::Data),
        ];
        let refs: Vec<&Entry> = e.iter().collect();
        let err = 40;
        // Before the batch: unmoved.
        assert_eq!(moved_end(90, &refs, err), 90);
        // After the first reply (5 -> 40 bytes).
        assert_eq!(moved_end(105, &refs, err), 140);
        // After the pub/sub message and the connection-level reply.
        assert_eq!(moved_end(130, &refs, err), 165);
        // After the long reply (2000 -> 40 bytes).
        assert_eq!(moved_end(2130, &refs, err), 130 + 35 + 40);
    }
}
