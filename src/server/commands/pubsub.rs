//! Pub/sub commands: SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE PUNSUBSCRIBE, with Redis 7's replies
//! (one confirmation per channel or pattern, carrying the connection's count of channels plus
//! patterns; RESP3 connections get them as push frames).
//!
//! A RESP2 connection with at least one subscription is in subscribed mode: the dispatcher
//! (`commands/mod.rs`) refuses everything but these commands, PING, QUIT and RESET with
//! Redis's error. What is published is the node's own doing (`+switch-master`, see
//! `sentinel.rs`); there is no PUBLISH. Unlike Redis, these commands are refused inside MULTI
//! (Redis queues them and writes one reply per channel into EXEC's array, which then no
//! longer has one element per command).

use super::{Args, CmdError, CmdResult, Ctx};
use crate::server::pubsub::{self, MAX_SUBSCRIPTIONS, Subscriptions};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Channel,
    Pattern,
}

fn refuse_in_multi(ctx: &mut Ctx<'_>) -> CmdResult {
    if ctx.conn.multi.is_some() {
        ctx.conn.multi_dirty = true;
        return Err(CmdError::Msg(
            "ERR Command not allowed inside a transaction".into(),
        ));
    }
    Ok(())
}

fn subscribe_to(ctx: &mut Ctx<'_>, args: Args, kind: Kind) -> CmdResult {
    refuse_in_multi(ctx)?;
    let names = &args[1..];
    let held = ctx.conn.subs.as_ref().map_or(0, |s| s.count());
    if held.saturating_add(names.len()) > MAX_SUBSCRIPTIONS {
        let fresh = names
            .iter()
            .filter(|n| {
                !ctx.conn.subs.as_ref().is_some_and(|s| match kind {
                    Kind::Channel => s.channels.contains(*n),
                    Kind::Pattern => s.patterns.contains(*n),
                })
            })
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        if held + fresh > MAX_SUBSCRIPTIONS {
            return Err(CmdError::Msg(format!(
                "ERR too many subscriptions on this connection (at most {MAX_SUBSCRIPTIONS} channels and patterns)"
            )));
        }
    }
    let proto = ctx.conn.proto;
    let subs = ctx
        .conn
        .subs
        .get_or_insert_with(|| Box::new(Subscriptions::default()));
    let word = match kind {
        Kind::Channel => "subscribe",
        Kind::Pattern => "psubscribe",
    };
    for name in names {
        match kind {
            Kind::Channel => subs.channels.insert(name.clone()),
            Kind::Pattern => subs.patterns.insert(name.clone()),
        };
        pubsub::confirmation(ctx.out, proto, word, Some(name), subs.count());
    }
    Ok(())
}

fn unsubscribe_from(ctx: &mut Ctx<'_>, args: Args, kind: Kind) -> CmdResult {
    refuse_in_multi(ctx)?;
    let proto = ctx.conn.proto;
    let word = match kind {
        Kind::Channel => "unsubscribe",
        Kind::Pattern => "punsubscribe",
    };
    let mut subs = ctx.conn.subs.take().unwrap_or_default();
    let set = match kind {
        Kind::Channel => &mut subs.channels,
        Kind::Pattern => &mut subs.patterns,
    };
    // Without arguments: every channel (pattern) the connection has, or one null
    // confirmation when it has none.
    let names: Vec<Vec<u8>> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        set.iter().cloned().collect()
    };
    if names.is_empty() {
        let count = subs.count();
        pubsub::confirmation(ctx.out, proto, word, None, count);
    }
    for name in &names {
        match kind {
            Kind::Channel => subs.channels.remove(name),
            Kind::Pattern => subs.patterns.remove(name),
        };
        pubsub::confirmation(ctx.out, proto, word, Some(name), subs.count());
    }
    if subs.count() > 0 {
        ctx.conn.subs = Some(subs);
    }
    Ok(())
}

/// SUBSCRIBE channel [channel ...]
pub fn subscribe(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    subscribe_to(ctx, args, Kind::Channel)
}

/// UNSUBSCRIBE [channel ...]
pub fn unsubscribe(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    unsubscribe_from(ctx, args, Kind::Channel)
}

/// PSUBSCRIBE pattern [pattern ...] (Redis glob patterns, `crate::glob`)
pub fn psubscribe(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    subscribe_to(ctx, args, Kind::Pattern)
}

/// PUNSUBSCRIBE [pattern ...]
pub fn punsubscribe(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    unsubscribe_from(ctx, args, Kind::Pattern)
}
