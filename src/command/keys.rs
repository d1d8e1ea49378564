//! Generic key commands: existence, deletion, renaming, moving between
//! databases, expiry, iteration, flushing, introspection and DUMP/RESTORE.
//!
//! Expiry effects are absolute (`PEXPIREAT`); an expiry set in the past
//! deletes the key and is recorded as `DEL`, as in Redis. SCAN's cursor is a
//! slot number: each call returns whole slots, so a key present for the whole
//! iteration is returned at least once however the tables grow. Empty slots
//! do not count towards COUNT, so a sparse keyspace comes back in few calls.

use bytes::Bytes;
use rand::Rng;
use smallvec::smallvec;

use super::args::{int, Args};
use super::{flags::*, key_flags::*, keys, spec, Access, Ctx, Spec, NO_KEYS};
use crate::error::{CmdResult, CommandError};
use crate::glob::glob_match;
use crate::keyspace::{key_hash_slot, Kind, SlotId, SlotTable, SLOTS};
use crate::persistence::rdb;
use crate::server::watches::KeyState;

const G: &str = "generic";
const K: &[&str] = &["keyspace"];
const KD: &[&str] = &["keyspace", "dangerous"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("del", -2, WRITE, keys(1, -1, 1).flags(RM | DELETE), K, G, "Deletes one or more keys.", del),
    spec("unlink", -2, WRITE | FAST, keys(1, -1, 1).flags(RM | DELETE), K, G, "Asynchronously deletes one or more keys.", del),
    spec("exists", -2, READONLY | FAST, keys(1, -1, 1).flags(RO), K, G, "Determines whether one or more keys exist.", exists),
    spec("type", 2, READONLY | FAST, keys(1, 1, 1).flags(RO), K, G, "Determines the type of value stored at a key.", type_),
    spec("rename", 3, WRITE, keys(1, 2, 1).flags(RW | ACCESS | DELETE).then(OW | UPDATE), K, G, "Renames a key and overwrites the destination.", rename),
    spec("renamenx", 3, WRITE | FAST, keys(1, 2, 1).flags(RW | ACCESS | DELETE).then(OW | INSERT), K, G, "Renames a key only when the target key name doesn't exist.", renamenx),
    spec("copy", -3, WRITE | DENYOOM, keys(1, 2, 1).flags(RO | ACCESS).then(OW | UPDATE), K, G, "Copies the value of a key to a new key.", copy),
    spec("move", 3, WRITE | FAST, keys(1, 1, 1).flags(RW | ACCESS | UPDATE), K, G, "Moves a key to another database.", move_),
    spec("swapdb", 3, WRITE | FAST, NO_KEYS, KD, "server", "Swaps two Redis databases.", swapdb),
    spec("touch", -2, READONLY | FAST, keys(1, -1, 1).flags(RO), K, G, "Returns the number of existing keys out of those specified after updating the time they were last accessed.", touch),
    spec("expire", -3, WRITE | FAST, keys(1, 1, 1).flags(RW | UPDATE), K, G, "Sets the expiration time of a key in seconds.", expire),
    spec("pexpire", -3, WRITE | FAST, keys(1, 1, 1).flags(RW | UPDATE), K, G, "Sets the expiration time of a key in milliseconds.", pexpire),
    spec("expireat", -3, WRITE | FAST, keys(1, 1, 1).flags(RW | UPDATE), K, G, "Sets the expiration time of a key to a Unix timestamp.", expireat),
    spec("pexpireat", -3, WRITE | FAST, keys(1, 1, 1).flags(RW | UPDATE), K, G, "Sets the expiration time of a key to a Unix milliseconds timestamp.", pexpireat),
    spec("ttl", 2, READONLY | FAST, keys(1, 1, 1).flags(RO | ACCESS), K, G, "Returns the expiration time in seconds of a key.", ttl),
    spec("pttl", 2, READONLY | FAST, keys(1, 1, 1).flags(RO | ACCESS), K, G, "Returns the expiration time in milliseconds of a key.", pttl),
    spec("expiretime", 2, READONLY | FAST, keys(1, 1, 1).flags(RO | ACCESS), K, G, "Returns the expiration time of a key as a Unix timestamp.", expiretime),
    spec("pexpiretime", 2, READONLY | FAST, keys(1, 1, 1).flags(RO | ACCESS), K, G, "Returns the expiration time of a key as a Unix milliseconds timestamp.", pexpiretime),
    spec("persist", 2, WRITE | FAST, keys(1, 1, 1).flags(RW | UPDATE), K, G, "Removes the expiration time of a key.", persist),
    spec("keys", 2, READONLY, NO_KEYS, KD, G, "Returns all key names that match a pattern.", keys_),
    spec("scan", -2, READONLY, NO_KEYS, K, G, "Iterates over the key names in the database.", scan),
    spec("randomkey", 1, READONLY, NO_KEYS, K, G, "Returns a random key name from the database.", randomkey),
    spec("dbsize", 1, READONLY | FAST, NO_KEYS, K, "server", "Returns the number of keys in the database.", dbsize),
    spec("flushdb", -1, WRITE, NO_KEYS, KD, "server", "Removes all keys from the current database.", flushdb),
    spec("flushall", -1, WRITE, NO_KEYS, KD, "server", "Removes all keys from all databases.", flushall),
    Spec { subcommands: OBJECT_SUBCOMMANDS, ..spec("object", -2, 0, NO_KEYS, &[], G, "A container for object introspection commands.", help_only) },
    spec("dump", 2, READONLY, keys(1, 1, 1).flags(RO | ACCESS), K, G, "Returns a serialized representation of the value stored at a key.", dump),
    spec("restore", -4, WRITE | DENYOOM, keys(1, 1, 1).flags(OW | UPDATE), KD, G, "Creates a key from the serialized representation of a value.", restore),
];

