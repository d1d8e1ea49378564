//! Set values: unordered collections of distinct byte strings.
//!
//! Like hashes, a set starts [`Packed`] and becomes a hash table past
//! `set-max-listpack-entries` members or a member longer than
//! `set-max-listpack-value` bytes, and never turns back.

use hashbrown::HashTable;

use super::packed::{self, Packed};
use super::table::hash_key;
use super::value::SmallBuf;
use super::Limits;

#[derive(Clone, Debug)]
pub enum Set {
    Packed(Packed),
    Table(HashTable<SmallBuf>),
}

impl Default for Set {
    fn default() -> Self {
        Set::Packed(Packed::default())
    }
}

pub enum Iter<'a> {
    Packed(packed::Iter<'a>),
    Table(hashbrown::hash_table::Iter<'a, SmallBuf>),
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
    pub fn len(&self) -> usize {
        match self {
            Set::Packed(p) => p.len(),
            Set::Table(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> Iter<'_> {
        match self {
            Set::Packed(p) => Iter::Packed(p.iter()),
            Set::Table(t) => Iter::Table(t.iter()),
        }
    }

    pub fn contains(&self, m: &[u8]) -> bool {
        match self {
            Set::Packed(p) => p.find(m, 1).is_some(),
            Set::Table(t) => t.find(hash_key(m), |e| e.as_bytes() == m).is_some(),
        }
    }

    /// Adds a member; returns whether it is new.
    pub fn insert(&mut self, m: &[u8], limits: Limits) -> bool {
        if let Set::Packed(p) = self {
            if p.find(m, 1).is_some() {
                return false;
            }
            if p.len() < limits.entries && m.len() <= limits.value {
                p.push(m);
                return true;
            }
            self.convert();
        }
        let Set::Table(t) = self else {
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

    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self {
            Set::Packed(p) => match p.find(m, 1) {
                Some(off) => {
                    p.remove_at(off, 1);
                    true
                }
                None => false,
            },
            Set::Table(t) => match t.find_entry(hash_key(m), |e| e.as_bytes() == m) {
                Ok(e) => {
                    e.remove();
                    true
                }
                Err(_) => false,
            },
        }
    }

    fn convert(&mut self) {
        let mut t = HashTable::with_capacity(self.len() + 1);
        for m in self.iter() {
            t.insert_unique(hash_key(m), SmallBuf::new(m), |e| hash_key(e.as_bytes()));
        }
        *self = Set::Table(t);
    }

    /// Builds a set from members (the *STORE commands' results).
    pub fn from_members<'a>(members: impl IntoIterator<Item = &'a [u8]>, limits: Limits) -> Set {
        let mut s = Set::default();
        for m in members {
            s.insert(m, limits);
        }
        s
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            Set::Packed(_) => "listpack",
            Set::Table(_) => "hashtable",
        }
    }

    pub fn heap_size(&self) -> usize {
        match self {
            Set::Packed(p) => p.heap_size(),
            Set::Table(t) => {
                t.capacity() * (std::mem::size_of::<SmallBuf>() + 1)
                    + t.iter().map(SmallBuf::heap_size).sum::<usize>()
            }
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
