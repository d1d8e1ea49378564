//! HyperLogLog: PFADD, PFCOUNT, PFMERGE (and Redis's PFDEBUG and
//! PFSELFTEST), in Redis's own string format, so values move between
//! Shoal and Redis (GET/SET, DUMP/RESTORE) and give the same counts.
//!
//! ```text
//!  "HYLL" [encoding: 0 dense | 1 sparse] [3 unused] [cached count: u64 LE,
//!   top bit of the last byte set = stale] [registers]
//!  dense:   16384 registers of 6 bits, packed LSB first (12288 bytes)
//!  sparse:  run-length opcodes   00xxxxxx        ZERO:  1-64 zero registers
//!                                01xxxxxx yyyyyyyy XZERO: 1-16384 zeros
//!                                1vvvvvxx        VAL:   1-4 registers = v+1
//! ```
//!
//! An element's register is the low 14 bits of MurmurHash64A(element,
//! seed 0xadc83b19); its value is the position of the first set bit in the
//! remaining 50 bits (plus one). The count is Ertl's improved estimator, as
//! Redis computes it. New values are sparse; a value becomes dense once a
//! register exceeds 32 or the sparse form would outgrow
//! `hll-sparse-max-bytes` (3000 by default), as in Redis. Dense registers
//! change in place; in a sparse value the opcode covering the register is
//! split, as Redis does.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::strings::string_of;
use super::{flags::*, key_flags::*, keys, spec, Access, Ctx, Spec, NO_KEYS};
use crate::error::{CmdResult, CommandError};
use crate::keyspace::{SlotTable, Value};

const G: &str = "hyperloglog";
const H: &[&str] = &["hyperloglog"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("pfadd", -2, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | INSERT), H, G, "Adds elements to a HyperLogLog key. Creates the key if it doesn't exist.", pfadd),
    spec("pfcount", -2, READONLY | MAY_REPLICATE, keys(1, -1, 1).flags(RW | ACCESS), H, G, "Returns the approximated cardinality of the set(s) observed by the HyperLogLog key(s).", pfcount),
    spec("pfmerge", -2, WRITE | DENYOOM, keys(1, -1, 1).flags(RW | ACCESS | INSERT).then(RO | ACCESS), H, G, "Merges one or more HyperLogLog values into a single key.", pfmerge),
    spec("pfdebug", 3, WRITE | DENYOOM | ADMIN, keys(2, 2, 1).flags(RW | ACCESS), H, G, "Internal commands for debugging HyperLogLog values", pfdebug),
    spec("pfselftest", 1, ADMIN, NO_KEYS, H, G, "An internal command for testing HyperLogLog values", pfselftest),
];

const P: u32 = 14;
const REGISTERS: usize = 1 << P;
const Q: u32 = 64 - P;
const HEADER: usize = 16;
const DENSE_SIZE: usize = HEADER + REGISTERS * 6 / 8;
const SPARSE_VAL_MAX: u8 = 32;

fn invalid() -> CommandError {
    CommandError::err_code("WRONGTYPE Key is not a valid HyperLogLog string value.")
}

fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4a7935bd1e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut k = u64::from_le_bytes(c.try_into().unwrap());
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate() {
            h ^= (*b as u64) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// An element's register and value.
fn pattern(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, 0xadc83b19);
    let index = (hash as usize) & (REGISTERS - 1);
    let rest = (hash >> P) | (1 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

fn corrupted() -> CommandError {
    CommandError::err_code("INVALIDOBJ Corrupted HLL object detected")
}

/// The registers of a string value: WRONGTYPE unless its header is a
/// HyperLogLog's (Redis's `isHLLObjectOrReply`), INVALIDOBJ if the header
/// is but the registers do not decode.
fn decode(v: &[u8]) -> Result<Vec<u8>, CommandError> {
    check_header(v)?;
    registers(v).ok_or_else(corrupted)
}

/// A VAL opcode: `len` (1-4) registers of `value` (1-32).
fn val_op(value: u8, len: usize) -> u8 {
    0x80 | ((value - 1) << 2) | (len - 1) as u8
}

/// Appends the opcode for `len` zero registers.
fn push_zeros(seq: &mut Vec<u8>, len: usize) {
    if len > 64 {
        seq.push(0x40 | ((len - 1) >> 8) as u8);
        seq.push(((len - 1) & 0xFF) as u8);
    } else {
        seq.push((len - 1) as u8);
    }
}

/// The registers a sparse opcode at `p` covers, and its length in bytes.
/// An XZERO cut off by the end reads a zero second byte, as Redis reads
/// its string's terminator.
fn sparse_span(v: &[u8], p: usize) -> (usize, usize) {
    let op = v[p];
    match op & 0xC0 {
        0x00 => ((op & 0x3F) as usize + 1, 1),
        0x40 => (
            (((op & 0x3F) as usize) << 8 | *v.get(p + 1).unwrap_or(&0) as usize) + 1,
            2,
        ),
        _ => ((op & 0x3) as usize + 1, 1),
    }
}

/// Redis's `hllSparseSet`, step for step, so that the bytes come out as
/// Redis's do: raises register `index` to `count` in a sparse value. The
/// opcode covering it is split into up to three, then up to five opcodes
/// from the one before are scanned to merge neighbouring VALs. Promotes
/// to dense when `count` exceeds what VAL holds or the value would pass
/// `hll-sparse-max-bytes`. Some(whether it changed), None if the opcodes
/// do not reach `index` (corrupt).
fn sparse_set(v: &mut Vec<u8>, index: usize, count: u8, max: usize) -> Option<bool> {
    if count > SPARSE_VAL_MAX {
        return promote(v, index, count, max);
    }
    let (mut p, mut first, mut prev, mut span) = (HEADER, 0, None, 0);
    while p < v.len() {
        let (s, oplen) = sparse_span(v, p);
        span = s;
        if index < first + span {
            break;
        }
        prev = Some(p);
        p += oplen;
        first += span;
    }
    if span == 0 || p >= v.len() {
        return None;
    }
    let op = v[p];
    let (is_val, is_xzero) = (op & 0x80 != 0, op & 0xC0 == 0x40);
    let current = ((op >> 2) & 0x1F) + 1;
    if is_val && current >= count {
        return Some(false);
    }
    if span == 1 && !is_xzero {
        // A lone register, ZERO or VAL: the opcode becomes its new value.
        v[p] = val_op(count, 1);
    } else {
        let last = first + span - 1;
        let mut seq = Vec::with_capacity(5);
        if is_val {
            if index != first {
                seq.push(val_op(current, index - first));
            }
            seq.push(val_op(count, 1));
            if index != last {
                seq.push(val_op(current, last - index));
            }
        } else {
            if index != first {
                push_zeros(&mut seq, index - first);
            }
            seq.push(val_op(count, 1));
            if index != last {
                push_zeros(&mut seq, last - index);
            }
        }
        let oldlen = if is_xzero { 2 } else { 1 };
        if seq.len() > oldlen && v.len() + seq.len() - oldlen > max {
            return promote(v, index, count, max);
        }
        let old_end = (p + oldlen).min(v.len());
        v.splice(p..old_end, seq);
    }
    // Merge neighbouring VALs of one value that fit one opcode.
    let mut p = prev.unwrap_or(HEADER);
    for _ in 0..5 {
        if p >= v.len() {
            break;
        }
        match v[p] & 0xC0 {
            0x40 => p += 2,
            0x00 => p += 1,
            _ => {
                let value = |b: u8| ((b >> 2) & 0x1F) + 1;
                let len = |b: u8| (b & 0x3) as usize + 1;
                let mergeable = p + 1 < v.len()
                    && v[p + 1] & 0x80 != 0
                    && value(v[p]) == value(v[p + 1])
                    && len(v[p]) + len(v[p + 1]) <= 4;
                if mergeable {
                    v[p + 1] = val_op(value(v[p]), len(v[p]) + len(v[p + 1]));
                    v.remove(p);
                    // Again from here: the merged VAL may merge once more.
                } else {
                    p += 1;
                }
            }
        }
    }
    Some(true)
}

/// A sparse value turned dense (Redis's `hllSparseToDense`), then register
/// `index` raised to `count`. None if the sparse opcodes are corrupt.
fn promote(v: &mut Vec<u8>, index: usize, count: u8, max: usize) -> Option<bool> {
    let mut regs = registers(v)?;
    regs[index] = regs[index].max(count);
    *v = encode(&regs, false, Some(&v[..]), max);
    Some(true)
}

/// WRONGTYPE unless `v` starts as a HyperLogLog does.
fn check_header(v: &[u8]) -> Result<(), CommandError> {
    let ok = v.len() >= HEADER
        && &v[..4] == b"HYLL"
        && v[4] <= 1
        && (v[4] == 1 || v.len() == DENSE_SIZE);
    if ok {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// Decoded registers of a valid HLL string, or None if it is not one.
fn registers(v: &[u8]) -> Option<Vec<u8>> {
    if v.len() < HEADER || &v[..4] != b"HYLL" {
        return None;
    }
    let mut regs = vec![0u8; REGISTERS];
    match v[4] {
        0 => {
            if v.len() != DENSE_SIZE {
                return None;
            }
            let data = &v[HEADER..];
            for (i, r) in regs.iter_mut().enumerate() {
                *r = dense_get(data, i);
            }
        }
        1 => {
            let mut idx = 0usize;
            let mut p = HEADER;
            while p < v.len() {
                let op = v[p];
                let (run, value) = if op & 0xC0 == 0 {
                    p += 1;
                    ((op & 0x3F) as usize + 1, 0)
                } else if op & 0xC0 == 0x40 {
                    let lo = *v.get(p + 1)? as usize;
                    p += 2;
                    ((((op & 0x3F) as usize) << 8 | lo) + 1, 0)
                } else {
                    p += 1;
                    ((op & 0x3) as usize + 1, ((op >> 2) & 0x1F) + 1)
                };
                if idx + run > REGISTERS {
                    return None;
                }
                regs[idx..idx + run].fill(value);
                idx += run;
            }
            if idx != REGISTERS {
                return None;
            }
        }
        _ => return None,
    }
    Some(regs)
}

/// Register `i` of dense register bytes (6 bits each, LSB first).
fn dense_get(data: &[u8], i: usize) -> u8 {
    let bit = i * 6;
    let (byte, fb) = (bit / 8, bit % 8);
    let b0 = data[byte] as u16;
    let b1 = *data.get(byte + 1).unwrap_or(&0) as u16;
    (((b0 >> fb) | (b1 << (8 - fb))) & 63) as u8
}

/// Sets register `i` of dense register bytes to `v` (< 64).
fn dense_set(data: &mut [u8], i: usize, v: u8) {
    let bit = i * 6;
    let (byte, fb) = (bit / 8, bit % 8);
    data[byte] = (data[byte] & !(63u8 << fb)) | (v << fb);
    if fb > 2 {
        let hi = 8 - fb;
        data[byte + 1] = (data[byte + 1] & !(63u8 >> hi)) | (v >> hi);
    }
}

/// Encodes registers: sparse if every register fits and the result is
/// small enough, dense otherwise. The cached count is marked stale the way
/// Redis marks it: the previous header's count bytes stay, with the top
/// bit of the last one set.
fn encode(regs: &[u8], prefer_sparse: bool, old: Option<&[u8]>, max: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"HYLL");
    out.extend_from_slice(&[1, 0, 0, 0]);
    match old {
        Some(h) => out.extend_from_slice(&h[8..16]),
        None => out.extend_from_slice(&[0; 8]),
    }
    out[15] |= 0x80;
    if prefer_sparse && regs.iter().all(|&r| r <= SPARSE_VAL_MAX) {
        let mut i = 0;
        while i < REGISTERS {
            let v = regs[i];
            let run = regs[i..].iter().take_while(|&&r| r == v).count();
            if v == 0 {
                let mut left = run;
                while left > 0 {
                    if left > 64 {
                        let n = left.min(16384);
                        out.push(0x40 | ((n - 1) >> 8) as u8);
                        out.push(((n - 1) & 0xFF) as u8);
                        left -= n;
                    } else {
                        out.push((left - 1) as u8);
                        left = 0;
                    }
                }
            } else {
                let mut left = run;
                while left > 0 {
                    let n = left.min(4);
                    out.push(0x80 | ((v - 1) << 2) | (n - 1) as u8);
                    left -= n;
                }
            }
            i += run;
            if out.len() > max {
                break;
            }
        }
        if out.len() <= max {
            return out;
        }
    }
    out.truncate(HEADER);
    out[4] = 0;
    out.resize(DENSE_SIZE, 0);
    let data = &mut out[HEADER..];
    for (i, &r) in regs.iter().enumerate() {
        dense_set(data, i, r);
    }
    out
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let prev = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if prev == z {
            return z / 3.0;
        }
    }
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let prev = z;
        z += x * y;
        y += y;
        if prev == z {
            return z;
        }
    }
}

/// Ertl's estimator over the registers' histogram, as Redis's hllCount.
fn count(regs: &[u8]) -> u64 {
    let mut histo = [0u32; 64];
    for &r in regs {
        histo[r as usize] += 1;
    }
    let m = REGISTERS as f64;
    let mut z = m * tau((m - histo[Q as usize + 1] as f64) / m);
    for j in (1..=Q as usize).rev() {
        z += histo[j] as f64;
        z *= 0.5;
    }
    z += m * sigma(histo[0] as f64 / m);
    (0.721_347_520_444_481_7 * m * m / z).round() as u64
}

/// The HLL at `key` (its stored bytes), or None if missing.
fn hll_at(
    ctx: &Ctx,
    t: &mut SlotTable,
    key: &[u8],
    access: Access,
) -> Result<Option<Vec<u8>>, CommandError> {
    match ctx.lookup_as(ctx.db(), t, key, access) {
        Some(n) => {
            let mut scratch = itoa::Buffer::new();
            let b = string_of(n)?
                .str_bytes(&mut scratch)
                .unwrap_or_default()
                .to_vec();
            Ok(Some(b))
        }
        None => Ok(None),
    }
}

/// `hll-sparse-max-bytes` now.
fn sparse_max(ctx: &Ctx) -> usize {
    ctx.server.tun.hll_sparse_max_bytes.load(Relaxed) as usize
}

/// Raises the register `element` hashes to, where `bytes` keeps it:
/// dense in place, sparse by splitting the opcode that covers it (which
/// may promote the value to dense). Some(whether it changed), None if the
/// sparse opcodes are corrupt.
fn add(bytes: &mut Vec<u8>, element: &[u8], sparse_max: usize) -> Option<bool> {
    let (i, v) = pattern(element);
    if bytes[4] == 0 {
        let grows = v > dense_get(&bytes[HEADER..], i);
        if grows {
            dense_set(&mut bytes[HEADER..], i, v);
        }
        Some(grows)
    } else {
        sparse_set(bytes, i, v, sparse_max)
    }
}

fn pfadd(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let key = &argv[1];
    let sparse_max = sparse_max(ctx);
    let mut t = ctx.lock_key(key);
    // One lookup: the node found is the one changed.
    let (node, exists) = match ctx.lookup(&mut t, key) {
        Some(n) => {
            // Only the header is checked up front, as Redis does: PFADD
            // with no elements answers 0 without reading the registers.
            check_header(
                string_of(n)?
                    .str_bytes(&mut itoa::Buffer::new())
                    .unwrap_or_default(),
            )?;
            (n, true)
        }
        None => {
            // An empty sparse value is 15 bytes, whatever the limit.
            let empty = encode(&[0; REGISTERS], true, None, usize::MAX);
            (
                t.set(key, Value::Raw(Box::new(empty)), ctx.now_ms, false),
                false,
            )
        }
    };
    let bytes = node.value.make_raw();
    // Each register changes where it lies, as in Redis: dense in place,
    // sparse by splitting the opcode that covers it. A counter costs a hash
    // per element, not a pass over 16384 registers.
    let mut changed = false;
    let mut corrupt = false;
    for e in &argv[2..] {
        match add(bytes, e, sparse_max) {
            Some(c) => changed |= c,
            None => {
                corrupt = true;
                break;
            }
        }
    }
    if changed || !exists {
        // The cached count goes stale, even for a new, empty one, as Redis
        // leaves it. Registers changed before a corrupt part was found stay
        // changed, as in Redis, and are recorded: replaying the command
        // changes the same ones and stops at the same place.
        bytes[15] |= 0x80;
        ctx.emit_argv(argv);
    }
    if corrupt {
        return Err(corrupted());
    }
    ctx.out.int((changed || !exists) as i64);
    Ok(())
}

fn pfcount(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let keys = &argv[1..];
    if keys.len() == 1 {
        let key = &keys[0];
        let mut t = ctx.lock_key(key);
        let c = {
            let Some(n) = ctx.lookup_read(&mut t, key) else {
                ctx.out.int(0);
                return Ok(());
            };
            let mut scratch = itoa::Buffer::new();
            let bytes = string_of(n)?.str_bytes(&mut scratch).unwrap_or_default();
            // A valid cached count is the answer, unparsed, as in Redis.
            check_header(bytes)?;
            if bytes[15] & 0x80 == 0 {
                ctx.out
                    .int(u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as i64);
                return Ok(());
            }
            count(&decode(bytes)?)
        };
        // Refresh the cached count, as Redis does (and record it, so the
        // stored bytes stay the same everywhere).
        let bytes = t.get_mut(key).expect("found just above").value.make_raw();
        bytes[8..16].copy_from_slice(&c.to_le_bytes());
        ctx.emit_argv(argv);
        ctx.out.int(c as i64);
        return Ok(());
    }
    let mut locked = ctx.lock_keys(keys.iter());
    let mut merged = vec![0u8; REGISTERS];
    for k in keys {
        if let Some(b) = hll_at(ctx, locked.table_for(ctx.db(), k), k, Access::READ)? {
            let regs = decode(&b)?;
            merged
                .iter_mut()
                .zip(&regs)
                .for_each(|(m, r)| *m = (*m).max(*r));
        }
    }
    ctx.out.int(count(&merged) as i64);
    Ok(())
}

fn pfmerge(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let dst = &argv[1];
    let mut locked = ctx.lock_keys(argv[1..].iter());
    let mut merged = vec![0u8; REGISTERS];
    let mut all_sparse = true;
    let old_dst = hll_at(ctx, locked.table_for(ctx.db(), dst), dst, Access::WRITE)?;
    // The destination is read as a source too, as Redis reads it.
    for k in &argv[1..] {
        if let Some(b) = hll_at(ctx, locked.table_for(ctx.db(), k), k, Access::READ)? {
            let regs = decode(&b)?;
            all_sparse &= b[4] == 1;
            merged
                .iter_mut()
                .zip(&regs)
                .for_each(|(m, r)| *m = (*m).max(*r));
        }
    }
    let bytes = encode(&merged, all_sparse, old_dst.as_deref(), sparse_max(ctx));
    locked
        .table_for(ctx.db(), dst)
        .set(dst, Value::Raw(Box::new(bytes)), ctx.now_ms, true);
    ctx.emit_argv(argv);
    ctx.out.ok();
    Ok(())
}

/// PFDEBUG GETREG|DECODE|ENCODING|TODENSE key, as Redis's: the registers
/// (a sparse value made dense first), the sparse opcodes as text
/// (`z:` ZERO, `Z:` XZERO, `v:value,run` VAL), the encoding, or a sparse
/// value made dense (1, else 0). A value made dense is recorded as
/// `PFDEBUG TODENSE`, which replays the same change.
fn pfdebug(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (sub, key) = (argv[1].to_ascii_lowercase(), &argv[2]);
    let mut t = ctx.lock_key(key);
    let Some(n) = ctx.lookup(&mut t, key) else {
        return Err(CommandError::err("The specified key does not exist"));
    };
    check_header(
        string_of(n)?
            .str_bytes(&mut itoa::Buffer::new())
            .unwrap_or_default(),
    )?;
    let bytes = n.value.make_raw();
    let sparse = bytes[4] == 1;
    // Redis's hllSparseToDense: the header, cached count included, is
    // kept as it was (encode would mark the count stale).
    // Registers that do not decode under a good header: INVALIDOBJ, as
    // Redis's PFDEBUG answers.
    let to_dense = |bytes: &mut Vec<u8>| -> Result<(), CommandError> {
        let regs = registers(bytes).ok_or_else(corrupted)?;
        let header: [u8; HEADER] = bytes[..HEADER].try_into().expect("checked header");
        *bytes = encode(&regs, false, None, 0);
        bytes[..HEADER].copy_from_slice(&header);
        bytes[4] = 0;
        Ok(())
    };
    match sub.as_slice() {
        b"getreg" => {
            if sparse {
                to_dense(bytes)?;
            }
            let data = &bytes[HEADER..];
            let regs: Vec<u8> = (0..REGISTERS).map(|i| dense_get(data, i)).collect();
            if sparse {
                ctx.emit(&[b"PFDEBUG", b"TODENSE", key]);
            }
            ctx.out.array(REGISTERS);
            regs.iter().for_each(|&r| ctx.out.int(i64::from(r)));
        }
        b"decode" => {
            if !sparse {
                return Err(CommandError::err("HLL encoding is not sparse"));
            }
            let mut text = Vec::new();
            let mut p = HEADER;
            while p < bytes.len() {
                let (run, len) = sparse_span(bytes, p);
                let op = bytes[p];
                let word = match op & 0xC0 {
                    0x00 => format!("z:{run}"),
                    0x40 => format!("Z:{run}"),
                    _ => format!("v:{},{run}", ((op >> 2) & 0x1F) + 1),
                };
                text.push(word);
                p += len;
            }
            ctx.out.bulk(text.join(" ").as_bytes());
        }
        b"encoding" => ctx.out.simple(if sparse { "sparse" } else { "dense" }),
        b"todense" => {
            if sparse {
                to_dense(bytes)?;
                ctx.emit(&[b"PFDEBUG", b"TODENSE", key]);
            }
            ctx.out.int(i64::from(sparse));
        }
        _ => {
            return Err(CommandError::err(format!(
                "Unknown PFDEBUG subcommand '{}'",
                String::from_utf8_lossy(&argv[1])
            )))
        }
    }
    Ok(())
}

/// PFSELFTEST, as Redis's: dense registers keep what is set in them and
/// leave their neighbours alone; then ten million distinct elements go
/// into a dense and a sparse HyperLogLog at once, and at each power of
/// ten the sparse one must still be sparse while small, both must count
/// the same, and the count must be within six standard errors.
fn pfselftest(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    use rand::Rng;
    let failed = |m: String| Err(CommandError::err(format!("TESTFAILED {m}")));
    let mut rng = rand::thread_rng();
    let mut data = vec![0u8; DENSE_SIZE - HEADER];
    let mut want = vec![0u8; REGISTERS];
    for _ in 0..1000 {
        for (i, w) in want.iter_mut().enumerate() {
            *w = rng.gen_range(0..64);
            dense_set(&mut data, i, *w);
        }
        for (i, &w) in want.iter().enumerate() {
            let got = dense_get(&data, i);
            if got != w {
                return failed(format!("Register {i} should be {w} but is {got}"));
            }
        }
    }
    let sparse_max = sparse_max(ctx);
    let mut dense = encode(&[0; REGISTERS], false, None, 0);
    let mut sparse = encode(&[0; REGISTERS], true, None, usize::MAX);
    let relerr = 1.04 / (REGISTERS as f64).sqrt();
    let seed: u64 = rng.gen();
    let mut checkpoint: u64 = 1;
    for j in 1..=10_000_000u64 {
        let element = (j ^ seed).to_le_bytes();
        add(&mut dense, &element, sparse_max);
        if add(&mut sparse, &element, sparse_max).is_none() {
            return failed("sparse encoding corrupted".into());
        }
        if j != checkpoint {
            continue;
        }
        if (j as usize) < sparse_max / 2 && sparse[4] != 1 {
            return failed("sparse encoding not used".into());
        }
        let card = count(&registers(&dense).unwrap_or_default());
        let sparse_regs = registers(&sparse).ok_or_else(corrupted)?;
        if card != count(&sparse_regs) {
            return failed("dense/sparse disagree".into());
        }
        // Cardinality 10 may collide now and then, as Redis allows.
        let max_err = if j == 10 {
            1
        } else {
            (relerr * 6.0 * j as f64).ceil() as u64
        };
        let abs_err = checkpoint.abs_diff(card);
        if abs_err > max_err {
            return failed(format!("Too big error. card:{checkpoint} abserr:{abs_err}"));
        }
        checkpoint *= 10;
    }
    ctx.out.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `hll-sparse-max-bytes`'s default.
    const SPARSE_MAX_BYTES: usize = 3000;

    #[test]
    fn encodings_round_trip_and_counts_are_close() {
        let mut regs = vec![0u8; REGISTERS];
        for i in 0..20_000u32 {
            let (idx, v) = pattern(format!("e{i}").as_bytes());
            regs[idx] = regs[idx].max(v);
        }
        let c = count(&regs) as f64;
        assert!((c - 20_000.0).abs() / 20_000.0 < 0.03, "{c}");
        let dense = encode(&regs, false, None, SPARSE_MAX_BYTES);
        assert_eq!(dense.len(), DENSE_SIZE);
        assert_eq!(registers(&dense).unwrap(), regs);
        let few: Vec<u8> = {
            let mut r = vec![0u8; REGISTERS];
            r[5] = 3;
            r[6] = 3;
            r[16000] = 1;
            r
        };
        let sparse = encode(&few, true, None, SPARSE_MAX_BYTES);
        assert_eq!(sparse[4], 1);
        assert_eq!(registers(&sparse).unwrap(), few);
        assert_eq!(count(&vec![0u8; REGISTERS]), 0);
    }

    #[test]
    fn sparse_registers_change_in_place_and_promote_to_dense() {
        let mut regs = vec![0u8; REGISTERS];
        let mut v = encode(&regs, true, None, SPARSE_MAX_BYTES);
        let mut promoted_at = None;
        for n in 0..4000u32 {
            let (i, c) = pattern(format!("member:{n}").as_bytes());
            let grows = c > regs[i];
            regs[i] = regs[i].max(c);
            let changed = if v[4] == 1 {
                sparse_set(&mut v, i, c, SPARSE_MAX_BYTES).expect("valid")
            } else {
                promoted_at.get_or_insert(n);
                let g = c > dense_get(&v[HEADER..], i);
                if g {
                    dense_set(&mut v[HEADER..], i, c);
                }
                g
            };
            assert_eq!(changed, grows, "element {n}");
            assert_eq!(registers(&v).expect("decodes"), regs, "element {n}");
            assert!(v[4] == 0 || v.len() <= SPARSE_MAX_BYTES);
        }
        assert!(
            promoted_at.is_some(),
            "4000 elements outgrow the sparse form"
        );
        // A count over 32 promotes at once.
        let mut v = encode(&vec![0u8; REGISTERS], true, None, SPARSE_MAX_BYTES);
        assert_eq!(sparse_set(&mut v, 7, 33, SPARSE_MAX_BYTES), Some(true));
        assert_eq!(v[4], 0);
        assert_eq!(dense_get(&v[HEADER..], 7), 33);
        // Opcodes that stop short of the register: corrupt.
        let mut short = b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01".to_vec();
        assert_eq!(sparse_set(&mut short, 100, 1, SPARSE_MAX_BYTES), None);
    }

    #[test]
    fn dense_registers_change_in_place_as_encoding_writes_them() {
        let mut regs = vec![0u8; REGISTERS];
        let mut dense = encode(&regs, false, None, SPARSE_MAX_BYTES);
        // Every value into every bit position, overwriting both ways.
        for round in 0..3u32 {
            for (i, r) in regs.iter_mut().enumerate() {
                let v = ((i as u32 * 7 + round * 13) % 64) as u8;
                *r = v;
                dense_set(&mut dense[HEADER..], i, v);
                assert_eq!(dense_get(&dense[HEADER..], i), v);
            }
            assert_eq!(
                dense[HEADER..],
                encode(&regs, false, None, SPARSE_MAX_BYTES)[HEADER..]
            );
        }
    }
}
