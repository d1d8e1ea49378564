//! Hash values: field → value maps.
//!
//! A hash starts [`Packed`] (fields and values alternating, in insertion
//! order) and turns into a hash table once it holds more than
//! `hash-max-listpack-entries` fields or any field or value longer than
//! `hash-max-listpack-value` bytes; as in Redis the count is checked on
//! every field set, an update included, so a limit lowered by CONFIG SET
//! reaches a hash at its next write. It never turns back, as in Redis: a
//! hash that was once large is likely to be large again.

use ref_cast::RefCast;

use super::packed::{self, Packed};
use super::table::{draw, hash_key, Buckets};
use super::value::{sampled, SmallBuf, Value};
use super::Limits;

#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub field: SmallBuf,
    pub value: SmallBuf,
}

/// A hash, seen through the key's `Value`: `Value::HashPacked` (one
/// allocation: the node points straight at the packed bytes) or
/// `Value::HashTable`. Being the value itself, it can switch encodings in
/// place.
#[derive(Clone, Debug, RefCast)]
#[repr(transparent)]
pub struct Hash(Value);

impl Default for Hash {
    fn default() -> Self {
        Hash(Value::HashPacked(Packed::default()))
    }
}

pub enum Iter<'a> {
    Packed(packed::Iter<'a>),
    Table(hashbrown::hash_table::Iter<'a, Pair>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Packed(it) => Some((it.next()?, it.next()?)),
            Iter::Table(it) => it.next().map(|p| (p.field.as_bytes(), p.value.as_bytes())),
        }
    }
}

impl Hash {
    /// The hash a value is, if it is one.
    pub fn of(v: &Value) -> Option<&Hash> {
        matches!(v, Value::HashPacked(_) | Value::HashTable(_)).then(|| Hash::ref_cast(v))
    }

    pub fn of_mut(v: &mut Value) -> Option<&mut Hash> {
        if matches!(v, Value::HashPacked(_) | Value::HashTable(_)) {
            Some(Hash::ref_cast_mut(v))
        } else {
            None
        }
    }

    pub fn into_value(self) -> Value {
        self.0
    }

    /// The hash table of a large hash (None while compactly encoded).
    pub fn table(&self) -> Option<&Buckets<Pair>> {
        match &self.0 {
            Value::HashTable(t) => Some(t),
            _ => None,
        }
    }

    fn packed(&self) -> &Packed {
        match &self.0 {
            Value::HashPacked(p) => p,
            _ => unreachable!("a Hash wraps a hash value"),
        }
    }

    pub fn len(&self) -> usize {
        match self.table() {
            Some(t) => t.len(),
            None => self.packed().len() / 2,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> Iter<'_> {
        match self.table() {
            Some(t) => Iter::Table(t.iter()),
            None => Iter::Packed(self.packed().iter()),
        }
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match self.table() {
            Some(t) => t
                .find(hash_key(field), |p| p.field.as_bytes() == field)
                .map(|p| p.value.as_bytes()),
            None => {
                let p = self.packed();
                p.find(field, 2).map(|off| p.at(p.at(off).1).0)
            }
        }
    }

    /// Sets a field; returns whether it is new.
    pub fn insert(&mut self, field: &[u8], value: &[u8], limits: Limits) -> bool {
        if let Value::HashPacked(p) = &mut self.0 {
            // Redis checks both lengths and the count at every set, an
            // update included: a hash left past a since lowered limit
            // turns into a table at its next write.
            let short = field.len() <= limits.value && value.len() <= limits.value;
            if let Some(off) = p.find(field, 2) {
                if short && p.len() / 2 <= limits.entries {
                    let voff = p.at(off).1;
                    p.replace_at(voff, value);
                    return false;
                }
            } else if short && p.len() / 2 < limits.entries {
                p.push_all([field, value]);
                return true;
            }
            self.convert();
        }
        let Value::HashTable(t) = &mut self.0 else {
            unreachable!("converted above")
        };
        match t.entry(
            hash_key(field),
            |p| p.field.as_bytes() == field,
            |p| hash_key(p.field.as_bytes()),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut e) => {
                e.get_mut().value = SmallBuf::new(value);
                false
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(Pair {
                    field: SmallBuf::new(field),
                    value: SmallBuf::new(value),
                });
                true
            }
        }
    }

