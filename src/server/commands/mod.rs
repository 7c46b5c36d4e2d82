//! Commands: the table of what clients may ask, and the dispatcher.
//!
//! Each group of commands lives in its own file and exposes handlers of one shape:
//! `fn(&mut Ctx, Args) -> CmdResult`. A handler checks everything it can before it writes, so
//! a command either fails without an effect or applies all its ops; it writes its reply into
//! `ctx.out` in the connection's protocol. The dispatcher does what every command shares:
//! lookup, authentication, arity, pub/sub's subscribed mode, MULTI queueing, error replies, and
//! ending the journal transaction after a command (or after EXEC).

mod apply;
mod connection;
mod hashes;
pub mod keys;
mod native;
mod pubsub;
mod role;
pub mod sentinel;
pub mod server;
pub mod snapshot;
mod stats;
mod strings;
mod transactions;
mod verify;

use std::collections::HashMap;
use std::sync::OnceLock;

use thiserror::Error;

use super::conn::ConnState;
use super::engine::{Engine, WriteError, WriteRefused};
use crate::resp::encode;
use crate::store::{Reader, StoreError, item};

pub use keys::ScanCursors;
pub use server::{ClientDirectory, LoopStats, ServerInfo};

/// Arguments of a command, the name first.
pub type Args = Vec<Vec<u8>>;
pub type CmdResult = Result<(), CmdError>;
type Handler = fn(&mut Ctx<'_>, Args) -> CmdResult;

/// What a command may do, for MULTI, failure handling and COMMAND.
pub mod flags {
    /// May change data.
    pub const WRITE: u32 = 1;
    /// Reads data.
    pub const READ: u32 = 2;
    /// Allowed before AUTH.
    pub const NOAUTH: u32 = 4;
    /// Not queued by MULTI (runs at once).
    pub const NOQUEUE: u32 = 8;
    /// Server administration.
    pub const ADMIN: u32 = 16;
    /// Runs in O(1) time.
    pub const FAST: u32 = 32;
}

pub struct Spec {
    pub name: &'static str,
    /// Redis arity: n > 0 exactly n arguments (with the name), n < 0 at least -n.
    pub arity: i32,
    pub flags: u32,
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    handler: Handler,
}

const fn spec(
    name: &'static str,
    arity: i32,
    flags: u32,
    keys: (i32, i32, i32),
    handler: Handler,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        handler,
    }
}

use flags::*;
const NOKEY: (i32, i32, i32) = (0, 0, 0);
const KEY1: (i32, i32, i32) = (1, 1, 1);

