//! HSCAN, SSCAN and ZSCAN: iterating the elements of one collection.
//!
//! Redis's guarantee: an element present for the whole iteration is
//! returned at least once, however the collection grows or shrinks in
//! between. A compactly encoded collection is small and comes back whole
//! in one call, as Redis's listpack does. A large one is walked in one of
//! two orders, told apart by the cursor's size (cursors stay below 2^49,
//! so clients that read them as signed or as JavaScript numbers keep them
//! exact):
//!
//! - **Bucket order** (cursors from 2^48): the cursor holds a bucket
//!   position of the collection's hash table (a sorted set's member
//!   index) and the table's layout epoch (`keyspace::table::Buckets`).
//!   Elements never change buckets while the epoch holds, so walking
//!   positions upwards misses nothing; a call visits about COUNT elements,
//!   as in Redis. When the epoch has changed (the table grew, shrank or
//!   was rehashed), or a sorted set's bucket cannot be told cheaply (a
//!   member among too many of one score), the walk starts over in hash
//!   order: duplicates are allowed, misses are not.
//! - **Hash order** (cursors below 2^32): the cursor is a position in the
//!   space of element hashes (their top 32 bits); an element belongs to the
//!   window of cursors that covers its hash, and each call returns one
//!   window and the cursor where the next starts. An element's hash never
//!   changes while the server runs, so this order survives any rebuild.
//!   The price is that each call looks at every element to cut its window;
//!   a window holds at least COUNT elements and at least 1/64 of the
//!   collection, so a whole iteration is at most ~64 passes.

use bytes::Bytes;

use super::args::Args;
use super::Ctx;
use crate::error::CommandError;
use crate::glob::glob_match;
use crate::keyspace::table::hash_key;

pub struct ScanOptions {
    cursor: u64,
    pattern: Option<Bytes>,
    count: usize,
    /// HSCAN ... NOVALUES: fields only.
    pub novalues: bool,
}

/// The cursor at argv[2]. Redis's order of checks is the cursor, then the
/// key (missing: [`empty`]; wrong type: WRONGTYPE), then the options
/// ([`parse`]).
pub fn cursor(argv: &[Bytes]) -> Result<u64, CommandError> {
    std::str::from_utf8(&argv[2])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| CommandError::err("invalid cursor"))
}

/// The reply for a key that does not exist.
pub fn empty(ctx: &mut Ctx) {
    ctx.out.array(2);
    ctx.out.bulk(b"0");
    ctx.out.array(0);
}

