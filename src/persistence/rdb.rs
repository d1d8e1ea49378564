//! One value in Redis's RDB encoding, the DUMP payload around it, and
//! whole RDB files as redis-server writes them (read only: a node migrating
//! from Redis starts from its dump.rdb).
//!
//! ```text
//!  DUMP payload:  [type byte][value encoding][RDB version: u16 LE][CRC64: u64 LE]
//!  string value:  [length][bytes]            length: 00xxxxxx | 01xxxxxx xxxxxxxx
//!                 | [0xC0|0xC1|0xC2][int LE]            | 0x80 u32 BE | 0x81 u64 BE
//!                 | [0xC3][clen][len][LZF bytes]   (read only: Shoal writes plain)
//! ```
//!
//!
//!  list  (1):  [len] [string]...            set (2): [len] [string]...
//!  hash  (4):  [len] [field][value]...      zset (5): [len] ([member][f64 LE])...
//!  stream (19): [nodes] ([master ID: 16 bytes BE][listpack])... [length]
//!              [last ID][first ID][max deleted ID][entries added]
//!              [groups] ([name][last ID][entries read][PEL][consumers])...
//!              (read also: 15, Redis 5/6's, and 21, Redis 7.2's)
//!  read only, Redis 7's compact forms: 11 intset, 16 hash listpack,
//!  17 zset listpack, 18 quicklist of listpacks, 20 set listpack; and
//!  Redis 6's: 10 list ziplist, 12 zset ziplist, 13 hash ziplist,
//!  14 quicklist of ziplists
//! ```
//!
//! Shoal writes collections in RDB's plain element-by-element types, which
//! every Redis 7 loads, except a set of integers kept as an intset, which
//! goes out as Redis's intset (type 11) byte for byte; it reads Redis's
//! compact encodings as well, so a DUMP taken from Redis restores here.
//!
//! ```text
//!  listpack: [total u32][count u16] entry... 0xFF
//!  entry:    [encoding + data][backlen: 1-5 bytes]
//! ```
//!
//! The CRC is CRC-64/Jones as Redis computes it over everything before it.
//! We write RDB version 10 (Redis 7.0's) so that every Redis 7 accepts our
//! payloads, and accept versions up to 12 on RESTORE.

use crate::keyspace::{Encodings, Hash, List, Set, Value, ZSet};

const RDB_TYPE_STRING: u8 = 0;
const RDB_TYPE_LIST: u8 = 1;
const RDB_TYPE_SET: u8 = 2;
const RDB_TYPE_ZSET: u8 = 3;
const RDB_TYPE_HASH: u8 = 4;
const RDB_TYPE_ZSET_2: u8 = 5;
const RDB_TYPE_LIST_ZIPLIST: u8 = 10;
const RDB_TYPE_SET_INTSET: u8 = 11;
const RDB_TYPE_ZSET_ZIPLIST: u8 = 12;
const RDB_TYPE_HASH_ZIPLIST: u8 = 13;
const RDB_TYPE_LIST_QUICKLIST: u8 = 14;
const RDB_TYPE_HASH_LISTPACK: u8 = 16;
const RDB_TYPE_ZSET_LISTPACK: u8 = 17;
const RDB_TYPE_LIST_QUICKLIST_2: u8 = 18;
const RDB_TYPE_SET_LISTPACK: u8 = 20;
const RDB_TYPE_STREAM_LISTPACKS: u8 = 15;
const RDB_TYPE_STREAM_LISTPACKS_2: u8 = 19;
const RDB_TYPE_STREAM_LISTPACKS_3: u8 = 21;
const WRITE_VERSION: u16 = 10;
const MAX_READ_VERSION: u16 = 12;

static CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_REDIS);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RdbError {
    #[error("DUMP payload version or checksum are wrong")]
    Checksum,
    #[error("Bad data format")]
    BadFormat,
    /// A collection with nothing in it (RESTORE says bad data; loading an
    /// RDB file skips the key, as Redis does).
    #[error("Bad data format")]
    EmptyKey,
}

fn write_len(out: &mut Vec<u8>, len: usize) {
    if len < 64 {
        out.push(len as u8);
    } else if len < 16384 {
        out.push(0x40 | (len >> 8) as u8);
        out.push(len as u8);
    } else if len <= u32::MAX as usize {
        out.push(0x80);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

fn write_string(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Int(n) if i8::try_from(*n).is_ok() => {
            out.push(0xC0);
            out.push(*n as i8 as u8);
        }
        Value::Int(n) if i16::try_from(*n).is_ok() => {
            out.push(0xC1);
            out.extend_from_slice(&(*n as i16).to_le_bytes());
        }
        Value::Int(n) if i32::try_from(*n).is_ok() => {
            out.push(0xC2);
            out.extend_from_slice(&(*n as i32).to_le_bytes());
        }
        _ => {
            let mut b = itoa::Buffer::new();
            let bytes = v.str_bytes(&mut b).unwrap_or_default();
            write_len(out, bytes.len());
            out.extend_from_slice(bytes);
        }
    }
}

fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_len(out, b.len());
    out.extend_from_slice(b);
}

/// Serialises a value as DUMP does.
pub fn dump(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    match v {
        Value::List(l) => {
            out.push(RDB_TYPE_LIST);
            write_len(&mut out, l.len());
            l.iter().for_each(|e| write_bytes(&mut out, &e));
        }
        Value::SetInts(s) => {
            // Redis's intset: [width u32 LE][count u32 LE][members].
            let (width, members) = s.raw();
            let mut blob = Vec::with_capacity(8 + members.len());
            blob.extend((width as u32).to_le_bytes());
            blob.extend((s.len() as u32).to_le_bytes());
            blob.extend(members);
            out.push(RDB_TYPE_SET_INTSET);
            write_bytes(&mut out, &blob);
        }
        v @ (Value::SetPacked(_) | Value::SetTable(_)) => {
            let s = Set::of(v).expect("a set value");
            out.push(RDB_TYPE_SET);
            write_len(&mut out, s.len());
            s.iter().for_each(|m| write_bytes(&mut out, &m));
        }
        v @ (Value::HashPacked(_) | Value::HashTable(_)) => {
            let h = Hash::of(v).expect("a hash value");
            out.push(RDB_TYPE_HASH);
            write_len(&mut out, h.len());
            for (f, v) in h.iter() {
                write_bytes(&mut out, f);
                write_bytes(&mut out, v);
            }
        }
        Value::ZSet(z) => {
            out.push(RDB_TYPE_ZSET_2);
            write_len(&mut out, z.len());
            for e in z.iter() {
                write_bytes(&mut out, e.member.as_bytes());
                out.extend_from_slice(&e.score.to_le_bytes());
            }
        }
        Value::Stream(st) => {
            out.push(RDB_TYPE_STREAM_LISTPACKS_2);
            stream::write(&mut out, st);
        }
        string => {
            out.push(RDB_TYPE_STRING);
            write_string(&mut out, string);
        }
    }
    seal(&mut out);
    out
}

