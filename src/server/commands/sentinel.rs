//! SENTINEL: every node answers the Redis Sentinel discovery commands about its own database,
//! so a Redis client in Sentinel mode, given the nodes' client addresses as its "sentinels"
//! and the instance name as the master name, finds the master after a failover or a
//! switchover without any configuration change.
//!
//! What a node says of the master: a writable master names itself; a slave names the master
//! it follows (flagged `s_down` while its link is down); a fenced node names the master that
//! fenced it; a master still checking with its peers flags itself `s_down`, so that clients
//! ask the other node. Clients then check `ROLE` on the address, which every node answers.
//!
//! This module also owns the one Sentinel event a node publishes, `+switch-master` (see
//! [`MasterWatch`]): clients that learn of a new master from that message (Jedis's
//! `JedisSentinelPool`, ioredis's `failoverDetector`, go-redis's failover client) subscribe
//! to it on each node.

use super::role::split_addr;
use super::{Args, CmdError, CmdResult, Ctx};
use crate::resp::{Proto, encode};
use crate::server::engine::Engine;

/// One Sentinel "state" map, in wire order.
type State = Vec<(&'static str, String)>;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn reply_state(ctx: &mut Ctx<'_>, st: &State) {
    let proto = if ctx.conn.proto == Proto::Resp3 {
        Proto::Resp3
    } else {
        Proto::Resp2
    };
    encode::map_len(ctx.out, st.len(), proto);
    for (k, v) in st {
        encode::bulk(ctx.out, k.as_bytes());
        encode::bulk(ctx.out, v.as_bytes());
    }
}

fn reply_states(ctx: &mut Ctx<'_>, states: &[State]) {
    encode::array_len(ctx.out, states.len());
    for st in states {
        reply_state(ctx, st);
    }
}

/// This node's client address as the asking client reaches it (a wildcard listen address is
/// replaced by the address the client connected to).
fn own_addr(ctx: &Ctx<'_>) -> String {
    own_addr_for(&ctx.srv.link.settings().client_addr, &ctx.conn.laddr)
}

/// This node's client address (`configured`) as seen by a client connected to `laddr`.
fn own_addr_for(configured: &str, laddr: &str) -> String {
    match configured.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => match laddr.parse::<std::net::SocketAddr>() {
            Ok(l) => std::net::SocketAddr::new(l.ip(), a.port()).to_string(),
            Err(_) => configured.to_string(),
        },
        Ok(_) => configured.to_string(),
        Err(_) => laddr.to_string(),
    }
}

/// The master `SENTINEL get-master-addr-by-name` names, before this node's own address is
/// spelled for a particular client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reported<'a> {
    /// This node: a writable master, or one still checking with its peers.
    Myself,
    /// The master this slave follows, or that fenced this node (its client address).
    At(&'a str),
    /// A slave or fenced node that does not know the master's address (yet).
    Unknown,
}

fn reported(eng: &Engine) -> Reported<'_> {
    if !eng.is_slave() && eng.fenced().is_none() {
        return Reported::Myself;
    }
    match eng.master_addr() {
        Some(a) if !a.is_empty() => Reported::At(a),
        _ => Reported::Unknown,
    }
}

/// A known master address, kept across turns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterIs {
    Myself,
    At(String),
}

impl MasterIs {
    /// The address as a client connected to `laddr` is told it (see [`own_addr_for`]).
    fn spelled(&self, configured: &str, laddr: &str) -> String {
        match self {
            MasterIs::Myself => own_addr_for(configured, laddr),
            MasterIs::At(a) => a.clone(),
        }
    }
}

/// The master address changed: from `old` to `new`, both known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    pub old: MasterIs,
    pub new: MasterIs,
}

impl Switch {
    /// The `+switch-master` message exactly as Redis Sentinel publishes it:
    /// `<master-name> <old-ip> <old-port> <new-ip> <new-port>`, the addresses as a client
    /// connected to `laddr` would get them from `SENTINEL get-master-addr-by-name`.
    pub fn message(&self, name: &str, configured: &str, laddr: &str) -> String {
        let (oip, oport) = split_addr(&self.old.spelled(configured, laddr));
        let (nip, nport) = split_addr(&self.new.spelled(configured, laddr));
        format!("{name} {oip} {oport} {nip} {nport}")
    }
}

/// Watches the master this node reports and tells when it moves, the event Redis Sentinel
/// publishes as `+switch-master`: a promotion, a switchover (on both nodes), a slave that now
/// follows another master, a fenced node that learns the new master. The event loop asks
/// once a turn; nothing else needs to know.
///
/// Only an address change counts: flags (`s_down` while a link is down, a master checking its
/// peers) are not an event. An unknown address is never published (Redis Sentinel would not
/// publish one): when the address becomes known again, a change is told from the last known
/// one. The first address a node learns after it starts is not a switch (there was none
/// before it), so a restarted slave says nothing when it finds its master.
#[derive(Debug, Default)]
pub struct MasterWatch {
    last_known: Option<MasterIs>,
}