#[rustfmt::skip]
static OBJECT_SUBCOMMANDS: &[Spec] = &[
    spec("object|encoding", 3, READONLY, keys(2, 2, 1).flags(RO), K, G, "Returns the internal encoding of a Redis object.", object_encoding),
    spec("object|freq", 3, READONLY, keys(2, 2, 1).flags(RO), K, G, "Returns the logarithmic access frequency counter of a Redis object.", object_freq),
    spec("object|idletime", 3, READONLY, keys(2, 2, 1).flags(RO), K, G, "Returns the time since the last access to a Redis object.", object_idletime),
    spec("object|refcount", 3, READONLY, keys(2, 2, 1).flags(RO), K, G, "Returns the reference count of a value of a key.", object_refcount),
    spec("object|help", 2, LOADING | STALE, NO_KEYS, K, G, "Returns helpful text about the different subcommands.", object_help),
];

/// A container called without a subcommand.
pub fn help_only(_: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    Err(CommandError::Arity(
        String::from_utf8_lossy(&argv[0]).to_ascii_lowercase(),
    ))
}

/// DEL and UNLINK: UNLINK (and DEL with lazyfree-lazy-user-del) frees a
/// large value on the lazy free thread (`server::lazyfree`).
fn del(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let lazy = argv[0].eq_ignore_ascii_case(b"unlink")
        || ctx
            .server
            .tun
            .lazy_user_del
            .load(std::sync::atomic::Ordering::Relaxed);
    let mut locked = ctx.lock_keys(argv[1..].iter());
    let mut removed: Vec<&[u8]> = vec![b"DEL"];
    for k in &argv[1..] {
        let t = locked.table_for(db, k);
        if ctx.lookup(t, k).is_some() {
            if let Some(node) = t.remove(k) {
                if lazy {
                    let effort = node.value.free_effort();
                    ctx.server.lazyfree.free(node, effort);
                }
            }
            removed.push(k);
        }
    }
    if removed.len() > 1 {
        ctx.emit(&removed);
    }
    ctx.out.int(removed.len() as i64 - 1);
    Ok(())
}

fn exists(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = ctx.lock_keys(argv[1..].iter());
    let n = argv[1..]
        .iter()
        .filter(|k| {
            ctx.lookup_as(db, locked.table_for(db, k), k, Access::PEEK)
                .is_some()
        })
        .count();
    ctx.out.int(n as i64);
    Ok(())
}