/// Ends a DUMP payload: the RDB version, then the CRC-64 of all before.
fn seal(out: &mut Vec<u8>) {
    out.extend_from_slice(&WRITE_VERSION.to_le_bytes());
    let crc = CRC64.checksum(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Checks a DUMP payload's version and CRC-64 (`check_crc`: false under
/// DEBUG SET-SKIP-CHECKSUM-VALIDATION, as Redis's tests feed hand-made
/// payloads); returns what they seal.
fn unseal(payload: &[u8], check_crc: bool) -> Result<&[u8], RdbError> {
    if payload.len() < 10 {
        return Err(RdbError::Checksum);
    }
    let (body, crc) = payload.split_at(payload.len() - 8);
    let version = u16::from_le_bytes([body[body.len() - 2], body[body.len() - 1]]);
    if version > MAX_READ_VERSION
        || (check_crc && CRC64.checksum(body) != u64::from_le_bytes(crc.try_into().unwrap()))
    {
        return Err(RdbError::Checksum);
    }
    Ok(&body[..body.len() - 2])
}

/// Redis's RDB opcode before a function library (its code).
const RDB_OPCODE_FUNCTION2: u8 = 0xF5;

/// FUNCTION DUMP's payload: each library's code as an RDB file holds it,
/// sealed as DUMP seals a value.
pub fn dump_functions<'a>(codes: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for code in codes {
        out.push(RDB_OPCODE_FUNCTION2);
        write_bytes(&mut out, code);
    }
    seal(&mut out);
    out
}

/// The libraries' codes in a FUNCTION DUMP payload, or FUNCTION
/// RESTORE's error text.
pub fn restore_functions(payload: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let body = unseal(payload, true).map_err(|e| e.to_string())?;
    let mut r = Reader { b: body };
    let mut codes = Vec::new();
    while !r.b.is_empty() {
        if r.byte().map_err(|_| "can not read data type")? != RDB_OPCODE_FUNCTION2 {
            return Err("given type is not a function".into());
        }
        codes.push(
            r.bytes()
                .map_err(|_| "failed loading the given functions payload")?,
        );
    }
    Ok(codes)
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RdbError> {
        if self.b.len() < n {
            return Err(RdbError::BadFormat);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    fn byte(&mut self) -> Result<u8, RdbError> {
        Ok(self.take(1)?[0])
    }

    /// A length, or `Err(encoding)` for the special encodings (0xC0..).
    fn len_or_special(&mut self) -> Result<Result<usize, u8>, RdbError> {
        let first = self.byte()?;
        Ok(match first >> 6 {
            0 => Ok((first & 0x3F) as usize),
            1 => Ok((((first & 0x3F) as usize) << 8) | self.byte()? as usize),
            2 if first == 0x80 => {
                Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()) as usize)
            }
            2 if first == 0x81 => {
                Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()) as usize)
            }
            3 => Err(first & 0x3F),
            _ => return Err(RdbError::BadFormat),
        })
    }

    fn len(&mut self) -> Result<usize, RdbError> {
        self.len_or_special()?.map_err(|_| RdbError::BadFormat)
    }

    fn string(&mut self) -> Result<Value, RdbError> {
        match self.len_or_special()? {
            Ok(n) => Ok(Value::string(self.take(n)?)),
            Err(0) => Ok(Value::Int(self.byte()? as i8 as i64)),
            Err(1) => Ok(Value::Int(
                i16::from_le_bytes(self.take(2)?.try_into().unwrap()) as i64,
            )),
            Err(2) => Ok(Value::Int(
                i32::from_le_bytes(self.take(4)?.try_into().unwrap()) as i64,
            )),
            Err(3) => {
                let clen = self.len()?;
                let len = self.len()?;
                let data = lzf_decompress(self.take(clen)?, len)?;
                Ok(Value::string(&data))
            }
            Err(_) => Err(RdbError::BadFormat),
        }
    }

    /// A string's bytes, whatever its encoding.
    fn bytes(&mut self) -> Result<Vec<u8>, RdbError> {
        let v = self.string()?;
        let mut b = itoa::Buffer::new();
        Ok(v.str_bytes(&mut b).unwrap_or_default().to_vec())
    }

    /// A collection's element count, refused if the payload is too short to
    /// hold that many (each element takes at least one byte): a lying count
    /// must not make us allocate.
    fn count(&mut self, per_element: usize) -> Result<usize, RdbError> {
        let n = self.len()?;
        if n.saturating_mul(per_element) > self.b.len() {
            return Err(RdbError::BadFormat);
        }
        Ok(n)
    }

    fn double(&mut self) -> Result<f64, RdbError> {
        let d = f64::from_le_bytes(self.take(8)?.try_into().unwrap());
        if d.is_nan() {
            return Err(RdbError::BadFormat);
        }
        Ok(d)
    }
}

