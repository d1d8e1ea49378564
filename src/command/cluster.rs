//! CLUSTER commands that a single node can already answer from its per-slot
//! tables. The slot map, node membership and redirections come with the
//! cluster plane; what is here is exact for a node that owns every slot.
//!
//! The rest of Redis Cluster's commands (CLUSTER SLOTS, SHARDS, NODES,
//! INFO, ..., READONLY, READWRITE, ASKING) are declared with Redis's rows
//! and answer what a Redis without cluster support answers, `-ERR This
//! instance has cluster support disabled`: a cluster-aware client pointed
//! at a node learns that it is standalone, in the words it knows.

use bytes::Bytes;

use super::args::int;
use super::keys::help;
use super::{flags::*, spec, Ctx, Spec, NO_KEYS};
use crate::error::{CmdResult, CommandError};
use crate::keyspace::{key_hash_slot, SlotId, SLOTS};

const G: &str = "cluster";

const C: &[&str] = &["connection"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    Spec { subcommands: CLUSTER_SUBCOMMANDS, ..spec("cluster", -2, 0, NO_KEYS, &[], G, "A container for Redis Cluster commands.", super::keys::help_only) },
    spec("readonly", 1, FAST | LOADING | STALE, NO_KEYS, C, G, "Lets a cluster connection read from replicas.", disabled),
    spec("readwrite", 1, FAST | LOADING | STALE, NO_KEYS, C, G, "Ends READONLY on a cluster connection.", disabled),
    spec("asking", 1, FAST, NO_KEYS, C, G, "Lets the next command follow an ASK redirection.", disabled),
];

#[rustfmt::skip]
static CLUSTER_SUBCOMMANDS: &[Spec] = &[
    spec("cluster|keyslot", 3, STALE, NO_KEYS, &[], G, "Returns the hash slot for a key.", keyslot),
    spec("cluster|countkeysinslot", 3, STALE, NO_KEYS, &[], G, "Returns the number of keys in a hash slot.", countkeysinslot),
    spec("cluster|getkeysinslot", 4, STALE, NO_KEYS, &[], G, "Returns the key names in a hash slot.", getkeysinslot),
    spec("cluster|help", 2, LOADING | STALE, NO_KEYS, &[], G, "Returns helpful text about the different subcommands.", cluster_help),
    // The cluster plane's, not built yet.
    spec("cluster|addslots", -3, NO_ASYNC_LOADING | ADMIN | STALE, NO_KEYS, &[], G, "Assigns hash slots to this node.", disabled),
    spec("cluster|addslotsrange", -4, NO_ASYNC_LOADING | ADMIN | STALE, NO_KEYS, &[], G, "Assigns ranges of hash slots to this node.", disabled),
    spec("cluster|bumpepoch", 2, NO_ASYNC_LOADING | ADMIN | STALE, NO_KEYS, &[], G, "Advances this node's config epoch.", disabled),
    spec("cluster|count-failure-reports", 3, ADMIN | STALE, NO_KEYS, &[], G, "Counts the failure reports about a node.", disabled),
    spec("cluster|delslots", -3, NO_ASYNC_LOADING | ADMIN | STALE, NO_KEYS, &[], G, "Unassigns hash slots from this node.", disabled),
    spec("cluster|delslotsrange", -4, NO_ASYNC_LOADING | ADMIN | STALE, NO_KEYS, &[], G, "Unassigns ranges of hash slots from this node.", disabled),
    spec("cluster|failover", -2, NO_ASYNC_LOADING | ADMIN | STALE, NO_KEYS, &[], G, "Makes this replica take over its primary's slots.", disabled),
    spec("cluster|flushslots", 2, NO_ASYNC_LOADING | ADMIN | STALE, NO_KEYS, &[], G, "Unassigns every hash slot of this node.", disabled),
    spec("cluster|forget", 3, NO_ASYNC_LOADING | ADMIN | STALE, NO_KEYS, &[], G, "Drops a node from this node's view.", disabled),
    spec("cluster|info", 2, STALE, NO_KEYS, &[], G, "Returns the cluster's state.", disabled),
    spec("cluster|links", 2, STALE, NO_KEYS, &[], G, "Returns this node's links to other nodes.", disabled),
    spec("cluster|meet", -4, NO_ASYNC_LOADING | ADMIN | STALE, NO_KEYS, &[], G, "Joins a node to the cluster.", disabled),
    spec("cluster|myid", 2, STALE, NO_KEYS, &[], G, "Returns this node's id.", disabled),
    spec("cluster|nodes", 2, STALE, NO_KEYS, &[], G, "Returns the cluster's nodes.", disabled),
    spec("cluster|replicas", 3, ADMIN | STALE, NO_KEYS, &[], G, "Returns the replicas of a node.", disabled),
    spec("cluster|replicate", 3, NO_ASYNC_LOADING | ADMIN | STALE, NO_KEYS, &[], G, "Makes this node a replica of another.", disabled),
    spec("cluster|reset", -2, ADMIN | STALE | NOSCRIPT, NO_KEYS, &[], G, "Resets this node's cluster state.", disabled),
    spec("cluster|saveconfig", 2, NO_ASYNC_LOADING | ADMIN | STALE, NO_KEYS, &[], G, "Saves this node's cluster configuration.", disabled),
    spec("cluster|set-config-epoch", 3, NO_ASYNC_LOADING | ADMIN | STALE, NO_KEYS, &[], G, "Sets a new node's config epoch.", disabled),
    spec("cluster|setslot", -4, NO_ASYNC_LOADING | ADMIN | STALE, NO_KEYS, &[], G, "Changes the state of a hash slot.", disabled),
    spec("cluster|shards", 2, STALE, NO_KEYS, &[], G, "Returns the cluster's shards and their slots.", disabled),
    spec("cluster|slaves", 3, ADMIN | STALE, NO_KEYS, &[], G, "Returns the replicas of a node (old name).", disabled),
    spec("cluster|slots", 2, STALE, NO_KEYS, &[], G, "Returns the hash slots and who serves them.", disabled),
];

