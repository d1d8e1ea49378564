//! Sorted set commands.
//!
//! Every range command (ZRANGE in all its forms, ZCOUNT, ZLEXCOUNT,
//! ZREMRANGEBY*, ZRANGESTORE) works the same way: the bounds become a span
//! of ranks `[lo, hi)` by two O(log n) searches of the sorted set, LIMIT
//! and REV trim the span, and the reply walks it. See `keyspace::zset`.
//!
//! Scores are IEEE doubles and never NaN: an operation that would make one
//! is refused (ZADD/ZINCRBY) or, in aggregation, gives 0 as in Redis.
//!
//! Effects: sorted set writes are deterministic and recorded as themselves.

use bytes::Bytes;
use rand::Rng;

use super::args::{float, int, positive_count, rand_count, strtod_lenient, Args};
use super::element_scan::{self, Slot};
use super::lists::clamp_range;
use super::{block_deadline, flags::*, key_flags::*, keys, keys_counted, spec, Ctx, Spec};
use crate::error::{CmdResult, CommandError};
use crate::keyspace::table::positions;
use crate::keyspace::zset::{Bucket, Entry};
use crate::keyspace::{Kind, Set, SlotTable, Value, ZSet};
use crate::protocol::reply::format_double;

const G: &str = "sorted-set";
const Z: &[&str] = &["sortedset"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("zadd", -4, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | UPDATE), Z, G, "Adds one or more members to a sorted set, or updates their scores. Creates the key if it doesn't exist.", zadd),
    spec("zincrby", 4, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | ACCESS | UPDATE), Z, G, "Increments the score of a member in a sorted set.", zincrby),
    spec("zrem", -3, WRITE | FAST, keys(1, 1, 1).flags(RW | DELETE), Z, G, "Removes one or more members from a sorted set. Deletes the sorted set if all members were removed.", zrem),
    spec("zcard", 2, READONLY | FAST, keys(1, 1, 1).flags(RO), Z, G, "Returns the number of members in a sorted set.", zcard),
    spec("zscore", 3, READONLY | FAST, keys(1, 1, 1).flags(RO | ACCESS), Z, G, "Returns the score of a member in a sorted set.", zscore),
    spec("zmscore", -3, READONLY | FAST, keys(1, 1, 1).flags(RO | ACCESS), Z, G, "Returns the score of one or more members in a sorted set.", zmscore),
    spec("zrank", -3, READONLY | FAST, keys(1, 1, 1).flags(RO | ACCESS), Z, G, "Returns the index of a member in a sorted set ordered by ascending scores.", zrank),
    spec("zrevrank", -3, READONLY | FAST, keys(1, 1, 1).flags(RO | ACCESS), Z, G, "Returns the index of a member in a sorted set ordered by descending scores.", zrevrank),
    spec("zcount", 4, READONLY | FAST, keys(1, 1, 1).flags(RO | ACCESS), Z, G, "Returns the count of members in a sorted set that have scores within a range.", zcount),
    spec("zlexcount", 4, READONLY | FAST, keys(1, 1, 1).flags(RO | ACCESS), Z, G, "Returns the number of members in a sorted set within a lexicographical range.", zlexcount),
    spec("zrange", -4, READONLY, keys(1, 1, 1).flags(RO | ACCESS), Z, G, "Returns members in a sorted set within a range of indexes.", zrange),
    spec("zrangestore", -5, WRITE | DENYOOM, keys(1, 2, 1).flags(OW | UPDATE).then(RO | ACCESS), Z, G, "Stores a range of members from sorted set in a key.", zrangestore),
    spec("zrevrange", -4, READONLY, keys(1, 1, 1).flags(RO | ACCESS), Z, G, "Returns members in a sorted set within a range of indexes in reverse order.", zrevrange),
    spec("zrangebyscore", -4, READONLY, keys(1, 1, 1).flags(RO | ACCESS), Z, G, "Returns members in a sorted set within a range of scores.", zrangebyscore),
    spec("zrevrangebyscore", -4, READONLY, keys(1, 1, 1).flags(RO | ACCESS), Z, G, "Returns members in a sorted set within a range of scores in reverse order.", zrevrangebyscore),
    spec("zrangebylex", -4, READONLY, keys(1, 1, 1).flags(RO | ACCESS), Z, G, "Returns members in a sorted set within a lexicographical range.", zrangebylex),
    spec("zrevrangebylex", -4, READONLY, keys(1, 1, 1).flags(RO | ACCESS), Z, G, "Returns members in a sorted set within a lexicographical range in reverse order.", zrevrangebylex),
    spec("zremrangebyrank", 4, WRITE, keys(1, 1, 1).flags(RW | DELETE), Z, G, "Removes members in a sorted set within a range of indexes. Deletes the sorted set if all members were removed.", zremrangebyrank),
    spec("zremrangebyscore", 4, WRITE, keys(1, 1, 1).flags(RW | DELETE), Z, G, "Removes members in a sorted set within a range of scores. Deletes the sorted set if all members were removed.", zremrangebyscore),
    spec("zremrangebylex", 4, WRITE, keys(1, 1, 1).flags(RW | DELETE), Z, G, "Removes members in a sorted set within a lexicographical range. Deletes the sorted set if all members were removed.", zremrangebylex),
    spec("zpopmin", -2, WRITE | FAST, keys(1, 1, 1).flags(RW | ACCESS | DELETE), Z, G, "Returns the lowest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.", zpopmin),
    spec("zpopmax", -2, WRITE | FAST, keys(1, 1, 1).flags(RW | ACCESS | DELETE), Z, G, "Returns the highest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.", zpopmax),
    spec("zmpop", -4, WRITE, keys_counted(0, 0, 1).flags(RW | ACCESS | DELETE), Z, G, "Returns the highest- or lowest-scoring members from one or more sorted sets after removing them. Deletes the sorted set if the last member was popped.", zmpop),
    spec("bzpopmin", -3, WRITE | NOSCRIPT | FAST | BLOCKING, keys(1, -2, 1).flags(RW | ACCESS | DELETE), Z, G, "Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.", bzpopmin),
    spec("bzpopmax", -3, WRITE | NOSCRIPT | FAST | BLOCKING, keys(1, -2, 1).flags(RW | ACCESS | DELETE), Z, G, "Removes and returns the member with the highest score from one or more sorted sets. Blocks until a member available otherwise.  Deletes the sorted set if the last element was popped.", bzpopmax),
    spec("bzmpop", -5, WRITE | BLOCKING, keys_counted(0, 0, 2).flags(RW | ACCESS | DELETE), Z, G, "Removes and returns a member by score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.", bzmpop),
    spec("zunion", -3, READONLY, keys_counted(0, 0, 1).flags(RO | ACCESS), Z, G, "Returns the union of multiple sorted sets.", zunion),
    spec("zinter", -3, READONLY, keys_counted(0, 0, 1).flags(RO | ACCESS), Z, G, "Returns the intersect of multiple sorted sets.", zinter),
    spec("zdiff", -3, READONLY, keys_counted(0, 0, 1).flags(RO | ACCESS), Z, G, "Returns the difference between multiple sorted sets.", zdiff),
    spec("zunionstore", -4, WRITE | DENYOOM, keys_counted(1, 1, 2).flags(OW | UPDATE).then(RO | ACCESS), Z, G, "Stores the union of multiple sorted sets in a key.", zunionstore),
    spec("zinterstore", -4, WRITE | DENYOOM, keys_counted(1, 1, 2).flags(OW | UPDATE).then(RO | ACCESS), Z, G, "Stores the intersect of multiple sorted sets in a key.", zinterstore),
    spec("zdiffstore", -4, WRITE | DENYOOM, keys_counted(1, 1, 2).flags(OW | UPDATE).then(RO | ACCESS), Z, G, "Stores the difference of multiple sorted sets in a key.", zdiffstore),
    spec("zintercard", -3, READONLY, keys_counted(0, 0, 1).flags(RO | ACCESS), Z, G, "Returns the number of members of the intersect of multiple sorted sets.", zintercard),
    spec("zrandmember", -2, READONLY, keys(1, 1, 1).flags(RO | ACCESS), Z, G, "Returns one or more random members from a sorted set.", zrandmember),
    spec("zscan", -3, READONLY, keys(1, 1, 1).flags(RO | ACCESS), Z, G, "Iterates over members and scores of a sorted set.", zscan),
];

