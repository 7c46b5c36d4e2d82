//! HB.STATS: the statistics of this node and of each of its links since the daemon started
//! (what `hotbackup stats` shows; D3's "Show statistics").
//!
//! The reply is an array of maps (flat arrays of pairs in RESP2): the node's own figures
//! first, then one map per link with the fields of [`crate::link::stats::LinkStat::fields`].
//! Nothing here is persisted: the figures reset when the daemon restarts.

use super::{Args, CmdResult, Ctx};
use crate::resp::{Proto, encode};

fn map(out: &mut Vec<u8>, fields: &[(&str, String)], proto: Proto) {
    encode::map_len(out, fields.len(), proto);
    for (k, v) in fields {
        encode::bulk(out, k.as_bytes());
        encode::bulk(out, v.as_bytes());
    }
}

/// The node's figures: identity, LSNs, the link's process-wide counters.
pub fn node_fields(ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    let j = ctx.eng.journal();
    let (applied, checkpoint) = ctx
        .eng
        .store()
        .map(|st| (st.meta().applied_lsn, st.meta().checkpoint_lsn))
        .unwrap_or((0, 0));
    let ls = &ctx.srv.link.stats;
    let st = ctx.srv.stats;
    vec![
        ("instance", ctx.srv.settings.instance.clone()),
        (
            "role",
            if ctx.eng.is_slave() {
                "slave"
            } else {
                "master"
            }
            .to_string(),
        ),
        ("generation", ctx.eng.generation().to_string()),
        ("started_ms", st.started_ms.to_string()),
        ("uptime_s", st.started.elapsed().as_secs().to_string()),
        ("reset", "on restart".to_string()),
        ("next_lsn", j.next_lsn().to_string()),
        ("durable_lsn", j.durable_lsn().to_string()),
        ("applied_lsn", applied.to_string()),
        ("checkpoint_lsn", checkpoint.to_string()),
        ("journal_first_lsn", j.first_lsn().to_string()),
        ("journal_bytes", j.size_bytes().to_string()),
        ("accepted", ls.accepted.to_string()),
        ("dials", ls.dials.to_string()),
        ("auth_failures", ls.auth_failures.to_string()),
        ("disconnects", ls.disconnects.to_string()),
        ("full_syncs", ls.full_syncs.to_string()),
        ("partial_syncs", ls.partial_syncs.to_string()),
        ("sync_timeouts", ls.sync_timeouts.to_string()),
        ("slots_dropped", ls.slots_dropped.to_string()),
    ]
}

/// HB.STATS
pub fn stats(ctx: &mut Ctx<'_>, _args: Args) -> CmdResult {
    let proto = if ctx.conn.proto == Proto::Resp3 {
        Proto::Resp3
    } else {
        Proto::Resp2
    };
    let node = node_fields(ctx);
    let links = ctx.srv.link.link_stats(ctx.eng);
    encode::array_len(ctx.out, 1 + links.len());
    map(ctx.out, &node, proto);
    for l in &links {
        map(ctx.out, &l.fields(), proto);
    }
    Ok(())
}
