//! Set values: unordered collections of distinct byte strings.
//!
//! Like hashes, a set starts [`Packed`] and becomes a hash table past
//! `set-max-listpack-entries` members or a member longer than
//! `set-max-listpack-value` bytes, and never turns back.

use ref_cast::RefCast;

use super::packed::{self, Packed};
use super::table::{draw, hash_key, Buckets};
use super::value::{sampled, SmallBuf, Value};
use super::Limits;

/// A set, seen through the key's `Value` (`SetPacked` or `SetTable`), as
/// `Hash` is: a small set is one allocation the node points at.
#[derive(Clone, Debug, RefCast)]
#[repr(transparent)]
pub struct Set(Value);

impl Default for Set {
    fn default() -> Self {
        Set(Value::SetPacked(Packed::default()))
    }
}

pub enum Iter<'a> {
    Packed(packed::Iter<'a>),
    Table(hashbrown::hash_table::Iter<'a, SmallBuf>),
}

/// See [`Set::probe`].
pub enum Probe<'a> {
    Set(&'a Set),
    Indexed(packed::Index<'a>),
}

impl Probe<'_> {
    pub fn contains(&self, m: &[u8]) -> bool {
        match self {
            Probe::Set(s) => s.contains(m),
            Probe::Indexed(idx) => idx.get(m).is_some(),
        }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            Iter::Packed(it) => it.next(),
            Iter::Table(it) => it.next().map(SmallBuf::as_bytes),
        }
    }
}

impl Set {
    pub fn of(v: &Value) -> Option<&Set> {
        matches!(v, Value::SetPacked(_) | Value::SetTable(_)).then(|| Set::ref_cast(v))
    }

    pub fn of_mut(v: &mut Value) -> Option<&mut Set> {
        if matches!(v, Value::SetPacked(_) | Value::SetTable(_)) {
            Some(Set::ref_cast_mut(v))
        } else {
            None
        }
    }

    pub fn into_value(self) -> Value {
        self.0
    }

    /// The hash table of a large set (None while compactly encoded).
    pub fn table(&self) -> Option<&Buckets<SmallBuf>> {
        match &self.0 {
            Value::SetTable(t) => Some(t),
            _ => None,
        }
    }

    fn packed(&self) -> &Packed {
        match &self.0 {
            Value::SetPacked(p) => p,
            _ => unreachable!("a Set wraps a set value"),
        }
    }

