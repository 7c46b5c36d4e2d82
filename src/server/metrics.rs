//! The Prometheus endpoint: `GET /metrics` over plain HTTP/1.1, served by the event loop.
//!
//! This module owns the `[metrics] listen` socket, its connections, the small HTTP exchange
//! and the text exposition format (version 0.0.4). It reads the node's state (engine, link,
//! incidents, the journal's fsync histogram) only when a scrape asks, and never changes it.
//!
//! One request per connection: the request head is read (at most [`MAX_REQUEST`] bytes, or
//! the answer is 431), `GET`/`HEAD /metrics` gets the metrics, any other path 404, any other
//! method 405, anything that is not an HTTP/1.x request line 400; the connection is closed
//! once the answer is written. At most [`MAX_CONNS`] scrapes are served at once (more are
//! closed at accept) and one that does not finish within [`IDLE_TIMEOUT`] is closed, so a slow
//! or hostile scraper costs the loop nothing but a few buffers. No crate beyond mio: the
//! protocol needed here is a request line and a Content-Length.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use thiserror::Error;

use super::commands::LoopStats;
use super::engine::Engine;
use crate::journal::fsync_stats;
use crate::link::manager::Link;
use crate::link::stats::LinkState;

/// Largest request head read (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// Scrapes served at once.
pub const MAX_CONNS: usize = 16;
/// A scrape that has not been answered and written by then is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads of one connection per readiness event.
const READS_PER_EVENT: usize = 32;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why a request is not answered with the metrics.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HttpError {
    #[error("request head larger than {MAX_REQUEST} bytes")]
    TooLarge,
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("method {0} not allowed")]
    Method(String),
    #[error("no such path: {0}")]
    NotFound(String),
}

impl HttpError {
    fn status(&self) -> &'static str {
        match self {
            HttpError::TooLarge => "431 Request Header Fields Too Large",
            HttpError::Malformed(_) => "400 Bad Request",
            HttpError::Method(_) => "405 Method Not Allowed",
            HttpError::NotFound(_) => "404 Not Found",
        }
    }
}

/// A request for the metrics; `head`: HEAD (no body).
#[derive(Debug, PartialEq, Eq)]
pub struct Scrape {
    pub head: bool,
}

/// Parses a request head in `buf`. Ok(None): not complete yet.
pub fn parse_request(buf: &[u8]) -> Result<Option<Scrape>, HttpError> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n"));
    let Some(end) = end else {
        if buf.len() >= MAX_REQUEST {
            return Err(HttpError::TooLarge);
        }
        return Ok(None);
    };
    if end > MAX_REQUEST {
        return Err(HttpError::TooLarge);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| HttpError::Malformed("not text"))?;
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed("expected METHOD TARGET HTTP/1.x"));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || target.is_empty() {
        return Err(HttpError::Malformed("expected METHOD TARGET HTTP/1.x"));
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        m => return Err(HttpError::Method(m.chars().take(16).collect())),
    };
    let path = target.split(['?', '#']).next().unwrap_or("");
    if path != "/metrics" {
        return Err(HttpError::NotFound(path.chars().take(64).collect()));
    }
    Ok(Some(Scrape { head }))
}

/// The whole HTTP response.
fn response(status: &str, content_type: &str, body: &str, head: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

struct HttpConn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    answered: bool,
    opened: Instant,
}

/// The listener and its scrapes.
pub struct Endpoint {
    listener: TcpListener,
    listener_token: Token,
    base: usize,
    conns: Vec<Option<HttpConn>>,
    /// Scrapes answered, and how long the last rendering took (µs).
    pub scrapes: u64,
    pub last_render_us: u64,
}

/// What a scrape reads.
pub struct Sources<'a> {
    pub eng: &'a Engine,
    pub link: &'a Link,
    pub stats: &'a LoopStats,
    pub instance: &'a str,
    pub clients: usize,
}

