//! SORT and SORT_RO over lists, sets and sorted sets.
//!
//! BY and GET patterns name other keys (`weight_*`, `data_*->field`), which
//! the command table cannot declare. To stay atomic, SORT reads the
//! elements, works out every key the patterns name, then locks the source,
//! the destination and all those keys at once and reads again under that
//! one lock set (retrying if the elements changed in between), so what it
//! sorts and what it fetches are one consistent state.
//!
//! Effects: `SORT ... STORE dst` is recorded as `DEL dst` plus `RPUSH dst
//! <result>`, since an unsorted set's order is not reproducible.

use std::cmp::Ordering;

use bytes::Bytes;

use super::args::{strtod_lenient, Args};
use super::{flags::*, key_flags::*, keys, spec, Access, Ctx, KeySearch, Spec};
use crate::error::{CmdResult, CommandError};
use crate::keyspace::{Hash, List, Locked, Set, Value};

const S: &[&str] = &["set", "sortedset", "list", "dangerous"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    Spec { key_search: &[KeySearch::Unknown { flags: RO | ACCESS }, KeySearch::Unknown { flags: OW | UPDATE }], option_keys: Some(store_key), ..spec("sort", -2, WRITE | DENYOOM, keys(1, 1, 1).flags(RO | ACCESS).then(OW | UPDATE), S, "generic", "Sorts the elements in a list, a set, or a sorted set, optionally storing the result.", sort) },
    Spec { key_search: &[KeySearch::Unknown { flags: RO | ACCESS }], ..spec("sort_ro", -2, READONLY | PATTERN_KEYS, keys(1, 1, 1).flags(RO | ACCESS), S, "generic", "Returns the sorted elements of a list, a set, or a sorted set.", sort_ro) },
];

#[derive(Default)]
struct Query {
    by: Option<Bytes>,
    limit: Option<(i64, i64)>,
    gets: Vec<Bytes>,
    desc: bool,
    alpha: bool,
    store: Option<Bytes>,
}

/// `any_key`: the caller's ACL user may read any key (Redis refuses BY
/// with a pattern and every GET otherwise: the keys they name are not
/// arguments its key patterns could be checked against).
fn parse(argv: &[Bytes], read_only: bool, any_key: bool) -> Result<Query, CommandError> {
    let mut q = Query::default();
    let mut a = Args::new(argv, 1);
    while let Some(w) = a.next() {
        let w = w.to_ascii_lowercase();
        match w.as_slice() {
            b"asc" => q.desc = false,
            b"desc" => q.desc = true,
            b"alpha" => q.alpha = true,
            b"limit" => q.limit = Some((a.int()?, a.int()?)),
            b"store" if !read_only => q.store = Some(a.value()?.clone()),
            b"by" => {
                let by = a.value()?;
                if !any_key && by.contains(&b'*') {
                    return Err(CommandError::err(
                        "BY option of SORT denied due to insufficient ACL permissions.",
                    ));
                }
                q.by = Some(by.clone());
            }
            b"get" => {
                let get = a.value()?;
                if !any_key {
                    return Err(CommandError::err(
                        "GET option of SORT denied due to insufficient ACL permissions.",
                    ));
                }
                q.gets.push(get.clone());
            }
            _ => return Err(CommandError::Syntax),
        }
    }
    Ok(q)
}

/// The key (and hash field) a pattern names for an element; `None` for
/// the `#` pattern (the element itself) or a pattern without `*`.
fn pattern_target(pattern: &[u8], elem: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let star = pattern.iter().position(|&c| c == b'*')?;
    let (mut key_pat, mut field) = (pattern, None);
    if let Some(arrow) = pattern[star + 1..].windows(2).position(|w| w == b"->") {
        let at = star + 1 + arrow;
        if at + 2 < pattern.len() {
            key_pat = &pattern[..at];
            field = Some(pattern[at + 2..].to_vec());
        }
    }
    let mut key = key_pat[..star].to_vec();
    key.extend_from_slice(elem);
    key.extend_from_slice(&key_pat[star + 1..]);
    Some((key, field))
}

/// SORT's STORE key, as Redis's sortGetKeys finds it: LIMIT, GET and BY
/// skip their arguments, and the last STORE wins.
fn store_key(argv: &[&[u8]]) -> Vec<usize> {
    let mut found = None;
    let mut i = 2;
    while i < argv.len() {
        let w = argv[i];
        if w.eq_ignore_ascii_case(b"limit") {
            i += 2;
        } else if w.eq_ignore_ascii_case(b"get") || w.eq_ignore_ascii_case(b"by") {
            i += 1;
        } else if w.eq_ignore_ascii_case(b"store") && i + 1 < argv.len() {
            found = Some(i + 1);
        }
        i += 1;
    }
    found.into_iter().collect()
}

