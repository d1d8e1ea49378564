//! Pub/Sub commands. The registry and delivery are `server::pubsub`; this
//! file is the commands' replies: one `subscribe`-style confirmation per
//! channel (a RESP3 push, or a RESP2 array), carrying the client's
//! subscription count after that channel.

use std::sync::atomic::{AtomicI64, AtomicUsize};
use std::sync::Arc;

use bytes::Bytes;

use super::keys::help;
use super::{flags::*, key_flags::*, keys, spec, Ctx, Spec, NO_KEYS};
use crate::error::{CmdResult, CommandError};
use crate::server::client::{Client, Subscriptions};
use crate::server::pubsub::{Space, Subscriber};
use crate::server::Server;

const G: &str = "pubsub";
const P: &[&str] = &["pubsub"];
/// Allowed to a RESP2 client in subscribed mode.
const SUB: u32 = PUBSUB | SUBSCRIBED_OK | NOSCRIPT | LOADING | STALE;

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("subscribe", -2, SUB, NO_KEYS, P, G, "Listens for messages published to channels.", subscribe),
    spec("unsubscribe", -1, SUB, NO_KEYS, P, G, "Stops listening to messages posted to channels.", unsubscribe),
    spec("psubscribe", -2, SUB, NO_KEYS, P, G, "Listens for messages published to channels that match one or more patterns.", psubscribe),
    spec("punsubscribe", -1, SUB, NO_KEYS, P, G, "Stops listening to messages published to channels that match one or more patterns.", punsubscribe),
    spec("ssubscribe", -2, SUB, keys(1, -1, 1).flags(NOT_KEY), P, G, "Listens for messages published to shard channels.", ssubscribe),
    spec("sunsubscribe", -1, SUB, keys(1, -1, 1).flags(NOT_KEY), P, G, "Stops listening to messages posted to shard channels.", sunsubscribe),
    spec("publish", 3, PUBSUB | LOADING | STALE | FAST | MAY_REPLICATE | ON_PRIMARY, NO_KEYS, P, G, "Posts a message to a channel.", publish),
    spec("spublish", 3, PUBSUB | LOADING | STALE | FAST | MAY_REPLICATE | ON_PRIMARY, keys(1, 1, 1).flags(NOT_KEY), P, G, "Post a message to a shard channel", spublish),
    Spec { subcommands: PUBSUB_SUBCOMMANDS, ..spec("pubsub", -2, 0, NO_KEYS, &[], G, "A container for Pub/Sub commands.", super::keys::help_only) },
];

#[rustfmt::skip]
static PUBSUB_SUBCOMMANDS: &[Spec] = &[
    spec("pubsub|channels", -2, PUBSUB | LOADING | STALE, NO_KEYS, P, G, "Returns the active channels.", pubsub_channels),
    spec("pubsub|numsub", -2, PUBSUB | LOADING | STALE, NO_KEYS, P, G, "Returns a count of subscribers to channels.", pubsub_numsub),
    spec("pubsub|numpat", 2, PUBSUB | LOADING | STALE, NO_KEYS, P, G, "Returns a count of unique pattern subscriptions.", pubsub_numpat),
    spec("pubsub|shardchannels", -2, PUBSUB | LOADING | STALE, NO_KEYS, P, G, "Returns the active shard channels.", pubsub_shardchannels),
    spec("pubsub|shardnumsub", -2, PUBSUB | LOADING | STALE, NO_KEYS, P, G, "Returns the count of subscribers of shard channels.", pubsub_shardnumsub),
    spec("pubsub|help", 2, LOADING | STALE, NO_KEYS, &[], G, "Returns helpful text about the different subcommands.", pubsub_help),
];

/// The client's subscription state, created on first use.
fn subs(client: &mut Client) -> &mut Subscriptions {
    client.subs.get_or_insert_with(|| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        Box::new(Subscriptions {
            sub: Arc::new(Subscriber {
                tx,
                queued: AtomicUsize::new(0),
                soft_since: AtomicI64::new(0),
                handle: client.handle.clone(),
            }),
            rx,
            channels: Default::default(),
            patterns: Default::default(),
            shard: Default::default(),
        })
    })
}

fn set_of(s: &mut Subscriptions, space: Space) -> &mut std::collections::BTreeSet<Bytes> {
    match space {
        Space::Channel => &mut s.channels,
        Space::Pattern => &mut s.patterns,
        Space::Shard => &mut s.shard,
    }
}

fn count_for(s: &Subscriptions, space: Space) -> usize {
    match space {
        Space::Shard => s.shard.len(),
        _ => s.total(),
    }
}

fn confirm(ctx: &mut Ctx, kind: &str, name: Option<&[u8]>, count: usize) {
    ctx.out.push(3);
    ctx.out.bulk(kind.as_bytes());
    match name {
        Some(n) => ctx.out.bulk(n),
        None => ctx.out.null(),
    }
    ctx.out.int(count as i64);
}

fn subscribe_generic(ctx: &mut Ctx, argv: &[Bytes], space: Space, kind: &str) -> CmdResult {
    for name in &argv[1..] {
        let server = ctx.server;
        let s = subs(ctx.client);
        if set_of(s, space).insert(name.clone()) {
            server.pubsub.subscribe(space, name, &s.sub);
        }
        let n = count_for(s, space);
        confirm(ctx, kind, Some(name), n);
    }
    Ok(())
}