/// The elements of a ziplist (Redis before 7: small lists, hashes and
/// sorted sets, and quicklist nodes), as byte strings.
fn ziplist(zl: &[u8]) -> Result<Vec<Vec<u8>>, RdbError> {
    let bad = || RdbError::BadFormat;
    if zl.len() < 11 || u32::from_le_bytes(zl[..4].try_into().unwrap()) as usize != zl.len() {
        return Err(bad());
    }
    let get = |p: usize, n: usize| zl.get(p..p + n).ok_or_else(bad);
    let int = |p: usize, n: usize| -> Result<i64, RdbError> {
        let mut buf = [0u8; 8];
        buf[..n].copy_from_slice(get(p, n)?);
        let shift = 64 - 8 * n as u32;
        Ok((i64::from_le_bytes(buf) << shift) >> shift)
    };
    let mut out = Vec::new();
    let mut p = 10;
    loop {
        // The previous entry's length: one byte, or 0xFE and four.
        match *zl.get(p).ok_or_else(bad)? {
            0xFF => break,
            0xFE => p += 5,
            _ => p += 1,
        }
        let b = *zl.get(p).ok_or_else(bad)?;
        let (elem, next) = match b >> 6 {
            0 => {
                let n = (b & 0x3F) as usize;
                (get(p + 1, n)?.to_vec(), p + 1 + n)
            }
            1 => {
                let n = (((b & 0x3F) as usize) << 8) | *zl.get(p + 1).ok_or_else(bad)? as usize;
                (get(p + 2, n)?.to_vec(), p + 2 + n)
            }
            2 if b == 0x80 => {
                let n = u32::from_be_bytes(get(p + 1, 4)?.try_into().unwrap()) as usize;
                (get(p + 5, n)?.to_vec(), p + 5 + n)
            }
            3 => {
                let (v, width) = match b {
                    0xC0 => (int(p + 1, 2)?, 2),
                    0xD0 => (int(p + 1, 4)?, 4),
                    0xE0 => (int(p + 1, 8)?, 8),
                    0xF0 => (int(p + 1, 3)?, 3),
                    0xFE => (int(p + 1, 1)?, 1),
                    // 1111xxxx: 0 to 12, stored plus one.
                    0xF1..=0xFD => ((b & 0x0F) as i64 - 1, 0),
                    _ => return Err(bad()),
                };
                (v.to_string().into_bytes(), p + 1 + width)
            }
            _ => return Err(bad()),
        };
        out.push(elem);
        p = next;
    }
    Ok(out)
}

/// The elements of a listpack, as byte strings (integers formatted).
fn listpack(lp: &[u8]) -> Result<Vec<Vec<u8>>, RdbError> {
    let bad = || RdbError::BadFormat;
    if lp.len() < 7 || u32::from_le_bytes(lp[..4].try_into().unwrap()) as usize != lp.len() {
        return Err(bad());
    }
    let mut out = Vec::new();
    let mut p = 6;
    let get = |p: usize, n: usize| lp.get(p..p + n).ok_or_else(bad);
    loop {
        let b = *lp.get(p).ok_or_else(bad)?;
        if b == 0xFF {
            break;
        }
        let start = p;
        let (elem, next): (Vec<u8>, usize) = if b & 0x80 == 0 {
            ((b as i64).to_string().into_bytes(), p + 1)
        } else if b & 0xC0 == 0x80 {
            let n = (b & 0x3F) as usize;
            (get(p + 1, n)?.to_vec(), p + 1 + n)
        } else if b & 0xE0 == 0xC0 {
            let v = (((b & 0x1F) as i64) << 8) | *lp.get(p + 1).ok_or_else(bad)? as i64;
            let v = if v >= 1 << 12 { v - (1 << 13) } else { v };
            (v.to_string().into_bytes(), p + 2)
        } else if b & 0xF0 == 0xE0 {
            let n = (((b & 0x0F) as usize) << 8) | *lp.get(p + 1).ok_or_else(bad)? as usize;
            (get(p + 2, n)?.to_vec(), p + 2 + n)
        } else {
            let int = |n: usize| -> Result<i64, RdbError> {
                let raw = get(p + 1, n)?;
                let mut buf = [0u8; 8];
                buf[..n].copy_from_slice(raw);
                let shift = 64 - 8 * n as u32;
                Ok((i64::from_le_bytes(buf) << shift) >> shift)
            };
            match b {
                0xF0 => {
                    let n = u32::from_le_bytes(get(p + 1, 4)?.try_into().unwrap()) as usize;
                    (get(p + 5, n)?.to_vec(), p + 5 + n)
                }
                0xF1 => (int(2)?.to_string().into_bytes(), p + 3),
                0xF2 => (int(3)?.to_string().into_bytes(), p + 4),
                0xF3 => (int(4)?.to_string().into_bytes(), p + 5),
                0xF4 => (int(8)?.to_string().into_bytes(), p + 9),
                _ => return Err(bad()),
            }
        };
        out.push(elem);
        p = next + backlen_size(next - start);
    }
    Ok(out)
}

/// Bytes of a listpack element's back-length, for an element of `l`
/// bytes (encoding and data): seven bits a byte, as lpEncodeBacklen.
fn backlen_size(l: usize) -> usize {
    match l {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2097150 => 3,
        2097151..=268435454 => 4,
        _ => 5,
    }
}

fn intset(b: &[u8]) -> Result<Vec<Vec<u8>>, RdbError> {
    let bad = || RdbError::BadFormat;
    if b.len() < 8 {
        return Err(bad());
    }
    let width = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
    let n = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
    if !matches!(width, 2 | 4 | 8) || b.len() != 8 + n * width {
        return Err(bad());
    }
    Ok(b[8..]
        .chunks(width)
        .map(|c| {
            let v = match width {
                2 => i16::from_le_bytes(c.try_into().unwrap()) as i64,
                4 => i32::from_le_bytes(c.try_into().unwrap()) as i64,
                _ => i64::from_le_bytes(c.try_into().unwrap()),
            };
            v.to_string().into_bytes()
        })
        .collect())
}

fn score_of(b: &[u8]) -> Result<f64, RdbError> {
    crate::command::args::float(b).map_err(|_| RdbError::BadFormat)
}

/// Builds a sorted set from (member, score) pairs, refusing duplicates.
fn zset_from(
    pairs: impl Iterator<Item = Result<(Vec<u8>, f64), RdbError>>,
    enc: &Encodings,
) -> Result<Value, RdbError> {
    let mut z = ZSet::default();
    for p in pairs {
        let (m, s) = p?;
        if z.insert(&m, s, enc.zset).is_some() {
            return Err(RdbError::BadFormat);
        }
    }
    Ok(Value::ZSet(Box::new(z)))
}