// ---- bounds ----

#[derive(Clone, Copy)]
struct ScoreBound {
    v: f64,
    excl: bool,
}

/// Redis reads a range bound with a bare `strtod`: leading space, an empty
/// string (0) and overflow to infinity all pass; only NaN and trailing
/// junk are refused.
fn score_bound(b: &[u8]) -> Result<ScoreBound, CommandError> {
    let (excl, num) = match b.first() {
        Some(b'(') => (true, &b[1..]),
        _ => (false, b),
    };
    match strtod_lenient(num) {
        Some((v, _)) if !v.is_nan() => Ok(ScoreBound { v, excl }),
        _ => Err(CommandError::err("min or max is not a float")),
    }
}

enum LexBound {
    Min,
    Max,
    Incl(Bytes),
    Excl(Bytes),
}

fn lex_bound(b: &Bytes) -> Result<LexBound, CommandError> {
    match b.first() {
        Some(b'-') if b.len() == 1 => Ok(LexBound::Min),
        Some(b'+') if b.len() == 1 => Ok(LexBound::Max),
        Some(b'[') => Ok(LexBound::Incl(b.slice(1..))),
        Some(b'(') => Ok(LexBound::Excl(b.slice(1..))),
        _ => Err(CommandError::err("min or max not valid string range item")),
    }
}

/// The ranks `[lo, hi)` of the members with min <= score <= max.
fn score_span(z: &ZSet, min: ScoreBound, max: ScoreBound) -> (usize, usize) {
    let lo = z.count_below(|s, _| if min.excl { s <= min.v } else { s < min.v });
    let hi = z.count_below(|s, _| if max.excl { s < max.v } else { s <= max.v });
    (lo, hi.max(lo))
}

/// The ranks `[lo, hi)` of the members within a lexicographical range
/// (meaningful when all scores are equal, as Redis documents). `rev`: the
/// range is read from its top (ZREVRANGEBYLEX, ZRANGE ... BYLEX REV).
///
/// `skip` members are passed over first (a LIMIT's offset), counted from
/// the range's start (its top for `rev`).
///
/// Where scores differ, Redis's answer is "unspecified", but for a small
/// sorted set (its listpack encoding) it is a plain scan: from the head,
/// the first member not below `min`, then `skip` members passed over
/// whether in range or not, then on while not above `max` (from the tail
/// for `rev`). A small set is scanned the same way here, so the same
/// commands give the same answers; with equal scores a scan and the
/// search below agree. (A large set's answer in Redis depends on its skip
/// list's random levels: there is nothing to mirror.)
fn lex_span(z: &ZSet, min: &LexBound, max: &LexBound, rev: bool, skip: usize) -> (usize, usize) {
    if z.encoding() == "listpack" {
        return lex_scan(z, min, max, rev, skip);
    }
    let pos = |b: &LexBound, upper: bool| match b {
        LexBound::Min => 0,
        LexBound::Max => z.len(),
        LexBound::Incl(m) if upper => z.count_below(|_, x| x <= &m[..]),
        LexBound::Incl(m) => z.count_below(|_, x| x < &m[..]),
        LexBound::Excl(m) if upper => z.count_below(|_, x| x < &m[..]),
        LexBound::Excl(m) => z.count_below(|_, x| x <= &m[..]),
    };
    let lo = pos(min, false);
    skip_span((lo, pos(max, true).max(lo)), rev, skip)
}

/// What is left of the ranks `[lo, hi)` once `skip` are passed over from
/// the start (from the end for `rev`).
fn skip_span((lo, hi): (usize, usize), rev: bool, skip: usize) -> (usize, usize) {
    let skip = skip.min(hi - lo);
    if rev {
        (lo, hi - skip)
    } else {
        (lo + skip, hi)
    }
}