/// Every command the server knows.
pub static COMMANDS: &[Spec] = &[
    // connection
    spec("ping", -1, FAST, NOKEY, connection::ping),
    spec("echo", 2, FAST, NOKEY, connection::echo),
    spec(
        "hello",
        -1,
        NOAUTH | NOQUEUE | FAST,
        NOKEY,
        connection::hello,
    ),
    spec("auth", -2, NOAUTH | NOQUEUE | FAST, NOKEY, connection::auth),
    spec("quit", -1, NOAUTH | NOQUEUE | FAST, NOKEY, connection::quit),
    spec("select", 2, FAST, NOKEY, connection::select),
    spec("client", -2, 0, NOKEY, connection::client),
    spec(
        "reset",
        1,
        NOAUTH | NOQUEUE | FAST,
        NOKEY,
        connection::reset,
    ),
    // server
    spec("command", -1, 0, NOKEY, server::command),
    spec("config", -2, ADMIN, NOKEY, server::config),
    spec("info", -1, 0, NOKEY, server::info),
    spec("dbsize", 1, READ | FAST, NOKEY, server::dbsize),
    spec("flushdb", -1, WRITE, NOKEY, server::flushdb),
    spec("flushall", -1, WRITE, NOKEY, server::flushall),
    spec("time", 1, FAST, NOKEY, server::time),
    spec("save", 1, ADMIN, NOKEY, server::save),
    spec("bgsave", -1, ADMIN, NOKEY, server::save),
    spec("lastsave", 1, FAST, NOKEY, server::lastsave),
    // keys
    spec("type", 2, READ | FAST, KEY1, keys::type_),
    spec("exists", -2, READ | FAST, (1, -1, 1), keys::exists),
    spec("del", -2, WRITE, (1, -1, 1), keys::del),
    spec("unlink", -2, WRITE | FAST, (1, -1, 1), keys::del),
    spec("keys", 2, READ, NOKEY, keys::keys),
    spec("scan", -2, READ, NOKEY, keys::scan),
    spec("expire", -3, WRITE, KEY1, keys::unsupported_expiry),
    spec("pexpire", -3, WRITE, KEY1, keys::unsupported_expiry),
    spec("expireat", -3, WRITE, KEY1, keys::unsupported_expiry),
    spec("pexpireat", -3, WRITE, KEY1, keys::unsupported_expiry),
    spec("ttl", 2, READ | FAST, KEY1, keys::ttl),
    spec("pttl", 2, READ | FAST, KEY1, keys::ttl),
    spec("persist", 2, WRITE | FAST, KEY1, keys::persist),
    // strings
    spec("get", 2, READ | FAST, KEY1, strings::get),
    spec("set", -3, WRITE, KEY1, strings::set),
    spec("setnx", 3, WRITE | FAST, KEY1, strings::setnx),
    spec("getset", 3, WRITE | FAST, KEY1, strings::getset),
    spec("mget", -2, READ | FAST, (1, -1, 1), strings::mget),
    spec("mset", -3, WRITE, (1, -1, 2), strings::mset),
    spec("incr", 2, WRITE | FAST, KEY1, strings::incr),
    spec("decr", 2, WRITE | FAST, KEY1, strings::decr),
    spec("incrby", 3, WRITE | FAST, KEY1, strings::incrby),
    spec("decrby", 3, WRITE | FAST, KEY1, strings::decrby),
    spec("append", 3, WRITE | FAST, KEY1, strings::append),
    spec("strlen", 2, READ | FAST, KEY1, strings::strlen),
    spec("setex", 4, WRITE, KEY1, keys::unsupported_expiry),
    spec("psetex", 4, WRITE, KEY1, keys::unsupported_expiry),
    spec("getex", -2, WRITE, KEY1, keys::unsupported_expiry),
    // hashes
    spec("hset", -4, WRITE | FAST, KEY1, hashes::hset),
    spec("hmset", -4, WRITE | FAST, KEY1, hashes::hmset),
    spec("hsetnx", 4, WRITE | FAST, KEY1, hashes::hsetnx),
    spec("hget", 3, READ | FAST, KEY1, hashes::hget),
    spec("hdel", -3, WRITE | FAST, KEY1, hashes::hdel),
    spec("hgetall", 2, READ, KEY1, hashes::hgetall),
    spec("hkeys", 2, READ, KEY1, hashes::hkeys),
    spec("hvals", 2, READ, KEY1, hashes::hvals),
    spec("hlen", 2, READ | FAST, KEY1, hashes::hlen),
    spec("hexists", 3, READ | FAST, KEY1, hashes::hexists),
    spec("hmget", -3, READ | FAST, KEY1, hashes::hmget),
    spec("hincrby", 4, WRITE | FAST, KEY1, hashes::hincrby),
    spec("hstrlen", 3, READ | FAST, KEY1, hashes::hstrlen),
    // transactions
    spec("multi", 1, NOQUEUE | FAST, NOKEY, transactions::multi),
    spec("exec", 1, NOQUEUE, NOKEY, transactions::exec),
    spec("discard", 1, NOQUEUE | FAST, NOKEY, transactions::discard),
    spec("watch", -2, NOQUEUE | FAST, (1, -1, 1), transactions::watch),
    spec("unwatch", 1, NOQUEUE | FAST, NOKEY, transactions::unwatch),
    // native: files named explicitly
    spec("hb.write", 4, WRITE, NOKEY, native::write),
    spec("hb.read", 3, READ, NOKEY, native::read),
    spec("hb.delete", 3, WRITE, NOKEY, native::delete),
    spec("hb.files", 1, READ, NOKEY, native::files),
    spec("hb.create", -2, WRITE, NOKEY, native::create),
    spec("hb.logged", -2, READ, NOKEY, native::logged),
    spec("hb.drop", 2, WRITE, NOKEY, native::drop_file),
    spec("hb.status", 1, ADMIN, NOKEY, native::status),
    spec("hb.stats", 1, ADMIN, NOKEY, stats::stats),
    spec("hb.apply", 2, WRITE, NOKEY, apply::apply),
    spec(
        "hb.snapshot",
        -2,
        ADMIN | NOQUEUE,
        NOKEY,
        snapshot::snapshot,
    ),
    // roles
    spec("role", 1, FAST, NOKEY, role::role),
    spec("hb.promote", 1, ADMIN | NOQUEUE, NOKEY, role::promote),
    spec("hb.rejoin", -1, ADMIN | NOQUEUE, NOKEY, role::rejoin),
    spec("hb.switchover", 1, ADMIN | NOQUEUE, NOKEY, role::switchover),
    spec("hb.incidents", -1, ADMIN, NOKEY, role::incidents),
    spec("hb.verify", -1, ADMIN | NOQUEUE, NOKEY, verify::verify),
    spec("sentinel", -2, NOQUEUE, NOKEY, sentinel::sentinel),
    // pub/sub (the node publishes; clients subscribe)
    spec("subscribe", -2, NOQUEUE, NOKEY, pubsub::subscribe),
    spec("unsubscribe", -1, NOQUEUE, NOKEY, pubsub::unsubscribe),
    spec("psubscribe", -2, NOQUEUE, NOKEY, pubsub::psubscribe),
    spec("punsubscribe", -1, NOQUEUE, NOKEY, pubsub::punsubscribe),
];