impl Endpoint {
    /// Binds `addr` and registers it under `listener_token`; connections get tokens from
    /// `base` to `base + MAX_CONNS`.
    pub fn bind(
        addr: SocketAddr,
        registry: &Registry,
        listener_token: Token,
        base: usize,
    ) -> io::Result<Endpoint> {
        let mut listener = TcpListener::bind(addr)?;
        registry.register(&mut listener, listener_token, Interest::READABLE)?;
        if let Ok(a) = listener.local_addr() {
            log::info!("metrics: serving GET /metrics on http://{a}/metrics");
        }
        Ok(Endpoint {
            listener,
            listener_token,
            base,
            conns: Vec::new(),
            scrapes: 0,
            last_render_us: 0,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Whether a token is the endpoint's.
    pub fn owns(&self, t: Token) -> bool {
        t == self.listener_token || (t.0 >= self.base && t.0 < self.base + MAX_CONNS)
    }

    /// Handles a readiness event; `src` is read only when a scrape is to be answered.
    pub fn on_event(&mut self, t: Token, registry: &Registry, src: &Sources<'_>) {
        if t == self.listener_token {
            self.accept(registry);
            return;
        }
        let slot = t.0 - self.base;
        let Some(Some(c)) = self.conns.get_mut(slot) else {
            return;
        };
        let mut done = false;
        if !c.answered {
            let mut chunk = [0u8; 4096];
            // At most READS_PER_EVENT reads; what goes past MAX_REQUEST is read (so that the
            // close after the 431 is not a reset) but not kept.
            for _ in 0..READS_PER_EVENT {
                match c.stream.read(&mut chunk) {
                    Ok(0) => {
                        done = true;
                        break;
                    }
                    Ok(n) => {
                        let room = (MAX_REQUEST + 1).saturating_sub(c.inbuf.len());
                        c.inbuf.extend_from_slice(&chunk[..n.min(room)]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        done = true;
                        break;
                    }
                }
            }
            match parse_request(&c.inbuf) {
                Ok(None) => {}
                Ok(Some(scrape)) => {
                    let t0 = Instant::now();
                    let body = render(src);
                    self.last_render_us = t0.elapsed().as_micros() as u64;
                    self.scrapes += 1;
                    c.out = response("200 OK", CONTENT_TYPE, &body, scrape.head);
                    c.answered = true;
                    done = false;
                }
                Err(e) => {
                    log::debug!("metrics: {e}");
                    let body = format!("{e}\n");
                    c.out = response(e.status(), "text/plain; charset=utf-8", &body, false);
                    c.answered = true;
                    done = false;
                }
            }
        }
        if c.answered {
            done = Self::write_out(c);
        }
        if done {
            self.close(slot, registry);
        }
    }

    /// Writes what it can. true: finished (or broken): close.
    fn write_out(c: &mut HttpConn) -> bool {
        while c.out_pos < c.out.len() {
            match c.stream.write(&c.out[c.out_pos..]) {
                Ok(0) => return true,
                Ok(n) => c.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        let _ = c.stream.shutdown(Shutdown::Write);
        true
    }

    fn accept(&mut self, registry: &Registry) {
        // Bounded by the backlog: each pass takes one connection.
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let Some(slot) = self.free_slot() else {
                        log::debug!("metrics: {MAX_CONNS} scrapes in progress; closing one more");
                        continue;
                    };
                    let token = Token(self.base + slot);
                    if let Err(e) = registry.register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("metrics: cannot register a connection: {e}");
                        continue;
                    }
                    self.conns[slot] = Some(HttpConn {
                        stream,
                        inbuf: Vec::new(),
                        out: Vec::new(),
                        out_pos: 0,
                        answered: false,
                        opened: Instant::now(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("metrics: accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn free_slot(&mut self) -> Option<usize> {
        if let Some(i) = self.conns.iter().position(Option::is_none) {
            return Some(i);
        }
        if self.conns.len() < MAX_CONNS {
            self.conns.push(None);
            return Some(self.conns.len() - 1);
        }
        None
    }

    fn close(&mut self, slot: usize, registry: &Registry) {
        if let Some(mut c) = self.conns.get_mut(slot).and_then(Option::take) {
            let _ = registry.deregister(&mut c.stream);
        }
    }

    /// Closes scrapes older than [`IDLE_TIMEOUT`] (from the loop's housekeeping).
    pub fn reap(&mut self, registry: &Registry) {
        for slot in 0..self.conns.len() {
            if matches!(&self.conns[slot], Some(c) if c.opened.elapsed() > IDLE_TIMEOUT) {
                self.close(slot, registry);
            }
        }
    }

    /// Closes everything (shutdown).
    pub fn shutdown(&mut self, registry: &Registry) {
        for slot in 0..self.conns.len() {
            self.close(slot, registry);
        }
        let _ = registry.deregister(&mut self.listener);
    }
}

/// Writes metric families in the text exposition format.
#[derive(Default)]
pub struct Exposition {
    pub out: String,
}

/// A label value escaped for the exposition format (backslash, double quote, newline).
pub fn escape_label(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

impl Exposition {
    /// Starts a family: its HELP and TYPE lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = write!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    /// One sample.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Seconds from microseconds, as the exposition format writes floats.
fn secs(us: u64) -> String {
    format!("{}", us as f64 / 1e6)
}

/// The metrics of this node now.
pub fn render(src: &Sources<'_>) -> String {
    let eng = src.eng;
    let mut x = Exposition::default();
    let j = eng.journal();
    let slave = eng.is_slave();
    x.family(
        "hotbackup_info",
        "gauge",
        "The instance and version of this node (always 1).",
    );
    x.sample(
        "hotbackup_info",
        &[
            ("instance", src.instance),
            ("version", env!("CARGO_PKG_VERSION")),
        ],
        1,
    );
    x.family(
        "hotbackup_role",
        "gauge",
        "The node's role: 1 for the role it has now, 0 for the other.",
    );
    for role in ["master", "slave"] {
        x.sample(
            "hotbackup_role",
            &[("role", role)],
            u8::from((role == "slave") == slave),
        );
    }
    x.single(
        "hotbackup_generation",
        "gauge",
        "The generation this node is at (a promotion starts a new one).",
        eng.generation(),
    );
    x.single(
        "hotbackup_writes_accepted",
        "gauge",
        "1 when this node takes writes: a master neither fenced, nor waiting to hear from its peers, nor paused for a switchover (a full disk still refuses them).",
        u8::from(
            !slave && eng.fenced().is_none() && !eng.checking_peers() && !eng.writes_wait(),
        ),
    );
    x.single(
        "hotbackup_fenced",
        "gauge",
        "1 when this master was fenced by a newer one.",
        u8::from(eng.fenced().is_some()),
    );
    x.single(
        "hotbackup_start_time_seconds",
        "gauge",
        "When the daemon started, seconds since the epoch (counters reset then).",
        secs(src.stats.started_ms * 1000),
    );
    let (applied, checkpoint) = eng
        .store()
        .map(|st| (st.meta().applied_lsn, st.meta().checkpoint_lsn))
        .unwrap_or((0, 0));
    for (name, help, v) in [
        (
            "hotbackup_next_lsn",
            "The LSN the next journal record gets.",
            j.next_lsn(),
        ),
        (
            "hotbackup_durable_lsn",
            "The last LSN made durable in this node's journal.",
            j.durable_lsn(),
        ),
        (
            "hotbackup_applied_lsn",
            "The last LSN applied to the store (visible to readers).",
            applied.max(eng.visible_lsn()),
        ),
        (
            "hotbackup_checkpoint_lsn",
            "The LSN of the store's last checkpoint (a restart replays from here).",
            checkpoint,
        ),
        (
            "hotbackup_journal_first_lsn",
            "The oldest LSN the journal still holds.",
            j.first_lsn(),
        ),
    ] {
        x.single(name, "gauge", help, v);
    }
    x.single(
        "hotbackup_journal_size_bytes",
        "gauge",
        "Bytes of records in the journal's segments.",
        j.size_bytes(),
    );
    x.single(
        "hotbackup_journal_segments",
        "gauge",
        "Journal segment files.",
        j.segments().len(),
    );
    let es = &eng.stats;
    x.single(
        "hotbackup_journal_records_total",
        "counter",
        "Journal records written since the daemon started.",
        es.records,
    );
    x.single(
        "hotbackup_journal_group_commits_total",
        "counter",
        "Group commits (journal writes) since the daemon started.",
        es.commits,
    );
    let h = fsync_stats::snapshot();
    x.family(
        "hotbackup_fsync_duration_seconds",
        "histogram",
        "How long the journal's fdatasync calls take.",
    );
    for (bound, n) in &h.cumulative {
        x.sample(
            "hotbackup_fsync_duration_seconds_bucket",
            &[("le", &secs(*bound))],
            n,
        );
    }
    x.sample(
        "hotbackup_fsync_duration_seconds_bucket",
        &[("le", "+Inf")],
        h.count,
    );
    x.sample("hotbackup_fsync_duration_seconds_sum", &[], secs(h.sum_us));
    x.sample("hotbackup_fsync_duration_seconds_count", &[], h.count);
    x.single(
        "hotbackup_connected_clients",
        "gauge",
        "Client connections.",
        src.clients,
    );
    x.single(
        "hotbackup_commands_processed_total",
        "counter",
        "Client commands run since the daemon started.",
        src.stats.commands_processed,
    );

    link_metrics(&mut x, src);
    canary_metrics(&mut x, src);

    x.family(
        "hotbackup_incidents_total",
        "counter",
        "Incidents raised by kind since the daemon started.",
    );
    for (k, n) in crate::incident::raised() {
        x.sample("hotbackup_incidents_total", &[("kind", k.name())], n);
    }
    x.family(
        "hotbackup_incidents_kept",
        "gauge",
        "Incidents of each kind in the node's kept list (hotbackup incidents; survives restarts, bounded).",
    );
    for (k, n) in crate::incident::counts() {
        x.sample("hotbackup_incidents_kept", &[("kind", k.name())], n);
    }
    x.out
}

/// The canary: how old the last one held here is, its lag end to end, and the alarms.
fn canary_metrics(x: &mut Exposition, src: &Sources<'_>) {
    let c = src.link.canary_status();
    if let Some(last) = &c.last {
        x.single(
            "hotbackup_canary_counter",
            "gauge",
            "Number of the last canary written (master) or applied (slave) here.",
            last.counter,
        );
        x.single(
            "hotbackup_canary_age_seconds",
            "gauge",
            "Seconds since the last canary was written or applied here.",
            c.age_s.unwrap_or(0.0),
        );
        x.single(
            "hotbackup_canary_lag_seconds",
            "gauge",
            "On a slave: its clock minus the master's when the last canary was applied (end-to-end lag; clocks in sync assumed).",
            last.lag_ms as f64 / 1000.0,
        );
    }
    x.single(
        "hotbackup_canary_late",
        "gauge",
        "1 while this slave has had no canary for canary_alarm.",
        u8::from(c.late_here),
    );
    x.single(
        "hotbackup_canary_late_slaves",
        "gauge",
        "Fed slaves whose canary is late (not applied within canary_alarm).",
        c.late_peers.len(),
    );
}

fn link_metrics(x: &mut Exposition, src: &Sources<'_>) {
    let links = src.link.link_stats(src.eng);
    let ls = &src.link.stats;
    for (name, help, v) in [
        (
            "hotbackup_link_accepted_total",
            "Connections accepted on the link port.",
            ls.accepted,
        ),
        (
            "hotbackup_link_dials_total",
            "Connections this node dialled.",
            ls.dials,
        ),
        (
            "hotbackup_link_auth_failures_total",
            "Link connections that failed the mutual authentication.",
            ls.auth_failures,
        ),
        (
            "hotbackup_link_sync_timeouts_total",
            "Writes that waited longer than link.sync_timeout for the slaves.",
            ls.sync_timeouts,
        ),
        (
            "hotbackup_link_slots_dropped_total",
            "Replication slots dropped for retaining too much journal.",
            ls.slots_dropped,
        ),
    ] {
        x.single(name, "counter", help, v);
    }
    if links.is_empty() {
        return;
    }
    x.family(
        "hotbackup_link_state",
        "gauge",
        "Each link's state: 1 for the state it is in, 0 for the others (role: slave = we feed it, master = we follow it).",
    );
    for l in &links {
        let now = l.state.unwrap_or(LinkState::Down);
        for s in LinkState::ALL {
            x.sample(
                "hotbackup_link_state",
                &[("peer", &l.peer), ("role", l.role), ("state", s.label())],
                u8::from(s == now),
            );
        }
    }
    type Get = fn(&crate::link::stats::LinkStat) -> String;
    let gauges: [(&str, &str, Get); 8] = [
        (
            "hotbackup_link_lag_entries",
            "Journal entries the peer is behind (a slave: not applied; our master: not received).",
            |l| l.lag_entries.to_string(),
        ),
        (
            "hotbackup_link_lag_bytes",
            "Record bytes shipped to the slave and not yet applied by it.",
            |l| l.lag_bytes.to_string(),
        ),
        (
            "hotbackup_link_lag_seconds",
            "How long the slave has been behind this master's durable LSN (0: it is not).",
            |l| secs(l.lag_ms * 1000),
        ),
        (
            "hotbackup_link_queue_depth",
            "Journal entries not yet acknowledged by the peer.",
            |l| l.queue_depth.to_string(),
        ),
        (
            "hotbackup_link_sent_lsn",
            "The last LSN shipped to the slave.",
            |l| l.sent.to_string(),
        ),
        (
            "hotbackup_link_acked_received_lsn",
            "The last LSN acknowledged as received.",
            |l| l.acked_received.to_string(),
        ),
        (
            "hotbackup_link_acked_durable_lsn",
            "The last LSN acknowledged as durable.",
            |l| l.acked_durable.to_string(),
        ),
        (
            "hotbackup_link_acked_applied_lsn",
            "The last LSN acknowledged as applied.",
            |l| l.acked_applied.to_string(),
        ),
    ];
    for (name, help, get) in gauges {
        x.family(name, "gauge", help);
        for l in &links {
            x.sample(name, &[("peer", &l.peer), ("role", l.role)], get(l));
        }
    }
    for (name, help, get_in, get_out) in [
        (
            "hotbackup_link_frames_total",
            "Link frames by direction, over every connection since the daemon started.",
            (|l| l.frames_in) as fn(&crate::link::stats::LinkStat) -> u64,
            (|l| l.frames_out) as fn(&crate::link::stats::LinkStat) -> u64,
        ),
        (
            "hotbackup_link_bytes_total",
            "Link bytes by direction, over every connection since the daemon started.",
            |l| l.bytes_in,
            |l| l.bytes_out,
        ),
    ] {
        x.family(name, "counter", help);
        for l in &links {
            for (dir, v) in [("in", get_in(l)), ("out", get_out(l))] {
                x.sample(
                    name,
                    &[("peer", &l.peer), ("role", l.role), ("direction", dir)],
                    v,
                );
            }
        }
    }
    type Count = fn(&crate::link::stats::LinkStat) -> u64;
    let counters: [(&str, &str, Count); 4] = [
        (
            "hotbackup_link_connects_total",
            "Times the link came up (authenticated and identified).",
            |l| l.connects,
        ),
        (
            "hotbackup_link_reconnects_total",
            "Times the link came up again after being up.",
            |l| l.reconnects,
        ),
        (
            "hotbackup_link_disconnects_total",
            "Times the link went down after being up.",
            |l| l.disconnects,
        ),
        (
            "hotbackup_link_failed_connects_total",
            "Connections that ended before the link came up.",
            |l| l.failed_connects,
        ),
    ];
    for (name, help, get) in counters {
        x.family(name, "counter", help);
        for l in &links {
            x.sample(name, &[("peer", &l.peer), ("role", l.role)], get(l));
        }
    }
    x.family(
        "hotbackup_link_syncs_total",
        "counter",
        "Full and partial syncs on the link.",
    );
    for l in &links {
        for (kind, v) in [("full", l.full_syncs), ("partial", l.partial_syncs)] {
            x.sample(
                "hotbackup_link_syncs_total",
                &[("peer", &l.peer), ("role", l.role), ("kind", kind)],
                v,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_parsed_and_bad_ones_named() {
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"),
            Ok(None)
        );
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Some(Scrape { head: false }))
        );
        assert_eq!(
            parse_request(b"HEAD /metrics?x=1 HTTP/1.0\n\n"),
            Ok(Some(Scrape { head: true }))
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\n\r\n"),
            Err(HttpError::NotFound("/".into()))
        );
        assert_eq!(
            parse_request(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Err(HttpError::Method("POST".into()))
        );
        for bad in [
            &b"GET /metrics\r\n\r\n"[..],
            b"GET /metrics SPDY/3\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"\xff\xfe /metrics HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(parse_request(bad), Err(HttpError::Malformed(_))),
                "{bad:?}"
            );
        }
        let huge = vec![b'a'; MAX_REQUEST];
        assert_eq!(parse_request(&huge), Err(HttpError::TooLarge));
        let r = response("404 Not Found", "text/plain", "no\n", false);
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
        assert!(
            r.contains("Content-Length: 3\r\n") && r.ends_with("\r\n\r\nno\n"),
            "{r}"
        );
    }

    #[test]
    fn the_exposition_escapes_labels_and_writes_help_and_type() {
        let mut x = Exposition::default();
        x.family("hotbackup_x", "gauge", "A test\nmetric.");
        x.sample(
            "hotbackup_x",
            &[("peer", "a\"b\\c\nd"), ("role", "slave")],
            3,
        );
        x.single("hotbackup_y_total", "counter", "Y.", 0);
        assert_eq!(
            x.out,
            "# HELP hotbackup_x A test\\nmetric.\n# TYPE hotbackup_x gauge\n\
             hotbackup_x{peer=\"a\\\"b\\\\c\\nd\",role=\"slave\"} 3\n\
             # HELP hotbackup_y_total Y.\n# TYPE hotbackup_y_total counter\nhotbackup_y_total 0\n"
        );
        assert_eq!(secs(250), "0.00025");
        assert_eq!(secs(1_000_000), "1");
    }
}
