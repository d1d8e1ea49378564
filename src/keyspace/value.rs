//! Stored records: [`Node`] (one key with its value and metadata) and
//! [`SmallBuf`] (a byte string stored inline when short).
//!
//! Memory per key is a product goal (we must not use more than Redis), so the
//! layout is deliberate: a slot table's bucket is a thin `Box<Node>` (8 bytes),
//! and a node is exactly one 64-byte allocation that holds a key of up to 22
//! bytes and a string value of up to 22 bytes inline, its absolute expiry and
//! its access clock. The common small key therefore costs one allocation, where
//! Redis spends three (dict entry, key sds, value object).

use std::fmt;

use super::table::Buckets;

use super::hash::{Hash, Pair};
use super::intset::IntSet;
use super::list::List;
use super::packed::Packed;
use super::set::Set;
use super::stream::Stream;
use super::zset::ZSet;

const INLINE: usize = 22;

/// A byte string that lives inline up to 22 bytes and on the heap beyond.
#[derive(Clone)]
pub enum SmallBuf {
    Inline { len: u8, data: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl SmallBuf {
    pub fn new(b: &[u8]) -> Self {
        if b.len() <= INLINE {
            let mut data = [0u8; INLINE];
            data[..b.len()].copy_from_slice(b);
            SmallBuf::Inline {
                len: b.len() as u8,
                data,
            }
        } else {
            SmallBuf::Heap(b.into())
        }
    }

    pub fn from_vec(v: Vec<u8>) -> Self {
        if v.len() <= INLINE {
            Self::new(&v)
        } else {
            SmallBuf::Heap(v.into_boxed_slice())
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            SmallBuf::Inline { len, data } => &data[..*len as usize],
            SmallBuf::Heap(b) => b,
        }
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes allocated outside the node for this buffer.
    pub fn heap_size(&self) -> usize {
        match self {
            SmallBuf::Inline { .. } => 0,
            SmallBuf::Heap(b) => b.len(),
        }
    }
}

impl PartialEq for SmallBuf {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for SmallBuf {}

impl fmt::Debug for SmallBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// A value. Strings that are canonical 64-bit integers are kept as integers
/// (Redis's `int` encoding): INCR needs no parse and they take no heap.
/// Strings grown in place (APPEND, SETRANGE) become `Raw`: a vector with
/// spare capacity, so repeated appends are amortised O(1) as with Redis's
/// sds, while ordinary values stay compact.
///
/// Collections are boxed so that a value stays 24 bytes and a node 64.
#[derive(Clone, Debug)]
pub enum Value {
    Str(SmallBuf),
    Int(i64),
    Raw(Box<Vec<u8>>),
    List(Box<List>),
    /// Hashes and sets: see `Hash` and `Set`, which wrap these variants.
    HashPacked(Packed),
    HashTable(Box<Buckets<Pair>>),
    SetInts(IntSet),
    SetPacked(Packed),
    SetTable(Box<Buckets<SmallBuf>>),
    ZSet(Box<ZSet>),
    Stream(Box<Stream>),
}

impl Value {
    /// How much work freeing the value is, as Redis's
    /// lazyfreeGetFreeEffort counts it: allocations to free, 1 for a
    /// string or a compact encoding (one allocation whatever its size).
    pub fn free_effort(&self) -> usize {
        match self {
            Value::List(l) => l.chunk_count(),
            Value::HashTable(t) => t.len(),
            Value::SetTable(t) => t.len(),
            Value::ZSet(z) => z.len(),
            Value::Stream(s) => {
                s.nodes() as usize
                    + s.groups
                        .values()
                        .map(|g| 1 + g.pel.len() + g.consumers.len())
                        .sum::<usize>()
            }
            _ => 1,
        }
    }
}

/// The type names `TYPE` and `SCAN ... TYPE` use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    String,
    List,
    Set,
    ZSet,
    Hash,
    Stream,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::String,
        Kind::List,
        Kind::Set,
        Kind::ZSet,
        Kind::Hash,
        Kind::Stream,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::ZSet => "zset",
            Kind::Hash => "hash",
            Kind::Stream => "stream",
        }
    }

    pub fn from_name(name: &[u8]) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| name.eq_ignore_ascii_case(k.name().as_bytes()))
    }
}