fn table() -> &'static HashMap<&'static str, &'static Spec> {
    static TABLE: OnceLock<HashMap<&'static str, &'static Spec>> = OnceLock::new();
    TABLE.get_or_init(|| COMMANDS.iter().map(|s| (s.name, s)).collect())
}

/// Looks a command up by name, case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    let mut buf = [0u8; 32];
    if name.len() > buf.len() {
        return None;
    }
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    let s = std::str::from_utf8(lower).ok()?;
    table().get(s).copied()
}

/// Why a command failed; the Display text is the error reply (with its code).
#[derive(Debug, Error)]
pub enum CmdError {
    #[error("ERR wrong number of arguments for '{0}' command")]
    Arity(String),
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR hash value is not an integer")]
    HashNotInteger,
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("ERR {0} is not supported by hotbackup")]
    NotSupported(String),
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    /// A full error line with its code, e.g. "ERR no such file 'x'".
    #[error("{0}")]
    Msg(String),
    #[error("ERR {0}")]
    Refused(#[from] WriteRefused),
    #[error("ERR internal store error: {0}")]
    Store(#[from] StoreError),
}

impl From<WriteError> for CmdError {
    fn from(e: WriteError) -> CmdError {
        match e {
            WriteError::Refused(
                r @ (WriteRefused::NoReplicas
                | WriteRefused::ReadOnly(_)
                | WriteRefused::Fenced(_)
                | WriteRefused::CheckingPeers
                | WriteRefused::Paused),
            ) => CmdError::Msg(r.to_string()),
            WriteError::Refused(r) => CmdError::Refused(r),
            WriteError::Store(s) => CmdError::Store(s),
        }
    }
}

impl From<crate::files::NameError> for CmdError {
    fn from(e: crate::files::NameError) -> CmdError {
        CmdError::Msg(format!("ERR {e}"))
    }
}

impl From<item::BadItem> for CmdError {
    fn from(_: item::BadItem) -> CmdError {
        CmdError::Store(StoreError::Corrupt("an item does not decode".into()))
    }
}

/// Everything a handler may use.
pub struct Ctx<'a> {
    pub eng: &'a mut Engine,
    pub conn: &'a mut ConnState,
    pub out: &'a mut Vec<u8>,
    pub srv: &'a ServerInfo<'a>,
}

impl Ctx<'_> {
    pub fn proto(&self) -> crate::resp::Proto {
        self.conn.proto
    }

    /// The raw stored item `id` of the current file.
    pub fn get(&mut self, id: &[u8]) -> Result<Option<Vec<u8>>, CmdError> {
        let file = self.conn.file.clone();
        self.get_in(&file, id)
    }

    pub fn get_in(&mut self, file: &str, id: &[u8]) -> Result<Option<Vec<u8>>, CmdError> {
        Ok(self.eng.reader()?.get_raw(file, id)?)
    }

    /// The current file, checked to be writable by clients.
    pub fn writable_file(&self) -> Result<String, CmdError> {
        if crate::files::is_reserved(&self.conn.file) {
            return Err(crate::files::NameError::Reserved(self.conn.file.clone()).into());
        }
        Ok(self.conn.file.clone())
    }

    pub fn ok(&mut self) -> CmdResult {
        encode::simple(self.out, "OK");
        Ok(())
    }
}

/// Strict integer parsing as Redis does it (no spaces, no '+', no leading zeros).
pub fn parse_i64(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let s = std::str::from_utf8(b).ok()?;
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty()
        || !digits.bytes().all(|c| c.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
        || s == "-0"
    {
        return None;
    }
    s.parse().ok()
}

pub fn arg_i64(b: &[u8]) -> Result<i64, CmdError> {
    parse_i64(b).ok_or(CmdError::NotInteger)
}

/// What a connection to the Sentinel port may run.
const SENTINEL_PORT_COMMANDS: &[&str] = &[
    "ping",
    "echo",
    "hello",
    "auth",
    "quit",
    "reset",
    "client",
    "command",
    "info",
    "role",
    "sentinel",
    "subscribe",
    "unsubscribe",
    "psubscribe",
    "punsubscribe",
];

/// Redis's reply to a write on a replica.
pub const READONLY: &str = "READONLY You can't write against a read only replica.";

/// What kind of command ran, for the event loop's handling of a failed turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Touched data (read or write): its reply is void if the turn's writes fail.
    Data,
    /// Connection or server state only: its reply stands.
    Other,
}

