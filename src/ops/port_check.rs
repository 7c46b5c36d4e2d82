//! `hotbackup port-check PORT`: is a TCP port free on this host, and if not, which process holds
//! it — `netstat -tlnp` for one port, without needing net-tools.
//!
//! Owns reading `/proc/net/tcp`, `/proc/net/tcp6` (sockets of this process's network namespace)
//! and `/proc/PID/fd` (which process has which socket inode), plus a real bind test. Everything
//! read from /proc is outside input: malformed lines are skipped and counted, never trusted to
//! index or unwrap. This module only reports; it never closes, signals or changes anything.
//!
//! Without root, other users' `/proc/PID/fd` cannot be read; those sockets are still listed (with
//! their uid and inode) and the number of unreadable processes is reported, so "no owner shown"
//! is never mistaken for "no owner". With `hidepid=` on /proc other users' processes are invisible
//! altogether.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

/// Errors from [`check_port`] and [`parse_proc_net_tcp`].
#[derive(Debug, thiserror::Error)]
pub enum PortCheckError {
    /// Port 0 means "any port" to the kernel; there is nothing to check.
    #[error("port 0 is not a real port (the kernel picks one); give a port from 1 to 65535")]
    PortZero,
    /// A file that must be readable was not.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The text is not a /proc/net/tcp table at all (its header is missing).
    #[error("not a /proc/net/tcp table: {0}")]
    Format(String),
}

/// TCP state as numbered by the kernel (`include/net/tcp_states.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TcpState {
    /// 0x01
    Established,
    /// 0x02
    SynSent,
    /// 0x03
    SynRecv,
    /// 0x04
    FinWait1,
    /// 0x05
    FinWait2,
    /// 0x06
    TimeWait,
    /// 0x07 (also a socket that is bound but not listening)
    Close,
    /// 0x08
    CloseWait,
    /// 0x09
    LastAck,
    /// 0x0A
    Listen,
    /// 0x0B
    Closing,
    /// 0x0C
    NewSynRecv,
    /// A number this code does not know.
    Unknown(u8),
}

impl TcpState {
    /// The kernel's number for this state.
    pub fn from_code(code: u8) -> Self {
        match code {
            0x01 => Self::Established,
            0x02 => Self::SynSent,
            0x03 => Self::SynRecv,
            0x04 => Self::FinWait1,
            0x05 => Self::FinWait2,
            0x06 => Self::TimeWait,
            0x07 => Self::Close,
            0x08 => Self::CloseWait,
            0x09 => Self::LastAck,
            0x0A => Self::Listen,
            0x0B => Self::Closing,
            0x0C => Self::NewSynRecv,
            other => Self::Unknown(other),
        }
    }

    /// The name netstat uses (`LISTEN`, `ESTABLISHED`, `TIME_WAIT`, …); `UNKNOWN` for others.
    pub fn name(self) -> &'static str {
        match self {
            Self::Established => "ESTABLISHED",
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::FinWait1 => "FIN_WAIT1",
            Self::FinWait2 => "FIN_WAIT2",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::Listen => "LISTEN",
            Self::Closing => "CLOSING",
            Self::NewSynRecv => "NEW_SYN_RECV",
            Self::Unknown(_) => "UNKNOWN",
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(code) => write!(f, "UNKNOWN({code:#04x})"),
            other => f.pad(other.name()),
        }
    }
}

/// One row of /proc/net/tcp or /proc/net/tcp6, with the processes holding the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketEntry {
    /// `"tcp"` or `"tcp6"`.
    pub proto: &'static str,
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port (`0.0.0.0:0` / `[::]:0` for a listener).
    pub remote: SocketAddr,
    /// Connection state.
    pub state: TcpState,
    /// Owner uid of the socket.
    pub uid: u32,
    /// Socket inode (0 for sockets no process holds, e.g. TIME_WAIT).
    pub inode: u64,
    /// Processes with an fd on this socket (forked servers share one listener).
    pub owners: Vec<Owner>,
}

/// A process holding a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// `/proc/PID/comm` (at most 15 bytes, set by the process itself).
    pub comm: String,
    /// `/proc/PID/cmdline`, arguments joined by spaces (empty for kernel threads).
    pub cmdline: String,
}