fn hash_from(fields: Vec<Vec<u8>>, enc: &Encodings) -> Result<Value, RdbError> {
    if !fields.len().is_multiple_of(2) {
        return Err(RdbError::BadFormat);
    }
    let mut h = Hash::default();
    for fv in fields.chunks(2) {
        if !h.insert(&fv[0], &fv[1], enc.hash) {
            return Err(RdbError::BadFormat);
        }
    }
    Ok(h.into_value())
}

fn set_from(members: Vec<Vec<u8>>, enc: &Encodings) -> Result<Value, RdbError> {
    let mut s = Set::default();
    for m in &members {
        if !s.insert(m, enc.set) {
            return Err(RdbError::BadFormat);
        }
    }
    Ok(s.into_value())
}

/// Decodes the value of one RDB type (everything a DUMP payload can hold).
/// A sorted set from a packed run (ziplist or listpack) of member and
/// score-as-text pairs.
fn zset_from_packed(items: Vec<Vec<u8>>, enc: &Encodings) -> Result<Value, RdbError> {
    if !items.len().is_multiple_of(2) {
        return Err(RdbError::BadFormat);
    }
    zset_from(
        items
            .chunks(2)
            .map(|c| Ok((c[0].clone(), score_of(&c[1])?))),
        enc,
    )
}

fn read_value(r: &mut Reader, kind: u8, enc: &Encodings) -> Result<Value, RdbError> {
    Ok(match kind {
        RDB_TYPE_STRING => r.string()?,
        RDB_TYPE_LIST => {
            let n = r.count(1)?;
            let mut l = List::default();
            for _ in 0..n {
                l.push_back(&r.bytes()?, enc.list);
            }
            Value::List(Box::new(l))
        }
        RDB_TYPE_LIST_QUICKLIST_2 => {
            let nodes = r.count(2)?;
            let mut l = List::default();
            for _ in 0..nodes {
                let container = r.len()?;
                let data = r.bytes()?;
                match container {
                    1 => l.push_back(&data, enc.list),
                    2 => listpack(&data)?
                        .iter()
                        .for_each(|e| l.push_back(e, enc.list)),
                    _ => return Err(RdbError::BadFormat),
                }
            }
            Value::List(Box::new(l))
        }
        RDB_TYPE_LIST_ZIPLIST => {
            let mut l = List::default();
            ziplist(&r.bytes()?)?
                .iter()
                .for_each(|e| l.push_back(e, enc.list));
            Value::List(Box::new(l))
        }
        RDB_TYPE_LIST_QUICKLIST => {
            let nodes = r.count(1)?;
            let mut l = List::default();
            for _ in 0..nodes {
                ziplist(&r.bytes()?)?
                    .iter()
                    .for_each(|e| l.push_back(e, enc.list));
            }
            Value::List(Box::new(l))
        }
        RDB_TYPE_HASH_ZIPLIST => hash_from(ziplist(&r.bytes()?)?, enc)?,
        RDB_TYPE_ZSET_ZIPLIST => zset_from_packed(ziplist(&r.bytes()?)?, enc)?,
        RDB_TYPE_SET => {
            let n = r.count(1)?;
            let members = (0..n).map(|_| r.bytes()).collect::<Result<_, _>>()?;
            set_from(members, enc)?
        }
        RDB_TYPE_SET_INTSET => set_from(intset(&r.bytes()?)?, enc)?,
        RDB_TYPE_SET_LISTPACK => set_from(listpack(&r.bytes()?)?, enc)?,
        RDB_TYPE_HASH => {
            let n = r.count(2)?;
            let fields = (0..2 * n).map(|_| r.bytes()).collect::<Result<_, _>>()?;
            hash_from(fields, enc)?
        }
        RDB_TYPE_HASH_LISTPACK => hash_from(listpack(&r.bytes()?)?, enc)?,
        RDB_TYPE_ZSET_2 => {
            let n = r.count(9)?;
            zset_from((0..n).map(|_| Ok((r.bytes()?, r.double()?))), enc)?
        }
        RDB_TYPE_ZSET => {
            // Scores as length-prefixed text (253/254/255 mean nan/+inf/-inf).
            let n = r.count(2)?;
            zset_from(
                (0..n).map(|_| {
                    let m = r.bytes()?;
                    let s = match r.byte()? {
                        253 => return Err(RdbError::BadFormat),
                        254 => f64::INFINITY,
                        255 => f64::NEG_INFINITY,
                        len => score_of(r.take(len as usize)?)?,
                    };
                    Ok((m, s))
                }),
                enc,
            )?
        }
        RDB_TYPE_ZSET_LISTPACK => zset_from_packed(listpack(&r.bytes()?)?, enc)?,
        RDB_TYPE_STREAM_LISTPACKS | RDB_TYPE_STREAM_LISTPACKS_2 | RDB_TYPE_STREAM_LISTPACKS_3 => {
            Value::Stream(Box::new(stream::read(
                r,
                kind - RDB_TYPE_STREAM_LISTPACKS,
                enc.stream,
            )?))
        }
        _ => return Err(RdbError::BadFormat),
    })
}

/// Checks a DUMP payload's footer (its CRC-64 if `check_crc`) and decodes
/// its value.
pub fn restore(payload: &[u8], enc: &Encodings, check_crc: bool) -> Result<Value, RdbError> {
    let mut r = Reader {
        b: unseal(payload, check_crc)?,
    };
    let kind = r.byte()?;
    let v = read_value(&mut r, kind, enc)?;
    if !r.b.is_empty() {
        return Err(RdbError::BadFormat);
    }
    if empty_collection(&v) {
        return Err(RdbError::EmptyKey);
    }
    Ok(v)
}

/// A list, hash, set or sorted set holding nothing, which a payload can
/// describe (a quicklist of empty ziplists, an empty listpack) but no key
/// may be: Redis refuses such a RESTORE as bad data, and Shoal's commands
/// rely on a stored collection holding something (LPOP on one was a
/// panic).
fn empty_collection(v: &Value) -> bool {
    match v {
        Value::List(l) => l.is_empty(),
        Value::ZSet(z) => z.is_empty(),
        Value::HashPacked(_) | Value::HashTable(_) => Hash::of(v).is_some_and(Hash::is_empty),
        Value::SetInts(_) | Value::SetPacked(_) | Value::SetTable(_) => {
            Set::of(v).is_some_and(Set::is_empty)
        }
        _ => false,
    }
}

