//! HSCAN, SSCAN and ZSCAN: iterating the elements of one collection.
//!
//! The cursor is a position in *hash order*: an element belongs to the
//! window of cursors that covers `hash_key(element)`, and each call returns
//! every element of one window, then the cursor where the next window
//! starts (0 once the whole range is covered). Because an element's hash
//! never changes while the server runs, an element present for the whole
//! iteration is returned exactly once however the table grows or shrinks
//! in between — Redis's guarantee, without its reverse-binary cursor over
//! bucket indexes (our tables do not expose buckets).
//!
//! The price is that each call looks at every element to cut its window.
//! To bound the total work, a window holds at least COUNT elements and at
//! least 1/64 of the collection (COUNT is a hint in Redis too), so a full
//! iteration is at most ~64 passes over the collection. A compactly
//! encoded collection is small and comes back whole in one call, as
//! Redis's listpack does.

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

/// One element: its name (hashed for the cursor, matched against MATCH)
/// and, for hashes and sorted sets, its value or score.
pub type Element<'a> = (&'a [u8], Option<Vec<u8>>);

/// Writes the `[cursor, [elements...]]` reply. `whole` says the collection
/// is compactly encoded and is returned in one call.
pub fn reply<'a>(
    ctx: &mut Ctx,
    o: &ScanOptions,
    whole: bool,
    len: usize,
    elements: impl Iterator<Item = Element<'a>>,
) {
    let mut next = 0u64;
    let mut chosen: Vec<Element<'a>> = if whole {
        elements.collect()
    } else {
        let mut candidates: Vec<(u64, Element<'a>)> = elements
            .map(|e| (hash_key(e.0), e))
            .filter(|(h, _)| *h >= o.cursor)
            .collect();
        let want = o.count.max(len / 64).max(1);
        if candidates.len() > want {
            let (_, nth, _) = candidates.select_nth_unstable_by_key(want - 1, |c| c.0);
            let last = nth.0;
            candidates.retain(|c| c.0 <= last);
            next = last.checked_add(1).unwrap_or(0);
        }
        candidates.into_iter().map(|(_, e)| e).collect()
    };
    if let Some(p) = &o.pattern {
        chosen.retain(|e| glob_match(p, e.0, false));
    }
    let items: usize = chosen.iter().map(|e| 1 + usize::from(e.1.is_some())).sum();
    ctx.out.array(2);
    ctx.out.bulk(next.to_string().as_bytes());
    ctx.out.array(items);
    for (name, value) in chosen {
        ctx.out.bulk(name);
        if let Some(v) = value {
            ctx.out.bulk(&v);
        }
    }
}
