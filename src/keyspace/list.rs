//! [`List`]: a list as a deque of packed chunks, Redis's quicklist.
//!
//! ```text
//!   List:   len, VecDeque<Chunk>
//!   Chunk:  one boxed slice  [count: u32 LE] [entry] [entry] ...
//!   entry:  [len: LEB128] [bytes] [back: LEB128 of the entry's size so far, bytes reversed]
//! ```
//!
//! Elements are stored back to back, as Redis's listpack stores them: a
//! short element costs its bytes and two, where a slot per element (24
//! bytes, plus a ring buffer's spare half) cost 1.5 to 8 times Redis's
//! memory. The trailing length lets a chunk be read from its end, so both
//! ends push and pop in O(1) (a chunk is at most [`CHUNK_BYTES`], the
//! size Redis's default `list-max-listpack-size -2` gives its nodes, so a
//! push at the head moves at most that much). Reaching element `i` walks
//! the chunks from the nearer end, then the entries of one chunk: O(n / 500)
//! for short elements, as Redis's quicklist; commands that visit many
//! elements (LRANGE, LPOS, LREM, LTRIM) walk once rather than index each.
//!
//! Invariants: no chunk is empty; `len` is the sum of the chunks' counts.

use std::collections::VecDeque;

use super::value::SmallBuf;

/// How large a chunk grows before pushes start another.
pub const CHUNK_BYTES: usize = 8 * 1024;

const COUNT: usize = 4;

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// One entry, encoded.
fn encode(e: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(e.len() + 4);
    put_varint(&mut out, e.len());
    out.extend_from_slice(e);
    let size = out.len();
    let at = out.len();
    put_varint(&mut out, size);
    // Read backwards from the entry's end, the low bits come first.
    out[at..].reverse();
    out
}

/// The entry starting at `off`: its bytes and where the next one starts.
#[inline]
fn read_fwd(buf: &[u8], off: usize) -> (&[u8], usize) {
    let b = buf[off];
    let (n, p) = if b < 0x80 {
        (b as usize, off + 1)
    } else {
        let (mut n, mut shift, mut p) = (0usize, 0, off);
        loop {
            let b = buf[p];
            p += 1;
            n |= ((b & 0x7f) as usize) << shift;
            if b & 0x80 == 0 {
                break (n, p);
            }
            shift += 7;
        }
    };
    let end = p + n;
    let mut q = end;
    let mut size = end - off;
    loop {
        q += 1;
        if size < 0x80 {
            break;
        }
        size >>= 7;
    }
    (&buf[p..end], q)
}

/// The entry ending at `end`: its bytes and where it starts.
#[inline]
fn read_back(buf: &[u8], end: usize) -> (&[u8], usize) {
    let (mut size, mut shift, mut p) = (0usize, 0, end);
    loop {
        p -= 1;
        let b = buf[p];
        size |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let start = p - size;
    (read_fwd(buf, start).0, start)
}

#[derive(Clone, PartialEq, Eq)]
struct Chunk(Box<[u8]>);

impl Chunk {
    fn count(&self) -> usize {
        u32::from_le_bytes(self.0[..COUNT].try_into().unwrap()) as usize
    }

    /// Replaces the bytes at `at` with `insert`, `delta` entries more or
    /// fewer: one exact-size reallocation, head kept in place.
    fn splice(&mut self, at: std::ops::Range<usize>, insert: &[u8], delta: isize) {
        let count = (self.count() as isize + delta) as u32;
        if at.len() == insert.len() {
            self.0[at].copy_from_slice(insert);
        } else {
            let mut v = std::mem::take(&mut self.0).into_vec();
            // Grown exactly: the boxed slice given back is then this very
            // buffer (spare room would be reallocated away again).
            v.reserve_exact(insert.len().saturating_sub(at.len()));
            v.splice(at, insert.iter().copied());
            self.0 = v.into_boxed_slice();
        }
        self.0[..COUNT].copy_from_slice(&count.to_le_bytes());
    }

    fn from_entries<'a>(entries: impl Iterator<Item = &'a [u8]>) -> Chunk {
        let mut buf = vec![0; COUNT];
        let mut n = 0u32;
        for e in entries {
            buf.extend(encode(e));
            n += 1;
        }
        buf[..COUNT].copy_from_slice(&n.to_le_bytes());
        Chunk(buf.into_boxed_slice())
    }

    fn iter(&self) -> ChunkIter<'_> {
        ChunkIter {
            buf: &self.0,
            front: COUNT,
            back: self.0.len(),
        }
    }

    /// The byte range of entry `i` (< count), walked from the nearer end.
    fn range_of(&self, i: usize) -> std::ops::Range<usize> {
        let n = self.count();
        if i < n / 2 {
            let mut off = COUNT;
            for _ in 0..i {
                off = read_fwd(&self.0, off).1;
            }
            off..read_fwd(&self.0, off).1
        } else {
            let mut end = self.0.len();
            for _ in i + 1..n {
                end = read_back(&self.0, end).1;
            }
            read_back(&self.0, end).1..end
        }
    }

    fn get(&self, i: usize) -> &[u8] {
        read_fwd(&self.0, self.range_of(i).start).0
    }

    /// Splits off the second half of the entries.
    fn split(&mut self) -> Chunk {
        let keep = self.count() / 2;
        let at = self.range_of(keep).start;
        let tail = Chunk::from_entries(ChunkIter {
            buf: &self.0,
            front: at,
            back: self.0.len(),
        });
        let end = self.0.len();
        self.splice(at..end, &[], -(tail.count() as isize));
        tail
    }
}