fn touch(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = ctx.lock_keys(argv[1..].iter());
    let n = argv[1..]
        .iter()
        .filter(|k| {
            ctx.lookup_as(db, locked.table_for(db, k), k, Access::TOUCH)
                .is_some()
        })
        .count();
    ctx.out.int(n as i64);
    Ok(())
}

fn type_(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    let name = ctx
        .lookup_as(ctx.db(), &mut t, &argv[1], Access::PEEK)
        .map(|n| n.value.kind().name())
        .unwrap_or("none");
    ctx.out.simple(name);
    Ok(())
}

fn rename_generic(ctx: &mut Ctx, argv: &[Bytes], nx: bool) -> CmdResult {
    let (src, dst) = (&argv[1], &argv[2]);
    let db = ctx.db();
    let mut locked = ctx.lock_keys(argv[1..3].iter());
    if ctx.lookup(locked.table_for(db, src), src).is_none() {
        return Err(CommandError::NoSuchKey);
    }
    if src == dst {
        if nx {
            ctx.out.int(0);
        } else {
            ctx.out.ok();
        }
        return Ok(());
    }
    if nx && ctx.lookup(locked.table_for(db, dst), dst).is_some() {
        ctx.out.int(0);
        return Ok(());
    }
    let mut node = locked
        .table_for(db, src)
        .remove(src)
        .expect("looked up above");
    node.key = crate::keyspace::SmallBuf::new(dst);
    locked.table_for(db, dst).insert_node(node);
    ctx.emit(&[b"RENAME", src, dst]);
    if nx {
        ctx.out.int(1);
    } else {
        ctx.out.ok();
    }
    Ok(())
}

fn rename(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    rename_generic(ctx, argv, false)
}

fn renamenx(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    rename_generic(ctx, argv, true)
}

/// Parses a database index argument the way SELECT/MOVE/COPY do.
pub fn db_index(ctx: &Ctx, arg: &[u8]) -> Result<usize, CommandError> {
    let n = int(arg)?;
    // Redis reads a database index as a C int first.
    if i32::try_from(n).is_err() {
        return Err(CommandError::err(
            "value is out of range, value must between -2147483648 and 2147483647",
        ));
    }
    if n < 0 || n as usize >= ctx.server.keyspace.databases() {
        return Err(CommandError::DbIndexOutOfRange);
    }
    Ok(n as usize)
}