fn unsubscribe_generic(ctx: &mut Ctx, argv: &[Bytes], space: Space, kind: &str) -> CmdResult {
    let id = ctx.client.id;
    let names: Vec<Bytes> = if argv.len() > 1 {
        argv[1..].to_vec()
    } else {
        ctx.client
            .subs
            .as_mut()
            .map(|s| set_of(s, space).iter().cloned().collect())
            .unwrap_or_default()
    };
    if names.is_empty() {
        let n = ctx.client.subs.as_ref().map_or(0, |s| count_for(s, space));
        confirm(ctx, kind, None, n);
        return Ok(());
    }
    for name in &names {
        let server = ctx.server;
        let s = subs(ctx.client);
        if set_of(s, space).remove(name) {
            server.pubsub.unsubscribe(space, name, id);
        }
        let n = count_for(s, space);
        confirm(ctx, kind, Some(name), n);
    }
    Ok(())
}

/// Leaves every subscription (RESET, disconnect).
pub fn unsubscribe_all(server: &Server, client: &mut Client) {
    if let Some(s) = client.subs.take() {
        for (space, names) in [
            (Space::Channel, &s.channels),
            (Space::Pattern, &s.patterns),
            (Space::Shard, &s.shard),
        ] {
            for n in names {
                server.pubsub.unsubscribe(space, n, client.id);
            }
        }
    }
}

fn subscribe(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    subscribe_generic(ctx, argv, Space::Channel, "subscribe")
}

fn psubscribe(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    subscribe_generic(ctx, argv, Space::Pattern, "psubscribe")
}

fn ssubscribe(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    // Inside EXEC a client expects one reply per command: Redis lets the
    // older SUBSCRIBE and PSUBSCRIBE through there, not SSUBSCRIBE.
    if ctx.client.exec_effects.get().is_some() {
        return Err(CommandError::err(
            "SSUBSCRIBE isn't allowed for a DENY BLOCKING client",
        ));
    }
    subscribe_generic(ctx, argv, Space::Shard, "ssubscribe")
}

fn unsubscribe(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    unsubscribe_generic(ctx, argv, Space::Channel, "unsubscribe")
}

fn punsubscribe(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    unsubscribe_generic(ctx, argv, Space::Pattern, "punsubscribe")
}

fn sunsubscribe(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    unsubscribe_generic(ctx, argv, Space::Shard, "sunsubscribe")
}

fn publish(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let n = ctx
        .server
        .pubsub
        .publish(Space::Channel, &argv[1], &argv[2], ctx.now_ms);
    ctx.propagate(&[b"PUBLISH", &argv[1], &argv[2]]);
    ctx.out.int(n as i64);
    Ok(())
}

fn spublish(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let n = ctx
        .server
        .pubsub
        .publish(Space::Shard, &argv[1], &argv[2], ctx.now_ms);
    ctx.propagate(&[b"SPUBLISH", &argv[1], &argv[2]]);
    ctx.out.int(n as i64);
    Ok(())
}

fn names_reply(ctx: &mut Ctx, argv: &[Bytes], space: Space) -> CmdResult {
    if argv.len() > 3 {
        return Err(CommandError::subcommand_syntax(argv, "PUBSUB"));
    }
    let names = ctx.server.pubsub.names(space, argv.get(2).map(|p| &p[..]));
    ctx.out.strings(names.iter().map(|n| &n[..]));
    Ok(())
}

/// Channel, count, channel, count...: a flat array in RESP3 too, as
/// Redis replies it.
fn counts_reply(ctx: &mut Ctx, argv: &[Bytes], space: Space) -> CmdResult {
    ctx.out.array((argv.len() - 2) * 2);
    for ch in &argv[2..] {
        ctx.out.bulk(ch);
        ctx.out.int(ctx.server.pubsub.count(space, ch) as i64);
    }
    Ok(())
}

fn pubsub_channels(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    names_reply(ctx, argv, Space::Channel)
}

fn pubsub_shardchannels(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    names_reply(ctx, argv, Space::Shard)
}

fn pubsub_numsub(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    counts_reply(ctx, argv, Space::Channel)
}

fn pubsub_shardnumsub(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    counts_reply(ctx, argv, Space::Shard)
}

fn pubsub_numpat(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let n = ctx.server.pubsub.distinct_patterns();
    ctx.out.int(n as i64);
    Ok(())
}

fn pubsub_help(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    help(
        ctx,
        "PUBSUB",
        &[
            "CHANNELS [<pattern>]",
            "    Return the currently active channels matching a <pattern> (default: '*').",
            "NUMPAT",
            "    Return number of subscriptions to patterns.",
            "NUMSUB [<channel> ...]",
            "    Return the number of subscribers for the specified channels, excluding",
            "    pattern subscriptions(default: no channels).",
            "SHARDCHANNELS [<pattern>]",
            "    Return the currently active shard level channels matching a <pattern> (default: '*').",
            "SHARDNUMSUB [<shardchannel> ...]",
            "    Return the number of subscribers for the specified shard level channel(s)",
        ],
    );
    Ok(())
}
