//! [`Packed`]: a run of byte strings in one allocation, Shoal's counterpart
//! of Redis's listpack.
//!
//! ```text
//!   one boxed slice:  [count: u32 LE] [varint len][bytes] [varint len][bytes] ...
//! ```
//!
//! Small hashes and sets live in one `Packed` instead of a hash table: a
//! hash of ten short fields costs one allocation of about its payload, where
//! a table would spend a bucket, a control byte and two buffers per field.
//! A lookup is a linear scan, which is why the owning types convert to a
//! table past `*-max-listpack-entries` entries or `*-max-listpack-value`
//! bytes in one element, as Redis does. A command that names many
//! elements at once (SADD, SREM, SMISMEMBER, HSET, HMGET, HDEL) hashes the
//! entries once into an [`Index`] and rewrites the buffer once, instead of
//! a scan and a reallocation per element. The buffer
//! is exactly its contents (as listpack's realloc makes it) and carries its
//! own count, so a `Packed` is one 16-byte pointer and one allocation:
//! these values are small and many, so every byte is paid a million times.

use hashbrown::hash_table::{Entry, HashTable};

use super::table::hash_key;

/// Appends `n` as LEB128.
pub(super) fn put_varint(out: &mut impl Extend<u8>, mut n: usize) {
    while n >= 0x80 {
        out.extend([(n as u8) | 0x80]);
        n >>= 7;
    }
    out.extend([n as u8]);
}

/// Appends entry `e`: its length, then its bytes.
pub(super) fn put_entry(out: &mut Vec<u8>, e: &[u8]) {
    put_varint(out, e.len());
    out.extend_from_slice(e);
}

pub(super) fn varint_len(mut n: usize) -> usize {
    let mut l = 1;
    while n >= 0x80 {
        n >>= 7;
        l += 1;
    }
    l
}

/// Reads the LEB128 number at `off`: its value and the offset after it.
#[inline]
pub(super) fn read_varint(buf: &[u8], off: usize) -> (usize, usize) {
    // Lengths under 128, nearly all of them, take one byte.
    let b = buf[off];
    if b < 0x80 {
        return (b as usize, off + 1);
    }
    let (mut n, mut shift, mut p) = (0usize, 0, off);
    loop {
        let b = buf[p];
        p += 1;
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return (n, p);
        }
        shift += 7;
    }
}

/// Reads the entry at `off`: its bytes and the offset of the next entry.
#[inline]
pub(super) fn read_at(buf: &[u8], off: usize) -> (&[u8], usize) {
    let (n, p) = read_varint(buf, off);
    (&buf[p..p + n], p + n)
}

const COUNT: usize = 4;

#[derive(Clone, PartialEq, Eq)]
pub struct Packed(Box<[u8]>);

impl Default for Packed {
    fn default() -> Self {
        Packed(Box::new([0; COUNT]))
    }
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

pub struct Iter<'a> {
    buf: &'a [u8],
    off: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.off >= self.buf.len() {
            return None;
        }
        let (e, next) = read_at(self.buf, self.off);
        self.off = next;
        Some(e)
    }
}

impl Packed {
    /// Entries, not bytes.
    pub fn len(&self) -> usize {
        u32::from_le_bytes(self.0[..COUNT].try_into().unwrap()) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn set_len(buf: &mut [u8], n: usize) {
        buf[..COUNT].copy_from_slice(&(n as u32).to_le_bytes());
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter {
            buf: &self.0,
            off: COUNT,
        }
    }

    /// Rebuilds the buffer as `head`, `insert`, then `tail` (byte ranges of
    /// the current one), with `count` entries: one exact-size allocation.
    fn splice(&mut self, at: std::ops::Range<usize>, insert: &[u8], count: usize) {
        if at.len() == insert.len() {
            // Same size (a value overwritten by one as long): in place.
            self.0[at].copy_from_slice(insert);
            Self::set_len(&mut self.0, count);
            return;
        }
        // The head stays where it is; the allocator resizes in place when
        // it can, as listpack's realloc does.
        let mut v = std::mem::take(&mut self.0).into_vec();
        // Grown exactly: the boxed slice given back is then this very
        // buffer (spare room would be reallocated away again).
        v.reserve_exact(insert.len().saturating_sub(at.len()));
        v.splice(at, insert.iter().copied());
        Self::set_len(&mut v, count);
        self.0 = v.into_boxed_slice();
    }

    fn encoded(e: &[u8]) -> Vec<u8> {
        let mut enc = Vec::with_capacity(varint_len(e.len()) + e.len());
        put_entry(&mut enc, e);
        enc
    }

    pub fn push(&mut self, e: &[u8]) {
        let end = self.0.len();
        let n = self.len() + 1;
        self.splice(end..end, &Self::encoded(e), n);
    }

    /// Appends several entries with one reallocation.
    pub fn push_all<'a>(&mut self, entries: impl IntoIterator<Item = &'a [u8]>) {
        let mut enc = Vec::new();
        let mut n = self.len();
        for e in entries {
            put_entry(&mut enc, e);
            n += 1;
        }
        let end = self.0.len();
        self.splice(end..end, &enc, n);
    }