fn copy(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (src, dst) = (&argv[1], &argv[2]);
    let mut a = Args::new(argv, 2);
    let mut dst_db = ctx.db();
    let mut replace = false;
    while let Some(w) = a.next() {
        if w.eq_ignore_ascii_case(b"replace") {
            replace = true;
        } else if w.eq_ignore_ascii_case(b"db") {
            dst_db = db_index(ctx, a.value()?)?;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    let src_db = ctx.db();
    if src_db == dst_db && src == dst {
        return Err(CommandError::err(
            "source and destination objects are the same",
        ));
    }
    let mut locked = ctx.server.keyspace.lock(smallvec![
        (src_db, key_hash_slot(src)),
        (dst_db, key_hash_slot(dst))
    ]);
    let Some(node) = ctx.lookup_as(src_db, locked.table_for(src_db, src), src, Access::READ) else {
        ctx.out.int(0);
        return Ok(());
    };
    let mut copy = Box::new(node.clone());
    let dt = locked.table_for(dst_db, dst);
    if ctx.lookup_in(dst_db, dt, dst).is_some() {
        if !replace {
            ctx.out.int(0);
            return Ok(());
        }
        dt.remove(dst);
    }
    copy.key = crate::keyspace::SmallBuf::new(dst);
    copy.access = (ctx.now_ms / 1000) as u32;
    dt.insert_node(copy);
    ctx.emit_argv(argv);
    ctx.out.int(1);
    Ok(())
}

fn move_(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let key = &argv[1];
    let dst_db = db_index(ctx, &argv[2])?;
    let src_db = ctx.db();
    if src_db == dst_db {
        return Err(CommandError::err(
            "source and destination objects are the same",
        ));
    }
    let slot = key_hash_slot(key);
    let mut locked = ctx
        .server
        .keyspace
        .lock(smallvec![(src_db, slot), (dst_db, slot)]);
    if ctx
        .lookup_in(src_db, locked.table(src_db, slot), key)
        .is_none()
        || ctx
            .lookup_in(dst_db, locked.table(dst_db, slot), key)
            .is_some()
    {
        ctx.out.int(0);
        return Ok(());
    }
    let node = locked
        .table(src_db, slot)
        .remove(key)
        .expect("looked up above");
    locked.table(dst_db, slot).insert_node(node);
    ctx.emit_argv(argv);
    ctx.out.int(1);
    Ok(())
}

fn swapdb(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let a = int(&argv[1]).map_err(|_| CommandError::err("invalid first DB index"))?;
    let b = int(&argv[2]).map_err(|_| CommandError::err("invalid second DB index"))?;
    let n = ctx.server.keyspace.databases() as i64;
    if a < 0 || a >= n || b < 0 || b >= n {
        return Err(CommandError::DbIndexOutOfRange);
    }
    let (a, b) = (a as usize, b as usize);
    let mut locked = ctx.server.keyspace.lock_dbs_alike(&[a, b]);
    let now = ctx.now_ms;
    ctx.server
        .watches
        .touch_replaced(&[(a, Some(b)), (b, Some(a))], |d, k| {
            key_state(locked.locked_table_for(d, k).and_then(|t| t.peek(k)), now)
        });
    locked.swap_dbs(a, b);
    ctx.emit_global(&[b"SWAPDB", &argv[1], &argv[2]]);
    drop(locked);
    ctx.out.ok();
    Ok(())
}

#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Millis,
}

fn expire_generic(
    ctx: &mut Ctx,
    argv: &[Bytes],
    unit: Unit,
    absolute: bool,
    cmd: &'static str,
) -> CmdResult {
    let key = &argv[1];
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for w in &argv[3..] {
        match w.to_ascii_lowercase().as_slice() {
            b"nx" => nx = true,
            b"xx" => xx = true,
            b"gt" => gt = true,
            b"lt" => lt = true,
            _ => {
                return Err(CommandError::err(format!(
                    "Unsupported option {}",
                    String::from_utf8_lossy(w)
                )))
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Err(CommandError::err(
            "NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(CommandError::err(
            "GT and LT options at the same time are not compatible",
        ));
    }
    // The options before the time, as in Redis.
    let v = int(&argv[2])?;
    let bad = || CommandError::InvalidExpire(cmd);
    let ms = match unit {
        Unit::Seconds => v.checked_mul(1000).ok_or_else(bad)?,
        Unit::Millis => v,
    };
    let at = if absolute {
        ms
    } else {
        ms.checked_add(ctx.now_ms).ok_or_else(bad)?
    };
    let mut t = ctx.lock_key(key);
    let Some(node) = ctx.lookup(&mut t, key) else {
        ctx.out.int(0);
        return Ok(());
    };
    let cur = node.expire_at;
    // No expiry counts as infinite for GT and LT.
    let allowed = !(nx && cur != 0
        || xx && cur == 0
        || gt && (cur == 0 || at <= cur)
        || lt && cur != 0 && at >= cur);
    if !allowed {
        ctx.out.int(0);
        return Ok(());
    }
    // A time already past deletes the key, except in a replay of recorded
    // effects (the log at start-up, a primary's stream): there the key
    // must live until the recorded DEL, as it did, or a later PERSIST,
    // RENAME or STORE that read it on the primary finds nothing (Redis's
    // `checkAlreadyExpired` makes the same exception).
    if at <= ctx.now_ms && !ctx.replaying() {
        t.remove(key);
        ctx.emit(&[b"DEL", key]);
    } else {
        t.set_expire(key, at);
        let mut b = itoa::Buffer::new();
        ctx.emit(&[b"PEXPIREAT", key, b.format(at).as_bytes()]);
    }
    ctx.out.int(1);
    Ok(())
}

fn expire(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    expire_generic(ctx, argv, Unit::Seconds, false, "expire")
}

fn pexpire(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    expire_generic(ctx, argv, Unit::Millis, false, "pexpire")
}

fn expireat(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    expire_generic(ctx, argv, Unit::Seconds, true, "expireat")
}

fn pexpireat(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    expire_generic(ctx, argv, Unit::Millis, true, "pexpireat")
}

/// TTL-style replies: -2 missing, -1 no expiry, else `f(expire_at)`.
fn ttl_generic(ctx: &mut Ctx, argv: &[Bytes], f: impl Fn(i64, i64) -> i64) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    let r = match ctx.lookup_as(ctx.db(), &mut t, &argv[1], Access::PEEK) {
        None => -2,
        Some(n) if n.expire_at == 0 => -1,
        Some(n) => f(n.expire_at, ctx.now_ms),
    };
    ctx.out.int(r);
    Ok(())
}

fn ttl(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, argv, |at, now| ((at - now).max(0) + 500) / 1000)
}

fn pttl(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, argv, |at, now| (at - now).max(0))
}