/// Reads what a pattern names for an element, under `locked`.
fn lookup(
    ctx: &Ctx,
    locked: &mut Locked,
    pattern: &[u8],
    elem: &[u8],
    access: Access,
) -> Option<Vec<u8>> {
    if pattern == b"#" {
        return Some(elem.to_vec());
    }
    let (key, field) = pattern_target(pattern, elem)?;
    let t = locked.table_for(ctx.db(), &key);
    let n = ctx.lookup_as(ctx.db(), t, &key, access)?;
    match (&n.value, field) {
        (v @ (Value::HashPacked(_) | Value::HashTable(_)), Some(f)) => {
            Hash::of(v).and_then(|h| h.get(&f)).map(<[u8]>::to_vec)
        }
        (v, None) => {
            let mut scratch = itoa::Buffer::new();
            v.str_bytes(&mut scratch).map(<[u8]>::to_vec)
        }
        _ => None,
    }
}

/// The source's elements: list order, set order, or sorted set order;
/// and whether that order means something (a list or a sorted set).
fn elements(
    ctx: &Ctx,
    locked: &mut Locked,
    key: &[u8],
    access: Access,
) -> Result<(Vec<Vec<u8>>, bool), CommandError> {
    let t = locked.table_for(ctx.db(), key);
    let Some(n) = ctx.lookup_as(ctx.db(), t, key, access) else {
        return Ok((Vec::new(), true));
    };
    Ok(match &n.value {
        Value::List(l) => (l.iter().map(|e| e.to_vec()).collect(), true),
        v @ (Value::SetInts(_) | Value::SetPacked(_) | Value::SetTable(_)) => (
            Set::of(v)
                .into_iter()
                .flat_map(Set::iter)
                .map(|m| m.to_vec())
                .collect(),
            false,
        ),
        Value::ZSet(z) => (
            z.iter().map(|e| e.member.as_bytes().to_vec()).collect(),
            true,
        ),
        _ => return Err(CommandError::WrongType),
    })
}

