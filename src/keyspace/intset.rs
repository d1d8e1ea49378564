//! [`IntSet`]: a small set of integers as one sorted array, Redis's intset.
//!
//! ```text
//!   one boxed slice:  [count: u32 LE] [width: u8] [member]...   (ascending)
//! ```
//!
//! Every member takes `width` bytes (2, 4 or 8, little-endian), the
//! smallest width that holds all of them: a set of 500 user ids costs
//! 2 KB, where a table would spend a bucket, a control byte and a buffer
//! per member (about 30 bytes each). Adding a member too wide for the
//! current width rewrites the array at the wider width; removing never
//! narrows it, as in Redis. Lookups are binary searches; adding or
//! removing one member is one exact-size reallocation and a move, as
//! Redis's realloc and memmove; many members at once are merged in one
//! pass. Members come out in ascending order, which is the order Redis
//! replies with for such sets.

const COUNT: usize = 4;
const HEAD: usize = COUNT + 1;

#[derive(Clone, PartialEq, Eq)]
pub struct IntSet(Box<[u8]>);

impl Default for IntSet {
    fn default() -> Self {
        IntSet(Box::new([0, 0, 0, 0, 2]))
    }
}

impl std::fmt::Debug for IntSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The width a member needs.
fn width_of(v: i64) -> usize {
    if i16::try_from(v).is_ok() {
        2
    } else if i32::try_from(v).is_ok() {
        4
    } else {
        8
    }
}

fn put(out: &mut [u8], width: usize, v: i64) {
    match width {
        2 => out.copy_from_slice(&(v as i16).to_le_bytes()),
        4 => out.copy_from_slice(&(v as i32).to_le_bytes()),
        _ => out.copy_from_slice(&v.to_le_bytes()),
    }
}

