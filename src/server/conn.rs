//! The state of one client connection that commands see and change.
//!
//! Socket buffers live in the event loop; this is what a command may touch: the current file,
//! the protocol version, authentication, the client's name, a MULTI queue, a snapshot being read,
//! pub/sub subscriptions.

use std::time::Instant;

use super::commands::snapshot::SnapshotCursor;
use super::pubsub::Subscriptions;
use crate::files::DEFAULT_FILE;
use crate::resp::Proto;

/// A queued MULTI command: its arguments.
pub type Queued = Vec<Vec<u8>>;

#[derive(Debug)]
pub struct ConnState {
    pub id: u64,
    /// Peer address ("127.0.0.1:5000" or "unix").
    pub addr: String,
    /// Local address the client connected to.
    pub laddr: String,
    pub file: String,
    pub proto: Proto,
    pub authed: bool,
    pub name: Option<String>,
    pub lib_name: Option<String>,
    pub lib_ver: Option<String>,
    /// Some while between MULTI and EXEC/DISCARD.
    pub multi: Option<Vec<Queued>>,
    /// A command failed to queue: EXEC must abort.
    pub multi_dirty: bool,
    /// Running the queued commands of an EXEC (they form one journal record).
    pub in_exec: bool,
    /// Close after the pending replies are sent (QUIT, protocol error).
    pub closing: bool,
    pub created: Instant,
    pub last_active: Instant,
    pub last_cmd: &'static str,
    pub commands: u64,
    /// Something a command asked of the link, which the event loop does after it (the
    /// command's reply is written then).
    pub link_action: Option<LinkAction>,
    /// Connected to the Sentinel port: only Sentinel and connection commands, and ROLE says
    /// "sentinel".
    pub sentinel: bool,
    /// A snapshot being pulled by `hotbackup save` (HB.SNAPSHOT).
    pub snapshot: Option<Box<SnapshotCursor>>,
    /// Pub/sub subscriptions; Some only while there is at least one (subscribed mode).
    pub subs: Option<Box<Subscriptions>>,
}

/// What a command may ask of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    /// HB.SWITCHOVER: hand over to the slave.
    Switchover,
    /// HB.VERIFY: start an online verify run.
    Verify,
}

impl ConnState {
    pub fn new(id: u64, addr: String, laddr: String, authed: bool) -> ConnState {
        let now = Instant::now();
        ConnState {
            id,
            addr,
            laddr,
            file: DEFAULT_FILE.to_string(),
            proto: Proto::Resp2,
            authed,
            name: None,
            lib_name: None,
            lib_ver: None,
            multi: None,
            multi_dirty: false,
            in_exec: false,
            closing: false,
            created: now,
            last_active: now,
            last_cmd: "NULL",
            link_action: None,
            sentinel: false,
            commands: 0,
            snapshot: None,
            subs: None,
        }
    }

    /// One line of CLIENT LIST / CLIENT INFO, in Redis's field order where they apply.
    pub fn info_line(&self, qbuf: usize, obuf: usize) -> String {
        format!(
            "id={} addr={} laddr={} name={} age={} idle={} db={} sub={} psub={} multi={} qbuf={} omem={} tot-cmds={} cmd={} resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.name.as_deref().unwrap_or(""),
            self.created.elapsed().as_secs(),
            self.last_active.elapsed().as_secs(),
            self.file,
            self.subs.as_ref().map_or(0, |s| s.channels.len()),
            self.subs.as_ref().map_or(0, |s| s.patterns.len()),
            self.multi.as_ref().map_or(-1, |q| q.len() as i64),
            qbuf,
            obuf,
            self.commands,
            self.last_cmd,
            if self.proto == Proto::Resp3 { 3 } else { 2 },
            self.lib_name.as_deref().unwrap_or(""),
            self.lib_ver.as_deref().unwrap_or(""),
        )
    }
}
