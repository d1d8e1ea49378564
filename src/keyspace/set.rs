//! Set values: unordered collections of distinct byte strings.
//!
//! A set takes its encoding from its first member and the number of
//! members its first command brings, as Redis creates sets: an
//! [`IntSet`] while every member is a canonical 64-bit integer and there
//! are at most `set-max-intset-entries` of them; otherwise [`Packed`]
//! while there are at most `set-max-listpack-entries` members of at most
//! `set-max-listpack-value` bytes; otherwise a hash table. It moves along
//! that order as it grows (an intset given a non-integer becomes a
//! listpack if it would stay within the listpack's limits) and never
//! moves back.

use ref_cast::RefCast;

use super::intset::IntSet;
use super::member::canonical_int as as_int;
pub use super::member::Member;
use super::packed::{self, Packed};
use super::table::{draw, hash_key, positions, Buckets};
use super::value::{sampled, SmallBuf, Value};
use super::SetLimits;

/// A set, seen through the key's `Value` (`SetInts`, `SetPacked` or
/// `SetTable`), as `Hash` is: a small set is one allocation the node
/// points at.
#[derive(Clone, Debug, RefCast)]
#[repr(transparent)]
pub struct Set(Value);

impl Default for Set {
    fn default() -> Self {
        Set(Value::SetPacked(Packed::default()))
    }
}

pub enum Iter<'a> {
    Ints(&'a IntSet, usize),
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

    /// [`Probe::contains`] for a member of another set.
    pub fn contains_member(&self, m: &Member) -> bool {
        match self {
            Probe::Set(s) => s.contains_member(m),
            Probe::Indexed(idx) => idx.get(m).is_some(),
        }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = Member<'a>;

    #[inline]
    fn next(&mut self) -> Option<Member<'a>> {
        match self {
            Iter::Ints(s, i) => (*i < s.len()).then(|| {
                *i += 1;
                Member::int(s.get(*i - 1))
            }),
            Iter::Packed(it) => it.next().map(Member::Bytes),
            Iter::Table(it) => it.next().map(|e| Member::Bytes(e.as_bytes())),
        }
    }
}

impl Set {
    pub fn of(v: &Value) -> Option<&Set> {
        matches!(
            v,
            Value::SetInts(_) | Value::SetPacked(_) | Value::SetTable(_)
        )
        .then(|| Set::ref_cast(v))
    }

    pub fn of_mut(v: &mut Value) -> Option<&mut Set> {
        if matches!(
            v,
            Value::SetInts(_) | Value::SetPacked(_) | Value::SetTable(_)
        ) {
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

    fn ints(&self) -> Option<&IntSet> {
        match &self.0 {
            Value::SetInts(s) => Some(s),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            Value::SetInts(s) => s.len(),
            Value::SetPacked(p) => p.len(),
            Value::SetTable(t) => t.len(),
            _ => unreachable!("a Set wraps a set value"),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The members; an intset's in ascending order, as Redis lists them.
    pub fn iter(&self) -> Iter<'_> {
        match &self.0 {
            Value::SetInts(s) => Iter::Ints(s, 0),
            Value::SetPacked(p) => Iter::Packed(p.iter()),
            Value::SetTable(t) => Iter::Table(t.iter()),
            _ => unreachable!("a Set wraps a set value"),
        }
    }

    pub fn contains(&self, m: &[u8]) -> bool {
        match &self.0 {
            Value::SetInts(s) => as_int(m).is_some_and(|v| s.contains(v)),
            Value::SetPacked(p) => p.find(m, 1).is_some(),
            Value::SetTable(t) => t.find(hash_key(m), |e| e.as_bytes() == m).is_some(),
            _ => unreachable!("a Set wraps a set value"),
        }
    }

    /// [`Set::contains`] for a member of another set: an intset's member
    /// is looked up in an intset by its value.
    pub fn contains_member(&self, m: &Member) -> bool {
        match (&self.0, m) {
            (Value::SetInts(s), Member::Int { value, .. }) => s.contains(*value),
            _ => self.contains(m),
        }
    }

    /// The members of `first` that are in every one of `others` (`keep`)
    /// or in none of them, when all are intsets (else None): merge walks
    /// over their sorted members, with no lookup and no formatting but of
    /// the result.
    pub fn merge_ints<'a>(first: &'a Set, others: &[&Set], keep: bool) -> Option<Vec<Member<'a>>> {
        let mut vals: Vec<i64> = first.ints()?.iter().collect();
        let others: Vec<&IntSet> = others.iter().map(|s| s.ints()).collect::<Option<_>>()?;
        for o in others {
            o.filter_sorted(&mut vals, keep);
        }
        Some(vals.into_iter().map(Member::int).collect())
    }

    /// `n` members drawn at random: `distinct` ones (at most the set's
    /// size) or with repeats (see [`draw`]).
    pub fn random_members(
        &self,
        n: usize,
        distinct: bool,
        rng: &mut impl rand::Rng,
    ) -> Vec<Member<'_>> {
        if let Value::SetInts(s) = &self.0 {
            // Members are reached by position: none is formatted in vain.
            return positions(s.len(), n, distinct, rng)
                .into_iter()
                .map(|i| Member::int(s.get(i)))
                .collect();
        }
        draw(
            self.table().map(|t| &**t),
            |e| Member::Bytes(e.as_bytes()),
            || self.iter().collect(),
            // Only a table's members are told apart by key, and those are
            // borrowed bytes.
            Member::borrowed,
            n,
            distinct,
            rng,
        )
    }