/// What a Redis RDB file holds, in file order.
pub enum RdbItem {
    /// A database's announced size (RESIZEDB), before its keys.
    DbSize {
        db: usize,
        keys: usize,
    },
    Key(RdbKey),
    /// A function library's code (FUNCTION LOAD's argument).
    Function(Vec<u8>),
}

/// One key of a Redis RDB file, ready to be restored: its value as a DUMP
/// payload (so RESTORE's checks and decoding apply unchanged).
pub struct RdbKey {
    pub db: usize,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    /// Absolute Unix ms, if the key expires.
    pub expire_ms: Option<i64>,
    pub idle_secs: Option<u64>,
    pub freq: Option<u8>,
}

/// Whether `data` starts like a Redis RDB file (`REDIS` and a 4-digit
/// version), not a Shoal snapshot.
pub fn is_rdb_file(data: &[u8]) -> bool {
    data.len() >= 9 && &data[..5] == b"REDIS" && data[5..9].iter().all(u8::is_ascii_digit)
}

/// Reads a whole Redis RDB file (what redis-server's SAVE writes, up to
/// version 12), handing each key and function library to `each` in file
/// order. Checked as Redis checks it (the trailing CRC-64 unless zero);
/// modules, which Shoal does not have, the libraries of Redis 7.0's
/// release candidates, and the zipmaps of Redis before 2.6 are refused by
/// name. Returns the number of keys and where
/// the RDB data ends: Redis's append-only files may go on after it with
/// commands (the RDB preamble).
pub fn read_file(
    data: &[u8],
    enc: &Encodings,
    mut each: impl FnMut(RdbItem) -> Result<(), String>,
) -> Result<(u64, usize), String> {
    let bad = |what: &str| format!("Bad RDB file: {what}");
    if !is_rdb_file(data) {
        return Err(bad("no REDIS signature"));
    }
    let version: u16 = std::str::from_utf8(&data[5..9]).unwrap().parse().unwrap();
    if version > MAX_READ_VERSION {
        return Err(format!(
            "Can't handle RDB format version {version} (Redis 7.0 to 7.4 write 10 to 12)"
        ));
    }
    let mut r = Reader { b: &data[9..] };
    let short = |_| bad("unexpected end of file");
    let (mut db, mut keys) = (0usize, 0u64);
    let (mut expire_ms, mut idle_secs, mut freq) = (None, None, None);
    loop {
        let op = r.byte().map_err(short)?;
        match op {
            0xFF => {
                if version >= 5 {
                    let at = data.len() - r.b.len();
                    let sum = u64::from_le_bytes(r.take(8).map_err(short)?.try_into().unwrap());
                    if sum != 0 && sum != CRC64.checksum(&data[..at]) {
                        return Err(bad("wrong checksum"));
                    }
                }
                return Ok((keys, data.len() - r.b.len()));
            }
            0xFE => db = r.len().map_err(short)?,
            0xFB => {
                let keys = r.len().map_err(short)?;
                r.len().map_err(short)?;
                // Each key takes a few bytes at least: a size past that
                // is not believed (nor allocated for).
                let keys = keys.min(data.len() / 3);
                each(RdbItem::DbSize { db, keys })?;
            }
            0xFA => {
                r.bytes().map_err(short)?;
                r.bytes().map_err(short)?;
            }
            0xFC => {
                let ms = u64::from_le_bytes(r.take(8).map_err(short)?.try_into().unwrap());
                expire_ms = Some(ms as i64);
            }
            0xFD => {
                let s = u32::from_le_bytes(r.take(4).map_err(short)?.try_into().unwrap());
                expire_ms = Some(s as i64 * 1000);
            }
            0xF9 => freq = Some(r.byte().map_err(short)?),
            0xF8 => idle_secs = Some(r.len().map_err(short)? as u64),
            0xF7 => return Err(bad("module data, which Shoal cannot load")),
            RDB_OPCODE_FUNCTION2 => {
                each(RdbItem::Function(r.bytes().map_err(short)?))?;
            }
            0xF6 => return Err(bad("a function library of a Redis 7.0 release candidate")),
            kind => {
                let key = r.bytes().map_err(short)?;
                let start = r.b;
                match kind {
                    9 => {
                        return Err(bad(&format!(
                            "key {} is a zipmap of Redis before 2.6; load and save the file with a newer Redis first",
                            String::from_utf8_lossy(&key)
                        )))
                    }
                    6 | 7 => return Err(bad("module data, which Shoal cannot load")),
                    _ => {}
                }
                read_value(&mut r, kind, enc)
                    .map_err(|e| bad(&format!("key {}: {e}", String::from_utf8_lossy(&key))))?;
                let value = &start[..start.len() - r.b.len()];
                let mut payload = Vec::with_capacity(value.len() + 11);
                payload.push(kind);
                payload.extend_from_slice(value);
                payload.extend_from_slice(&WRITE_VERSION.max(version).to_le_bytes());
                let crc = CRC64.checksum(&payload);
                payload.extend_from_slice(&crc.to_le_bytes());
                each(RdbItem::Key(RdbKey {
                    db,
                    key,
                    payload,
                    expire_ms: expire_ms.take(),
                    idle_secs: idle_secs.take(),
                    freq: freq.take(),
                }))?;
                keys += 1;
            }
        }
    }
}