fn expiretime(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, argv, |at, _| at / 1000)
}

fn pexpiretime(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, argv, |at, _| at)
}

fn persist(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let key = &argv[1];
    let mut t = ctx.lock_key(key);
    let had = matches!(ctx.lookup(&mut t, key), Some(n) if n.expire_at != 0);
    if had {
        t.set_expire(key, 0);
        ctx.emit(&[b"PERSIST", key]);
    }
    ctx.out.int(had as i64);
    Ok(())
}

fn keys_(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let pattern = &argv[1];
    let all = pattern.as_ref() == b"*";
    let db = ctx.db();
    let mut locked = ctx.server.keyspace.lock_dbs(&[db]);
    let mut found: Vec<Vec<u8>> = Vec::new();
    for (_, _, t) in locked.tables() {
        for n in t.iter() {
            if !n.is_expired(ctx.now_ms) && (all || glob_match(pattern, n.key.as_bytes(), false)) {
                found.push(n.key.as_bytes().to_vec());
            }
        }
    }
    drop(locked);
    ctx.out.strings(found.iter().map(|k| k.as_slice()));
    Ok(())
}

fn scan(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let cursor: u64 = std::str::from_utf8(&argv[1])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| CommandError::err("invalid cursor"))?;
    let mut a = Args::new(argv, 1);
    let (mut pattern, mut count, mut kind) = (None, 10usize, None);
    while let Some(w) = a.next() {
        if w.eq_ignore_ascii_case(b"match") {
            // A lone `*` is no filter at all (the empty key included).
            pattern = Some(a.value()?.clone()).filter(|p| p.as_ref() != b"*");
        } else if w.eq_ignore_ascii_case(b"count") {
            let c = a.int()?;
            if c < 1 {
                return Err(CommandError::Syntax);
            }
            count = c as usize;
        } else if w.eq_ignore_ascii_case(b"type") {
            // An unknown type name matches nothing, as in Redis 7.0.
            kind = Some(Kind::from_name(a.value()?));
        } else {
            return Err(CommandError::Syntax);
        }
    }
    let db = ctx.server.keyspace.db(ctx.db());
    let mut slot = cursor.min(SLOTS as u64) as usize;
    let mut examined = 0;
    let mut found: Vec<Vec<u8>> = Vec::new();
    while slot < SLOTS && examined < count {
        let Some(mut t) = db.lock_used_slot(SlotId(slot as u16)) else {
            slot += 1;
            continue;
        };
        // Expired keys met on the way go, as Redis's SCAN deletes those
        // it finds.
        expire_all_due(ctx, ctx.db(), &mut t);
        for n in t.iter() {
            examined += 1;
            if n.is_expired(ctx.now_ms) {
                continue;
            }
            if let Some(p) = &pattern {
                if !glob_match(p, n.key.as_bytes(), false) {
                    continue;
                }
            }
            if let Some(k) = kind {
                if Some(n.value.kind()) != k {
                    continue;
                }
            }
            found.push(n.key.as_bytes().to_vec());
        }
        slot += 1;
    }
    let next = if slot >= SLOTS { 0 } else { slot };
    ctx.out.array(2);
    ctx.out.bulk_int(next as i64);
    ctx.out.strings(found.iter().map(|k| k.as_slice()));
    Ok(())
}