/// What Redis answers without cluster support (see the module docs).
fn disabled(_ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    Err(CommandError::err(
        "This instance has cluster support disabled",
    ))
}

fn keyslot(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    ctx.out.int(key_hash_slot(&argv[2]).0 as i64);
    Ok(())
}

fn slot_arg(arg: &[u8]) -> Result<SlotId, CommandError> {
    match int(arg) {
        Ok(n) if (0..SLOTS as i64).contains(&n) => Ok(SlotId(n as u16)),
        _ => Err(CommandError::err("Invalid slot")),
    }
}

fn countkeysinslot(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let slot = slot_arg(&argv[2])?;
    let db = ctx.server.keyspace.db(ctx.db());
    let n = db.lock_used_slot(slot).map_or(0, |t| t.len());
    ctx.out.int(n as i64);
    Ok(())
}

fn getkeysinslot(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let slot = slot_arg(&argv[2])?;
    let count = match int(&argv[3]) {
        Ok(n) if n >= 0 => n as usize,
        _ => return Err(CommandError::err("Invalid number of keys")),
    };
    let db = ctx.server.keyspace.db(ctx.db());
    let keys: Vec<Vec<u8>> = match db.lock_used_slot(slot) {
        Some(t) => t
            .iter()
            .take(count)
            .map(|n| n.key.as_bytes().to_vec())
            .collect(),
        None => Vec::new(),
    };
    ctx.out.strings(keys.iter().map(|k| k.as_slice()));
    Ok(())
}

fn cluster_help(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    help(
        ctx,
        "CLUSTER",
        &[
            "COUNTKEYSINSLOT <slot>",
            "    Return the number of keys in <slot>.",
            "GETKEYSINSLOT <slot> <count>",
            "    Return key names stored by current node in a slot.",
            "KEYSLOT <key>",
            "    Return the hash slot for <key>.",
        ],
    );
    Ok(())
}