impl Value {
    /// Builds a string value, choosing the integer encoding where Redis would.
    pub fn string(b: &[u8]) -> Value {
        if b.len() <= 20 {
            if let Some(n) = super::member::canonical_int(b) {
                return Value::Int(n);
            }
        }
        Value::Str(SmallBuf::new(b))
    }

    pub fn kind(&self) -> Kind {
        match self {
            Value::Str(_) | Value::Int(_) | Value::Raw(_) => Kind::String,
            Value::List(_) => Kind::List,
            Value::HashPacked(_) | Value::HashTable(_) => Kind::Hash,
            Value::SetInts(_) | Value::SetPacked(_) | Value::SetTable(_) => Kind::Set,
            Value::ZSet(_) => Kind::ZSet,
            Value::Stream(_) => Kind::Stream,
        }
    }

    /// The string form of a string value, formatted into `scratch` for integers.
    pub fn str_bytes<'a>(&'a self, scratch: &'a mut itoa::Buffer) -> Option<&'a [u8]> {
        match self {
            Value::Str(s) => Some(s.as_bytes()),
            Value::Int(n) => Some(scratch.format(*n).as_bytes()),
            Value::Raw(v) => Some(v),
            _ => None,
        }
    }

    /// Turns a string value into its growable form and returns its bytes,
    /// for in-place modification.
    pub fn make_raw(&mut self) -> &mut Vec<u8> {
        if !matches!(self, Value::Raw(_)) {
            let mut b = itoa::Buffer::new();
            let cur = self.str_bytes(&mut b).unwrap_or_default();
            let mut v = Vec::with_capacity(cur.len() * 2);
            v.extend_from_slice(cur);
            *self = Value::Raw(Box::new(v));
        }
        match self {
            Value::Raw(v) => v,
            _ => unreachable!("converted above"),
        }
    }

    /// Heap bytes of the value. Elements' own allocations are summed over
    /// the first `samples` elements and scaled to the whole, as Redis's
    /// MEMORY USAGE estimates (0: all of them, exact).
    pub fn heap_size(&self, samples: usize) -> usize {
        match self {
            Value::Str(s) => s.heap_size(),
            Value::Int(_) => 0,
            Value::Raw(v) => std::mem::size_of::<Vec<u8>>() + v.capacity(),
            Value::List(l) => l.heap_size(),
            Value::HashPacked(_) | Value::HashTable(_) => {
                Hash::of(self).map_or(0, |h| h.heap_size(samples))
            }
            Value::SetInts(_) | Value::SetPacked(_) | Value::SetTable(_) => {
                Set::of(self).map_or(0, |s| s.heap_size(samples))
            }
            Value::ZSet(z) => std::mem::size_of::<ZSet>() + z.heap_size(samples),
            Value::Stream(s) => std::mem::size_of::<Stream>() + s.heap_size(),
        }
    }
}

/// The sum of `sizes` (one per element, `len` of them), or of the first
/// `samples` scaled to `len` when that is fewer (0: all).
pub fn sampled(sizes: impl Iterator<Item = usize>, len: usize, samples: usize) -> usize {
    if samples == 0 || len <= samples {
        sizes.sum()
    } else {
        sizes.take(samples).sum::<usize>() * len / samples
    }
}

/// The collection types, for code generic over them (lookups that check
/// the type, creating a key on first write, deleting it once empty).
pub trait Collection: Default + Sized {
    const KIND: Kind;
    fn of(v: &mut Value) -> Option<&mut Self>;
    fn into_value(self) -> Value;
    /// Elements (LLEN, HLEN, SCARD, ZCARD); 0 means the key must go.
    fn count(&self) -> usize;
}

