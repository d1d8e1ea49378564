//! Hash values: field → value maps.
//!
//! A hash starts [`Packed`] (fields and values alternating, in insertion
//! order) and turns into a hash table once it holds more than
//! `hash-max-listpack-entries` fields or any field or value longer than
//! `hash-max-listpack-value` bytes. It never turns back, as in Redis: a
//! hash that was once large is likely to be large again.

use hashbrown::HashTable;

use super::packed::{self, Packed};
use super::table::hash_key;
use super::value::SmallBuf;
use super::Limits;

#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub field: SmallBuf,
    pub value: SmallBuf,
}

#[derive(Clone, Debug)]
pub enum Hash {
    Packed(Packed),
    Table(HashTable<Pair>),
}

impl Default for Hash {
    fn default() -> Self {
        Hash::Packed(Packed::default())
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
    pub fn len(&self) -> usize {
        match self {
            Hash::Packed(p) => p.len() / 2,
            Hash::Table(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> Iter<'_> {
        match self {
            Hash::Packed(p) => Iter::Packed(p.iter()),
            Hash::Table(t) => Iter::Table(t.iter()),
        }
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match self {
            Hash::Packed(p) => p.find(field, 2).map(|off| p.at(p.at(off).1).0),
            Hash::Table(t) => t
                .find(hash_key(field), |p| p.field.as_bytes() == field)
                .map(|p| p.value.as_bytes()),
        }
    }

    /// Sets a field; returns whether it is new.
    pub fn insert(&mut self, field: &[u8], value: &[u8], limits: Limits) -> bool {
        if let Hash::Packed(p) = self {
            if let Some(off) = p.find(field, 2) {
                if value.len() <= limits.value {
                    let voff = p.at(off).1;
                    p.replace_at(voff, value);
                    return false;
                }
            } else if p.len() / 2 < limits.entries
                && field.len() <= limits.value
                && value.len() <= limits.value
            {
                p.push(field);
                p.push(value);
                return true;
            }
            self.convert();
        }
        let Hash::Table(t) = self else {
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

    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            Hash::Packed(p) => match p.find(field, 2) {
                Some(off) => {
                    p.remove_at(off, 2);
                    true
                }
                None => false,
            },
            Hash::Table(t) => {
                match t.find_entry(hash_key(field), |p| p.field.as_bytes() == field) {
                    Ok(e) => {
                        e.remove();
                        true
                    }
                    Err(_) => false,
                }
            }
        }
    }

    fn convert(&mut self) {
        let mut t = HashTable::with_capacity(self.len() + 1);
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
        *self = Hash::Table(t);
    }

    /// The field at a position of iteration order (HRANDFIELD's sampling).
    pub fn nth(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.iter().nth(i)
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            Hash::Packed(_) => "listpack",
            Hash::Table(_) => "hashtable",
        }
    }

    pub fn heap_size(&self) -> usize {
        match self {
            Hash::Packed(p) => p.heap_size(),
            Hash::Table(t) => {
                t.capacity() * (std::mem::size_of::<Pair>() + 1)
                    + t.iter()
                        .map(|p| p.field.heap_size() + p.value.heap_size())
                        .sum::<usize>()
            }
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
        assert!(matches!(h, Hash::Packed(_)));
        assert!(!h.insert(b"f0", b"new", SMALL));
        assert!(h.insert(b"f4", b"v", SMALL));
        assert!(matches!(h, Hash::Table(_)));
        assert_eq!(h.len(), 5);
        assert_eq!(h.get(b"f0"), Some(&b"new"[..]));
        let mut h2 = Hash::default();
        h2.insert(b"f", b"a value longer than eight", SMALL);
        assert_eq!(h2.encoding(), "hashtable");
        assert!(h.remove(b"f1") && !h.remove(b"f1"));
        assert_eq!(h.len(), 4);
    }
}