/// LZF decompression (the format Redis compresses long strings with).
fn lzf_decompress(input: &[u8], out_len: usize) -> Result<Vec<u8>, RdbError> {
    // A back-reference of at most 264 bytes costs at least two input bytes,
    // so a claimed length beyond that ratio is a lie: refuse it before
    // allocating for it.
    if out_len > input.len().saturating_mul(132) + 64 {
        return Err(RdbError::BadFormat);
    }
    let mut out: Vec<u8> = Vec::with_capacity(out_len);
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            let n = ctrl + 1;
            let lit = input.get(i..i + n).ok_or(RdbError::BadFormat)?;
            out.extend_from_slice(lit);
            i += n;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *input.get(i).ok_or(RdbError::BadFormat)? as usize;
                i += 1;
            }
            len += 2;
            let low = *input.get(i).ok_or(RdbError::BadFormat)? as usize;
            i += 1;
            let back = ((ctrl & 0x1F) << 8) + low + 1;
            if back > out.len() {
                return Err(RdbError::BadFormat);
            }
            let start = out.len() - back;
            for k in 0..len {
                out.push(out[start + k]);
            }
        }
        if out.len() > out_len {
            return Err(RdbError::BadFormat);
        }
    }
    if out.len() != out_len {
        return Err(RdbError::BadFormat);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ziplist as Redis 6 writes one: every entry encoding, and a
    /// previous-entry length that takes five bytes.
    fn a_ziplist(entries: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut prev = 0usize;
        for e in entries {
            let start = body.len();
            if prev < 254 {
                body.push(prev as u8);
            } else {
                body.push(0xFE);
                body.extend((prev as u32).to_le_bytes());
            }
            body.extend_from_slice(e);
            prev = body.len() - start;
        }
        let mut zl = Vec::new();
        zl.extend(((body.len() + 11) as u32).to_le_bytes());
        zl.extend(0u32.to_le_bytes());
        zl.extend((entries.len() as u16).to_le_bytes());
        zl.extend(body);
        zl.push(0xFF);
        zl
    }

    #[test]
    fn ziplists_of_redis_6_decode() {
        let long = vec![b'y'; 300];
        let mid = vec![b'z'; 70];
        let mut e_long = vec![0x80];
        e_long.extend((300u32).to_be_bytes());
        e_long.extend(&long);
        let mut e_mid = vec![0x40, 70];
        e_mid.extend(&mid);
        let entries: Vec<Vec<u8>> = vec![
            [&[0x03u8][..], b"abc"].concat(),
            e_mid,
            e_long,
            [&[0xC0u8][..], &1000i16.to_le_bytes()].concat(),
            [&[0xD0u8][..], &100000i32.to_le_bytes()].concat(),
            [&[0xE0u8][..], &(1i64 << 40).to_le_bytes()].concat(),
            [&[0xF0u8][..], &(-70000i32).to_le_bytes()[..3]].concat(),
            vec![0xFE, (-5i8) as u8],
            vec![0xF7],
        ];
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let got = ziplist(&a_ziplist(&refs)).unwrap();
        let want: Vec<Vec<u8>> = vec![
            b"abc".to_vec(),
            mid,
            long,
            b"1000".to_vec(),
            b"100000".to_vec(),
            (1i64 << 40).to_string().into_bytes(),
            b"-70000".to_vec(),
            b"-5".to_vec(),
            b"6".to_vec(),
        ];
        assert_eq!(got, want);
        // A DUMP of a Redis 6 hash (type 13) restores.
        let zl = a_ziplist(&[b"\x01f", b"\x01v", b"\x01g", &[0xF3]]);
        let mut payload = vec![RDB_TYPE_HASH_ZIPLIST];
        write_bytes(&mut payload, &zl);
        payload.extend(9u16.to_le_bytes());
        let crc = CRC64.checksum(&payload);
        payload.extend(crc.to_le_bytes());
        let v = restore(&payload, &Encodings::default(), true).unwrap();
        let h = Hash::of(&v).expect("a hash");
        assert_eq!(
            (h.len(), h.get(b"f"), h.get(b"g")),
            (2, Some(&b"v"[..]), Some(&b"2"[..]))
        );
        assert!(ziplist(&zl[..zl.len() - 1]).is_err());
    }

    #[test]
    fn payload_round_trips() {
        for v in [
            Value::string(b"hello"),
            Value::Int(7),
            Value::Int(-40000),
            Value::Int(1 << 40),
            Value::string(&[b'x'; 20000]),
        ] {
            let p = dump(&v);
            let back = restore(&p, &Encodings::default(), true).unwrap();
            assert_eq!(format!("{back:?}"), format!("{v:?}"));
        }
    }

    #[test]
    fn redis_payloads_are_accepted() {
        // DUMP output of Redis 7.0.15 for "bar", a 108-byte LZF-compressed
        // string and the integer 12345.
        let bar = b"\x00\x03bar\n\x00\xe6\xbeI`\xeef\xfd\x17";
        assert_eq!(
            format!("{:?}", restore(bar, &Encodings::default(), true).unwrap()),
            format!("{:?}", Value::string(b"bar"))
        );
        let big = b"\x00\xc3\x0b@l\x03abca\xe0]\x02\x01bc\n\x00:]Q\x06\xe7\xc6\x96\x84";
        let want = "abc".repeat(36);
        assert_eq!(
            format!("{:?}", restore(big, &Encodings::default(), true).unwrap()),
            format!("{:?}", Value::string(want.as_bytes()))
        );
        let n = b"\x00\xc190\n\x00\x9d\x94\xea'\x93\xfc\x08\xb9";
        assert!(matches!(
            restore(n, &Encodings::default(), true).unwrap(),
            Value::Int(12345)
        ));
        // A quicklist of one empty ziplist (right checksum): a collection of
        // nothing, which no key may be; a wrong checksum is still told
        // first unless it is not checked.
        let empty = b"\x0E\x01\x0B\x0B\x00\x00\x00\x0A\x00\x00\x00\x00\x00\xFF\x09\x00\xC2\x69\x37\x83\x3C\x7F\xFE\x6F";
        assert_eq!(
            restore(empty, &Encodings::default(), true).err(),
            Some(RdbError::EmptyKey)
        );
        let mut broken = empty.to_vec();
        broken[23] ^= 1;
        assert_eq!(
            restore(&broken, &Encodings::default(), true).err(),
            Some(RdbError::Checksum)
        );
        assert_eq!(
            restore(&broken, &Encodings::default(), false).err(),
            Some(RdbError::EmptyKey)
        );
        // And ours byte for byte where the encoding is the same.
        assert_eq!(dump(&Value::string(b"bar")), bar.to_vec());
        let mut bad = dump(&Value::string(b"bar"));
        bad[2] ^= 1;
        assert_eq!(
            restore(&bad, &Encodings::default(), true).err(),
            Some(RdbError::Checksum)
        );
    }

    #[test]
    fn lying_lengths_are_refused_without_allocating() {
        // Compressed string claiming 2^62 bytes of output.
        let mut p = vec![0u8, 0xC3, 0x01, 0x81];
        p.extend_from_slice(&(1u64 << 62).to_be_bytes());
        p.push(0);
        p.extend_from_slice(&10u16.to_le_bytes());
        let crc = CRC64.checksum(&p);
        p.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(
            restore(&p, &Encodings::default(), true).err(),
            Some(RdbError::BadFormat)
        );
    }

    #[test]
    fn lzf_back_references() {
        // literal "abc" then a back-reference of length 3 at distance 3.
        let input = [2u8, b'a', b'b', b'c', (1 << 5), 2];
        assert_eq!(lzf_decompress(&input, 6).unwrap(), b"abcabc");
    }
}