#[derive(Clone)]
struct ChunkIter<'a> {
    buf: &'a [u8],
    front: usize,
    back: usize,
}

impl<'a> Iterator for ChunkIter<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        (self.front < self.back).then(|| {
            let (e, next) = read_fwd(self.buf, self.front);
            self.front = next;
            e
        })
    }
}

impl DoubleEndedIterator for ChunkIter<'_> {
    #[inline]
    fn next_back(&mut self) -> Option<Self::Item> {
        (self.front < self.back).then(|| {
            let (e, start) = read_back(self.buf, self.back);
            self.back = start;
            e
        })
    }
}

/// A list value (see the module's header).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct List {
    chunks: VecDeque<Chunk>,
    len: usize,
}

impl std::fmt::Debug for List {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

impl List {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &[u8]> + Clone + '_ {
        self.chunks.iter().flat_map(Chunk::iter)
    }

    /// The elements from index `i` on.
    pub fn iter_from(&self, i: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let (c, j) = self.locate(i.min(self.len));
        self.chunks.range(c..).flat_map(Chunk::iter).skip(j)
    }

    /// The chunk holding element `i` (< len) and its place there; (number
    /// of chunks, 0) for `len`.
    fn locate(&self, i: usize) -> (usize, usize) {
        if i < self.len / 2 {
            let mut i = i;
            for (c, chunk) in self.chunks.iter().enumerate() {
                if i < chunk.count() {
                    return (c, i);
                }
                i -= chunk.count();
            }
        } else {
            let mut from_end = self.len - i;
            for (c, chunk) in self.chunks.iter().enumerate().rev() {
                if from_end <= chunk.count() {
                    return (c, chunk.count() - from_end);
                }
                from_end -= chunk.count();
            }
        }
        (self.chunks.len(), 0)
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        (i < self.len).then(|| {
            let (c, j) = self.locate(i);
            self.chunks[c].get(j)
        })
    }

    /// A new chunk's place: a list of one chunk (most lists) keeps room
    /// for that one only.
    fn room_for_chunk(&mut self) {
        if self.chunks.capacity() == 0 {
            self.chunks.reserve_exact(1);
        }
    }

    pub fn push_back(&mut self, e: &[u8]) {
        self.room_for_chunk();
        let enc = encode(e);
        match self.chunks.back_mut() {
            Some(c) if c.0.len() + enc.len() <= CHUNK_BYTES => {
                let end = c.0.len();
                c.splice(end..end, &enc, 1);
            }
            _ => self
                .chunks
                .push_back(Chunk::from_entries(std::iter::once(e))),
        }
        self.len += 1;
    }

    pub fn push_front(&mut self, e: &[u8]) {
        self.room_for_chunk();
        let enc = encode(e);
        match self.chunks.front_mut() {
            Some(c) if c.0.len() + enc.len() <= CHUNK_BYTES => c.splice(COUNT..COUNT, &enc, 1),
            _ => self
                .chunks
                .push_front(Chunk::from_entries(std::iter::once(e))),
        }
        self.len += 1;
    }