fn sort_generic(ctx: &mut Ctx, argv: &[Bytes], read_only: bool) -> CmdResult {
    // (No table lookup for the default user, who may read anything.)
    let any_key = ctx.client.user.as_ref().is_none_or(|u| {
        let name: &[u8] = if read_only { b"sort_ro" } else { b"sort" };
        u.unrestricted
            || super::TABLE
                .index(name)
                .is_some_and(|i| u.reads_any_key(i, super::TABLE.all[i], argv))
    });
    let mut q = parse(argv, read_only, any_key)?;
    let src = &argv[1];
    let patterns: Vec<&Bytes> = q.by.iter().chain(q.gets.iter()).collect();
    // The source is read as a read; the keys patterns name are looked up
    // as writes when the result is stored, as Redis does.
    let access = if q.store.is_some() {
        Access::WRITE
    } else {
        Access::READ
    };
    // First pass: the elements, to learn which keys the patterns name
    // (not counted: the pass under all the locks is the command's read).
    let mut elems = {
        let mut l = ctx.lock_keys(std::iter::once(src));
        elements(ctx, &mut l, src, Access::PROBE)?
    };
    let (mut locked, elems) = loop {
        let mut keys: Vec<Vec<u8>> = vec![src.to_vec()];
        keys.extend(q.store.iter().map(|d| d.to_vec()));
        for p in &patterns {
            keys.extend(
                elems
                    .0
                    .iter()
                    .filter_map(|e| pattern_target(p, e).map(|t| t.0)),
            );
        }
        // The keys are rebuilt each round: the locks outlive them.
        let mut locked = ctx.lock_keys(keys.iter()).into_locked();
        let now = elements(ctx, &mut locked, src, Access::READ)?;
        if now == elems {
            break (locked, now);
        }
        elems = now;
    };
    let (elems, ordered) = elems;
    // BY without `*` means "do not sort": a list or sorted set keeps its
    // order (DESC reads it backwards), but a set stored somewhere, or
    // read by a script, is sorted ALPHA, so the stored list or what the
    // script does with it is the same on every node, as Redis does for
    // replication's sake.
    let mut dont_sort = q.by.as_ref().is_some_and(|b| !b.contains(&b'*'));
    if dont_sort && !ordered && (q.store.is_some() || ctx.client.in_script) {
        (dont_sort, q.alpha, q.by) = (false, true, None);
    }
    let mut items: Vec<(Vec<u8>, Option<Vec<u8>>)> = elems
        .into_iter()
        .map(|e| {
            let w = match &q.by {
                Some(by) if !dont_sort => lookup(ctx, &mut locked, by, &e, access),
                _ => None,
            };
            (e, w)
        })
        .collect();
    if !dont_sort {
        let by_given = q.by.is_some();
        // DESC turns the comparison round (not the result): Redis's ties
        // keep their source order either way.
        let dir = |o: Ordering| if q.desc { o.reverse() } else { o };
        if q.alpha {
            // Byte order; a BY key that does not exist sorts first; equal
            // keys keep the source's order (a stable sort, as Redis's).
            if by_given {
                items.sort_by(|a, b| dir(a.1.cmp(&b.1)));
            } else {
                items.sort_by(|a, b| dir(a.0.cmp(&b.0)));
            }
        } else {
            let mut scored = Vec::with_capacity(items.len());
            for (e, w) in items {
                let src = if by_given { w.clone() } else { Some(e.clone()) };
                let score = match src {
                    Some(s) => sort_score(&s).ok_or_else(|| {
                        CommandError::err("One or more scores can't be converted into double")
                    })?,
                    None => 0.0,
                };
                scored.push((score, e, w));
            }
            // Equal scores fall back to the elements' bytes, as in Redis,
            // so a set sorts the same wherever it is.
            scored.sort_by(|a, b| {
                dir(a
                    .0
                    .partial_cmp(&b.0)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| a.1.cmp(&b.1)))
            });
            items = scored.into_iter().map(|(_, e, w)| (e, w)).collect();
        }
    } else if ordered && q.desc {
        items.reverse();
    }
    if let Some((offset, count)) = q.limit {
        let start = (offset.max(0) as usize).min(items.len());
        let end = if count < 0 {
            items.len()
        } else {
            start.saturating_add(count as usize).min(items.len())
        };
        items = items[start..end].to_vec();
    }
    // One row per element: the element, or each GET pattern's value.
    let rows: Vec<Option<Vec<u8>>> = if q.gets.is_empty() {
        items.into_iter().map(|(e, _)| Some(e)).collect()
    } else {
        let mut rows = Vec::with_capacity(items.len() * q.gets.len());
        for (e, _) in &items {
            for g in &q.gets {
                rows.push(lookup(ctx, &mut locked, g, e, access));
            }
        }
        rows
    };
    match &q.store {
        Some(dst) => {
            let t = locked.table_for(ctx.db(), dst);
            let existed = ctx.probe(t, dst);
            if rows.is_empty() {
                t.remove(dst);
            } else {
                let list = List::from_elements(
                    rows.iter().map(|r| r.as_deref().unwrap_or_default()),
                    ctx.encodings().list,
                );
                ctx.store(t, dst, Value::List(Box::new(list)), false);
            }
            // Redis tells a stored result as one `sortstore`, an empty one
            // as the `del` of the destination.
            if existed {
                ctx.emit_as(if rows.is_empty() { "del" } else { "" }, &[b"DEL", dst]);
            }
            for (i, chunk) in rows.chunks(64).enumerate() {
                let mut effect: Vec<&[u8]> = vec![b"RPUSH", dst];
                effect.extend(chunk.iter().map(|r| r.as_deref().unwrap_or_default()));
                ctx.emit_as(if i == 0 { "sortstore" } else { "" }, &effect);
            }
            ctx.out.int(rows.len() as i64);
        }
        None => {
            ctx.out.array(rows.len());
            for r in &rows {
                match r {
                    Some(v) => ctx.out.bulk(v),
                    None => ctx.out.null(),
                }
            }
        }
    }
    Ok(())
}

fn sort(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    sort_generic(ctx, argv, false)
}

fn sort_ro(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    sort_generic(ctx, argv, true)
}

/// A numeric sort's score as Redis reads it with `strtod`: leading white
/// space skipped, an empty string is 0, and NaN or a number out of range
/// (ERANGE) is no score.
fn sort_score(b: &[u8]) -> Option<f64> {
    match strtod_lenient(b) {
        Some((v, false)) if !v.is_nan() => Some(v),
        _ => None,
    }
}