macro_rules! collection {
    ($ty:ty, $variant:ident, $kind:ident) => {
        impl Collection for $ty {
            const KIND: Kind = Kind::$kind;
            fn of(v: &mut Value) -> Option<&mut Self> {
                match v {
                    Value::$variant(c) => Some(c),
                    _ => None,
                }
            }
            fn into_value(self) -> Value {
                Value::$variant(Box::new(self))
            }
            fn count(&self) -> usize {
                self.len()
            }
        }
    };
}

collection!(List, List, List);
collection!(ZSet, ZSet, ZSet);
// A stream's count is its length, but an empty stream stays a key: stream
// commands never call `remove_if_empty`.
collection!(Stream, Stream, Stream);

impl Collection for Hash {
    const KIND: Kind = Kind::Hash;
    fn of(v: &mut Value) -> Option<&mut Self> {
        Hash::of_mut(v)
    }
    fn into_value(self) -> Value {
        Hash::into_value(self)
    }
    fn count(&self) -> usize {
        self.len()
    }
}

impl Collection for Set {
    const KIND: Kind = Kind::Set;
    fn of(v: &mut Value) -> Option<&mut Self> {
        Set::of_mut(v)
    }
    fn into_value(self) -> Value {
        Set::into_value(self)
    }
    fn count(&self) -> usize {
        self.len()
    }
}

/// One key of a slot table.
#[derive(Clone, Debug)]
pub struct Node {
    pub key: SmallBuf,
    pub value: Value,
    /// Absolute expiry in Unix milliseconds; 0 means no expiry.
    pub expire_at: i64,
    /// Last access, in Unix seconds (the LRU clock behind OBJECT IDLETIME).
    pub access: u32,
    /// The LFU counter (see `evict`); in the node's padding, so free.
    pub freq: u8,
    /// The minute (mod 2^16) the LFU counter last decayed.
    pub ldt: u16,
}

impl Node {
    pub fn new(key: &[u8], value: Value, now_ms: i64) -> Box<Node> {
        Box::new(Node {
            key: SmallBuf::new(key),
            value,
            expire_at: 0,
            access: (now_ms / 1000) as u32,
            freq: super::evict::LFU_INIT_VAL,
            ldt: super::evict::minutes(now_ms),
        })
    }

    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expire_at != 0 && self.expire_at <= now_ms
    }

    /// OBJECT ENCODING's answer.
    pub fn encoding(&self) -> &'static str {
        match &self.value {
            Value::Int(_) => "int",
            Value::Str(s) if s.len() <= 44 => "embstr",
            Value::Str(_) | Value::Raw(_) => "raw",
            Value::List(_) => "quicklist",
            Value::HashPacked(_) => "listpack",
            Value::HashTable(_) => "hashtable",
            Value::SetInts(_) | Value::SetPacked(_) | Value::SetTable(_) => {
                Set::of(&self.value).map_or("", Set::encoding)
            }
            Value::ZSet(z) => z.encoding(),
            Value::Stream(_) => "stream",
        }
    }

    /// Allocated bytes for this key, as MEMORY USAGE reports them, with
    /// elements sampled as [`Value::heap_size`] says.
    pub fn memory_usage(&self, samples: usize) -> usize {
        std::mem::size_of::<Node>() + 8 + self.key.heap_size() + self.value.heap_size(samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_is_one_64_byte_allocation() {
        assert_eq!(std::mem::size_of::<SmallBuf>(), 24);
        assert_eq!(std::mem::size_of::<Value>(), 24);
        assert!(std::mem::size_of::<Node>() <= 64);
    }

    #[test]
    fn integer_encoding_only_for_canonical_integers() {
        assert!(matches!(Value::string(b"123"), Value::Int(123)));
        assert!(matches!(Value::string(b"0123"), Value::Str(_)));
        assert!(matches!(
            Value::string(b"12345678901234567890123"),
            Value::Str(_)
        ));
    }
}