/// Parses `[MATCH pattern] [COUNT n] [NOVALUES]` after the cursor.
pub fn parse(
    argv: &[Bytes],
    cursor: u64,
    allow_novalues: bool,
) -> Result<ScanOptions, CommandError> {
    let mut o = ScanOptions {
        cursor,
        pattern: None,
        count: 10,
        novalues: false,
    };
    let mut a = Args::new(argv, 2);
    while let Some(w) = a.next() {
        if w.eq_ignore_ascii_case(b"match") {
            // A lone `*` is no filter at all (the empty field included).
            o.pattern = Some(a.value()?.clone()).filter(|p| p.as_ref() != b"*");
        } else if w.eq_ignore_ascii_case(b"count") {
            let c = a.int()?;
            if c < 1 {
                return Err(CommandError::Syntax);
            }
            o.count = c as usize;
        } else if allow_novalues && w.eq_ignore_ascii_case(b"novalues") {
            o.novalues = true;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(o)
}

/// One bucket of a collection's hash table.
pub enum Slot<E> {
    Empty,
    Full(E),
    /// Full, but its element cannot be told cheaply: walk in hash order.
    Unresolved,
}

/// What a scan reads of one collection. `E` is a borrowed element.
pub trait Source {
    type E: Copy;
    fn size(&self) -> usize;
    /// The hash table's buckets and layout epoch; None while compactly
    /// encoded (returned whole in one call).
    fn buckets(&self) -> Option<(usize, u16)>;
    fn bucket(&self, i: usize) -> Slot<Self::E>;
    fn each(&self, f: &mut dyn FnMut(Self::E));
    /// The name hashed for hash order and matched against MATCH.
    fn name<'e>(&self, e: &'e Self::E) -> &'e [u8];
    /// The value or score written after the name, if any.
    fn value(&self, e: &Self::E) -> Option<Vec<u8>>;
}

const BUCKET_ORDER: u64 = 1 << 48;
const POSITION_BITS: u32 = 32;

fn bucket_cursor(epoch: u16, position: usize) -> u64 {
    BUCKET_ORDER | u64::from(epoch) << POSITION_BITS | position as u64
}

/// Writes the `[cursor, [elements...]]` reply for one call.
pub fn reply<S: Source>(ctx: &mut Ctx, o: &ScanOptions, src: &S) {
    let mut next = 0u64;
    let mut chosen: Vec<S::E> = Vec::new();
    let table = src.buckets();
    let bucket_walk = table.and_then(|(n, epoch)| {
        let start = if o.cursor == 0 {
            Some(0)
        } else if o.cursor >> POSITION_BITS == bucket_cursor(epoch, 0) >> POSITION_BITS {
            Some((o.cursor & ((1 << POSITION_BITS) - 1)) as usize)
        } else {
            None
        };
        start.map(|s| (s, n, epoch))
    });
    let mut walked = false;
    if table.is_none() {
        src.each(&mut |e| chosen.push(e));
        walked = true;
    } else if let Some((mut i, n, epoch)) = bucket_walk {
        // About COUNT elements, and at most ten empty buckets per element
        // asked for, as Redis bounds a call's work.
        let mut budget = o.count.saturating_mul(10);
        walked = true;
        while i < n && chosen.len() < o.count && budget > 0 {
            match src.bucket(i) {
                Slot::Full(e) => chosen.push(e),
                Slot::Empty => budget -= 1,
                Slot::Unresolved => {
                    walked = false;
                    chosen.clear();
                    break;
                }
            }
            i += 1;
        }
        if walked && i < n {
            next = bucket_cursor(epoch, i);
        }
    }
    if !walked {
        // Hash order: from the cursor's position, or from the start when a
        // bucket walk found its table rebuilt or a bucket it cannot tell.
        let from = if o.cursor >= BUCKET_ORDER {
            0
        } else {
            o.cursor
        };
        let mut candidates: Vec<(u64, S::E)> = Vec::new();
        src.each(&mut |e| {
            let h = hash_key(src.name(&e)) >> 32;
            if h >= from {
                candidates.push((h, e));
            }
        });
        let want = o.count.max(src.size() / 64).max(1);
        if candidates.len() > want {
            let (_, nth, _) = candidates.select_nth_unstable_by_key(want - 1, |c| c.0);
            let last = nth.0;
            candidates.retain(|c| c.0 <= last);
            // Past the last position of the space: done.
            next = if last == u64::from(u32::MAX) {
                0
            } else {
                last + 1
            };
        }
        chosen = candidates.into_iter().map(|(_, e)| e).collect();
    }
    if let Some(p) = &o.pattern {
        chosen.retain(|e| glob_match(p, src.name(e), false));
    }
    let values: Vec<Option<Vec<u8>>> = chosen
        .iter()
        .map(|e| if o.novalues { None } else { src.value(e) })
        .collect();
    let items: usize = values.iter().map(|v| 1 + usize::from(v.is_some())).sum();
    ctx.out.array(2);
    ctx.out.bulk(next.to_string().as_bytes());
    ctx.out.array(items);
    for (e, v) in chosen.iter().zip(values) {
        ctx.out.bulk(src.name(e));
        if let Some(v) = v {
            ctx.out.bulk(&v);
        }
    }
}