impl IntSet {
    pub fn len(&self) -> usize {
        u32::from_le_bytes(self.0[..COUNT].try_into().unwrap()) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn width(&self) -> usize {
        self.0[COUNT] as usize
    }

    /// The `i`th smallest member.
    #[inline]
    pub fn get(&self, i: usize) -> i64 {
        let w = self.width();
        let at = HEAD + i * w;
        let b = &self.0[at..at + w];
        match w {
            2 => i16::from_le_bytes(b.try_into().unwrap()) as i64,
            4 => i32::from_le_bytes(b.try_into().unwrap()) as i64,
            _ => i64::from_le_bytes(b.try_into().unwrap()),
        }
    }

    /// Where `v` is (Ok) or would go (Err).
    fn search(&self, v: i64) -> Result<usize, usize> {
        let body = &self.0[HEAD..];
        // A value too wide for the members goes before or after them all.
        let outside = || Err(if v < 0 { 0 } else { self.len() });
        match self.width() {
            2 => match i16::try_from(v) {
                Ok(v) => body
                    .as_chunks::<2>()
                    .0
                    .binary_search_by(|c| i16::from_le_bytes(*c).cmp(&v)),
                Err(_) => outside(),
            },
            4 => match i32::try_from(v) {
                Ok(v) => body
                    .as_chunks::<4>()
                    .0
                    .binary_search_by(|c| i32::from_le_bytes(*c).cmp(&v)),
                Err(_) => outside(),
            },
            _ => body
                .as_chunks::<8>()
                .0
                .binary_search_by(|c| i64::from_le_bytes(*c).cmp(&v)),
        }
    }

    pub fn contains(&self, v: i64) -> bool {
        self.search(v).is_ok()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = i64> + Clone + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }

    /// The array of `members` (distinct, ascending), in one allocation,
    /// at least `min_width` wide.
    fn build(members: &[i64], min_width: usize) -> IntSet {
        let width = match (members.first(), members.last()) {
            (Some(&lo), Some(&hi)) => width_of(lo).max(width_of(hi)).max(min_width),
            _ => min_width,
        };
        let mut buf = vec![0u8; HEAD + members.len() * width];
        buf[..COUNT].copy_from_slice(&(members.len() as u32).to_le_bytes());
        buf[COUNT] = width as u8;
        for (chunk, &v) in buf[HEAD..].chunks_exact_mut(width).zip(members) {
            put(chunk, width, v);
        }
        IntSet(buf.into_boxed_slice())
    }

    /// Adds `v`; returns whether it is new.
    pub fn insert(&mut self, v: i64) -> bool {
        let Err(at) = self.search(v) else {
            return false;
        };
        let w = self.width();
        if width_of(v) > w {
            // Wider than every member so far: it is the new first or last.
            let mut all: Vec<i64> = self.iter().collect();
            all.insert(at, v);
            *self = IntSet::build(&all, w);
            return true;
        }
        let n = self.len() + 1;
        let mut buf = std::mem::take(&mut self.0).into_vec();
        let pos = HEAD + at * w;
        let mut enc = [0; 8];
        put(&mut enc[..w], w, v);
        buf.splice(pos..pos, enc[..w].iter().copied());
        buf[..COUNT].copy_from_slice(&(n as u32).to_le_bytes());
        self.0 = buf.into_boxed_slice();
        true
    }

    /// Removes `v`; returns whether it was there.
    pub fn remove(&mut self, v: i64) -> bool {
        let Ok(at) = self.search(v) else {
            return false;
        };
        let (w, n) = (self.width(), self.len() - 1);
        let mut buf = std::mem::take(&mut self.0).into_vec();
        let pos = HEAD + at * w;
        buf.drain(pos..pos + w);
        buf[..COUNT].copy_from_slice(&(n as u32).to_le_bytes());
        self.0 = buf.into_boxed_slice();
        true
    }

    /// Adds `vs` in one pass; returns how many were new.
    pub fn insert_all(&mut self, vs: &mut Vec<i64>) -> usize {
        vs.sort_unstable();
        vs.dedup();
        let before = self.len();
        let mut merged = Vec::with_capacity(before + vs.len());
        let (mut i, mut j) = (0, 0);
        while i < before || j < vs.len() {
            let take_own = j == vs.len() || (i < before && self.get(i) <= vs[j]);
            if take_own {
                let x = self.get(i);
                if j < vs.len() && vs[j] == x {
                    j += 1;
                }
                merged.push(x);
                i += 1;
            } else {
                merged.push(vs[j]);
                j += 1;
            }
        }
        if merged.len() != before {
            *self = IntSet::build(&merged, self.width());
        }
        merged.len() - before
    }

    /// Removes `vs` in one pass; returns how many were there.
    pub fn remove_all(&mut self, vs: &mut Vec<i64>) -> usize {
        vs.sort_unstable();
        vs.dedup();
        let before = self.len();
        let kept: Vec<i64> = self
            .iter()
            .filter(|x| vs.binary_search(x).is_err())
            .collect();
        if kept.len() != before {
            // Removing never narrows the width.
            *self = IntSet::build(&kept, self.width());
        }
        before - kept.len()
    }

    /// Keeps the members of `vals` (ascending, distinct) that are in this
    /// set (`keep`) or that are not: a merge walk over both sorted runs,
    /// or binary searches when `vals` is much the shorter.
    pub fn filter_sorted(&self, vals: &mut Vec<i64>, keep: bool) {
        if vals.len() * 16 < self.len() {
            vals.retain(|&v| self.contains(v) == keep);
            return;
        }
        let mut mine = self.iter().peekable();
        vals.retain(|&v| {
            while mine.next_if(|&x| x < v).is_some() {}
            (mine.peek() == Some(&v)) == keep
        });
    }

    /// The longest member, formatted (what a listpack entry would hold).
    pub fn longest_digits(&self) -> usize {
        let digits = |v: i64| itoa::Buffer::new().format(v).len();
        match self.len() {
            0 => 0,
            n => digits(self.get(0)).max(digits(self.get(n - 1))),
        }
    }

    /// The width, and the members as stored: little-endian, ascending
    /// (the body of Redis's own intset, which RDB carries as is).
    pub fn raw(&self) -> (usize, &[u8]) {
        (self.width(), &self.0[HEAD..])
    }

    pub fn heap_size(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_members_sorted_distinct_and_narrow() {
        let mut s = IntSet::default();
        assert!(s.insert(5) && s.insert(-3) && s.insert(100) && !s.insert(5));
        assert_eq!(s.iter().collect::<Vec<_>>(), [-3, 5, 100]);
        assert_eq!((s.width(), s.heap_size()), (2, HEAD + 6));
        assert!(s.insert(70_000));
        assert_eq!(s.width(), 4);
        assert!(s.insert(i64::MIN));
        assert_eq!(s.width(), 8);
        assert_eq!(s.iter().collect::<Vec<_>>(), [i64::MIN, -3, 5, 100, 70_000]);
        assert!(s.remove(i64::MIN) && !s.remove(i64::MIN));
        assert_eq!(s.width(), 8, "removing never narrows");
        assert!(s.contains(70_000) && !s.contains(6));
        assert_eq!(s.longest_digits(), 5);
    }

    #[test]
    fn filters_by_merge_and_by_search_alike() {
        let mut s = IntSet::default();
        s.insert_all(&mut (0..400).map(|i| i * 3).collect());
        for vals in [vec![-3, 0, 4, 6, 1197, 1200], (0..100).collect()] {
            for keep in [true, false] {
                let mut got = vals.clone();
                s.filter_sorted(&mut got, keep);
                let want: Vec<i64> = vals
                    .iter()
                    .copied()
                    .filter(|&v| s.contains(v) == keep)
                    .collect();
                assert_eq!(got, want, "{keep}");
            }
        }
    }

    #[test]
    fn batches_match_one_at_a_time() {
        let mut one = IntSet::default();
        let mut batch = IntSet::default();
        let vs = [9, 1, 1 << 40, 9, -7, 300, 1];
        let new = vs.iter().filter(|&&v| one.insert(v)).count();
        assert_eq!(batch.insert_all(&mut vs.to_vec()), new);
        assert_eq!(one, batch);
        assert_eq!(batch.insert_all(&mut vec![1, 9]), 0);
        let gone = [1, 2, 1 << 40, 1];
        let removed = gone.iter().filter(|&&v| one.remove(v)).count();
        assert_eq!(batch.remove_all(&mut gone.to_vec()), removed);
        assert_eq!(one.iter().collect::<Vec<_>>(), [-7, 9, 300]);
        assert_eq!(one, batch, "same members, same width");
    }
}