fn unknown_command(args: &Args) -> String {
    let name = String::from_utf8_lossy(&args[0]);
    let mut rest = String::new();
    for a in args.iter().skip(1) {
        if rest.len() >= 128 {
            break;
        }
        rest.push('\'');
        rest.push_str(&String::from_utf8_lossy(a));
        rest.push_str("' ");
    }
    rest.truncate(128);
    format!("ERR unknown command '{name}', with args beginning with: {rest}")
}

/// A command's name as Redis reports it in errors: `client|setname` for a container command
/// with a subcommand.
fn full_name(spec: &Spec, args: &Args) -> String {
    match args.get(1) {
        Some(sub) if matches!(spec.name, "client" | "config" | "command" | "sentinel") => {
            format!(
                "{}|{}",
                spec.name,
                String::from_utf8_lossy(sub).to_ascii_lowercase()
            )
        }
        _ => spec.name.to_string(),
    }
}

/// Runs one request (already split into arguments) and writes its reply.
pub fn execute(ctx: &mut Ctx<'_>, args: Args) -> Class {
    if args.is_empty() {
        return Class::Other;
    }
    let Some(spec) = lookup(&args[0]) else {
        if ctx.conn.multi.is_some() {
            ctx.conn.multi_dirty = true;
        }
        encode::error(ctx.out, &unknown_command(&args));
        return Class::Other;
    };
    if ctx.conn.sentinel && !SENTINEL_PORT_COMMANDS.contains(&spec.name) {
        encode::error(
            ctx.out,
            &format!(
                "ERR unknown command '{}' on the Sentinel port: data commands go to the client port",
                spec.name
            ),
        );
        return Class::Other;
    }
    ctx.conn.last_cmd = spec.name;
    ctx.conn.commands += 1;
    if !ctx.conn.authed && spec.flags & NOAUTH == 0 {
        encode::error(ctx.out, &CmdError::NoAuth.to_string());
        return Class::Other;
    }
    if spec.flags & WRITE != 0 {
        if let Some(refusal) = ctx.eng.role_refusal() {
            if ctx.conn.multi.is_some() {
                ctx.conn.multi_dirty = true;
            }
            encode::error(ctx.out, &refusal.to_string());
            return Class::Other;
        }
    }
    let arity_ok = if spec.arity >= 0 {
        args.len() == spec.arity as usize
    } else {
        args.len() >= (-spec.arity) as usize
    };
    if ctx.conn.subs.is_some()
        && ctx.conn.proto == crate::resp::Proto::Resp2
        && !crate::server::pubsub::ALLOWED_WHILE_SUBSCRIBED.contains(&spec.name)
    {
        // Redis checks the arity first, then the subscribed-mode context (RESP3 has none).
        let msg = if arity_ok {
            format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                full_name(spec, &args)
            )
        } else {
            CmdError::Arity(spec.name.into()).to_string()
        };
        encode::error(ctx.out, &msg);
        return Class::Other;
    }
    if ctx.conn.multi.is_some() && spec.flags & NOQUEUE == 0 {
        if !arity_ok {
            ctx.conn.multi_dirty = true;
            encode::error(ctx.out, &CmdError::Arity(spec.name.into()).to_string());
        } else if let Some(q) = ctx.conn.multi.as_mut() {
            q.push(args);
            encode::simple(ctx.out, "QUEUED");
        }
        return Class::Other;
    }
    if !arity_ok {
        encode::error(ctx.out, &CmdError::Arity(spec.name.into()).to_string());
        return Class::Other;
    }
    let class = if spec.flags & (WRITE | READ) != 0 || spec.name == "exec" {
        Class::Data
    } else {
        Class::Other
    };
    if let Err(e) = (spec.handler)(ctx, args) {
        encode::error(ctx.out, &e.to_string());
    }
    if ctx.conn.multi.is_none() {
        ctx.eng.end_txn();
    }
    class
}

/// Runs one queued command inside EXEC (no queueing, no auth check, no end of transaction).
fn execute_queued(ctx: &mut Ctx<'_>, args: Args) {
    match lookup(&args[0]) {
        Some(spec) => {
            if let Err(e) = (spec.handler)(ctx, args) {
                encode::error(ctx.out, &e.to_string());
            }
        }
        None => encode::error(ctx.out, &unknown_command(&args)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_like_redis() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-42"), Some(-42));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b" 1",
            b"1 ",
            b"+1",
            b"01",
            b"-0",
            b"1.5",
            b"9223372036854775808",
            b"-",
            b"abc",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(lookup(b"GeT").map(|s| s.name), Some("get"));
        assert!(lookup(b"nosuchcommand").is_none());
        assert!(lookup(&[b'a'; 100]).is_none());
    }

    #[test]
    fn every_command_is_in_the_table_once() {
        assert_eq!(table().len(), COMMANDS.len());
    }
}