/// The result of really binding the port, the final word on "can hotbackup listen here".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindTest {
    /// Binding `0.0.0.0:PORT`.
    pub v4: BindOutcome,
    /// Binding `[::]:PORT` (dual-stack unless `net.ipv6.bindv6only=1`).
    pub v6: BindOutcome,
}

/// How one bind attempt went. The socket is closed again at once either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindOutcome {
    /// Bound and listened.
    Bound,
    /// `EADDRINUSE`: someone listens on (or has bound) the port.
    InUse,
    /// `EACCES`: a privileged port and we are neither root nor have `CAP_NET_BIND_SERVICE`.
    Denied,
    /// The address family is not available (IPv6 disabled on this host).
    Unsupported,
    /// Any other error, as text.
    Failed(String),
}

impl BindOutcome {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Bound => "bound",
            Self::InUse => "in_use",
            Self::Denied => "denied",
            Self::Unsupported => "unsupported",
            Self::Failed(_) => "failed",
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Bound => "bound".to_owned(),
            Self::InUse => "address already in use".to_owned(),
            Self::Denied => "permission denied (privileged port: needs root or \
                             CAP_NET_BIND_SERVICE)"
                .to_owned(),
            Self::Unsupported => "address family not available".to_owned(),
            Self::Failed(e) => e.clone(),
        }
    }
}

/// Everything `port-check` found about one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortReport {
    /// The port checked.
    pub port: u16,
    /// No LISTEN socket on the port in this network namespace, and the bind test succeeded
    /// (IPv4, and IPv6 unless the host has no IPv6).
    pub free: bool,
    /// Sockets whose *local* port is `port`, in any state, listeners first.
    pub entries: Vec<SocketEntry>,
    /// The result of actually binding the port.
    pub bind_test: BindTest,
    /// Processes whose `/proc/PID/fd` could not be read (not root): their sockets have no owner.
    pub unreadable_pids: usize,
    /// Malformed /proc/net/tcp{,6} lines that were skipped.
    pub skipped_lines: usize,
}

/// Checks whether TCP `port` is free on this host and who holds it if not.
pub fn check_port(port: u16) -> Result<PortReport, PortCheckError> {
    if port == 0 {
        return Err(PortCheckError::PortZero);
    }
    let mut entries = Vec::new();
    let mut skipped_lines = 0;
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            // No tcp6 table: the kernel has no IPv6.
            Err(e) if v6 && e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(PortCheckError::Io {
                    path: path.into(),
                    source,
                });
            }
        };
        let (mut parsed, skipped) = parse_table(&text, v6)?;
        if skipped > 0 {
            log::warn!("{path}: skipped {skipped} malformed line(s)");
        }
        skipped_lines += skipped;
        parsed.retain(|e| e.local.port() == port);
        entries.append(&mut parsed);
    }

    let wanted: BTreeSet<u64> = entries
        .iter()
        .map(|e| e.inode)
        .filter(|&i| i != 0)
        .collect();
    let (owners, unreadable_pids) = if wanted.is_empty() {
        (BTreeMap::new(), 0)
    } else {
        find_socket_owners(Path::new("/proc"), &wanted)
    };
    for e in &mut entries {
        if let Some(o) = owners.get(&e.inode) {
            e.owners = o.clone();
        }
    }
    entries.sort_by(|a, b| {
        (a.state != TcpState::Listen, a.proto, a.local, a.remote).cmp(&(
            b.state != TcpState::Listen,
            b.proto,
            b.local,
            b.remote,
        ))
    });

    let bind_test = BindTest {
        v4: try_bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))),
        v6: try_bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))),
    };
    let listening = entries.iter().any(|e| e.state == TcpState::Listen);
    let free = !listening
        && bind_test.v4 == BindOutcome::Bound
        && matches!(bind_test.v6, BindOutcome::Bound | BindOutcome::Unsupported);
    Ok(PortReport {
        port,
        free,
        entries,
        bind_test,
        unreadable_pids,
        skipped_lines,
    })
}