/// Redis's listpack lex range: `zzlFirstInLexRange` and on (or
/// `zzlLastInLexRange` and back, for `rev`).
fn lex_scan(z: &ZSet, min: &LexBound, max: &LexBound, rev: bool, skip: usize) -> (usize, usize) {
    let gte_min = |m: &[u8]| match min {
        LexBound::Min => true,
        LexBound::Max => false,
        LexBound::Incl(b) => m >= &b[..],
        LexBound::Excl(b) => m > &b[..],
    };
    let lte_max = |m: &[u8]| match max {
        LexBound::Min => false,
        LexBound::Max => true,
        LexBound::Incl(b) => m <= &b[..],
        LexBound::Excl(b) => m < &b[..],
    };
    // A range that can hold nothing (Redis's zslParseLexRange checks and
    // zzlIsInLexRange's), then the first and last members against it.
    let empty = match (min, max) {
        (LexBound::Max, _) | (_, LexBound::Min) => true,
        (LexBound::Incl(a), LexBound::Incl(b)) => a > b,
        (LexBound::Incl(a) | LexBound::Excl(a), LexBound::Incl(b) | LexBound::Excl(b)) => a >= b,
        _ => false,
    };
    let n = z.len();
    let member = |i: usize| z.at(i).member.as_bytes();
    if empty || n == 0 || !gte_min(member(n - 1)) || !lte_max(member(0)) {
        return (0, 0);
    }
    if rev {
        let Some(hi) = (0..n).rev().find(|&i| lte_max(member(i))) else {
            return (0, 0);
        };
        if !gte_min(member(hi)) || skip > hi {
            return (0, 0);
        }
        let hi = hi - skip;
        (0..=hi)
            .rev()
            .take_while(|&i| gte_min(member(i)))
            .last()
            .map_or((0, 0), |lo| (lo, hi + 1))
    } else {
        let Some(lo) = (0..n).find(|&i| gte_min(member(i))) else {
            return (0, 0);
        };
        if !lte_max(member(lo)) || lo.saturating_add(skip) >= n {
            return (0, 0);
        }
        let lo = lo + skip;
        (lo..n)
            .take_while(|&i| lte_max(member(i)))
            .last()
            .map_or((0, 0), |hi| (lo, hi + 1))
    }
}

// ---- replies ----

/// Member/score pairs: flat in RESP2; in RESP3 each pair is nested when
/// `nest` (ZRANGE WITHSCORES, ZPOPMIN with a count...).
fn reply_scored<'a>(
    ctx: &mut Ctx,
    n: usize,
    items: impl Iterator<Item = (&'a [u8], f64)>,
    withscores: bool,
    nest: bool,
) {
    let nested = withscores && nest && ctx.out.resp3();
    ctx.out.array(if withscores && !nested { 2 * n } else { n });
    for (m, s) in items {
        if nested {
            ctx.out.array(2);
        }
        ctx.out.bulk(m);
        if withscores {
            ctx.out.double(s);
        }
    }
}

fn entry_pair(e: &Entry) -> (&[u8], f64) {
    (e.member.as_bytes(), e.score)
}

// ---- ZADD / ZINCRBY ----

#[derive(Default)]
struct AddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