fn randomkey(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let dbi = ctx.db();
    let db = ctx.server.keyspace.db(dbi);
    let start = rand::thread_rng().gen_range(0..SLOTS);
    for i in 0..SLOTS {
        let slot = SlotId(((start + i) % SLOTS) as u16);
        if db.slot_counts(slot).0 == 0 {
            // Known empty without its lock: a small database's keys sit
            // in a few of 16384 slots.
            continue;
        }
        let mut t = db.lock_slot(slot);
        // Where expired keys must stay (a replica, paused writes), they
        // are passed over instead.
        let hidden = !expire_all_due(ctx, dbi, &mut t);
        let live = |n: &&crate::keyspace::Node| !hidden || !n.is_expired(ctx.now_ms);
        let n = if hidden {
            t.iter().filter(live).count()
        } else {
            t.len()
        };
        if n == 0 {
            continue;
        }
        let pick = rand::thread_rng().gen_range(0..n);
        let key = t
            .iter()
            .filter(live)
            .nth(pick)
            .map(|n| n.key.as_bytes().to_vec())
            .expect("index below the live count");
        ctx.out.bulk(&key);
        return Ok(());
    }
    ctx.out.null();
    Ok(())
}

/// Removes the expired keys of one locked table, recording each deletion,
/// where this context may delete them (a primary whose writes are not
/// paused: see `Ctx::expiry`). Returns whether it may; if not, expired
/// keys may remain, to be passed over.
fn expire_all_due(ctx: &Ctx, db: usize, t: &mut SlotTable) -> bool {
    if ctx.expiry() != crate::keyspace::Expiry::Remove {
        return false;
    }
    if t.volatile() == 0 {
        return true;
    }
    let mut gone = Vec::new();
    t.remove_expired(ctx.now_ms, &mut gone);
    for k in gone {
        ctx.expired(db, &k);
    }
    true
}

fn dbsize(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let (keys, _) = ctx.server.keyspace.db(ctx.db()).counts();
    ctx.out.int(keys as i64);
    Ok(())
}

/// FLUSHDB/FLUSHALL's optional ASYNC|SYNC; without, lazyfree-lazy-user-flush.
fn flush_mode(ctx: &Ctx, argv: &[Bytes]) -> Result<bool, CommandError> {
    match argv.get(1) {
        None => Ok(ctx.server.config.read().get("lazyfree-lazy-user-flush") == "yes"),
        Some(w) if argv.len() == 2 && w.eq_ignore_ascii_case(b"async") => Ok(true),
        Some(w) if argv.len() == 2 && w.eq_ignore_ascii_case(b"sync") => Ok(false),
        _ => Err(CommandError::Syntax),
    }
}

/// Empties every locked table; with `lazy`, frees the memory on the lazy
/// free thread (each key counted as a freed object, as Redis counts them).
fn empty_tables(server: &crate::server::Server, locked: &mut crate::keyspace::Locked, lazy: bool) {
    let mut old: Vec<SlotTable> = Vec::new();
    for (_, _, t) in locked.tables() {
        if t.is_empty() {
            continue;
        }
        if lazy {
            old.push(t.take_keys());
        } else {
            t.clear();
        }
    }
    if !old.is_empty() {
        let keys = old.iter().map(|t| t.len()).sum();
        server.lazyfree.hand_over(old, keys);
    }
}

/// A flush touches the watched keys that are there to be flushed (one
/// already expired when watched going is no change).
fn touch_watched(ctx: &Ctx, locked: &mut crate::keyspace::Locked, dbs: &[usize]) {
    let emptied: Vec<(usize, Option<usize>)> = dbs.iter().map(|&d| (d, None)).collect();
    let now = ctx.now_ms;
    ctx.server.watches.touch_replaced(&emptied, |d, k| {
        key_state(locked.locked_table_for(d, k).and_then(|t| t.peek(k)), now)
    });
}