impl MasterWatch {
    pub fn new(eng: &Engine) -> MasterWatch {
        let mut w = MasterWatch::default();
        w.observe(eng);
        w
    }

    /// Compares what the node reports now with the last known address.
    pub fn observe(&mut self, eng: &Engine) -> Option<Switch> {
        let now = match reported(eng) {
            Reported::Unknown => return None,
            Reported::Myself => {
                if self.last_known == Some(MasterIs::Myself) {
                    return None;
                }
                MasterIs::Myself
            }
            Reported::At(a) => {
                if matches!(&self.last_known, Some(MasterIs::At(k)) if k == a) {
                    return None;
                }
                MasterIs::At(a.to_string())
            }
        };
        let old = self.last_known.replace(now.clone())?;
        Some(Switch { old, new: now })
    }
}

/// (address, flags) of the master as this node sees it.
fn master_view(ctx: &Ctx<'_>) -> (String, String) {
    let eng = &*ctx.eng;
    let up = eng.fenced().is_some() || ctx.srv.link.master_link_up();
    match reported(eng) {
        Reported::Myself => {
            let flags = if eng.checking_peers() || eng.writes_wait() {
                "master,s_down"
            } else {
                "master"
            };
            (own_addr(ctx), flags.into())
        }
        Reported::At(a) => (
            a.to_string(),
            if up { "master" } else { "master,s_down" }.into(),
        ),
        Reported::Unknown => (String::new(), "master,s_down,o_down".into()),
    }
}

fn master_state(ctx: &Ctx<'_>, name: &str) -> State {
    let (addr, flags) = master_view(ctx);
    let (ip, port) = split_addr(&addr);
    let slaves = replicas(ctx).len();
    let others = sentinels(ctx).len();
    vec![
        ("name", name.to_string()),
        ("ip", ip),
        ("port", port.to_string()),
        ("runid", String::new()),
        ("flags", flags),
        ("link-pending-commands", "0".into()),
        ("link-refcount", "1".into()),
        ("last-ping-sent", "0".into()),
        ("last-ok-ping-reply", "0".into()),
        ("last-ping-reply", "0".into()),
        (
            "down-after-milliseconds",
            ctx.srv.link.settings().peer_timeout.as_millis().to_string(),
        ),
        ("info-refresh", "0".into()),
        ("role-reported", "master".into()),
        ("role-reported-time", "0".into()),
        ("config-epoch", ctx.eng.generation().to_string()),
        ("num-slaves", slaves.to_string()),
        ("num-other-sentinels", others.to_string()),
        ("quorum", "1".into()),
        ("failover-timeout", "0".into()),
        ("parallel-syncs", "1".into()),
    ]
}

/// The slaves of the database as this node knows them.
fn replicas(ctx: &Ctx<'_>) -> Vec<State> {
    let (master, _) = master_view(ctx);
    let (mhost, mport) = split_addr(&master);
    let mut out = Vec::new();
    let mut add = |addr: &str, up: bool, offset: u64| {
        let (ip, port) = split_addr(addr);
        out.push(vec![
            ("name", addr.to_string()),
            ("ip", ip),
            ("port", port.to_string()),
            ("runid", String::new()),
            ("flags", if up { "slave" } else { "slave,s_down" }.into()),
            ("link-pending-commands", "0".into()),
            ("link-refcount", "1".into()),
            ("last-ping-sent", "0".into()),
            ("last-ok-ping-reply", "0".into()),
            ("last-ping-reply", "0".into()),
            ("down-after-milliseconds", "0".into()),
            ("info-refresh", "0".into()),
            ("role-reported", "slave".into()),
            ("role-reported-time", "0".into()),
            ("master-link-down-time", "0".into()),
            ("master-link-status", if up { "ok" } else { "err" }.into()),
            ("master-host", mhost.clone()),
            ("master-port", mport.to_string()),
            ("slave-priority", "100".into()),
            ("slave-repl-offset", offset.to_string()),
            ("replica-announced", "1".into()),
        ]);
    };
    if ctx.eng.is_slave() {
        add(
            &own_addr(ctx),
            ctx.srv.link.master_link_up(),
            ctx.eng.visible_lsn(),
        );
    } else {
        for p in ctx.srv.link.status(ctx.eng) {
            if p.role == "slave" && !p.client_addr.is_empty() {
                add(&p.client_addr, p.state == "streaming", p.acked_applied);
            }
        }
    }
    out
}

