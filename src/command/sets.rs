//! Set commands.
//!
//! Multi-key commands (SINTER, SUNION, SDIFF, their STORE forms, SMOVE,
//! SINTERCARD) lock every key's slot first, so they see and change one
//! consistent state. Intersections start from the smallest set.
//!
//! Effects: SPOP is random, so it is recorded as the `SREM` of what it
//! popped (notified as `spop`); everything else is deterministic and
//! recorded as itself.

use bytes::Bytes;

use super::args::{int, positive_count, rand_count, Args};
use super::element_scan::{self, Slot};
use super::{flags::*, key_flags::*, keys, keys_counted, spec, Ctx, Spec};
use crate::error::{CmdResult, CommandError};
use crate::keyspace::set::Member;
use crate::keyspace::table::hash_key;
use crate::keyspace::{Locked, Set};

const G: &str = "set";
const S: &[&str] = &["set"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("sadd", -3, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | INSERT), S, G, "Adds one or more members to a set. Creates the key if it doesn't exist.", sadd),
    spec("srem", -3, WRITE | FAST, keys(1, 1, 1).flags(RW | DELETE), S, G, "Removes one or more members from a set. Deletes the set if the last member was removed.", srem),
    spec("scard", 2, READONLY | FAST, keys(1, 1, 1).flags(RO), S, G, "Returns the number of members in a set.", scard),
    spec("sismember", 3, READONLY | FAST, keys(1, 1, 1).flags(RO), S, G, "Determines whether a member belongs to a set.", sismember),
    spec("smismember", -3, READONLY | FAST, keys(1, 1, 1).flags(RO | ACCESS), S, G, "Determines whether multiple members belong to a set.", smismember),
    spec("smembers", 2, READONLY, keys(1, 1, 1).flags(RO | ACCESS), S, G, "Returns all members of a set.", smembers),
    spec("srandmember", -2, READONLY, keys(1, 1, 1).flags(RO | ACCESS), S, G, "Get one or multiple random members from a set", srandmember),
    spec("spop", -2, WRITE | FAST, keys(1, 1, 1).flags(RW | ACCESS | DELETE), S, G, "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped.", spop),
    spec("smove", 4, WRITE | FAST, keys(1, 2, 1).flags(RW | ACCESS | DELETE).then(RW | INSERT), S, G, "Moves a member from one set to another.", smove),
    spec("sinter", -2, READONLY, keys(1, -1, 1).flags(RO | ACCESS), S, G, "Returns the intersect of multiple sets.", sinter),
    spec("sintercard", -3, READONLY, keys_counted(0, 0, 1).flags(RO | ACCESS), S, G, "Returns the number of members of the intersect of multiple sets.", sintercard),
    spec("sunion", -2, READONLY, keys(1, -1, 1).flags(RO | ACCESS), S, G, "Returns the union of multiple sets.", sunion),
    spec("sdiff", -2, READONLY, keys(1, -1, 1).flags(RO | ACCESS), S, G, "Returns the difference of multiple sets.", sdiff),
    spec("sinterstore", -3, WRITE | DENYOOM, keys(1, -1, 1).flags(RW | UPDATE).then(RO | ACCESS), S, G, "Stores the intersect of multiple sets in a key.", sinterstore),
    spec("sunionstore", -3, WRITE | DENYOOM, keys(1, -1, 1).flags(OW | UPDATE).then(RO | ACCESS), S, G, "Stores the union of multiple sets in a key.", sunionstore),
    spec("sdiffstore", -3, WRITE | DENYOOM, keys(1, -1, 1).flags(OW | UPDATE).then(RO | ACCESS), S, G, "Stores the difference of multiple sets in a key.", sdiffstore),
    spec("sscan", -3, READONLY, keys(1, 1, 1).flags(RO | ACCESS), S, G, "Iterates over members of a set.", sscan),
];