/// How a key found (or not) stands, for the watches of a flush or SWAPDB.
fn key_state(found: Option<&crate::keyspace::Node>, now: i64) -> KeyState {
    match found {
        None => KeyState::Absent,
        Some(n) if n.is_expired(now) => KeyState::Expired,
        Some(_) => KeyState::Live,
    }
}

fn flushdb(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let lazy = flush_mode(ctx, argv)?;
    let db = ctx.db();
    let mut locked = ctx.server.keyspace.lock_dbs(&[db]);
    touch_watched(ctx, &mut locked, &[db]);
    empty_tables(ctx.server, &mut locked, lazy);
    ctx.emit(&[b"FLUSHDB"]);
    drop(locked);
    ctx.out.ok();
    Ok(())
}

/// Empties every database, and the function libraries, for DEBUG RELOAD
/// and DEBUG LOADAOF, which load the same data back: watches and tracking
/// clients are told as by a flush, but nothing is recorded (the log and
/// replicas hold the data).
pub(super) fn empty_for_reload(ctx: &Ctx) {
    super::functions::forget_all();
    let (dbs, mut locked) = ctx.server.keyspace.lock_used_dbs();
    touch_watched(ctx, &mut locked, &dbs);
    empty_tables(ctx.server, &mut locked, false);
    drop(locked);
    ctx.invalidate(None);
}

fn flushall(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let lazy = flush_mode(ctx, argv)?;
    let (dbs, mut locked) = ctx.server.keyspace.lock_used_dbs();
    touch_watched(ctx, &mut locked, &dbs);
    empty_tables(ctx.server, &mut locked, lazy);
    ctx.emit_global(&[b"FLUSHALL"]);
    drop(locked);
    ctx.out.ok();
    Ok(())
}

/// Reads a key for introspection without touching its access time.
fn inspect<R>(ctx: &mut Ctx, key: &[u8], f: impl FnOnce(&crate::keyspace::Node) -> R) -> Option<R> {
    let mut t = ctx.lock_key(key);
    ctx.lookup_as(ctx.db(), &mut t, key, Access::INSPECT)
        .map(|n| f(n))
}

fn object_encoding(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    match inspect(ctx, &argv[2], |n| n.encoding()) {
        Some(e) => ctx.out.bulk(e.as_bytes()),
        None => ctx.out.null(),
    }
    Ok(())
}

fn object_freq(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (now, lfu) = (ctx.now_ms, ctx.server.tun.lfu());
    let Some(freq) = inspect(ctx, &argv[2], |n| n.lfu_decayed(now, lfu)) else {
        ctx.out.null();
        return Ok(());
    };
    // Access frequency is only tracked under an LFU eviction policy.
    if ctx.server.tun.policy().is_lfu() {
        ctx.out.int(freq as i64);
        return Ok(());
    }
    Err(CommandError::err(
        "An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
    ))
}

fn object_idletime(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let now_s = ctx.now_ms / 1000;
    match inspect(ctx, &argv[2], |n| (now_s - n.access as i64).max(0)) {
        Some(idle) => ctx.out.int(idle),
        None => ctx.out.null(),
    }
    Ok(())
}

fn object_refcount(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    // Redis shares the integers 0..9999 and reports them as INT_MAX.
    let shared = |n: &crate::keyspace::Node| matches!(n.value, crate::keyspace::Value::Int(i) if (0..10000).contains(&i));
    match inspect(ctx, &argv[2], shared) {
        Some(true) => ctx.out.int(i32::MAX as i64),
        Some(false) => ctx.out.int(1),
        None => ctx.out.null(),
    }
    Ok(())
}

fn object_help(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    help(
        ctx,
        "OBJECT",
        &[
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, that is the approximated number of",
            "    seconds elapsed since the last access to the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
        ],
    );
    Ok(())
}

