//! CLUSTER commands that a single node can already answer from its per-slot
//! tables. The slot map, node membership and redirections come with the
//! cluster plane; what is here is exact for a node that owns every slot.

use bytes::Bytes;

use super::args::int;
use super::keys::help;
use super::{flags::*, spec, Ctx, Spec, NO_KEYS};
use crate::error::{CmdResult, CommandError};
use crate::keyspace::{key_hash_slot, SlotId, SLOTS};

const G: &str = "cluster";

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    Spec { subcommands: CLUSTER_SUBCOMMANDS, ..spec("cluster", -2, 0, NO_KEYS, &[], G, "A container for Redis Cluster commands.", super::keys::help_only) },
];

#[rustfmt::skip]
static CLUSTER_SUBCOMMANDS: &[Spec] = &[
    spec("cluster|keyslot", 3, STALE, NO_KEYS, &[], G, "Returns the hash slot for a key.", keyslot),
    spec("cluster|countkeysinslot", 3, STALE, NO_KEYS, &[], G, "Returns the number of keys in a hash slot.", countkeysinslot),
    spec("cluster|getkeysinslot", 4, STALE, NO_KEYS, &[], G, "Returns the key names in a hash slot.", getkeysinslot),
    spec("cluster|help", 2, LOADING | STALE, NO_KEYS, &[], G, "Returns helpful text about the different subcommands.", cluster_help),
];

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
    let n = ctx.server.keyspace.db(ctx.db()).lock_slot(slot).len();
    ctx.out.int(n as i64);
    Ok(())
}

fn getkeysinslot(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let slot = slot_arg(&argv[2])?;
    let count = match int(&argv[3]) {
        Ok(n) if n >= 0 => n as usize,
        _ => return Err(CommandError::err("Invalid number of keys")),
    };
    let t = ctx.server.keyspace.db(ctx.db()).lock_slot(slot);
    let keys: Vec<Vec<u8>> = t
        .iter()
        .take(count)
        .map(|n| n.key.as_bytes().to_vec())
        .collect();
    drop(t);
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