fn sadd(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let limits = ctx.encodings().set;
    let mut t = ctx.lock_key(&argv[1]);
    let s: &mut Set = ctx.write_or_create(&mut t, &argv[1])?;
    let added = s.insert_all(&argv[2..], limits);
    if added > 0 {
        ctx.emit_argv(argv);
    }
    ctx.out.int(added as i64);
    Ok(())
}

fn srem(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    ctx.remove_members::<Set>(argv, Set::remove_all)
}

fn scard(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    ctx.reply_count::<Set>(&argv[1])
}

fn sismember(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    let found = ctx
        .read::<Set>(&mut t, &argv[1])?
        .is_some_and(|s| s.contains(&argv[2]));
    ctx.out.int(found as i64);
    Ok(())
}

fn smismember(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    let s = ctx.read::<Set>(&mut t, &argv[1])?;
    let found = s.map_or_else(
        || vec![false; argv.len() - 2],
        |s| s.contains_each(&argv[2..]),
    );
    ctx.out.array(found.len());
    found.into_iter().for_each(|f| ctx.out.int(f as i64));
    Ok(())
}

fn smembers(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    match ctx.read::<Set>(&mut t, &argv[1])? {
        Some(s) => {
            ctx.out.set(s.len());
            s.iter().for_each(|m| ctx.out.bulk(&m));
        }
        None => ctx.out.set(0),
    }
    Ok(())
}

fn srandmember(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let count = match argv.len() {
        2 => None,
        3 => Some(rand_count(&argv[2], false)?),
        _ => return Err(CommandError::Syntax),
    };
    let mut t = ctx.lock_key(&argv[1]);
    let s = ctx.read::<Set>(&mut t, &argv[1])?;
    match (s, count) {
        (None, None) => ctx.out.null(),
        (None, Some(_)) => ctx.out.array(0),
        (Some(s), None) => {
            let m = s.random_members(1, false, &mut rand::thread_rng());
            ctx.out.bulk(&m[0]);
        }
        (Some(s), Some((n, distinct))) => {
            let mut rng = rand::thread_rng();
            let picks = s.random_members(n, distinct, &mut rng);
            ctx.out.array(picks.len());
            picks.iter().for_each(|m| ctx.out.bulk(m));
        }
    }
    Ok(())
}

fn spop(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let count = match argv.len() {
        2 => None,
        3 => Some(positive_count(&argv[2])?),
        _ => return Err(CommandError::Syntax),
    };
    let key = &argv[1];
    let mut t = ctx.lock_key(key);
    let Some(s) = ctx.write::<Set>(&mut t, key)? else {
        match count {
            None => ctx.out.null(),
            Some(_) => ctx.out.set(0),
        }
        return Ok(());
    };
    let popped: Vec<Vec<u8>> = s
        .random_members(count.unwrap_or(1), true, &mut rand::thread_rng())
        .iter()
        .map(|m| m.to_vec())
        .collect();
    for m in &popped {
        s.remove(m);
    }
    ctx.remove_if_empty::<Set>(&mut t, key);
    if !popped.is_empty() {
        let mut effect: Vec<&[u8]> = vec![b"SREM", key];
        effect.extend(popped.iter().map(Vec::as_slice));
        ctx.emit_as("spop", &effect);
    }
    match count {
        None => ctx.out.bulk(&popped[0]),
        Some(_) => {
            ctx.out.set(popped.len());
            popped.iter().for_each(|m| ctx.out.bulk(m));
        }
    }
    Ok(())
}