/// Binds and listens on `addr` (std sets `SO_REUSEADDR`, so TIME_WAIT leftovers do not count as
/// "in use", just as for the daemon), then closes the socket.
fn try_bind(addr: SocketAddr) -> BindOutcome {
    match TcpListener::bind(addr) {
        Ok(listener) => {
            drop(listener);
            BindOutcome::Bound
        }
        Err(e) => match e.kind() {
            io::ErrorKind::AddrInUse => BindOutcome::InUse,
            io::ErrorKind::PermissionDenied => BindOutcome::Denied,
            _ if matches!(
                e.raw_os_error(),
                Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
            ) =>
            {
                BindOutcome::Unsupported
            }
            _ => BindOutcome::Failed(e.to_string()),
        },
    }
}

/// Parses the text of /proc/net/tcp (`v6 == false`) or /proc/net/tcp6 (`v6 == true`).
///
/// Malformed rows are skipped, counted and reported with one `log::warn!`; the only error is text
/// that does not start with the table header. Addresses are decoded in this host's byte order,
/// as the kernel prints them; owners are left empty.
pub fn parse_proc_net_tcp(text: &str, v6: bool) -> Result<Vec<SocketEntry>, PortCheckError> {
    let (entries, skipped) = parse_table(text, v6)?;
    if skipped > 0 {
        log::warn!(
            "/proc/net/tcp{}: skipped {skipped} malformed line(s)",
            if v6 { "6" } else { "" }
        );
    }
    Ok(entries)
}

/// [`parse_proc_net_tcp`] returning the number of skipped rows instead of logging it.
fn parse_table(text: &str, v6: bool) -> Result<(Vec<SocketEntry>, usize), PortCheckError> {
    let mut lines = text.lines();
    match lines.next() {
        None => return Ok((Vec::new(), 0)),
        Some(h) if h.split_whitespace().next() == Some("sl") => {}
        Some(h) => {
            let h: String = h.chars().take(60).collect();
            return Err(PortCheckError::Format(format!(
                "expected a header starting with \"sl\", got {h:?}"
            )));
        }
    }
    let mut entries = Vec::new();
    let mut skipped = 0;
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        match parse_row(line, v6) {
            Some(e) => entries.push(e),
            None => skipped += 1,
        }
    }
    Ok((entries, skipped))
}

/// One row: `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
fn parse_row(line: &str, v6: bool) -> Option<SocketEntry> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 {
        return None;
    }
    f[0].strip_suffix(':')?.parse::<u64>().ok()?;
    let local = parse_endpoint(f[1], v6)?;
    let remote = parse_endpoint(f[2], v6)?;
    if f[3].len() != 2 {
        return None;
    }
    let state = TcpState::from_code(u8::from_str_radix(f[3], 16).ok()?);
    let uid = f[7].parse().ok()?;
    let inode = f[9].parse().ok()?;
    Some(SocketEntry {
        proto: if v6 { "tcp6" } else { "tcp" },
        local,
        remote,
        state,
        uid,
        inode,
        owners: Vec::new(),
    })
}

/// `0100007F:0BB8` → 127.0.0.1:3000. The kernel prints each 32-bit word of the (network order)
/// address as a native-endian integer with `%08X`, and the port in host order with `%04X`.
fn parse_endpoint(s: &str, v6: bool) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    if port.len() != 4 {
        return None;
    }
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |chunk: &str| -> Option<[u8; 4]> {
        if chunk.len() != 8 || !chunk.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(u32::from_str_radix(chunk, 16).ok()?.to_ne_bytes())
    };
    if v6 {
        if addr.len() != 32 || !addr.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, out) in bytes.chunks_exact_mut(4).enumerate() {
            out.copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?);
        }
        Some(SocketAddr::from((Ipv6Addr::from(bytes), port)))
    } else {
        Some(SocketAddr::from((Ipv4Addr::from(word(addr)?), port)))
    }
}