/// The other nodes (each answers these commands too): those this node has a link with.
fn sentinels(ctx: &Ctx<'_>) -> Vec<State> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for p in ctx.srv.link.status(ctx.eng) {
        // A node's Sentinel port if it has one, else its client port (which answers too).
        let addr = if p.sentinel_addr.is_empty() {
            p.client_addr.clone()
        } else {
            p.sentinel_addr.clone()
        };
        if addr.is_empty() || seen.contains(&addr) {
            continue;
        }
        seen.push(addr.clone());
        let (ip, port) = split_addr(&addr);
        out.push(vec![
            ("name", p.name.clone()),
            ("ip", ip),
            ("port", port.to_string()),
            ("runid", String::new()),
            ("flags", "sentinel".into()),
            ("link-pending-commands", "0".into()),
            ("link-refcount", "1".into()),
            ("last-ping-sent", "0".into()),
            ("last-ok-ping-reply", "0".into()),
            ("last-ping-reply", "0".into()),
            ("down-after-milliseconds", "0".into()),
            ("last-hello-message", "0".into()),
            ("voted-leader", "?".into()),
            ("voted-leader-epoch", "0".into()),
        ]);
    }
    out
}

fn no_such_master() -> CmdError {
    CmdError::Msg("ERR No such master with that name".into())
}

/// SENTINEL subcommand [name]
pub fn sentinel(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let me = ctx.srv.settings.instance.clone();
    let name = args.get(2).map(|n| String::from_utf8_lossy(n).into_owned());
    let named = |n: &Option<String>| -> Result<(), CmdError> {
        match n {
            Some(n) if *n == me => Ok(()),
            Some(_) => Err(no_such_master()),
            None => Err(CmdError::Arity(format!("sentinel|{sub}"))),
        }
    };
    match sub.as_str() {
        "get-master-addr-by-name" => {
            if name.is_none() {
                return Err(CmdError::Arity("sentinel|get-master-addr-by-name".into()));
            }
            if name.as_deref() != Some(me.as_str()) {
                encode::null_array(ctx.out, ctx.conn.proto);
                return Ok(());
            }
            let (addr, flags) = master_view(ctx);
            if addr.is_empty() || flags.contains("o_down") {
                encode::null_array(ctx.out, ctx.conn.proto);
                return Ok(());
            }
            let (ip, port) = split_addr(&addr);
            encode::array_len(ctx.out, 2);
            encode::bulk(ctx.out, ip.as_bytes());
            encode::bulk(ctx.out, port.to_string().as_bytes());
            Ok(())
        }
        "masters" => {
            let st = master_state(ctx, &me);
            reply_states(ctx, &[st]);
            Ok(())
        }
        "master" => {
            named(&name)?;
            let st = master_state(ctx, &me);
            reply_state(ctx, &st);
            Ok(())
        }
        "replicas" | "slaves" => {
            named(&name)?;
            let r = replicas(ctx);
            reply_states(ctx, &r);
            Ok(())
        }
        "sentinels" => {
            named(&name)?;
            let s = sentinels(ctx);
            reply_states(ctx, &s);
            Ok(())
        }
        "myid" => {
            let id = hex(&ctx.eng.node_id());
            encode::bulk(ctx.out, id.as_bytes());
            Ok(())
        }
        "ckquorum" => {
            named(&name)?;
            encode::simple(
                ctx.out,
                "OK 1 usable Sentinels. Quorum and failover authorization can be reached",
            );
            Ok(())
        }
        other => Err(CmdError::Msg(format!(
            "ERR SENTINEL {other} is not supported by hotbackup: its nodes answer only the discovery subcommands (get-master-addr-by-name, masters, master, replicas, slaves, sentinels, myid, ckquorum); failover is `hotbackup promote` / `switchover`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_master_is_spelled_as_sentinel_publishes_it() {
        let sw = Switch {
            old: MasterIs::At("10.0.0.1:6379".into()),
            new: MasterIs::Myself,
        };
        assert_eq!(
            sw.message("orders", "10.0.0.2:6380", "10.0.0.2:26379"),
            "orders 10.0.0.1 6379 10.0.0.2 6380"
        );
        // A wildcard listen address: this node as the subscriber reaches it.
        assert_eq!(
            sw.message("orders", "0.0.0.0:6380", "192.168.1.5:26379"),
            "orders 10.0.0.1 6379 192.168.1.5 6380"
        );
        let back = Switch {
            old: MasterIs::Myself,
            new: MasterIs::At("[::1]:7000".into()),
        };
        assert_eq!(
            back.message("orders", "[::1]:6380", "[::1]:26379"),
            "orders ::1 6380 ::1 7000"
        );
    }
}