fn smove(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (src, dst, m) = (&argv[1], &argv[2], &argv[3]);
    let limits = ctx.encodings().set;
    let mut locked = ctx.lock_keys([src, dst].into_iter());
    let db = ctx.db();
    // A missing source answers 0 before the destination's type is looked
    // at, as in Redis.
    let has = match ctx.write::<Set>(locked.table_for(db, src), src)? {
        Some(s) => s.contains(m),
        None => {
            ctx.out.int(0);
            return Ok(());
        }
    };
    ctx.write::<Set>(locked.table_for(db, dst), dst)?;
    if !has {
        ctx.out.int(0);
        return Ok(());
    }
    if src != dst {
        let ts = locked.table_for(db, src);
        if let Some(s) = ctx.write::<Set>(ts, src)? {
            s.remove(m);
        }
        ctx.remove_if_empty::<Set>(ts, src);
        let d: &mut Set = ctx.write_or_create(locked.table_for(db, dst), dst)?;
        if d.insert(m, limits) {
            ctx.emit_argv(argv);
        } else {
            // Already a member there: only the source changed, and only
            // it is told (WATCH, notifications, tracking), as in Redis.
            ctx.emit(&[b"SREM", src, m]);
        }
    }
    ctx.out.int(1);
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Inter,
    Union,
    Diff,
}

/// Computes an intersection, union or difference of the sets at `keys`
/// (all locked in `locked`). Missing keys are empty sets; any other type
/// is WRONGTYPE. `limit` stops an intersection early (SINTERCARD). The
/// members are the sets' own, borrowed: nothing is copied (copying every
/// member first made a SINTERCARD LIMIT 10 over two sets of 100k members
/// 1500 times slower than Redis's), and an intset's are asked of another
/// intset by value.
fn combine<'l>(
    ctx: &Ctx,
    locked: &'l mut Locked,
    keys: &[Bytes],
    op: Op,
    limit: usize,
) -> Result<Vec<Member<'l>>, CommandError> {
    let db = ctx.db();
    // Type-check every key (expiring what is due) before computing
    // anything; sources are read, as Redis looks them up (hits and misses
    // counted), STORE forms included.
    for k in keys {
        ctx.read::<Set>(locked.table_for(db, k), k)?;
    }
    let locked: &'l Locked = locked;
    let sets: Vec<Option<&Set>> = locked
        .values(db, keys, |n| ctx.visible(n))
        .into_iter()
        .map(|v| v.and_then(Set::of))
        .collect();
    Ok(match op {
        Op::Inter => {
            let Some(mut sets) = sets.into_iter().collect::<Option<Vec<&Set>>>() else {
                return Ok(Vec::new());
            };
            // The smallest set walked, the others asked.
            sets.sort_by_key(|s| s.len());
            let (first, rest) = sets.split_first().expect("at least one key");
            if let Some(mut common) = Set::merge_ints(first, rest, true) {
                common.truncate(limit);
                return Ok(common);
            }
            let probes: Vec<_> = rest.iter().map(|s| s.probe(first.len())).collect();
            first
                .iter()
                .filter(|m| probes.iter().all(|p| p.contains_member(m)))
                .take(limit)
                .collect()
        }
        Op::Union => {
            // Members seen so far, by their place in `acc`: one copy each.
            let mut seen: hashbrown::HashTable<usize> = hashbrown::HashTable::new();
            let mut acc: Vec<Member> = Vec::new();
            for s in sets.into_iter().flatten() {
                for m in s.iter() {
                    let h = hash_key(&m);
                    if seen.find(h, |&i| *acc[i] == *m).is_none() {
                        acc.push(m);
                        seen.insert_unique(h, acc.len() - 1, |&i| hash_key(&acc[i]));
                    }
                }
            }
            acc
        }
        Op::Diff => {
            let Some(first) = sets[0] else {
                return Ok(Vec::new());
            };
            let others: Vec<&Set> = sets[1..].iter().flatten().copied().collect();
            if let Some(rest) = Set::merge_ints(first, &others, false) {
                return Ok(rest);
            }
            let probes: Vec<_> = others.iter().map(|s| s.probe(first.len())).collect();
            first
                .iter()
                .filter(|m| !probes.iter().any(|p| p.contains_member(m)))
                .collect()
        }
    })
}

fn combine_reply(ctx: &mut Ctx, argv: &[Bytes], op: Op) -> CmdResult {
    let keys = &argv[1..];
    let mut locked = ctx.lock_keys(keys.iter());
    let members = combine(ctx, &mut locked, keys, op, usize::MAX)?;
    ctx.out.set(members.len());
    members.iter().for_each(|m| ctx.out.bulk(m));
    Ok(())
}