    pub fn pop_front(&mut self) -> Option<SmallBuf> {
        let c = self.chunks.front_mut()?;
        let (e, next) = read_fwd(&c.0, COUNT);
        let e = SmallBuf::new(e);
        if c.count() == 1 {
            self.chunks.pop_front();
        } else {
            c.splice(COUNT..next, &[], -1);
        }
        self.len -= 1;
        Some(e)
    }

    pub fn pop_back(&mut self) -> Option<SmallBuf> {
        let c = self.chunks.back_mut()?;
        let end = c.0.len();
        let (e, start) = read_back(&c.0, end);
        let e = SmallBuf::new(e);
        if c.count() == 1 {
            self.chunks.pop_back();
        } else {
            c.splice(start..end, &[], -1);
        }
        self.len -= 1;
        Some(e)
    }

    /// Splits chunk `c` if an insertion or replacement grew it past the
    /// limit, so that it stays cheap to change.
    fn rebalance(&mut self, c: usize) {
        if self.chunks[c].0.len() > CHUNK_BYTES && self.chunks[c].count() > 1 {
            let tail = self.chunks[c].split();
            self.chunks.insert(c + 1, tail);
        }
    }

    /// Replaces element `i` (< len).
    pub fn set(&mut self, i: usize, e: &[u8]) {
        let (c, j) = self.locate(i);
        let chunk = &mut self.chunks[c];
        let at = chunk.range_of(j);
        chunk.splice(at, &encode(e), 0);
        self.rebalance(c);
    }

    /// Inserts `e` before element `i` (`len`: at the end).
    pub fn insert(&mut self, i: usize, e: &[u8]) {
        if i == self.len {
            return self.push_back(e);
        }
        let (c, j) = self.locate(i);
        let chunk = &mut self.chunks[c];
        let at = chunk.range_of(j).start;
        chunk.splice(at..at, &encode(e), 1);
        self.len += 1;
        self.rebalance(c);
    }

    /// Removes up to `limit` elements equal to `target`, the first ones
    /// or (`from_back`) the last ones; returns how many.
    pub fn remove_matching(&mut self, target: &[u8], limit: usize, from_back: bool) -> usize {
        let mut removed = 0;
        let order: Vec<usize> = if from_back {
            (0..self.chunks.len()).rev().collect()
        } else {
            (0..self.chunks.len()).collect()
        };
        for c in order {
            if removed == limit {
                break;
            }
            let chunk = &self.chunks[c];
            let mut hits = 0;
            let budget = limit - removed;
            // Which entries go: the first (or last) `budget` matches.
            let matches: Vec<bool> = if from_back {
                let mut m: Vec<bool> = chunk
                    .iter()
                    .rev()
                    .map(|e| {
                        let hit = hits < budget && e == target;
                        hits += usize::from(hit);
                        hit
                    })
                    .collect();
                m.reverse();
                m
            } else {
                chunk
                    .iter()
                    .map(|e| {
                        let hit = hits < budget && e == target;
                        hits += usize::from(hit);
                        hit
                    })
                    .collect()
            };
            if hits > 0 {
                let kept = Chunk::from_entries(
                    chunk
                        .iter()
                        .zip(&matches)
                        .filter(|(_, &m)| !m)
                        .map(|(e, _)| e),
                );
                self.chunks[c] = kept;
                removed += hits;
            }
        }
        self.chunks.retain(|c| c.count() > 0);
        self.len -= removed;
        removed
    }

    /// Keeps elements `start..=stop` (both < len) only.
    pub fn trim(&mut self, start: usize, stop: usize) {
        let (last, j) = self.locate(stop);
        self.chunks.truncate(last + 1);
        let tail = self.chunks.back_mut().expect("stop < len");
        let end = tail.range_of(j).end;
        let cut = tail.count() - j - 1;
        let len = tail.0.len();
        tail.splice(end..len, &[], -(cut as isize));
        self.len = stop + 1;
        let (first, j) = self.locate(start);
        self.chunks.drain(..first);
        let head = self.chunks.front_mut().expect("start <= stop");
        let at = head.range_of(j).start;
        head.splice(COUNT..at, &[], -(j as isize));
        self.len = stop + 1 - start;
    }

    pub fn clear(&mut self) {
        *self = List::default();
    }