pub(super) fn zadd(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut f = AddFlags::default();
    let mut i = 2;
    while i < argv.len() {
        let w = &argv[i];
        let flag = match w.to_ascii_lowercase().as_slice() {
            b"nx" => &mut f.nx,
            b"xx" => &mut f.xx,
            b"gt" => &mut f.gt,
            b"lt" => &mut f.lt,
            b"ch" => &mut f.ch,
            b"incr" => &mut f.incr,
            _ => break,
        };
        *flag = true;
        i += 1;
    }
    let pairs = &argv[i..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Err(CommandError::Syntax);
    }
    if f.nx && f.xx {
        return Err(CommandError::err(
            "XX and NX options at the same time are not compatible",
        ));
    }
    if (f.nx && (f.gt || f.lt)) || (f.gt && f.lt) {
        return Err(CommandError::err(
            "GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if f.incr && pairs.len() > 2 {
        return Err(CommandError::err(
            "INCR option supports a single increment-element pair",
        ));
    }
    let scores = pairs
        .chunks(2)
        .map(|p| float(&p[0]))
        .collect::<Result<Vec<f64>, _>>()?;
    let key = &argv[1];
    let limits = ctx.encodings().zset;
    let mut t = ctx.lock_key(key);
    if f.xx && ctx.write::<ZSet>(&mut t, key)?.is_none() {
        if f.incr {
            ctx.out.null();
        } else {
            ctx.out.int(0);
        }
        return Ok(());
    }
    let z: &mut ZSet = ctx.write_or_create(&mut t, key)?;
    let (mut added, mut changed) = (0, 0);
    let mut result = None;
    for (p, &score) in pairs.chunks(2).zip(&scores) {
        let m = &p[1];
        match z.score(m) {
            Some(cur) => {
                if f.nx {
                    continue;
                }
                let new = if f.incr { cur + score } else { score };
                if new.is_nan() {
                    ctx.remove_if_empty::<ZSet>(&mut t, key);
                    return Err(CommandError::err("resulting score is not a number (NaN)"));
                }
                if (f.gt && new <= cur) || (f.lt && new >= cur) {
                    continue;
                }
                // Redis's test: -0 and 0 are the same score, no change.
                if new != cur {
                    z.insert(m, new, limits);
                    changed += 1;
                }
                result = Some(new);
            }
            None => {
                if f.xx {
                    continue;
                }
                z.insert(m, score, limits);
                added += 1;
                result = Some(score);
            }
        }
    }
    ctx.remove_if_empty::<ZSet>(&mut t, key);
    if added + changed > 0 {
        ctx.emit_argv(argv);
    }
    if f.incr {
        match result {
            Some(s) => ctx.out.double(s),
            None => ctx.out.null(),
        }
    } else {
        ctx.out.int(if f.ch { added + changed } else { added });
    }
    Ok(())
}

fn zincrby(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let delta = float(&argv[2])?;
    let (key, m) = (&argv[1], &argv[3]);
    let limits = ctx.encodings().zset;
    let mut t = ctx.lock_key(key);
    let z: &mut ZSet = ctx.write_or_create(&mut t, key)?;
    // A new member's score is the increment itself (-0 stays -0 in the
    // reply, as in Redis).
    let cur = z.score(m);
    let new = cur.map_or(delta, |cur| cur + delta);
    if new.is_nan() {
        ctx.remove_if_empty::<ZSet>(&mut t, key);
        return Err(CommandError::err("resulting score is not a number (NaN)"));
    }
    // An increment lost to rounding (a score past 2^53) changes nothing,
    // and Redis then records and signals nothing either.
    if cur != Some(new) {
        z.insert(m, new, limits);
        ctx.emit_argv(argv);
    }
    ctx.out.double(new);
    Ok(())
}

// ---- members ----

fn zrem(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    ctx.remove_members::<ZSet>(argv, |z, ms| {
        ms.iter().filter(|m| z.remove(m).is_some()).count()
    })
}

fn zcard(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    ctx.reply_count::<ZSet>(&argv[1])
}

fn zscore(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    match ctx
        .read::<ZSet>(&mut t, &argv[1])?
        .and_then(|z| z.score(&argv[2]))
    {
        Some(s) => ctx.out.double(s),
        None => ctx.out.null(),
    }
    Ok(())
}

fn zmscore(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    let z = ctx.read::<ZSet>(&mut t, &argv[1])?;
    ctx.out.array(argv.len() - 2);
    for m in &argv[2..] {
        match z.as_ref().and_then(|z| z.score(m)) {
            Some(s) => ctx.out.double(s),
            None => ctx.out.null(),
        }
    }
    Ok(())
}

fn rank_generic(ctx: &mut Ctx, argv: &[Bytes], rev: bool) -> CmdResult {
    let withscore = match argv.len() {
        3 => false,
        4 if argv[3].eq_ignore_ascii_case(b"withscore") => true,
        4 => return Err(CommandError::Syntax),
        _ => {
            return Err(CommandError::Arity(
                if rev { "zrevrank" } else { "zrank" }.into(),
            ))
        }
    };
    let mut t = ctx.lock_key(&argv[1]);
    let z = ctx.read::<ZSet>(&mut t, &argv[1])?;
    let found = z.and_then(|z| {
        z.rank(&argv[2])
            .map(|(r, s)| (if rev { z.len() - 1 - r } else { r }, s))
    });
    match (found, withscore) {
        (Some((r, _)), false) => ctx.out.int(r as i64),
        (Some((r, s)), true) => {
            ctx.out.array(2);
            ctx.out.int(r as i64);
            ctx.out.double(s);
        }
        (None, false) => ctx.out.null(),
        (None, true) => ctx.out.null_array(),
    }
    Ok(())
}

fn zrank(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    rank_generic(ctx, argv, false)
}

fn zrevrank(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    rank_generic(ctx, argv, true)
}

fn zcount(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (min, max) = (score_bound(&argv[2])?, score_bound(&argv[3])?);
    let mut t = ctx.lock_key(&argv[1]);
    let n = ctx.read::<ZSet>(&mut t, &argv[1])?.map_or(0, |z| {
        let (lo, hi) = score_span(z, min, max);
        hi - lo
    });
    ctx.out.int(n as i64);
    Ok(())
}

fn zlexcount(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (min, max) = (lex_bound(&argv[2])?, lex_bound(&argv[3])?);
    let mut t = ctx.lock_key(&argv[1]);
    let n = ctx.read::<ZSet>(&mut t, &argv[1])?.map_or(0, |z| {
        let (lo, hi) = lex_span(z, &min, &max, false, 0);
        hi - lo
    });
    ctx.out.int(n as i64);
    Ok(())
}

// ---- ZRANGE and its older forms ----

#[derive(Clone, Copy, PartialEq)]
enum By {
    Rank,
    Score,
    Lex,
}

struct RangeQuery {
    by: By,
    rev: bool,
    /// LIMIT offset count; a negative count means all.
    limit: Option<(i64, i64)>,
    withscores: bool,
    start: Bytes,
    stop: Bytes,
}

/// Parses `start stop [BYSCORE|BYLEX] [REV] [LIMIT o c] [WITHSCORES]`
/// (from argv[at]); the older commands fix `by` and `rev` and accept
/// only LIMIT/WITHSCORES.
fn parse_range(
    argv: &[Bytes],
    at: usize,
    by: By,
    rev: bool,
    modern: bool,
    allow_withscores: bool,
) -> Result<RangeQuery, CommandError> {
    let mut q = RangeQuery {
        by,
        rev,
        limit: None,
        withscores: false,
        start: argv[at].clone(),
        stop: argv[at + 1].clone(),
    };
    let mut a = Args::new(argv, at + 1);
    while let Some(w) = a.next() {
        if modern && w.eq_ignore_ascii_case(b"byscore") {
            q.by = By::Score;
        } else if modern && w.eq_ignore_ascii_case(b"bylex") {
            q.by = By::Lex;
        } else if modern && w.eq_ignore_ascii_case(b"rev") {
            q.rev = true;
        } else if w.eq_ignore_ascii_case(b"limit") {
            let (o, c) = (a.int()?, a.int()?);
            q.limit = Some((o, c));
        } else if allow_withscores && w.eq_ignore_ascii_case(b"withscores") {
            q.withscores = true;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    if q.limit.is_some() && q.by == By::Rank {
        return Err(CommandError::err(
            "syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if q.withscores && q.by == By::Lex {
        return Err(CommandError::err(
            "syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    Ok(q)
}

/// The selected ranks as `(lo, hi, rev)`: walk `z.range(lo, hi, rev)`.
/// Bounds are parsed before the key is looked at, so a bad bound is an
/// error even for a missing key.
struct Bounds {
    score: Option<(ScoreBound, ScoreBound)>,
    lex: Option<(LexBound, LexBound)>,
    rank: Option<(i64, i64)>,
}

fn parse_bounds(q: &RangeQuery) -> Result<Bounds, CommandError> {
    // REV forms take the upper bound first.
    let (lo, hi) = if q.rev && q.by != By::Rank {
        (&q.stop, &q.start)
    } else {
        (&q.start, &q.stop)
    };
    Ok(match q.by {
        By::Rank => Bounds {
            score: None,
            lex: None,
            rank: Some((int(&q.start)?, int(&q.stop)?)),
        },
        By::Score => Bounds {
            score: Some((score_bound(lo)?, score_bound(hi)?)),
            lex: None,
            rank: None,
        },
        By::Lex => Bounds {
            score: None,
            lex: Some((lex_bound(lo)?, lex_bound(hi)?)),
            rank: None,
        },
    })
}

fn select(z: &ZSet, q: &RangeQuery, b: &Bounds) -> (usize, usize) {
    let (skip, take) = match q.limit {
        None => (0, usize::MAX),
        Some((offset, _)) if offset < 0 => return (0, 0),
        Some((offset, count)) => (
            usize::try_from(offset).unwrap_or(usize::MAX),
            usize::try_from(count).unwrap_or(usize::MAX),
        ),
    };
    let (lo, hi) = if let Some((start, stop)) = b.rank {
        match clamp_range(start, stop, z.len()) {
            Some((s, e)) if q.rev => (z.len() - 1 - e, z.len() - s),
            Some((s, e)) => (s, e + 1),
            None => (0, 0),
        }
    } else if let Some((min, max)) = b.score {
        skip_span(score_span(z, min, max), q.rev, skip)
    } else if let Some((min, max)) = &b.lex {
        lex_span(z, min, max, q.rev, skip)
    } else {
        (0, 0)
    };
    if q.rev {
        (hi.saturating_sub(take).max(lo), hi)
    } else {
        (lo, lo.saturating_add(take).min(hi))
    }
}

fn range_reply(ctx: &mut Ctx, key: &[u8], q: RangeQuery) -> CmdResult {
    let b = parse_bounds(&q)?;
    let mut t = ctx.lock_key(key);
    let Some(z) = ctx.read::<ZSet>(&mut t, key)? else {
        ctx.out.array(0);
        return Ok(());
    };
    let z: &ZSet = z;
    let (lo, hi) = select(z, &q, &b);
    reply_scored(
        ctx,
        hi - lo,
        z.range(lo, hi, q.rev).map(entry_pair),
        q.withscores,
        true,
    );
    Ok(())
}

fn zrange(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let q = parse_range(argv, 2, By::Rank, false, true, true)?;
    range_reply(ctx, &argv[1], q)
}

fn zrevrange(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let q = parse_range(argv, 2, By::Rank, true, false, true)?;
    range_reply(ctx, &argv[1], q)
}

fn zrangebyscore(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let q = parse_range(argv, 2, By::Score, false, false, true)?;
    range_reply(ctx, &argv[1], q)
}

fn zrevrangebyscore(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let q = parse_range(argv, 2, By::Score, true, false, true)?;
    range_reply(ctx, &argv[1], q)
}

fn zrangebylex(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let q = parse_range(argv, 2, By::Lex, false, false, false)?;
    range_reply(ctx, &argv[1], q)
}

fn zrevrangebylex(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let q = parse_range(argv, 2, By::Lex, true, false, false)?;
    range_reply(ctx, &argv[1], q)
}

/// Replaces `dst` with a sorted set of `entries` (deleting it when there
/// are none); returns whether the keyspace changed.
pub(super) fn store(
    ctx: &Ctx,
    t: &mut SlotTable,
    dst: &[u8],
    entries: Vec<(Vec<u8>, f64)>,
) -> bool {
    let existed = ctx.probe(t, dst);
    if entries.is_empty() {
        t.remove(dst);
        return existed;
    }
    let z = ZSet::from_distinct(entries, ctx.encodings().zset);
    ctx.store(t, dst, Value::ZSet(Box::new(z)), false);
    true
}

fn zrangestore(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let q = parse_range(argv, 3, By::Rank, false, true, false)?;
    let b = parse_bounds(&q)?;
    let (dst, src) = (&argv[1], &argv[2]);
    let mut locked = ctx.lock_keys([dst, src].into_iter());
    let db = ctx.db();
    let entries: Vec<(Vec<u8>, f64)> = match ctx.read::<ZSet>(locked.table_for(db, src), src)? {
        Some(z) => {
            let (lo, hi) = select(z, &q, &b);
            z.range(lo, hi, q.rev)
                .map(|e| (e.member.as_bytes().to_vec(), e.score))
                .collect()
        }
        None => Vec::new(),
    };
    let n = entries.len();
    if store(ctx, locked.table_for(db, dst), dst, entries) {
        ctx.emit_stored(argv, n == 0);
    }
    ctx.out.int(n as i64);
    Ok(())
}

// ---- removal by range ----

fn remrange(ctx: &mut Ctx, argv: &[Bytes], by: By) -> CmdResult {
    let q = RangeQuery {
        by,
        rev: false,
        limit: None,
        withscores: false,
        start: argv[2].clone(),
        stop: argv[3].clone(),
    };
    let b = parse_bounds(&q)?;
    let mut t = ctx.lock_key(&argv[1]);
    let removed = match ctx.write::<ZSet>(&mut t, &argv[1])? {
        Some(z) => {
            let (lo, hi) = select(z, &q, &b);
            z.remove_range(lo, hi).len()
        }
        None => 0,
    };
    if removed > 0 {
        ctx.remove_if_empty::<ZSet>(&mut t, &argv[1]);
        ctx.emit_argv(argv);
    }
    ctx.out.int(removed as i64);
    Ok(())
}

fn zremrangebyrank(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    remrange(ctx, argv, By::Rank)
}

fn zremrangebyscore(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    remrange(ctx, argv, By::Score)
}

fn zremrangebylex(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    remrange(ctx, argv, By::Lex)
}

// ---- popping ----

/// Removes up to `count` lowest (or highest, `max`) members.
fn pop_entries(z: &mut ZSet, count: usize, max: bool) -> Vec<Entry> {
    let n = count.min(z.len());
    if max {
        let len = z.len();
        let mut v = z.remove_range(len - n, len);
        v.reverse();
        v
    } else {
        z.remove_range(0, n)
    }
}

fn pop_generic(ctx: &mut Ctx, argv: &[Bytes], max: bool) -> CmdResult {
    let count = match argv.len() {
        2 => None,
        3 => Some(positive_count(&argv[2])?),
        _ => return Err(CommandError::Syntax),
    };
    let mut t = ctx.lock_key(&argv[1]);
    let popped = match ctx.write::<ZSet>(&mut t, &argv[1])? {
        Some(z) => pop_entries(z, count.unwrap_or(1), max),
        None => Vec::new(),
    };
    if !popped.is_empty() {
        ctx.remove_if_empty::<ZSet>(&mut t, &argv[1]);
        ctx.emit_argv(argv);
    }
    // Without a count the reply is always flat; with one, RESP3 nests pairs.
    reply_scored(
        ctx,
        popped.len(),
        popped.iter().map(entry_pair),
        true,
        count.is_some(),
    );
    Ok(())
}

fn zpopmin(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    pop_generic(ctx, argv, false)
}

fn zpopmax(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    pop_generic(ctx, argv, true)
}

fn zmpop(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (keys, max, count) = super::lists::parse_mpop(argv, 1, &[("min", false), ("max", true)])?;
    if !zmpop_first(ctx, keys, max, count)? {
        ctx.out.null_array();
    }
    Ok(())
}

/// Pops from the first non-empty sorted set among `keys` and replies
/// `[key, [[member, score], ...]]`; false if all are empty.
pub fn zmpop_first(
    ctx: &mut Ctx,
    keys: &[Bytes],
    max: bool,
    count: usize,
) -> Result<bool, CommandError> {
    let Some((key, popped)) =
        ctx.pop_first::<ZSet, _>(keys, pop_name(max), true, |z| pop_entries(z, count, max))?
    else {
        return Ok(false);
    };
    ctx.out.array(2);
    ctx.out.bulk(key);
    ctx.out.array(popped.len());
    for e in &popped {
        ctx.out.array(2);
        ctx.out.bulk(e.member.as_bytes());
        ctx.out.double(e.score);
    }
    Ok(true)
}

/// The pop recorded for taking the lowest (or highest) members.
fn pop_name(max: bool) -> &'static [u8] {
    if max {
        b"ZPOPMAX"
    } else {
        b"ZPOPMIN"
    }
}

/// BZPOPMIN and BZPOPMAX: `[key, member, score]` from the first non-empty
/// sorted set, or block.
fn bzpop(ctx: &mut Ctx, argv: &[Bytes], max: bool) -> CmdResult {
    let deadline = block_deadline(&argv[argv.len() - 1])?;
    let keys = &argv[1..argv.len() - 1];
    match ctx.pop_first::<ZSet, _>(keys, pop_name(max), false, |z| pop_entries(z, 1, max))? {
        Some((key, popped)) => {
            ctx.out.array(3);
            ctx.out.bulk(key);
            ctx.out.bulk(popped[0].member.as_bytes());
            ctx.out.double(popped[0].score);
        }
        None => ctx.block(keys, deadline, true),
    }
    Ok(())
}

fn bzpopmin(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    bzpop(ctx, argv, false)
}

fn bzpopmax(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    bzpop(ctx, argv, true)
}

fn bzmpop(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let deadline = block_deadline(&argv[1])?;
    let (keys, max, count) = super::lists::parse_mpop(argv, 2, &[("min", false), ("max", true)])?;
    if !zmpop_first(ctx, keys, max, count)? {
        ctx.block(keys, deadline, true);
    }
    Ok(())
}

// ---- ZUNION / ZINTER / ZDIFF ----

#[derive(Clone, Copy, PartialEq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    fn apply(self, a: f64, b: f64) -> f64 {
        let r = match self {
            Aggregate::Sum => a + b,
            Aggregate::Min => a.min(b),
            Aggregate::Max => a.max(b),
        };
        // inf + -inf: Redis gives 0 rather than a NaN score.
        if r.is_nan() {
            0.0
        } else {
            r
        }
    }
}

/// How ZUNION, ZINTER and ZDIFF (and their STORE forms, and ZINTERCARD)
/// combine their sources, from the options after the keys.
struct Combine {
    weights: Vec<f64>,
    aggregate: Aggregate,
    withscores: bool,
    /// ZINTERCARD's LIMIT (0: none).
    limit: usize,
}

/// Which command's options [`parse_combine`] reads.
#[derive(Clone, Copy, PartialEq)]
enum Form {
    Reply,
    Store,
    Card,
}

/// `numkeys key...` at `argv[at]`, with Redis's replies for the sorted set
/// forms (SINTERCARD words them differently).
fn combine_keys(argv: &[Bytes], at: usize) -> Result<&[Bytes], CommandError> {
    let n = int(&argv[at])?;
    if n < 1 {
        let name = String::from_utf8_lossy(&argv[0]).to_ascii_lowercase();
        return Err(CommandError::err(format!(
            "at least 1 input key is needed for '{name}' command"
        )));
    }
    argv.get(at + 1..at + 1 + n as usize)
        .ok_or(CommandError::Syntax)
}

/// The options after `nkeys` keys at `argv[at]`. Redis reads them only
/// once every source has passed its type check, so a WRONGTYPE source wins
/// over a bad option; callers keep that order.
fn parse_combine(
    argv: &[Bytes],
    at: usize,
    nkeys: usize,
    op: SetOp,
    form: Form,
) -> Result<Combine, CommandError> {
    let mut c = Combine {
        weights: vec![1.0; nkeys],
        aggregate: Aggregate::Sum,
        withscores: false,
        limit: 0,
    };
    let weighs = op != SetOp::Diff && form != Form::Card;
    let mut a = Args::new(argv, at + nkeys);
    while let Some(w) = a.next() {
        if weighs && w.eq_ignore_ascii_case(b"weights") {
            for i in 0..nkeys {
                c.weights[i] = float(a.value()?)
                    .map_err(|_| CommandError::err("weight value is not a float"))?;
            }
        } else if weighs && w.eq_ignore_ascii_case(b"aggregate") {
            let v = a.value()?;
            c.aggregate = match v.to_ascii_lowercase().as_slice() {
                b"sum" => Aggregate::Sum,
                b"min" => Aggregate::Min,
                b"max" => Aggregate::Max,
                _ => return Err(CommandError::Syntax),
            };
        } else if form == Form::Reply && w.eq_ignore_ascii_case(b"withscores") {
            c.withscores = true;
        } else if form == Form::Card && a.remaining() >= 1 && w.eq_ignore_ascii_case(b"limit") {
            c.limit = a.int_at_least(0, "LIMIT can't be negative")? as usize;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(c)
}

/// Members with their scores, as a combination's result.
type Scored = Vec<(Vec<u8>, f64)>;

/// Looks each source key up (expiring what is due): sorted sets and plain
/// sets (read with score 1, as Redis allows) pass, anything else is
/// WRONGTYPE.
fn check_sources(
    ctx: &Ctx,
    locked: &mut crate::keyspace::Locked,
    keys: &[Bytes],
) -> Result<(), CommandError> {
    let db = ctx.db();
    for k in keys {
        if let Some(n) = ctx.lookup_read(locked.table_for(db, k), k) {
            if !matches!(n.value.kind(), Kind::ZSet | Kind::Set) {
                return Err(CommandError::WrongType);
            }
        }
    }
    Ok(())
}

/// The sources, read in place (after [`check_sources`]); None for a
/// missing key.
fn members_of<'l>(
    ctx: &Ctx,
    locked: &'l crate::keyspace::Locked,
    keys: &[Bytes],
) -> Vec<Option<Members<'l>>> {
    let values = locked.values(ctx.db(), keys, |n| ctx.visible(n));
    // A plain set is asked about at most the largest source's members.
    let asks = values
        .iter()
        .flatten()
        .map(|v| match v {
            Value::ZSet(z) => z.len(),
            v => Set::of(v).map_or(0, Set::len),
        })
        .max()
        .unwrap_or(0);
    values
        .into_iter()
        .map(|v| match v? {
            Value::ZSet(z) => Some(Members::Sorted(z, z.probe(asks))),
            v => Set::of(v).map(|s| Members::Plain(s, s.probe(asks))),
        })
        .collect()
}

/// Computes the combination; the result is sorted as a sorted set is. An
/// intersection walks its smallest source and asks the others, and a
/// difference walks its first: nothing but the result is copied.
fn combine(sources: &[Option<Members>], c: &Combine, op: SetOp) -> Scored {
    let weighted = |s: f64, w: f64| {
        let v = s * w;
        if v.is_nan() {
            0.0
        } else {
            v
        }
    };
    let mut acc: hashbrown::HashMap<Vec<u8>, f64> = hashbrown::HashMap::new();
    match op {
        SetOp::Union => {
            for (src, &w) in sources.iter().zip(&c.weights) {
                if let Some(src) = src {
                    src.each_scored(&mut |m, s| {
                        let v = weighted(s, w);
                        acc.entry_ref(m)
                            .and_modify(|cur| *cur = c.aggregate.apply(*cur, v))
                            .or_insert(v);
                        true
                    });
                }
            }
        }
        SetOp::Inter => {
            let Some(all) = sources
                .iter()
                .map(Option::as_ref)
                .collect::<Option<Vec<_>>>()
            else {
                return Vec::new();
            };
            let smallest = (0..all.len()).min_by_key(|&i| all[i].len()).unwrap_or(0);
            all[smallest].each_scored(&mut |m, _| {
                // Aggregated in key order, weights with their sources.
                let mut total: Option<f64> = None;
                for (src, &w) in all.iter().zip(&c.weights) {
                    let Some(s) = src.score(m) else {
                        return true;
                    };
                    let v = weighted(s, w);
                    total = Some(total.map_or(v, |t| c.aggregate.apply(t, v)));
                }
                if let Some(t) = total {
                    acc.insert(m.to_vec(), t);
                }
                true
            });
        }
        SetOp::Diff => {
            if let Some(first) = &sources[0] {
                first.each_scored(&mut |m, s| {
                    if !sources[1..].iter().flatten().any(|o| o.contains(m)) {
                        acc.insert(m.to_vec(), s);
                    }
                    true
                });
            }
        }
    }
    let mut out: Vec<(Vec<u8>, f64)> = acc.into_iter().collect();
    out.sort_by(|a, b| {
        a.1.partial_cmp(&b.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    out
}

fn combine_reply(ctx: &mut Ctx, argv: &[Bytes], op: SetOp) -> CmdResult {
    let keys = combine_keys(argv, 1)?;
    let mut locked = ctx.lock_keys(keys.iter());
    check_sources(ctx, &mut locked, keys)?;
    let c = parse_combine(argv, 1, keys.len(), op, Form::Reply)?;
    let out = combine(&members_of(ctx, &locked, keys), &c, op);
    drop(locked);
    reply_scored(
        ctx,
        out.len(),
        out.iter().map(|(m, s)| (m.as_slice(), *s)),
        c.withscores,
        true,
    );
    Ok(())
}

fn combine_store(ctx: &mut Ctx, argv: &[Bytes], op: SetOp) -> CmdResult {
    let keys = combine_keys(argv, 2)?;
    let dst = &argv[1];
    let mut locked = ctx.lock_keys(std::iter::once(dst).chain(keys.iter()));
    check_sources(ctx, &mut locked, keys)?;
    let c = parse_combine(argv, 2, keys.len(), op, Form::Store)?;
    let out = combine(&members_of(ctx, &locked, keys), &c, op);
    let n = out.len();
    if store(ctx, locked.table_for(ctx.db(), dst), dst, out) {
        ctx.emit_stored(argv, n == 0);
    }
    ctx.out.int(n as i64);
    Ok(())
}

fn zunion(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    combine_reply(ctx, argv, SetOp::Union)
}

fn zinter(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    combine_reply(ctx, argv, SetOp::Inter)
}

fn zdiff(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    combine_reply(ctx, argv, SetOp::Diff)
}

fn zunionstore(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    combine_store(ctx, argv, SetOp::Union)
}

fn zinterstore(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    combine_store(ctx, argv, SetOp::Inter)
}

fn zdiffstore(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    combine_store(ctx, argv, SetOp::Diff)
}

fn zintercard(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let keys = combine_keys(argv, 1)?;
    let mut locked = ctx.lock_keys(keys.iter());
    check_sources(ctx, &mut locked, keys)?;
    let c = parse_combine(argv, 1, keys.len(), SetOp::Inter, Form::Card)?;
    let limit = if c.limit == 0 { usize::MAX } else { c.limit };
    // The smallest walked, the others asked, until LIMIT, nothing copied.
    let Some(mut members) = members_of(ctx, &locked, keys)
        .into_iter()
        .collect::<Option<Vec<_>>>()
    else {
        ctx.out.int(0);
        return Ok(());
    };
    members.sort_by_key(Members::len);
    let (first, rest) = members.split_first().expect("numkeys is at least 1");
    let mut n = 0;
    first.each(&mut |m| {
        if rest.iter().all(|o| o.contains(m)) {
            n += 1;
        }
        n < limit
    });
    ctx.out.int(n as i64);
    Ok(())
}

/// A sorted set, or a plain set read as one, without copying it.
enum Members<'a> {
    Sorted(&'a ZSet, crate::keyspace::zset::Probe<'a>),
    Plain(&'a Set, crate::keyspace::set::Probe<'a>),
}

impl Members<'_> {
    fn len(&self) -> usize {
        match self {
            Members::Sorted(z, _) => z.len(),
            Members::Plain(s, _) => s.len(),
        }
    }

    fn contains(&self, m: &[u8]) -> bool {
        self.score(m).is_some()
    }

    /// A member's score; a plain set's members score 1.
    fn score(&self, m: &[u8]) -> Option<f64> {
        match self {
            Members::Sorted(_, probe) => probe.score(m),
            Members::Plain(_, probe) => probe.contains(m).then_some(1.0),
        }
    }

    /// Calls `f` with each member and its score while it returns true.
    fn each_scored(&self, f: &mut dyn FnMut(&[u8], f64) -> bool) {
        match self {
            Members::Sorted(z, _) => {
                for e in z.iter() {
                    if !f(e.member.as_bytes(), e.score) {
                        return;
                    }
                }
            }
            Members::Plain(s, _) => {
                for m in s.iter() {
                    if !f(&m, 1.0) {
                        return;
                    }
                }
            }
        }
    }

    /// Calls `f` with each member while it returns true.
    fn each(&self, f: &mut dyn FnMut(&[u8]) -> bool) {
        self.each_scored(&mut |m, _| f(m))
    }
}

// ---- random members and scanning ----

fn zrandmember(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (count, withscores) = match argv.len() {
        2 => (None, false),
        3 => (Some(rand_count(&argv[2], false)?), false),
        4 if argv[3].eq_ignore_ascii_case(b"withscores") => {
            (Some(rand_count(&argv[2], true)?), true)
        }
        _ => return Err(CommandError::Syntax),
    };
    let mut t = ctx.lock_key(&argv[1]);
    let z = ctx.read::<ZSet>(&mut t, &argv[1])?;
    match (z, count) {
        (None, None) => ctx.out.null(),
        (None, Some(_)) => ctx.out.array(0),
        (Some(z), None) => {
            let r = rand::thread_rng().gen_range(0..z.len());
            ctx.out.bulk(z.at(r).member.as_bytes());
        }
        (Some(z), Some((n, distinct))) => {
            let z: &ZSet = z;
            // A member is found by rank in O(log n).
            let picks = positions(z.len(), n, distinct, &mut rand::thread_rng());
            reply_scored(
                ctx,
                picks.len(),
                picks.iter().map(|&i| entry_pair(z.at(i))),
                withscores,
                true,
            );
        }
    }
    Ok(())
}

fn zscan(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let cursor = element_scan::cursor(argv)?;
    let mut t = ctx.lock_key(&argv[1]);
    let Some(z) = ctx.read::<ZSet>(&mut t, &argv[1])? else {
        element_scan::empty(ctx);
        return Ok(());
    };
    let o = element_scan::parse(argv, cursor, false)?;
    element_scan::reply(ctx, &o, &ZSetScan(z));
    Ok(())
}

/// A large sorted set walks its index's buckets; an index slot holds a
/// member's hash and score, and the member is found among those of its
/// score (`ZSet::bucket`).
struct ZSetScan<'a>(&'a ZSet);

impl<'a> element_scan::Source for ZSetScan<'a> {
    type E = (&'a [u8], f64);
    fn size(&self) -> usize {
        self.0.len()
    }
    fn buckets(&self) -> Option<(usize, u16)> {
        self.0.buckets()
    }
    fn bucket(&self, i: usize) -> Slot<Self::E> {
        match self.0.bucket(i) {
            Bucket::Full(e) => Slot::Full((e.member.as_bytes(), e.score)),
            Bucket::Empty => Slot::Empty,
            Bucket::Unresolved => Slot::Unresolved,
        }
    }
    fn each(&self, f: &mut dyn FnMut(Self::E)) {
        self.0
            .iter()
            .for_each(|e| f((e.member.as_bytes(), e.score)))
    }
    fn name<'e>(&self, e: &'e Self::E) -> &'e [u8] {
        e.0
    }
    fn value(&self, e: &Self::E) -> Option<Vec<u8>> {
        Some(format_double(e.1).into_bytes())
    }
}