fn combine_store(ctx: &mut Ctx, argv: &[Bytes], op: Op) -> CmdResult {
    let (dst, keys) = (&argv[1], &argv[2..]);
    let limits = ctx.encodings().set;
    let mut locked = ctx.lock_keys(argv[1..].iter());
    let members = combine(ctx, &mut locked, keys, op, usize::MAX)?;
    let n = members.len();
    let set = (n > 0).then(|| Set::from_members(members.iter().map(|m| &**m), limits));
    let t = locked.table_for(ctx.db(), dst);
    let existed = ctx.probe(t, dst);
    if let Some(set) = set {
        ctx.store(t, dst, set.into_value(), false);
    } else {
        t.remove(dst);
    }
    if existed || n > 0 {
        ctx.emit_stored(argv, n == 0);
    }
    ctx.out.int(n as i64);
    Ok(())
}

fn sinter(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    combine_reply(ctx, argv, Op::Inter)
}

fn sunion(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    combine_reply(ctx, argv, Op::Union)
}

fn sdiff(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    combine_reply(ctx, argv, Op::Diff)
}

fn sinterstore(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    combine_store(ctx, argv, Op::Inter)
}

fn sunionstore(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    combine_store(ctx, argv, Op::Union)
}

fn sdiffstore(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    combine_store(ctx, argv, Op::Diff)
}

/// Parses `numkeys key...` at argv[at]; Redis's messages.
pub fn numkeys_list(argv: &[Bytes], at: usize) -> Result<&[Bytes], CommandError> {
    let n = int(&argv[at]).map_err(|_| CommandError::err("numkeys should be greater than 0"))?;
    if n <= 0 {
        return Err(CommandError::err("numkeys should be greater than 0"));
    }
    argv.get(at + 1..at + 1 + n as usize)
        .ok_or_else(|| CommandError::err("Number of keys can't be greater than number of args"))
}

fn sintercard(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let keys = numkeys_list(argv, 1)?;
    let mut a = Args::new(argv, 1 + keys.len());
    let mut limit = usize::MAX;
    while let Some(w) = a.next() {
        if w.eq_ignore_ascii_case(b"limit") {
            let l = a.int_at_least(0, "LIMIT can't be negative")?;
            if l > 0 {
                limit = l as usize;
            }
        } else {
            return Err(CommandError::Syntax);
        }
    }
    let mut locked = ctx.lock_keys(keys.iter());
    let n = combine(ctx, &mut locked, keys, Op::Inter, limit)?.len();
    ctx.out.int(n as i64);
    Ok(())
}

fn sscan(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let cursor = element_scan::cursor(argv)?;
    let mut t = ctx.lock_key(&argv[1]);
    let Some(s) = ctx.read::<Set>(&mut t, &argv[1])? else {
        element_scan::empty(ctx);
        return Ok(());
    };
    let o = element_scan::parse(argv, cursor, false)?;
    element_scan::reply(ctx, &o, &SetScan(s));
    Ok(())
}

struct SetScan<'a>(&'a Set);

impl<'a> element_scan::Source for SetScan<'a> {
    type E = Member<'a>;
    fn size(&self) -> usize {
        self.0.len()
    }
    fn buckets(&self) -> Option<(usize, u16)> {
        self.0.table().map(|t| (t.num_buckets(), t.epoch()))
    }
    fn bucket(&self, i: usize) -> Slot<Member<'a>> {
        match self.0.table().and_then(|t| t.get_bucket(i)) {
            Some(m) => Slot::Full(Member::Bytes(m.as_bytes())),
            None => Slot::Empty,
        }
    }
    fn each(&self, f: &mut dyn FnMut(Member<'a>)) {
        self.0.iter().for_each(f)
    }
    fn name<'e>(&self, e: &'e Member<'a>) -> &'e [u8] {
        e
    }
    fn value(&self, _: &Member<'a>) -> Option<Vec<u8>> {
        None
    }
}