    /// Gives an empty set the encoding Redis would create it with, given
    /// its first member and the number of members coming.
    fn start(&mut self, first: &[u8], coming: usize, limits: SetLimits) {
        self.0 = if coming <= limits.ints && as_int(first).is_some() {
            Value::SetInts(IntSet::default())
        } else if coming <= limits.listpack.entries {
            Value::SetPacked(Packed::default())
        } else {
            Value::SetTable(Box::new(Buckets::with_capacity(coming)))
        };
    }

    /// An intset given `more` members that are not all integers, the
    /// longest `longest` bytes, becomes a listpack if it would stay
    /// within the listpack's limits, else a table.
    fn leave_ints(&mut self, more: usize, longest: usize, limits: SetLimits) {
        let Value::SetInts(s) = &self.0 else {
            return;
        };
        let l = limits.listpack;
        if s.len() + more <= l.entries && longest.max(s.longest_digits()) <= l.value {
            let members: Vec<Member> = self.iter().collect();
            let mut p = Packed::default();
            p.push_all(members.iter().map(|m| &**m));
            self.0 = Value::SetPacked(p);
        } else {
            self.convert(more);
        }
    }

    /// Adds a member; returns whether it is new.
    pub fn insert(&mut self, m: &[u8], limits: SetLimits) -> bool {
        if self.is_empty() {
            self.start(m, 1, limits);
        }
        if let Value::SetInts(s) = &mut self.0 {
            match as_int(m) {
                Some(v) => {
                    if !s.insert(v) {
                        return false;
                    }
                    if s.len() > limits.ints {
                        self.convert(0);
                    }
                    return true;
                }
                None => self.leave_ints(1, m.len(), limits),
            }
        }
        if let Value::SetPacked(p) = &mut self.0 {
            if p.find(m, 1).is_some() {
                return false;
            }
            if p.len() < limits.listpack.entries && m.len() <= limits.listpack.value {
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

    /// Adds members; returns how many were new. Integers into an intset
    /// are merged in one pass; many members into a compact set are looked
    /// up through one [`packed::Index`] and appended at once.
    pub fn insert_all<B: AsRef<[u8]>>(&mut self, ms: &[B], limits: SetLimits) -> usize {
        let Some(first) = ms.first() else {
            return 0;
        };
        if self.is_empty() {
            self.start(first.as_ref(), ms.len(), limits);
        }
        if let Value::SetInts(s) = &mut self.0 {
            if ms.len() == 1 {
                return usize::from(self.insert(first.as_ref(), limits));
            }
            let ints: Option<Vec<i64>> = ms.iter().map(|m| as_int(m.as_ref())).collect();
            if let Some(mut ints) = ints {
                let added = s.insert_all(&mut ints);
                if s.len() > limits.ints {
                    self.convert(0);
                }
                return added;
            }
            // What the intset must make room for: the new members.
            let mut fresh: Vec<&[u8]> = ms
                .iter()
                .map(AsRef::as_ref)
                .filter(|m| !as_int(m).is_some_and(|v| s.contains(v)))
                .collect();
            fresh.sort_unstable();
            fresh.dedup();
            let longest = fresh.iter().map(|m| m.len()).max().unwrap_or(0);
            self.leave_ints(fresh.len(), longest, limits);
        }
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
                let l = limits.listpack;
                if p.len() + fresh.len() <= l.entries && fresh.iter().all(|m| m.len() <= l.value) {
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
        match &mut self.0 {
            Value::SetInts(s) if ms.len() > 1 => {
                let mut ints: Vec<i64> = ms.iter().filter_map(|m| as_int(m.as_ref())).collect();
                s.remove_all(&mut ints)
            }
            Value::SetPacked(p) if p.worth_indexing(ms.len()) => p.remove_each(ms, 1),
            _ => ms.iter().filter(|m| self.remove(m.as_ref())).count(),
        }
    }

    /// Whether each of `ms` is a member.
    pub fn contains_each<B: AsRef<[u8]>>(&self, ms: &[B]) -> Vec<bool> {
        let probe = self.probe(ms.len());
        ms.iter().map(|m| probe.contains(m.as_ref())).collect()
    }

    /// The set, ready to be asked about `asks` members: a compact set is
    /// hashed once into a [`packed::Index`] when the asks would otherwise
    /// scan it whole each time (SINTER of two sets of 100 ran at 0.24 of
    /// Redis's rate). An intset answers by binary search as it is.
    pub fn probe(&self, asks: usize) -> Probe<'_> {
        match &self.0 {
            Value::SetPacked(p) if p.worth_indexing(asks) => Probe::Indexed(p.index(1)),
            _ => Probe::Set(self),
        }
    }

    pub fn remove(&mut self, m: &[u8]) -> bool {
        match &mut self.0 {
            Value::SetInts(s) => as_int(m).is_some_and(|v| s.remove(v)),
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
            t.insert_unique(hash_key(&m), SmallBuf::new(&m), |e| hash_key(e.as_bytes()));
        }
        self.0 = Value::SetTable(Box::new(t));
    }

    /// Builds a set from members (the *STORE commands' results).
    pub fn from_members<'a>(members: impl IntoIterator<Item = &'a [u8]>, limits: SetLimits) -> Set {
        let members: Vec<&[u8]> = members.into_iter().collect();
        let mut s = Set::default();
        s.insert_all(&members, limits);
        s
    }

    pub fn encoding(&self) -> &'static str {
        match &self.0 {
            Value::SetInts(_) => "intset",
            Value::SetTable(_) => "hashtable",
            _ => "listpack",
        }
    }

    pub fn heap_size(&self, samples: usize) -> usize {
        match &self.0 {
            Value::SetInts(s) => s.heap_size(),
            Value::SetTable(t) => {
                std::mem::size_of::<Buckets<SmallBuf>>()
                    + t.capacity() * (std::mem::size_of::<SmallBuf>() + 1)
                    + sampled(t.iter().map(SmallBuf::heap_size), t.len(), samples)
            }
            Value::SetPacked(p) => p.heap_size(),
            _ => unreachable!("a Set wraps a set value"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Limits;
    use super::*;

    fn limits(entries: usize, ints: usize) -> SetLimits {
        SetLimits {
            listpack: Limits { entries, value: 64 },
            ints,
        }
    }

    fn members(s: &Set) -> Vec<String> {
        s.iter()
            .map(|m| String::from_utf8(m.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn members_are_distinct_across_conversion() {
        let limits = limits(2, 512);
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

    #[test]
    fn integers_stay_an_intset_until_a_limit() {
        let l = limits(4, 5);
        let mut s = Set::default();
        assert_eq!(s.insert_all(&[&b"30"[..], b"-2", b"30", b"100000"], l), 3);
        assert_eq!(s.encoding(), "intset");
        assert_eq!(members(&s), ["-2", "30", "100000"]);
        // Not canonical: members in their own right, stored as given.
        for m in [&b"007"[..], b"+1", b"-0", b"1 ", b"9223372036854775808"] {
            assert!(!s.contains(m));
        }
        assert!(s.contains(b"-2") && !s.contains(b"2"));
        assert!(s.insert(b"a", l), "a non-integer makes a listpack");
        assert_eq!(s.encoding(), "listpack");
        assert_eq!(members(&s), ["-2", "30", "100000", "a"]);

        let mut s = Set::default();
        assert_eq!(s.insert_all(&[b"1", b"2", b"3", b"4", b"5"], l), 5);
        assert_eq!(s.encoding(), "intset");
        assert!(s.insert(b"6", l));
        assert_eq!(s.encoding(), "hashtable", "past set-max-intset-entries");

        let mut s = Set::default();
        s.insert_all(&[b"1", b"2", b"3"], l);
        assert_eq!(s.insert_all(&[&b"1"[..], b"2", b"x", b"y"], l), 2);
        assert_eq!(s.encoding(), "hashtable", "5 members pass 4");
        assert_eq!(s.len(), 5);
        assert_eq!(s.remove_all(&[&b"1"[..], b"x", b"zz"]), 2);

        let mut s = Set::default();
        s.insert(b"a", l);
        assert!(s.insert(b"1", l));
        assert_eq!(s.encoding(), "listpack", "a first non-integer");
        let mut s = Set::default();
        s.insert_all(&[b"1", b"2", b"3", b"4", b"5", b"6"], l);
        assert_eq!(s.encoding(), "hashtable", "more members than either limit");
    }

    #[test]
    fn intset_removals_and_draws() {
        let l = limits(128, 512);
        let mut s = Set::default();
        let ms: Vec<Vec<u8>> = (0..300).map(|i| (i * 7).to_string().into_bytes()).collect();
        assert_eq!(s.insert_all(&ms, l), 300);
        assert_eq!(s.encoding(), "intset");
        assert_eq!(s.remove_all(&[&b"7"[..], b"7", b"x", b"8", b"14"]), 2);
        assert!(s.remove(b"0") && !s.remove(b"0"));
        assert_eq!(s.len(), 297);
        let mut rng = rand::thread_rng();
        let picks = s.random_members(50, true, &mut rng);
        let mut distinct: Vec<&[u8]> = picks.iter().map(|m| &**m).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 50);
        assert!(picks.iter().all(|m| s.contains(m)));
        assert_eq!(s.random_members(1000, true, &mut rng).len(), 297);
    }
}