/// Scans `proc/*/fd/*` for `socket:[INODE]` links to any of `wanted`. Returns inode → owners and
/// the number of processes whose fd directory was not readable. Processes that exit during the
/// scan are ignored.
fn find_socket_owners(proc: &Path, wanted: &BTreeSet<u64>) -> (BTreeMap<u64, Vec<Owner>>, usize) {
    let mut found: BTreeMap<u64, Vec<Owner>> = BTreeMap::new();
    let mut unreadable = 0;
    let Ok(dir) = std::fs::read_dir(proc) else {
        return (found, 0);
    };
    for pid_entry in dir.flatten() {
        let Some(pid) = pid_entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let fd_dir = match std::fs::read_dir(pid_entry.path().join("fd")) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                unreadable += 1;
                continue;
            }
            Err(_) => continue, // exited, or a zombie
        };
        let mut inodes = BTreeSet::new();
        for fd in fd_dir.flatten() {
            if let Some(inode) = std::fs::read_link(fd.path())
                .ok()
                .and_then(|t| t.to_str().and_then(socket_inode))
                .filter(|i| wanted.contains(i))
            {
                inodes.insert(inode);
            }
        }
        if inodes.is_empty() {
            continue;
        }
        let owner = read_owner(&pid_entry.path(), pid);
        for inode in inodes {
            found.entry(inode).or_default().push(owner.clone());
        }
    }
    (found, unreadable)
}

