//! DEBUG DIGEST and DEBUG DIGEST-VALUE: an order-independent fingerprint of a
//! dataset, computed exactly as Redis computes it, so that any two nodes
//! (Shoal or Redis) holding the same data give the same 40 hex digits.
//!
//! ```text
//!  key digest  = mix(0, key) ; mix(., type as u32 BE) ; mix(., value) ; xor "!!expire!!" if volatile
//!  db part     = mix(final, db index as u32 BE) once per non-empty db
//!  final       = xor(final, key digest), for every key (so order does not matter)
//!  xor(d, x)   = d ^= SHA1(x)        mix(d, x) = d = SHA1(xor(d, x))
//!
//!  value:  string  mix(d, bytes)
//!          list    mix(d, element) for each, head to tail (order matters)
//!          set     xor(d, member) for each (order does not)
//!          hash    xor(d, mix(mix(0, field), value)) for each
//!          zset    xor(d, mix(mix(0, member), score as "%.17g")) for each
//!          stream  mix(d, "ms.seq") then mix(d, field), mix(d, value), entry by entry
//! ```

use sha1::{Digest as _, Sha1};

use crate::keyspace::stream::StreamId;
use crate::keyspace::{Hash, Kind, Node, Set, Value};
use crate::protocol::reply::format_double;

pub type Digest = [u8; 20];

fn xor(digest: &mut Digest, data: &[u8]) {
    let hash = Sha1::digest(data);
    for (d, h) in digest.iter_mut().zip(hash.iter()) {
        *d ^= h;
    }
}

fn mix(digest: &mut Digest, data: &[u8]) {
    xor(digest, data);
    let hash = Sha1::digest(&digest[..]);
    digest.copy_from_slice(&hash);
}

/// Redis's type numbers (`OBJ_STRING` = 0, ...), which enter the digest.
fn type_code(kind: Kind) -> u32 {
    match kind {
        Kind::String => 0,
        Kind::List => 1,
        Kind::Set => 2,
        Kind::ZSet => 3,
        Kind::Hash => 4,
        Kind::Stream => 6,
    }
}

/// Mixes a value's type, contents and whether it expires into `d`
/// (Redis's `xorObjectDigest`).
fn mix_object(d: &mut Digest, node: &Node) {
    mix(d, &type_code(node.value.kind()).to_be_bytes());
    let pair = |a: &[u8], b: &[u8]| {
        let mut e = [0u8; 20];
        mix(&mut e, a);
        mix(&mut e, b);
        e
    };
    match &node.value {
        Value::List(l) => l.iter().for_each(|e| mix(d, &e)),
        v @ (Value::SetInts(_) | Value::SetPacked(_) | Value::SetTable(_)) => Set::of(v)
            .into_iter()
            .flat_map(Set::iter)
            .for_each(|m| xor(d, &m)),
        v @ (Value::HashPacked(_) | Value::HashTable(_)) => Hash::of(v)
            .into_iter()
            .flat_map(Hash::iter)
            .for_each(|(f, v)| xor(d, &pair(f, v))),
        Value::ZSet(z) => z.iter().for_each(|e| {
            xor(
                d,
                &pair(e.member.as_bytes(), format_double(e.score).as_bytes()),
            )
        }),
        // Entries in order, each as its ID ("ms.seq") then its fields and
        // values; groups do not enter Redis's digest.
        Value::Stream(s) => {
            for (id, e) in s.range(StreamId::MIN, StreamId::MAX, false) {
                mix(d, format!("{}.{}", id.ms, id.seq).as_bytes());
                e.items().for_each(|item| mix(d, item));
            }
        }
        string => {
            let mut scratch = itoa::Buffer::new();
            mix(d, string.str_bytes(&mut scratch).unwrap_or_default());
        }
    }
    if node.expire_at != 0 {
        xor(d, b"!!expire!!");
    }
}

/// The digest of one key's value and expiry (DEBUG DIGEST-VALUE).
pub fn value_digest(node: &Node) -> Digest {
    let mut d = [0u8; 20];
    mix_object(&mut d, node);
    d
}

/// Accumulates a whole dataset's digest (DEBUG DIGEST).
#[derive(Default)]
pub struct DatasetDigest {
    digest: Digest,
}

impl DatasetDigest {
    /// Call once per non-empty database, before its keys.
    pub fn begin_db(&mut self, db: usize) {
        mix(&mut self.digest, &(db as u32).to_be_bytes());
    }

    pub fn add(&mut self, node: &Node) {
        let mut d = [0u8; 20];
        mix(&mut d, node.key.as_bytes());
        mix_object(&mut d, node);
        // Redis's xorDigest hashes what it folds in: final ^= SHA1(key digest).
        xor(&mut self.digest, &d);
    }

    pub fn finish(&self) -> Digest {
        self.digest
    }
}

/// Bytes in lower-case hexadecimal (a digest as DEBUG DIGEST shows it).
pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}