    /// Sets fields from `pairs` (field, value, field, value, ...); returns
    /// how many fields are new. Many pairs into a compact hash are looked
    /// up through one [`packed::Index`] and written with one rewrite.
    pub fn insert_all<B: AsRef<[u8]>>(&mut self, pairs: &[B], limits: Limits) -> usize {
        if let Value::HashPacked(p) = &mut self.0 {
            if p.worth_indexing(pairs.len() / 2) {
                // Values over existing ones, by the value's offset; new
                // pairs in the order first seen, with their last value.
                let mut replace: Vec<(usize, &[u8])> = Vec::new();
                let mut fresh: Vec<[&[u8]; 2]> = Vec::new();
                let mut fits = true;
                {
                    let mut idx = p.index(2);
                    for fv in pairs.chunks_exact(2) {
                        let (f, v) = (fv[0].as_ref(), fv[1].as_ref());
                        fits &= f.len() <= limits.value && v.len() <= limits.value;
                        // Tags above any offset name new pairs.
                        let tag = usize::MAX - fresh.len();
                        match idx.get_or_insert(f, tag) {
                            t if t == tag => fresh.push([f, v]),
                            t if t > usize::MAX / 2 => fresh[usize::MAX - t][1] = v,
                            off => replace.push((p.at(off).1, v)),
                        }
                    }
                }
                if fits && p.len() / 2 + fresh.len() <= limits.entries {
                    // The last value given for a field is the one it keeps.
                    replace.reverse();
                    replace.sort_by_key(|&(off, _)| off);
                    replace.dedup_by_key(|&mut (off, _)| off);
                    p.rewrite(&replace, fresh.iter().flatten().copied());
                    return fresh.len();
                }
                self.convert();
            }
        }
        pairs
            .chunks_exact(2)
            .filter(|fv| self.insert(fv[0].as_ref(), fv[1].as_ref(), limits))
            .count()
    }

    /// Removes fields; returns how many were there.
    pub fn remove_all<B: AsRef<[u8]>>(&mut self, fields: &[B]) -> usize {
        if let Value::HashPacked(p) = &mut self.0 {
            if p.worth_indexing(fields.len()) {
                return p.remove_each(fields, 2);
            }
        }
        fields.iter().filter(|f| self.remove(f.as_ref())).count()
    }

    /// The value of each of `fields`.
    pub fn get_each<B: AsRef<[u8]>>(&self, fields: &[B]) -> Vec<Option<&[u8]>> {
        match &self.0 {
            Value::HashPacked(p) if p.worth_indexing(fields.len()) => {
                let idx = p.index(2);
                fields
                    .iter()
                    .map(|f| idx.get(f.as_ref()).map(|off| p.at(p.at(off).1).0))
                    .collect()
            }
            _ => fields.iter().map(|f| self.get(f.as_ref())).collect(),
        }
    }

    pub fn remove(&mut self, field: &[u8]) -> bool {
        match &mut self.0 {
            Value::HashTable(t) => t
                .remove(
                    hash_key(field),
                    |p| p.field.as_bytes() == field,
                    |p| hash_key(p.field.as_bytes()),
                )
                .is_some(),
            Value::HashPacked(p) => match p.find(field, 2) {
                Some(off) => {
                    p.remove_at(off, 2);
                    true
                }
                None => false,
            },
            _ => unreachable!("a Hash wraps a hash value"),
        }
    }

    fn convert(&mut self) {
        let mut t = Buckets::with_capacity(self.len() + 1);
        for (f, v) in self.iter() {
            t.insert_unique(
                hash_key(f),
                Pair {
                    field: SmallBuf::new(f),
                    value: SmallBuf::new(v),
                },
                |p| hash_key(p.field.as_bytes()),
            );
        }
        self.0 = Value::HashTable(Box::new(t));
    }

    /// `n` fields with their values drawn at random: `distinct` ones (at
    /// most the hash's size) or with repeats (see [`draw`]).
    pub fn random_pairs<'a>(
        &'a self,
        n: usize,
        distinct: bool,
        rng: &mut impl rand::Rng,
    ) -> Vec<(&'a [u8], &'a [u8])> {
        let table = self.table().map(|t| &**t);
        let all = || self.iter().collect();
        let pair = |p: &'a Pair| (p.field.as_bytes(), p.value.as_bytes());
        draw(table, pair, all, |p| p.0, n, distinct, rng)
    }

    pub fn encoding(&self) -> &'static str {
        match self.table() {
            Some(_) => "hashtable",
            None => "listpack",
        }
    }

    pub fn heap_size(&self, samples: usize) -> usize {
        match self.table() {
            Some(t) => {
                let each = t.iter().map(|p| p.field.heap_size() + p.value.heap_size());
                std::mem::size_of::<Buckets<Pair>>()
                    + t.capacity() * (std::mem::size_of::<Pair>() + 1)
                    + sampled(each, t.len(), samples)
            }
            None => self.packed().heap_size(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limits = Limits {
        entries: 4,
        value: 8,
    };

    #[test]
    fn converts_past_the_limits_and_keeps_contents() {
        let mut h = Hash::default();
        for i in 0..4 {
            assert!(h.insert(format!("f{i}").as_bytes(), b"v", SMALL));
        }
        assert_eq!(h.encoding(), "listpack");
        assert!(!h.insert(b"f0", b"new", SMALL));
        assert!(h.insert(b"f4", b"v", SMALL));
        assert_eq!(h.encoding(), "hashtable");
        assert_eq!(h.len(), 5);
        assert_eq!(h.get(b"f0"), Some(&b"new"[..]));
        let mut h2 = Hash::default();
        h2.insert(b"f", b"a value longer than eight", SMALL);
        assert_eq!(h2.encoding(), "hashtable");
        assert!(h.remove(b"f1") && !h.remove(b"f1"));
        assert_eq!(h.len(), 4);
    }
}