    /// Finds the first entry equal to `e` among entries `0, stride, 2*stride,
    /// ...` (a hash's fields are every other entry). Returns its byte offset.
    pub fn find(&self, e: &[u8], stride: usize) -> Option<usize> {
        // Lengths, then last bytes, settle most mismatches without a call
        // to memcmp (a hash of 500 fields is scanned whole).
        self.strided(stride)
            .find(|(cur, _)| cur.len() == e.len() && cur.last() == e.last() && *cur == e)
            .map(|(_, off)| off)
    }

    /// The entry at byte offset `off` and the offset after it.
    pub fn at(&self, off: usize) -> (&[u8], usize) {
        read_at(&self.0, off)
    }

    /// Removes `n` entries starting at byte offset `off`.
    pub fn remove_at(&mut self, off: usize, n: usize) {
        let mut end = off;
        for _ in 0..n {
            end = read_at(&self.0, end).1;
        }
        let count = self.len() - n;
        self.splice(off..end, &[], count);
    }

    /// Replaces the entry at byte offset `off` with `e`.
    pub fn replace_at(&mut self, off: usize, e: &[u8]) {
        let end = read_at(&self.0, off).1;
        let count = self.len();
        self.splice(off..end, &Self::encoded(e), count);
    }

    pub fn heap_size(&self) -> usize {
        self.0.len()
    }

    /// Whether looking up `k` elements at once pays for an [`Index`] (see
    /// [`worth_indexing`]).
    pub fn worth_indexing(&self, k: usize) -> bool {
        worth_indexing(self.len(), k)
    }

    /// Entries `0, stride, 2*stride, ...` with their byte offsets (a hash's
    /// fields are every other entry).
    fn strided(&self, stride: usize) -> impl Iterator<Item = (&[u8], usize)> {
        let buf = &self.0[..];
        let mut off = COUNT;
        std::iter::from_fn(move || {
            if off >= buf.len() {
                return None;
            }
            let (cur, mut next) = read_at(buf, off);
            for _ in 1..stride {
                next = read_at(buf, next).1;
            }
            let at = std::mem::replace(&mut off, next);
            Some((cur, at))
        })
    }

    /// Entries `0, stride, 2*stride, ...` by their bytes (see [`Index`]).
    pub fn index(&self, stride: usize) -> Index<'_> {
        let mut t: HashTable<(&[u8], usize)> = HashTable::with_capacity(self.len() / stride);
        for (cur, off) in self.strided(stride) {
            // The first of equal entries, as `find` answers.
            if let Entry::Vacant(v) =
                t.entry(hash_key(cur), |(x, _)| *x == cur, |(x, _)| hash_key(x))
            {
                v.insert((cur, off));
            }
        }
        Index(t)
    }

    /// Removes each element of `es` found among entries `0, stride, ...`
    /// together with the `stride - 1` entries after it (a hash's value),
    /// through one [`Index`] and one rewrite; returns how many were found.
    pub fn remove_each<B: AsRef<[u8]>>(&mut self, es: &[B], stride: usize) -> usize {
        let mut offs: Vec<usize> = {
            let mut idx = self.index(stride);
            // Removed from the index as found: a repeat finds nothing.
            es.iter().filter_map(|e| idx.remove(e.as_ref())).collect()
        };
        offs.sort_unstable();
        self.remove_all_at(&offs, stride);
        offs.len()
    }

    /// Removes the `n` entries starting at each byte offset of `offs`
    /// (ascending, the runs not overlapping): one reallocation for all.
    pub fn remove_all_at(&mut self, offs: &[usize], n: usize) {
        let mut v = Vec::with_capacity(self.0.len());
        let mut from = 0;
        for &off in offs {
            v.extend_from_slice(&self.0[from..off]);
            from = off;
            for _ in 0..n {
                from = read_at(&self.0, from).1;
            }
        }
        v.extend_from_slice(&self.0[from..]);
        Self::set_len(&mut v, self.len() - offs.len() * n);
        self.0 = v.into_boxed_slice();
    }

    /// Replaces the entries at the byte offsets of `replace` (ascending,
    /// distinct) and appends `append`: one reallocation for all.
    pub fn rewrite<'a>(
        &mut self,
        replace: &[(usize, &[u8])],
        append: impl IntoIterator<Item = &'a [u8]>,
    ) {
        let mut v = Vec::with_capacity(self.0.len());
        let mut from = 0;
        for &(off, e) in replace {
            v.extend_from_slice(&self.0[from..off]);
            put_entry(&mut v, e);
            from = read_at(&self.0, off).1;
        }
        v.extend_from_slice(&self.0[from..]);
        let mut count = self.len();
        for e in append {
            put_entry(&mut v, e);
            count += 1;
        }
        Self::set_len(&mut v, count);
        self.0 = v.into_boxed_slice();
    }
}