/// Streams in RDB: entries as a radix tree of listpacks, each listpack a
/// "master entry" (its first entry's fields) followed by entries whose IDs
/// are deltas from the node's key; then the IDs, counters and groups.
mod stream {
    use super::{listpack, write_bytes, write_len, RdbError, Reader};
    use crate::keyspace::stream::{
        Entry, Group, NodeLimits, Pending, Stream, StreamId, NODE_ENTRIES,
    };

    const FLAG_DELETED: i64 = 1;
    const FLAG_SAMEFIELDS: i64 = 2;

    /// Builds one listpack.
    #[derive(Default)]
    struct Listpack {
        body: Vec<u8>,
        count: usize,
    }

    impl Listpack {
        fn element(&mut self, encoded: &[u8]) {
            self.body.extend_from_slice(encoded);
            // The back-length: the element's size, readable right to left.
            let l = encoded.len();
            let mut back = Vec::with_capacity(5);
            let groups = super::backlen_size(l);
            // Most significant group first; all but it carry the
            // continuation bit, as it is read from the right.
            for g in (0..groups).rev() {
                let part = ((l >> (7 * g)) & 127) as u8;
                back.push(if g == groups - 1 { part } else { part | 128 });
            }
            self.body.extend_from_slice(&back);
            self.count += 1;
        }

        fn int(&mut self, v: i64) {
            let mut e = Vec::with_capacity(9);
            if (0..=127).contains(&v) {
                e.push(v as u8);
            } else if (-4096..=4095).contains(&v) {
                let u = (v as u16) & 0x1FFF;
                e.push(0xC0 | (u >> 8) as u8);
                e.push(u as u8);
            } else if i16::try_from(v).is_ok() {
                e.push(0xF1);
                e.extend_from_slice(&(v as i16).to_le_bytes());
            } else if (-(1 << 23)..(1 << 23)).contains(&v) {
                e.push(0xF2);
                e.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
            } else if i32::try_from(v).is_ok() {
                e.push(0xF3);
                e.extend_from_slice(&(v as i32).to_le_bytes());
            } else {
                e.push(0xF4);
                e.extend_from_slice(&v.to_le_bytes());
            }
            self.element(&e);
        }

        fn str(&mut self, s: &[u8]) {
            let mut e = Vec::with_capacity(s.len() + 5);
            if s.len() < 64 {
                e.push(0x80 | s.len() as u8);
            } else if s.len() < 4096 {
                e.push(0xE0 | (s.len() >> 8) as u8);
                e.push(s.len() as u8);
            } else {
                e.push(0xF0);
                e.extend_from_slice(&(s.len() as u32).to_le_bytes());
            }
            e.extend_from_slice(s);
            self.element(&e);
        }

        fn finish(self) -> Vec<u8> {
            let total = 6 + self.body.len() + 1;
            let mut out = Vec::with_capacity(total);
            out.extend_from_slice(&(total as u32).to_le_bytes());
            out.extend_from_slice(&(self.count.min(65535) as u16).to_le_bytes());
            out.extend_from_slice(&self.body);
            out.push(0xFF);
            out
        }
    }

    fn raw_id(out: &mut Vec<u8>, id: StreamId) {
        out.extend_from_slice(&id.ms.to_be_bytes());
        out.extend_from_slice(&id.seq.to_be_bytes());
    }

    fn write_id(out: &mut Vec<u8>, id: StreamId) {
        write_len(out, id.ms as usize);
        write_len(out, id.seq as usize);
    }

    /// Writes a stream in RDB's second stream form (Redis 7.0's).
    pub fn write(out: &mut Vec<u8>, s: &Stream) {
        let entries: Vec<(StreamId, Entry)> =
            s.range(StreamId::MIN, StreamId::MAX, false).collect();
        let nodes: Vec<_> = entries.chunks(NODE_ENTRIES as usize).collect();
        write_len(out, nodes.len());
        for node in nodes {
            let (master, first) = node[0];
            let fields: Vec<&[u8]> = first.items().step_by(2).collect();
            let mut key = Vec::with_capacity(16);
            raw_id(&mut key, master);
            write_bytes(out, &key);
            let mut lp = Listpack::default();
            lp.int(node.len() as i64);
            lp.int(0);
            lp.int(fields.len() as i64);
            fields.iter().for_each(|f| lp.str(f));
            lp.int(0);
            for (id, e) in node {
                let items: Vec<&[u8]> = e.items().collect();
                let same = items.len() == 2 * fields.len()
                    && items.iter().step_by(2).zip(&fields).all(|(a, b)| a == b);
                lp.int(if same { FLAG_SAMEFIELDS } else { 0 });
                lp.int(id.ms.wrapping_sub(master.ms) as i64);
                lp.int(id.seq.wrapping_sub(master.seq) as i64);
                if same {
                    items.iter().skip(1).step_by(2).for_each(|v| lp.str(v));
                    lp.int(fields.len() as i64 + 3);
                } else {
                    lp.int((items.len() / 2) as i64);
                    items.iter().for_each(|i| lp.str(i));
                    lp.int(items.len() as i64 + 4);
                }
            }
            write_bytes(out, &lp.finish());
        }
        write_len(out, s.len());
        write_id(out, s.last_id);
        write_id(out, s.first_id().unwrap_or(StreamId::MIN));
        write_id(out, s.max_deleted);
        write_len(out, s.entries_added as usize);
        write_len(out, s.groups.len());
        for (name, g) in &s.groups {
            write_bytes(out, name);
            write_id(out, g.last_id);
            write_len(out, g.entries_read.unwrap_or(u64::MAX) as usize);
            write_len(out, g.pel.len());
            for (id, p) in &g.pel {
                raw_id(out, *id);
                out.extend_from_slice(&p.delivery_time.to_le_bytes());
                write_len(out, p.delivery_count as usize);
            }
            write_len(out, g.consumers.len());
            for (cname, c) in &g.consumers {
                write_bytes(out, cname);
                out.extend_from_slice(&c.seen_time.to_le_bytes());
                write_len(out, c.pel.len());
                for id in &c.pel {
                    raw_id(out, *id);
                }
            }
        }
    }