/// `socket:[12345]` → 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn read_owner(pid_dir: &Path, pid: u32) -> Owner {
    let comm = std::fs::read(pid_dir.join("comm"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_end_matches('\n')
                .to_owned()
        })
        .unwrap_or_default();
    let cmdline = std::fs::read(pid_dir.join("cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    Owner { pid, comm, cmdline }
}

/// Longest command line shown by [`PortReport::render_human`]; JSON has it whole.
const HUMAN_CMDLINE_MAX: usize = 100;

impl PortReport {
    /// A report for a terminal, e.g.
    ///
    /// ```text
    /// port 2000/tcp is in use:
    ///   tcp   0.0.0.0:2000           LISTEN       pid 1234 (redis-server) redis-server *:2000
    /// ```
    ///
    /// Text from /proc (process names, command lines) has control characters escaped, so a
    /// hostile process title cannot drive the terminal.
    pub fn render_human(&self) -> String {
        let mut out = String::new();
        let port = self.port;
        let listening = self.entries.iter().any(|e| e.state == TcpState::Listen);
        if self.free {
            let _ = writeln!(out, "port {port}/tcp is free");
        } else if listening {
            let _ = writeln!(out, "port {port}/tcp is in use:");
        } else {
            let _ = writeln!(out, "port {port}/tcp is not usable (no listener found):");
        }
        if !self.free {
            for (name, outcome) in [
                ("0.0.0.0", &self.bind_test.v4),
                ("[::]", &self.bind_test.v6),
            ] {
                let skip = matches!(outcome, BindOutcome::Bound | BindOutcome::Unsupported)
                    || (listening && *outcome == BindOutcome::InUse);
                if !skip {
                    let why = terminal_safe(&outcome.describe(), 200);
                    let _ = writeln!(out, "  bind {name}:{port}: {why}");
                }
            }
        }
        let others = self.entries.iter().any(|e| e.state != TcpState::Listen);
        if self.free && others {
            let _ = writeln!(
                out,
                "  (not listening, but connections use it as local port:)"
            );
        }
        for e in &self.entries {
            let mut line = format!("  {:<5} {:<22} {:<12}", e.proto, e.local, e.state);
            if e.state != TcpState::Listen {
                let _ = write!(line, " peer {:<22}", e.remote);
            }
            match e.owners.as_slice() {
                [] if e.inode == 0 => line.push_str(" (no process: held by the kernel)"),
                [] if self.unreadable_pids > 0 => {
                    let _ = write!(
                        line,
                        " uid {} inode {} (owner not visible: run as root)",
                        e.uid, e.inode
                    );
                }
                [] => {
                    let _ = write!(
                        line,
                        " uid {} inode {} (owner not found: another PID namespace, or exited)",
                        e.uid, e.inode
                    );
                }
                owners => {
                    for (i, o) in owners.iter().enumerate() {
                        if i > 0 {
                            line.push_str(&format!("\n  {:<5} {:<22} {:<12}", "", "", ""));
                        }
                        let _ = write!(line, " pid {} ({})", o.pid, terminal_safe(&o.comm, 32));
                        if !o.cmdline.is_empty() {
                            let _ =
                                write!(line, " {}", terminal_safe(&o.cmdline, HUMAN_CMDLINE_MAX));
                        }
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        if self.unreadable_pids > 0 {
            let _ = writeln!(
                out,
                "note: {} process(es) could not be inspected (not root); owners may be missing",
                self.unreadable_pids
            );
        }
        if self.skipped_lines > 0 {
            let _ = writeln!(
                out,
                "note: {} malformed line(s) in /proc/net/tcp* were skipped",
                self.skipped_lines
            );
        }
        out
    }

    /// The report as one JSON object (hand-written; strings escaped per RFC 8259).
    pub fn to_json(&self) -> String {
        let mut o = String::new();
        let _ = write!(
            o,
            "{{\"port\":{},\"free\":{},\"entries\":[",
            self.port, self.free
        );
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str("{\"proto\":");
            super::json::string(&mut o, e.proto);
            o.push_str(",\"local\":");
            super::json::string(&mut o, &e.local.to_string());
            o.push_str(",\"remote\":");
            super::json::string(&mut o, &e.remote.to_string());
            o.push_str(",\"state\":");
            super::json::string(&mut o, &e.state.to_string());
            let _ = write!(o, ",\"uid\":{},\"inode\":{},\"owners\":[", e.uid, e.inode);
            for (j, ow) in e.owners.iter().enumerate() {
                if j > 0 {
                    o.push(',');
                }
                let _ = write!(o, "{{\"pid\":{},\"comm\":", ow.pid);
                super::json::string(&mut o, &ow.comm);
                o.push_str(",\"cmdline\":");
                super::json::string(&mut o, &ow.cmdline);
                o.push('}');
            }
            o.push_str("]}");
        }
        o.push_str("],\"bind_test\":{");
        for (i, (name, outcome)) in [("v4", &self.bind_test.v4), ("v6", &self.bind_test.v6)]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                o.push(',');
            }
            let _ = write!(o, "\"{name}\":{{\"result\":\"{}\"", outcome.as_str());
            if let BindOutcome::Failed(msg) = outcome {
                o.push_str(",\"error\":");
                super::json::string(&mut o, msg);
            }
            o.push('}');
        }
        let _ = write!(
            o,
            "}},\"unreadable_pids\":{},\"skipped_lines\":{}}}",
            self.unreadable_pids, self.skipped_lines
        );
        o
    }
}

/// `s` with control characters escaped (`\x1b`, `\n`, …) and cut to `max` characters.
fn terminal_safe(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The live tests bind ephemeral ports; one at a time so one test's freshly released port
    /// cannot be picked up by the other between release and check.
    static PORTS: Mutex<()> = Mutex::new(());

    const TCP4: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07D0 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 41234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0BB8 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 55012 1 0000000000000000 20 4 30 10 -1
   2: 0A01A8C0:0016 6401A8C0:C350 06 00000000:00000000 03:00001234 00000000     0        0 0 3 0000000000000000
";

    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:07D0 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 41235 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 77001 1 0000000000000000 20 4 30 10 -1
   2: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:9C41 01 00000000:00000000 00:00000000 00000000  1000        0 77002 1 0000000000000000 20 4 30 10 -1
   3: B80D0120000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 88 1 0000000000000000 100 0 0 10 0
";

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    // The sample text is what a little-endian kernel prints.
    #[cfg(target_endian = "little")]
    #[test]
    fn parses_ipv4_rows_in_kernel_byte_order() {
        let e = parse_proc_net_tcp(TCP4, false).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].proto, "tcp");
        assert_eq!(e[0].local, sa("0.0.0.0:2000"));
        assert_eq!(e[0].remote, sa("0.0.0.0:0"));
        assert_eq!(e[0].state, TcpState::Listen);
        assert_eq!((e[0].uid, e[0].inode), (999, 41234));
        assert_eq!(e[1].local, sa("127.0.0.1:3000"));
        assert_eq!(e[1].remote, sa("127.0.0.1:54321"));
        assert_eq!(e[1].state, TcpState::Established);
        assert_eq!(e[2].local, sa("192.168.1.10:22"));
        assert_eq!(e[2].remote, sa("192.168.1.100:50000"));
        assert_eq!(e[2].state, TcpState::TimeWait);
        assert_eq!(e[2].inode, 0);
        assert!(e.iter().all(|e| e.owners.is_empty()));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_ipv6_rows_in_kernel_byte_order() {
        let e = parse_proc_net_tcp(TCP6, true).unwrap();
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].proto, "tcp6");
        assert_eq!(e[0].local, sa("[::]:2000"));
        assert_eq!(e[0].state, TcpState::Listen);
        assert_eq!(e[1].local, sa("[::1]:8080"));
        assert_eq!(e[1].remote, sa("[::1]:40000"));
        assert_eq!(e[2].local, sa("[::ffff:127.0.0.1]:8080"));
        assert_eq!(e[2].remote, sa("[::ffff:127.0.0.1]:40001"));
        assert_eq!(e[3].local, sa("[2001:db8::1]:80"));
        assert_eq!((e[3].uid, e[3].inode), (0, 88));
    }

    #[test]
    fn malformed_rows_are_skipped_and_counted() {
        let text = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07D0 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 41234 1
   1: 00000000:07D0 00000000:0000 0A
   2: 0000000:07D0 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1 1
   3: 00000000:7D0 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1 1
   4: 0000000G:07D0 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1 1
   5: 00000000:07D0 00000000:0000 ZZ 00000000:00000000 00:00000000 00000000   999        0 1 1
   6: 00000000:07D0 00000000:0000 0A 00000000:00000000 00:00000000 00000000   -1        0 1 1
   7: 00000000:07D0 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 x 1
   8  00000000:07D0 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1 1
   9: 00000000000000000000000000000000:07D0 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1
  10: +0000000:07D0 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1 1
  11: 00000000:07D0 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 41299 1
  12: é0000000:07D0 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1 1

";
        let (e, skipped) = parse_table(text, false).unwrap();
        assert_eq!(skipped, 11);
        assert_eq!(
            e.iter().map(|e| e.inode).collect::<Vec<_>>(),
            [41234, 41299]
        );
        // v6 parser on a v4 table: every row is malformed, nothing panics.
        let (e, skipped) = parse_table(TCP4, true).unwrap();
        assert!(e.is_empty());
        assert_eq!(skipped, 3);
        // Multi-byte characters where hex is expected must not split a char boundary.
        let row = format!(
            "   0: {}:0050 {}:0000 0A 0:0 0:0 0 0 0 1 1",
            "é".repeat(16),
            "0".repeat(32)
        );
        let (e, skipped) = parse_table(&format!("  sl\n{row}\n"), true).unwrap();
        assert!(e.is_empty());
        assert_eq!(skipped, 1);
    }

    #[test]
    fn text_without_header_is_an_error_and_empty_text_is_empty() {
        assert!(matches!(
            parse_proc_net_tcp("garbage\n", false),
            Err(PortCheckError::Format(_))
        ));
        assert!(parse_proc_net_tcp("", false).unwrap().is_empty());
    }

    #[test]
    fn unknown_state_codes_are_kept() {
        let text = "  sl\n   0: 00000000:07D0 00000000:0000 FF 0:0 0:0 0 0 0 5 1\n";
        let e = parse_proc_net_tcp(text, false).unwrap();
        assert_eq!(e[0].state, TcpState::Unknown(0xff));
        assert_eq!(e[0].state.to_string(), "UNKNOWN(0xff)");
    }

    #[test]
    fn socket_links_parse() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[12345]"), None);
        assert_eq!(socket_inode("socket:[]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn check_port_finds_our_own_listener() {
        let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let report = check_port(addr.port()).unwrap();
        drop(listener);

        assert!(!report.free, "{report:?}");
        assert_eq!(report.bind_test.v4, BindOutcome::InUse);
        let entry = report
            .entries
            .iter()
            .find(|e| e.state == TcpState::Listen && e.local == addr)
            .unwrap_or_else(|| panic!("no LISTEN entry for {addr}: {report:?}"));
        assert!(
            entry.owners.iter().any(|o| o.pid == std::process::id()),
            "{entry:?}"
        );
        let human = report.render_human();
        assert!(
            human.starts_with(&format!("port {}/tcp is in use:\n", addr.port())),
            "{human}"
        );
        assert!(
            human.contains(&format!("pid {}", std::process::id())),
            "{human}"
        );
        assert!(report.to_json().contains("\"state\":\"LISTEN\""));
    }

    #[test]
    fn check_port_reports_a_just_released_port_free() {
        let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let report = check_port(port).unwrap();
        assert!(report.free, "{report:?}");
        assert!(
            !report.entries.iter().any(|e| e.state == TcpState::Listen),
            "{report:?}"
        );
        assert_eq!(report.bind_test.v4, BindOutcome::Bound);
        let human = report.render_human();
        assert!(
            human.starts_with(&format!("port {port}/tcp is free\n")),
            "{human}"
        );
    }

    #[test]
    fn port_zero_is_refused() {
        assert!(matches!(check_port(0), Err(PortCheckError::PortZero)));
    }

    fn sample_report() -> PortReport {
        PortReport {
            port: 2000,
            free: false,
            entries: vec![
                SocketEntry {
                    proto: "tcp",
                    local: sa("0.0.0.0:2000"),
                    remote: sa("0.0.0.0:0"),
                    state: TcpState::Listen,
                    uid: 999,
                    inode: 41234,
                    owners: vec![Owner {
                        pid: 1234,
                        comm: "redis-server".into(),
                        cmdline: "redis-server *:2000".into(),
                    }],
                },
                SocketEntry {
                    proto: "tcp",
                    local: sa("127.0.0.1:2000"),
                    remote: sa("127.0.0.1:50000"),
                    state: TcpState::TimeWait,
                    uid: 0,
                    inode: 0,
                    owners: vec![],
                },
            ],
            bind_test: BindTest {
                v4: BindOutcome::InUse,
                v6: BindOutcome::Failed("weird \"error\"\n".into()),
            },
            unreadable_pids: 0,
            skipped_lines: 0,
        }
    }

    #[test]
    fn human_report_names_the_holder() {
        let human = sample_report().render_human();
        let mut lines = human.lines();
        assert_eq!(lines.next(), Some("port 2000/tcp is in use:"));
        assert_eq!(lines.next(), Some(r#"  bind [::]:2000: weird "error"\n"#));
        assert_eq!(
            lines.next(),
            Some(
                "  tcp   0.0.0.0:2000           LISTEN       pid 1234 (redis-server) \
                 redis-server *:2000"
            )
        );
        let tw = lines.next().unwrap();
        assert!(
            tw.contains("TIME_WAIT") && tw.contains("peer 127.0.0.1:50000"),
            "{tw}"
        );
        assert!(tw.ends_with("(no process: held by the kernel)"), "{tw}");
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn human_report_escapes_control_characters() {
        let mut r = sample_report();
        r.entries[0].owners[0].comm = "evil\x1b[2J".into();
        r.entries[0].owners[0].cmdline = "x".repeat(500);
        let human = r.render_human();
        assert!(!human.contains('\x1b'));
        assert!(human.contains("evil\\u{1b}[2J"), "{human}");
        assert!(human.contains(&format!("{}…", "x".repeat(HUMAN_CMDLINE_MAX))));
    }

    #[test]
    fn json_is_complete_and_escaped() {
        let mut r = sample_report();
        r.entries[0].owners[0].cmdline = "a\"b\\c\nd\x01\u{7f}é".into();
        assert_eq!(
            r.to_json(),
            concat!(
                r#"{"port":2000,"free":false,"entries":["#,
                r#"{"proto":"tcp","local":"0.0.0.0:2000","remote":"0.0.0.0:0","state":"LISTEN","#,
                r#""uid":999,"inode":41234,"owners":[{"pid":1234,"comm":"redis-server","#,
                r#""cmdline":"a\"b\\c\nd\u0001\u007fé"}]},"#,
                r#"{"proto":"tcp","local":"127.0.0.1:2000","remote":"127.0.0.1:50000","#,
                r#""state":"TIME_WAIT","uid":0,"inode":0,"owners":[]}],"#,
                r#""bind_test":{"v4":{"result":"in_use"},"#,
                r#""v6":{"result":"failed","error":"weird \"error\"\n"}},"#,
                r#""unreadable_pids":0,"skipped_lines":0}"#
            )
        );
    }
}