    pub fn heap_size(&self) -> usize {
        std::mem::size_of::<List>()
            + self.chunks.capacity() * std::mem::size_of::<Chunk>()
            + self.chunks.iter().map(|c| c.0.len()).sum::<usize>()
    }
}

impl<'a> FromIterator<&'a [u8]> for List {
    fn from_iter<I: IntoIterator<Item = &'a [u8]>>(it: I) -> List {
        let mut l = List::default();
        for e in it {
            l.push_back(e);
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn elem(rng: &mut impl Rng) -> Vec<u8> {
        // Mostly short, some past one-byte lengths, a few past a chunk.
        let n = match rng.gen_range(0..20) {
            0 => rng.gen_range(120..400),
            1 if rng.gen_range(0..20) == 0 => rng.gen_range(CHUNK_BYTES..CHUNK_BYTES * 2),
            _ => rng.gen_range(0..12),
        };
        (0..n).map(|_| rng.gen_range(b'a'..=b'c')).collect()
    }

    #[test]
    fn entries_read_both_ways() {
        for n in [0, 1, 125, 126, 127, 128, 300, 20_000] {
            let e = vec![7u8; n];
            let enc = encode(&e);
            assert_eq!(read_fwd(&enc, 0), (&e[..], enc.len()), "{n}");
            assert_eq!(read_back(&enc, enc.len()), (&e[..], 0), "{n}");
        }
    }

    /// Random operations against a VecDeque: same elements, in order.
    #[test]
    fn behaves_as_a_deque() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut l = List::default();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut most_chunks = 0;
        for step in 0..20_000 {
            match rng.gen_range(0..12) {
                0..=2 => {
                    let e = elem(&mut rng);
                    l.push_back(&e);
                    model.push_back(e);
                }
                3..=5 => {
                    let e = elem(&mut rng);
                    l.push_front(&e);
                    model.push_front(e);
                }
                6 => assert_eq!(
                    l.pop_front().map(|e| e.as_bytes().to_vec()),
                    model.pop_front()
                ),
                7 => assert_eq!(
                    l.pop_back().map(|e| e.as_bytes().to_vec()),
                    model.pop_back()
                ),
                8 if !model.is_empty() => {
                    let i = rng.gen_range(0..model.len());
                    let e = elem(&mut rng);
                    if rng.gen() {
                        l.set(i, &e);
                        model[i] = e;
                    } else {
                        l.insert(i, &e);
                        model.insert(i, e);
                    }
                }
                9 => {
                    let t = elem(&mut rng);
                    let limit = rng.gen_range(1..4);
                    let back = rng.gen();
                    let mut gone = 0;
                    let idx: Vec<usize> = if back {
                        (0..model.len()).rev().collect()
                    } else {
                        (0..model.len()).collect()
                    };
                    let mut drop = vec![false; model.len()];
                    for i in idx {
                        if gone < limit && model[i] == t {
                            drop[i] = true;
                            gone += 1;
                        }
                    }
                    let mut k = 0;
                    model.retain(|_| {
                        k += 1;
                        !drop[k - 1]
                    });
                    assert_eq!(l.remove_matching(&t, limit, back), gone);
                }
                10 if model.len() > 2 && step % 1000 == 0 => {
                    let s = rng.gen_range(0..model.len());
                    let e = rng.gen_range(s..model.len());
                    l.trim(s, e);
                    model.truncate(e + 1);
                    model.drain(..s);
                }
                _ => {}
            }
            assert_eq!(l.len(), model.len());
            most_chunks = most_chunks.max(l.chunks.len());
            if step % 97 == 0 {
                assert!(l.iter().eq(model.iter().map(Vec::as_slice)));
                assert!(l.iter().rev().eq(model.iter().rev().map(Vec::as_slice)));
                assert!(l.chunks.iter().all(|c| c.count() > 0));
                assert_eq!(l.chunks.iter().map(Chunk::count).sum::<usize>(), l.len());
                if !model.is_empty() {
                    let i = rng.gen_range(0..model.len());
                    assert_eq!(l.get(i), Some(&model[i][..]));
                    assert!(l.iter_from(i).eq(model.range(i..).map(Vec::as_slice)));
                }
            }
        }
        assert!(most_chunks > 10, "the test crossed chunks: {most_chunks}");
    }
}