    fn read_raw_id(r: &mut Reader) -> Result<StreamId, RdbError> {
        let b = r.take(16)?;
        Ok(StreamId::new(
            u64::from_be_bytes(b[..8].try_into().unwrap()),
            u64::from_be_bytes(b[8..].try_into().unwrap()),
        ))
    }

    fn read_id(r: &mut Reader) -> Result<StreamId, RdbError> {
        Ok(StreamId::new(r.len()? as u64, r.len()? as u64))
    }

    fn read_time(r: &mut Reader) -> Result<i64, RdbError> {
        Ok(i64::from_le_bytes(r.take(8)?.try_into().unwrap()))
    }

    fn int_of(b: &[u8]) -> Result<i64, RdbError> {
        crate::protocol::request::parse_i64(b).ok_or(RdbError::BadFormat)
    }

    /// Reads a stream of the given form: 0 (Redis 5/6), 4 (7.0), 6 (7.2).
    pub fn read(r: &mut Reader, form: u8, limits: NodeLimits) -> Result<Stream, RdbError> {
        let bad = || RdbError::BadFormat;
        let mut s = Stream::default();
        let nodes = r.len()?;
        for _ in 0..nodes {
            let key = r.bytes()?;
            if key.len() != 16 {
                return Err(bad());
            }
            let master = read_raw_id(&mut Reader { b: &key })?;
            let items = listpack(&r.bytes()?)?;
            let mut it = items.iter().map(Vec::as_slice);
            let mut next = || it.next().ok_or_else(bad);
            let count = int_of(next()?)?;
            let deleted = int_of(next()?)?;
            let nfields = int_of(next()?)?;
            // Every entry takes at least four elements: counts past what
            // the listpack holds are lies.
            let room = items.len() as i64;
            if !(0..=room).contains(&count)
                || !(0..=room).contains(&deleted)
                || !(0..=room).contains(&nfields)
            {
                return Err(bad());
            }
            let fields: Vec<&[u8]> = (0..nfields).map(|_| next()).collect::<Result<_, _>>()?;
            next()?;
            for _ in 0..count + deleted {
                let flags = int_of(next()?)?;
                let id = StreamId::new(
                    master.ms.wrapping_add(int_of(next()?)? as u64),
                    master.seq.wrapping_add(int_of(next()?)? as u64),
                );
                let mut pairs: Vec<&[u8]> = Vec::new();
                if flags & FLAG_SAMEFIELDS != 0 {
                    for f in &fields {
                        pairs.push(f);
                        pairs.push(next()?);
                    }
                } else {
                    let n = int_of(next()?)?;
                    if !(0..=items.len() as i64).contains(&n) {
                        return Err(bad());
                    }
                    for _ in 0..2 * n {
                        pairs.push(next()?);
                    }
                }
                next()?;
                if flags & FLAG_DELETED == 0 {
                    if s.last_entry_id().is_some_and(|last| id <= last) {
                        return Err(bad());
                    }
                    s.insert_loaded(id, &pairs, limits);
                }
            }
        }
        if r.len()? != s.len() {
            return Err(bad());
        }
        s.last_id = read_id(r)?;
        if s.last_entry_id().is_some_and(|top| top > s.last_id) {
            return Err(bad());
        }
        if form >= 4 {
            read_id(r)?;
            s.max_deleted = read_id(r)?;
            s.entries_added = r.len()? as u64;
        } else {
            s.entries_added = s.len() as u64;
        }
        let groups = r.len()?;
        for _ in 0..groups {
            let name = r.bytes()?;
            let last = read_id(r)?;
            let read = if form >= 4 {
                let n = r.len()? as u64;
                (n != u64::MAX).then_some(n)
            } else {
                s.entries_read_at(last)
            };
            let mut g = Group::new(last, read);
            let n = r.len()?;
            for _ in 0..n {
                let id = read_raw_id(r)?;
                let delivery_time = read_time(r)?;
                let delivery_count = r.len()? as u64;
                g.pel.insert(
                    id,
                    Pending {
                        consumer: Box::default(),
                        delivery_time,
                        delivery_count,
                    },
                );
            }
            let consumers = r.len()?;
            for _ in 0..consumers {
                let cname = r.bytes()?;
                let seen = read_time(r)?;
                if form >= 6 {
                    read_time(r)?;
                }
                let (c, _) = g.consumer(&cname, seen);
                c.seen_time = seen;
                let n = r.len()?;
                let mut ids = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    ids.push(read_raw_id(r)?);
                }
                for id in ids {
                    let p = g.pel.get_mut(&id).ok_or_else(bad)?;
                    if !p.consumer.is_empty() {
                        return Err(bad());
                    }
                    p.consumer = cname.clone().into_boxed_slice();
                    g.consumers
                        .get_mut(&cname[..])
                        .expect("created above")
                        .pel
                        .insert(id);
                }
            }
            // Every pending entry must belong to a consumer.
            if g.pel.values().any(|p| p.consumer.is_empty()) {
                return Err(bad());
            }
            if s.groups.insert(name.into_boxed_slice(), g).is_some() {
                return Err(bad());
            }
        }
        Ok(s)
    }
}