    pub fn len(&self) -> usize {
        match self.table() {
            Some(t) => t.len(),
            None => self.packed().len(),
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

    pub fn contains(&self, m: &[u8]) -> bool {
        match self.table() {
            Some(t) => t.find(hash_key(m), |e| e.as_bytes() == m).is_some(),
            None => self.packed().find(m, 1).is_some(),
        }
    }

    /// `n` members drawn at random: `distinct` ones (at most the set's
    /// size) or with repeats (see [`draw`]).
    pub fn random_members(&self, n: usize, distinct: bool, rng: &mut impl rand::Rng) -> Vec<&[u8]> {
        let table = self.table().map(|t| &**t);
        draw(
            table,
            SmallBuf::as_bytes,
            || self.iter().collect(),
            |m| *m,
            n,
            distinct,
            rng,
        )
    }

    /// Adds a member; returns whether it is new.
    pub fn insert(&mut self, m: &[u8], limits: Limits) -> bool {
        if let Value::SetPacked(p) = &mut self.0 {
            if p.find(m, 1).is_some() {
                return false;
            }
            if p.len() < limits.entries && m.len() <= limits.value {
                p.push(m);
                return true;
            }
            self.convert(1);
        }
        let Value::SetTable(t) = &mut self.0 else {
            unreachable!("converted above")
        };
        match t.entry(
            hash_key(m),
            |e| e.as_bytes() == m,
            |e| hash_key(e.as_bytes()),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(SmallBuf::new(m));
                true
            }
        }
    }

    /// Adds members; returns how many were new. Many members into a
    /// compact set are looked up through one [`packed::Index`] and
    /// appended at once.
    pub fn insert_all<B: AsRef<[u8]>>(&mut self, ms: &[B], limits: Limits) -> usize {
        if let Value::SetPacked(p) = &mut self.0 {
            if p.worth_indexing(ms.len()) {
                let fresh: Vec<&[u8]> = {
                    let mut idx = p.index(1);
                    // A tag of its own marks a member as new (first seen here).
                    let mut i = usize::MAX;
                    ms.iter()
                        .map(AsRef::as_ref)
                        .filter(|m| {
                            i -= 1;
                            idx.get_or_insert(m, i) == i
                        })
                        .collect()
                };
                if p.len() + fresh.len() <= limits.entries
                    && fresh.iter().all(|m| m.len() <= limits.value)
                {
                    p.push_all(fresh.iter().copied());
                } else {
                    self.convert(fresh.len());
                    fresh.iter().for_each(|m| {
                        self.insert(m, limits);
                    });
                }
                return fresh.len();
            }
        }
        ms.iter()
            .filter(|m| self.insert(m.as_ref(), limits))
            .count()
    }

    /// Removes members; returns how many were there.
    pub fn remove_all<B: AsRef<[u8]>>(&mut self, ms: &[B]) -> usize {
        if let Value::SetPacked(p) = &mut self.0 {
            if p.worth_indexing(ms.len()) {
                return p.remove_each(ms, 1);
            }
        }
        ms.iter().filter(|m| self.remove(m.as_ref())).count()
    }

    /// Whether each of `ms` is a member.
    pub fn contains_each<B: AsRef<[u8]>>(&self, ms: &[B]) -> Vec<bool> {
        let probe = self.probe(ms.len());
        ms.iter().map(|m| probe.contains(m.as_ref())).collect()
    }

    /// The set, ready to be asked about `asks` members: a compact set is
    /// hashed once into a [`packed::Index`] when the asks would otherwise
    /// scan it whole each time (SINTER of two sets of 100 ran at 0.24 of
    /// Redis's rate).
    pub fn probe(&self, asks: usize) -> Probe<'_> {
        match &self.0 {
            Value::SetPacked(p) if p.worth_indexing(asks) => Probe::Indexed(p.index(1)),
            _ => Probe::Set(self),
        }
    }

    pub fn remove(&mut self, m: &[u8]) -> bool {
        match &mut self.0 {
            Value::SetTable(t) => t
                .remove(
                    hash_key(m),
                    |e| e.as_bytes() == m,
                    |e| hash_key(e.as_bytes()),
                )
                .is_some(),
            Value::SetPacked(p) => match p.find(m, 1) {
                Some(off) => {
                    p.remove_at(off, 1);
                    true
                }
                None => false,
            },
            _ => unreachable!("a Set wraps a set value"),
        }
    }

    /// Turns a compact set into a table with room for `more` members.
    fn convert(&mut self, more: usize) {
        let mut t = Buckets::with_capacity(self.len() + more);
        for m in self.iter() {
            t.insert_unique(hash_key(m), SmallBuf::new(m), |e| hash_key(e.as_bytes()));
        }
        self.0 = Value::SetTable(Box::new(t));
    }

    /// Builds a set from members (the *STORE commands' results).
    pub fn from_members<'a>(members: impl IntoIterator<Item = &'a [u8]>, limits: Limits) -> Set {
        let members: Vec<&[u8]> = members.into_iter().collect();
        let mut s = Set::default();
        s.insert_all(&members, limits);
        s
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
                std::mem::size_of::<Buckets<SmallBuf>>()
                    + t.capacity() * (std::mem::size_of::<SmallBuf>() + 1)
                    + sampled(t.iter().map(SmallBuf::heap_size), t.len(), samples)
            }
            None => self.packed().heap_size(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_distinct_across_conversion() {
        let limits = Limits {
            entries: 2,
            value: 64,
        };
        let mut s = Set::default();
        assert!(s.insert(b"a", limits));
        assert!(!s.insert(b"a", limits));
        assert!(s.insert(b"b", limits));
        assert!(s.insert(b"c", limits));
        assert_eq!(s.encoding(), "hashtable");
        assert!(!s.insert(b"b", limits));
        assert_eq!(s.len(), 3);
        assert!(s.contains(b"c") && s.remove(b"c") && !s.contains(b"c"));
    }
}