/// Whether looking `asks` elements up among `len` is cheaper through a
/// temporary hash of all `len` than by a scan of them per element: a small
/// set, hash or sorted set asked about many elements at once.
pub fn worth_indexing(len: usize, asks: usize) -> bool {
    asks >= 4 && asks * (len + asks) >= 256
}

/// Some entries of a [`Packed`] (a set's members, a hash's fields) by their
/// bytes, each with a tag (its byte offset, as built): for a command that
/// looks up many elements at once, one pass over the entries and a hash
/// lookup an element, where a [`Packed::find`] each scans the run once per
/// element (SADD of 100 members into a set of 100 ran at 0.22 of Redis's
/// rate). Elements of the command can be added with tags of their own, to
/// tell repeats among them.
pub struct Index<'a>(HashTable<(&'a [u8], usize)>);

impl<'a> Index<'a> {
    pub fn get(&self, e: &[u8]) -> Option<usize> {
        self.0
            .find(hash_key(e), |(x, _)| *x == e)
            .map(|&(_, tag)| tag)
    }

    /// Adds `e` with `tag` unless it is there; returns the tag it has.
    pub fn get_or_insert(&mut self, e: &'a [u8], tag: usize) -> usize {
        match self
            .0
            .entry(hash_key(e), |(x, _)| *x == e, |(x, _)| hash_key(x))
        {
            Entry::Occupied(o) => o.get().1,
            Entry::Vacant(v) => {
                v.insert((e, tag));
                tag
            }
        }
    }

    pub fn remove(&mut self, e: &[u8]) -> Option<usize> {
        let o = self.0.find_entry(hash_key(e), |(x, _)| *x == e).ok()?;
        Some(o.remove().0 .1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_find_replace_remove() {
        let mut p = Packed::default();
        let long = vec![b'x'; 300];
        for e in [&b"f1"[..], b"v1", b"f2", &long, b"v1", b"f3"] {
            p.push(e);
        }
        assert_eq!(p.len(), 6);
        // "v1" as a field (even position) is the fifth entry, not the second.
        let off = p.find(b"v1", 2).unwrap();
        assert_eq!(p.at(off).0, b"v1");
        assert_eq!(p.at(p.at(off).1).0, b"f3");
        let f2 = p.find(b"f2", 2).unwrap();
        assert_eq!(p.at(p.at(f2).1).0, &long[..]);
        p.replace_at(p.at(f2).1, b"short");
        assert_eq!(p.at(p.at(f2).1).0, b"short");
        p.remove_at(f2, 2);
        let all: Vec<&[u8]> = p.iter().collect();
        assert_eq!(all, vec![&b"f1"[..], b"v1", b"v1", b"f3"]);
        assert_eq!(p.find(b"f2", 2), None);
    }

    #[test]
    fn index_and_batch_rewrites() {
        let mut p = Packed::default();
        let long = vec![b'y'; 200];
        p.push_all([&b"a"[..], b"1", b"b", &long, b"c", b"3", b"1", b"4"]);
        let idx = p.index(2);
        // Fields only: "1" is a value at entry 1 and a field at entry 6.
        assert_eq!(idx.get(b"1"), p.find(b"1", 2));
        assert_eq!(idx.get(b"3"), None);
        let (a, c) = (idx.get(b"a").unwrap(), idx.get(b"c").unwrap());
        let mut idx = idx;
        assert_eq!(idx.get_or_insert(b"new", usize::MAX), usize::MAX);
        assert_eq!(idx.get_or_insert(b"new", 7), usize::MAX);
        assert_eq!(idx.remove(b"a"), Some(a));
        assert_eq!(idx.remove(b"a"), None);
        assert_eq!(idx.get(b"c"), Some(c));
        drop(idx);
        let (va, vb) = (p.at(a).1, p.at(p.find(b"b", 2).unwrap()).1);
        p.rewrite(&[(va, b"one"), (vb, b"two")], [&b"d"[..], &long]);
        let all: Vec<&[u8]> = p.iter().collect();
        assert_eq!(
            all,
            [
                &b"a"[..],
                b"one",
                b"b",
                b"two",
                b"c",
                b"3",
                b"1",
                b"4",
                b"d",
                &long
            ]
        );
        assert_eq!(p.len(), 10);
        let (a, c) = (p.find(b"a", 2).unwrap(), p.find(b"c", 2).unwrap());
        let d = p.find(b"d", 2).unwrap();
        p.remove_all_at(&[a, c, d], 2);
        let all: Vec<&[u8]> = p.iter().collect();
        assert_eq!(all, [&b"b"[..], b"two", b"1", b"4"]);
        assert_eq!(p.len(), 4);
    }
}