/// A `HELP` subcommand's reply, in Redis's shape.
pub fn help(ctx: &mut Ctx, container: &str, lines: &[&str]) {
    ctx.out.array(lines.len() + 3);
    ctx.out.simple(&format!(
        "{container} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    ));
    for l in lines {
        ctx.out.simple(l);
    }
    ctx.out.simple("HELP");
    ctx.out.simple("    Prints this help.");
}

fn dump(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    match ctx.lookup_read(&mut t, &argv[1]) {
        Some(n) => {
            let payload = rdb::dump(&n.value);
            ctx.out.bulk(&payload);
        }
        None => ctx.out.null(),
    }
    Ok(())
}

fn restore(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let key = &argv[1];
    let mut a = Args::new(argv, 3);
    let (mut replace, mut absttl, mut idle, mut freq) = (false, false, None, None);
    while let Some(w) = a.next() {
        if w.eq_ignore_ascii_case(b"replace") {
            replace = true;
        } else if w.eq_ignore_ascii_case(b"absttl") {
            absttl = true;
        } else if w.eq_ignore_ascii_case(b"idletime") && freq.is_none() && idle.is_none() {
            let v = a.int()?;
            if v < 0 {
                return Err(CommandError::err("Invalid IDLETIME value, must be >= 0"));
            }
            idle = Some(v);
        } else if w.eq_ignore_ascii_case(b"freq") && idle.is_none() && freq.is_none() {
            let v = a.int()?;
            if !(0..=255).contains(&v) {
                return Err(CommandError::err(
                    "Invalid FREQ value, must be >= 0 and <= 255",
                ));
            }
            freq = Some(v as u8);
        } else {
            return Err(CommandError::Syntax);
        }
    }
    // Redis's order: options, then an existing key, then the TTL, then
    // the payload.
    let mut t = ctx.lock_key(key);
    let exists = ctx.lookup(&mut t, key).is_some();
    if exists && !replace {
        return Err(CommandError::BusyKey);
    }
    let ttl = int(&argv[2])?;
    if ttl < 0 {
        return Err(CommandError::err("Invalid TTL value, must be >= 0"));
    }
    let check_crc = !ctx
        .server
        .skip_checksum
        .load(std::sync::atomic::Ordering::Relaxed);
    let value = rdb::restore(&argv[3], &ctx.server.tun.encodings(), check_crc)
        .map_err(|e| CommandError::err(e.to_string()))?;
    let at = match (ttl, absttl) {
        (0, _) => 0,
        (t, true) => t,
        (t, false) => t
            .checked_add(ctx.now_ms)
            .ok_or(CommandError::InvalidExpire("restore"))?,
    };
    if exists {
        t.remove(key);
    }
    if at != 0 && at <= ctx.now_ms && !ctx.replaying() {
        // Already expired: nothing to create (a replay creates it, to live
        // until its recorded DEL, see `expire_generic`); a key it replaced
        // is deleted, as Redis records and announces it.
        if exists {
            ctx.emit(&[b"DEL", key]);
        }
        ctx.out.ok();
        return Ok(());
    }
    let node = t.set(key, value, ctx.now_ms, false);
    // As Redis: FREQ sets the LFU counter under an LFU policy, IDLETIME
    // the LRU clock under any other; the other is ignored.
    if ctx.server.tun.policy().is_lfu() {
        if let Some(f) = freq {
            node.freq = f;
            node.ldt = crate::keyspace::evict::minutes(ctx.now_ms);
        }
    } else if let Some(idle) = idle {
        node.access = ((ctx.now_ms / 1000) - idle).max(0) as u32;
    }
    if at != 0 {
        t.set_expire(key, at);
    }
    // Recorded as Redis records it: the command as it came, a relative
    // TTL made absolute (ABSTTL added). A REPLACE in it takes the old key
    // along; only `restore` is announced, no `del`.
    let mut b = itoa::Buffer::new();
    let mut effect: Vec<&[u8]> = argv.iter().map(|a| a.as_ref()).collect();
    if at != 0 && !absttl {
        effect[2] = b.format(at).as_bytes();
        effect.push(b"ABSTTL");
    }
    ctx.emit(&effect);
    ctx.out.ok();
    Ok(())
}
