//! [`List`]: a list as a deque of packed chunks, Redis's quicklist.
//!
//! ```text
//!   List:   len, VecDeque<Chunk>
//!   Chunk:  one boxed slice  [count: u32 LE] [room: u16 LE] [room bytes] [entry] [entry] ...
//!   entry:  [head] [content] [back: LEB128 of the entry's size so far, bytes reversed]
//!   head:   0xxxxxxx                the integer 0..127, no content
//!           10nnnnnn                a string of n (< 64) bytes
//!           110nnnnn nnnnnnnn       a string of 64 + n (< 8256) bytes
//!           11100nnn                an integer in n + 1 bytes, little-endian
//!           11110000 [len: u64 LE]  a longer string
//! ```
//!
//! (Redis's listpack heads, nearly: canonical integers are kept as
//! integers, in as few bytes as hold them.)
//!
//! Elements are stored back to back, as Redis's listpack stores them: a
//! short element costs its bytes and two, and an integer two (0 to 127)
//! to ten bytes in all, where a slot per element (24 bytes, plus a
//! ring buffer's spare half) cost 1.5 to 8 times Redis's memory. Readers
//! get a [`Member`]: an integer entry is formatted as it is read.
//!
//! The trailing length lets a chunk be read from its end, so both ends
//! push and pop in O(1) (a chunk is at most what `list-max-listpack-size`
//! allows, [`ChunkLimit`]: 8 KB by default, as Redis's nodes, so a push at
//! the head moves at most that much). Reaching element `i` walks the
//! chunks from the nearer end, then the entries of one chunk, reading
//! lengths only: O(n / 500) for short elements, as Redis's quicklist.
//!
//! A push at the head moves the chunk's entries (Redis's listpack moves
//! them on every one): here it moves them once to leave room before the
//! first entry (an eighth of the entries' size, up to 512 bytes, in a
//! chunk past 256 bytes), and the pushes that follow fill that room. A
//! pop at the head leaves its entry's bytes as room, up to that much.
//! Commands that visit many elements (LRANGE, LPOS, LREM, LTRIM) walk
//! once rather than index each, and searches compare entries as stored:
//! an element has exactly one encoding.
//!
//! Invariants: no chunk is empty; `len` is the sum of the chunks' counts;
//! a chunk exceeds the limit it was filled under only when it holds a
//! single element (a change of limit applies to the chunks it touches).

use std::collections::VecDeque;

use super::member::{canonical_int, Member};
use super::packed::{put_varint, varint_len};
use super::value::SmallBuf;

/// How full a chunk may get (`list-max-listpack-size`, read as Redis
/// reads it): a size in bytes, and a number of elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLimit {
    bytes: usize,
    entries: usize,
    /// Elements at least this long are kept alone in a chunk (Redis's
    /// plain nodes, `DEBUG QUICKLIST-PACKED-THRESHOLD`).
    plain: usize,
}

/// Redis's packed threshold: 1 GB.
pub const PLAIN_DEFAULT: usize = 1 << 30;

/// The byte sizes `list-max-listpack-size` -1 to -5 name.
const SIZE_CLASSES: [usize; 5] = [4096, 8192, 16384, 32768, 65536];

/// What a chunk may hold when the limit is a number of elements.
const SIZE_SAFETY_LIMIT: usize = 8192;

impl ChunkLimit {
    /// Negative: one of 4, 8, 16, 32 or 64 KB (-1 to -5; beyond, 64);
    /// positive: that many elements, in at most 8 KB.
    pub fn from_fill(fill: i64) -> ChunkLimit {
        if fill < 0 {
            let class = (fill.unsigned_abs() as usize).min(SIZE_CLASSES.len()) - 1;
            ChunkLimit {
                bytes: SIZE_CLASSES[class],
                entries: usize::MAX,
                plain: PLAIN_DEFAULT,
            }
        } else {
            ChunkLimit {
                bytes: SIZE_SAFETY_LIMIT,
                entries: (fill as usize).clamp(1, 32767),
                plain: PLAIN_DEFAULT,
            }
        }
    }

    /// The same limit, with elements of `plain` bytes or more kept alone.
    pub fn with_plain(self, plain: usize) -> ChunkLimit {
        ChunkLimit { plain, ..self }
    }

    /// Whether plain elements need looking for: one at least as long as
    /// a chunk may be never shares a chunk anyway, so only a threshold
    /// set below the chunk size (a test's) costs a look at the entries.
    fn plain_matters(&self) -> bool {
        self.plain < self.bytes
    }

    /// Whether `chunk` holds an element kept alone.
    fn holds_plain(&self, chunk: &Chunk) -> bool {
        self.plain_matters() && chunk.raw().any(|e| element_len(e, 0) >= self.plain)
    }

    /// Whether `chunk` may take one more element, encoded as `enc`.
    fn allows(&self, chunk: &Chunk, enc: &[u8]) -> bool {
        chunk.size() + enc.len() <= self.bytes
            && chunk.count() < self.entries
            && !(self.plain_matters() && element_len(enc, 0) >= self.plain)
            && !self.holds_plain(chunk)
    }

    /// Whether `chunk` is past the limit and can be split.
    fn exceeded_by(&self, chunk: &Chunk) -> bool {
        chunk.count() > 1
            && (chunk.size() > self.bytes
                || chunk.count() > self.entries
                || self.holds_plain(chunk))
    }
}

impl Default for ChunkLimit {
    /// Redis's default, -2: 8 KB.
    fn default() -> ChunkLimit {
        ChunkLimit::from_fill(-2)
    }
}

/// A chunk's count and the size of the room before its first entry.
const HEADER: usize = 6;

/// Room left before a chunk's entries when a push at the head moves
/// them: none in a chunk this small (moving it is cheap, and small lists
/// stay as small as Redis's) ...
const ROOM_FROM: usize = 256;
/// ... and at most this much.
const ROOM_MAX: usize = 512;

/// What an entry's head says it holds.
enum Head {
    Int(i64),
    /// A string, starting at this offset.
    Str(usize),
}

/// The smallest number of bytes that holds `i` (two's complement).
fn int_width(i: i64) -> usize {
    (1..8).find(|&n| i >> (8 * n - 1) == i >> 63).unwrap_or(8)
}

/// An entry as encoded: on the stack unless long (a push encodes one
/// per element).
type Encoded = smallvec::SmallVec<[u8; 48]>;

/// One entry, encoded.
fn encode(e: &[u8]) -> Encoded {
    // The common case, a short string that is not an integer, written in
    // place: head, content, and a one-byte back length (size < 128).
    let int = canonical_int(e);
    if e.len() <= 44 && int.is_none() {
        let mut buf = [0u8; 48];
        buf[0] = 0x80 | e.len() as u8;
        buf[1..=e.len()].copy_from_slice(e);
        buf[e.len() + 1] = (e.len() + 1) as u8;
        return Encoded::from_buf_and_len(buf, e.len() + 2);
    }
    encode_any(e, int)
}

/// Any entry, `int` its value if it is a canonical integer.
fn encode_any(e: &[u8], int: Option<i64>) -> Encoded {
    let mut out = Encoded::new();
    match int {
        Some(i) if (0..0x80).contains(&i) => out.push(i as u8),
        Some(i) => {
            let n = int_width(i);
            out.push(0xe0 | (n - 1) as u8);
            out.extend_from_slice(&i.to_le_bytes()[..n]);
        }
        None => {
            match e.len() {
                n if n < 64 => out.push(0x80 | n as u8),
                n if n < 64 + 0x2000 => {
                    let m = n - 64;
                    out.extend_from_slice(&[0xc0 | (m >> 8) as u8, m as u8]);
                }
                n => {
                    out.push(0xf0);
                    out.extend_from_slice(&(n as u64).to_le_bytes());
                }
            }
            out.extend_from_slice(e);
        }
    }
    let size = out.len();
    put_varint(&mut out, size);
    // Read backwards from the entry's end, the low bits come first.
    out[size..].reverse();
    out
}

/// The head of the entry at `off`, and where its content ends.
#[inline]
fn head(buf: &[u8], off: usize) -> (Head, usize) {
    let b = buf[off];
    match b {
        0x00..=0x7f => (Head::Int(b as i64), off + 1),
        0x80..=0xbf => (Head::Str(off + 1), off + 1 + (b & 0x3f) as usize),
        0xc0..=0xdf => {
            let n = ((((b & 0x1f) as usize) << 8) | buf[off + 1] as usize) + 64;
            (Head::Str(off + 2), off + 2 + n)
        }
        0xe0..=0xe7 => {
            let n = (b & 0x07) as usize + 1;
            let mut le = [0; 8];
            le[..n].copy_from_slice(&buf[off + 1..off + 1 + n]);
            // Sign-extended from its top byte.
            let shift = 64 - 8 * n as u32;
            let i = (i64::from_le_bytes(le) << shift) >> shift;
            (Head::Int(i), off + 1 + n)
        }
        _ => {
            let n = u64::from_le_bytes(buf[off + 1..off + 9].try_into().unwrap()) as usize;
            (Head::Str(off + 9), off + 9 + n)
        }
    }
}

/// Where the entry at `off` ends (past its trailing length), read from
/// its head alone.
#[inline]
fn next_entry(buf: &[u8], off: usize) -> usize {
    let end = head(buf, off).1;
    end + varint_len(end - off)
}

/// Where the entry ending at `end` starts, read from its trailing length.
#[inline]
fn prev_entry(buf: &[u8], end: usize) -> usize {
    let (mut size, mut shift, mut p) = (0usize, 0, end);
    loop {
        p -= 1;
        let b = buf[p];
        size |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return p - size;
        }
        shift += 7;
    }
}

/// The length of the element of the entry at `off`, an integer's as
/// Redis counts it: in decimal digits.
fn element_len(buf: &[u8], off: usize) -> usize {
    match head(buf, off) {
        (Head::Int(i), _) => Member::int(i).len(),
        (Head::Str(start), end) => end - start,
    }
}

/// The element of the entry at `off`.
#[inline]
fn member_at(buf: &[u8], off: usize) -> Member<'_> {
    match head(buf, off) {
        (Head::Int(i), _) => Member::int(i),
        (Head::Str(start), end) => Member::Bytes(&buf[start..end]),
    }
}

#[derive(Clone)]
struct Chunk(Box<[u8]>);

impl Chunk {
    fn count(&self) -> usize {
        u32::from_le_bytes(self.0[..4].try_into().unwrap()) as usize
    }

    /// The room before the first entry.
    fn room(&self) -> usize {
        u16::from_le_bytes(self.0[4..HEADER].try_into().unwrap()) as usize
    }

    /// Writes the header: `count` entries after `room` free bytes.
    fn set_header(&mut self, count: usize, room: usize) {
        self.0[..4].copy_from_slice(&(count as u32).to_le_bytes());
        self.0[4..HEADER].copy_from_slice(&(room as u16).to_le_bytes());
    }

    /// Where the first entry starts.
    fn start(&self) -> usize {
        HEADER + self.room()
    }

    /// Its header and entries, the room left out: what the limit weighs.
    fn size(&self) -> usize {
        self.0.len() - self.room()
    }

    /// Drops the first entry, which ends at `next`: it becomes room for
    /// pushes at the head while the room stays small, else the entries
    /// move.
    fn pop_front(&mut self, next: usize) {
        if next - HEADER <= ROOM_MAX {
            self.set_header(self.count() - 1, next - HEADER);
        } else {
            self.splice(self.start()..next, &[], -1);
        }
    }

    /// Puts `enc`, one entry, before the first: in the room there if it
    /// fits, else moving the entries once, leaving room for the next (no
    /// more than `limit` lets this chunk take, so that a full chunk keeps
    /// none to speak of).
    fn push_front(&mut self, enc: &[u8], limit: ChunkLimit) {
        let (count, room) = (self.count() + 1, self.room());
        if enc.len() <= room {
            let left = room - enc.len();
            self.0[HEADER + left..HEADER + room].copy_from_slice(enc);
            self.set_header(count, left);
            return;
        }
        let entries = &self.0[HEADER + room..];
        let takes = (limit
            .bytes
            .saturating_sub(HEADER + entries.len() + enc.len()))
        .min((limit.entries.saturating_sub(count)).saturating_mul(enc.len()));
        let room = if entries.len() < ROOM_FROM {
            0
        } else {
            (entries.len() / 8).min(ROOM_MAX).min(takes)
        };
        let mut buf = Vec::with_capacity(HEADER + room + enc.len() + entries.len());
        buf.resize(HEADER + room, 0);
        buf.extend_from_slice(enc);
        buf.extend_from_slice(entries);
        self.0 = buf.into_boxed_slice();
        self.set_header(count, room);
    }

    /// Replaces the bytes at `at` with `insert`, `delta` entries more or
    /// fewer: one exact-size reallocation, head kept in place.
    fn splice(&mut self, at: std::ops::Range<usize>, insert: &[u8], delta: isize) {
        let count = (self.count() as isize + delta) as usize;
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
        let room = self.room();
        self.set_header(count, room);
    }

    /// A chunk of `count` entries already encoded, back to back.
    fn from_encoded(entries: &[u8], count: usize) -> Chunk {
        let mut buf = Vec::with_capacity(HEADER + entries.len());
        buf.resize(HEADER, 0);
        buf.extend_from_slice(entries);
        let mut chunk = Chunk(buf.into_boxed_slice());
        chunk.set_header(count, 0);
        chunk
    }

    /// The entries as stored, from either end.
    fn raw(&self) -> RawIter<'_> {
        RawIter(ChunkIter {
            buf: &self.0,
            front: self.start(),
            back: self.0.len(),
        })
    }

    fn iter(&self) -> ChunkIter<'_> {
        ChunkIter {
            buf: &self.0,
            front: self.start(),
            back: self.0.len(),
        }
    }

    /// The byte range of entry `i` (< count), walked from the nearer end.
    fn range_of(&self, i: usize) -> std::ops::Range<usize> {
        let n = self.count();
        if i < n / 2 {
            let mut off = self.start();
            for _ in 0..i {
                off = next_entry(&self.0, off);
            }
            off..next_entry(&self.0, off)
        } else {
            let mut end = self.0.len();
            for _ in i + 1..n {
                end = prev_entry(&self.0, end);
            }
            prev_entry(&self.0, end)..end
        }
    }

    fn get(&self, i: usize) -> Member<'_> {
        member_at(&self.0, self.range_of(i).start)
    }

    /// Splits off the second half of the entries.
    fn split(&mut self) -> Chunk {
        let keep = self.count() / 2;
        let at = self.range_of(keep).start;
        let tail = Chunk::from_encoded(&self.0[at..], self.count() - keep);
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
    type Item = Member<'a>;

    #[inline]
    fn next(&mut self) -> Option<Member<'a>> {
        (self.front < self.back).then(|| {
            let e = member_at(self.buf, self.front);
            self.front = next_entry(self.buf, self.front);
            e
        })
    }
}

impl DoubleEndedIterator for ChunkIter<'_> {
    #[inline]
    fn next_back(&mut self) -> Option<Self::Item> {
        (self.front < self.back).then(|| {
            self.back = prev_entry(self.buf, self.back);
            member_at(self.buf, self.back)
        })
    }
}

/// A chunk's entries as stored.
struct RawIter<'a>(ChunkIter<'a>);

impl<'a> Iterator for RawIter<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let it = &mut self.0;
        (it.front < it.back).then(|| {
            let start = it.front;
            it.front = next_entry(it.buf, start);
            &it.buf[start..it.front]
        })
    }
}

impl DoubleEndedIterator for RawIter<'_> {
    #[inline]
    fn next_back(&mut self) -> Option<Self::Item> {
        let it = &mut self.0;
        (it.front < it.back).then(|| {
            let end = it.back;
            it.back = prev_entry(it.buf, end);
            &it.buf[it.back..end]
        })
    }
}

/// A list value (see the module's header).
#[derive(Clone, Default)]
pub struct List {
    chunks: VecDeque<Chunk>,
    len: usize,
}

impl std::fmt::Debug for List {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl List {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Chunks (allocations) the list holds.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Member<'_>> + Clone + '_ {
        self.chunks.iter().flat_map(Chunk::iter)
    }

    /// The elements from index `i` on.
    pub fn iter_from(&self, i: usize) -> impl Iterator<Item = Member<'_>> + '_ {
        let (c, j) = self.locate(i.min(self.len));
        self.chunks.range(c..).flat_map(Chunk::iter).skip(j)
    }

    /// The chunk holding element `i` and its place there; for `len`, the
    /// place just past the last element.
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

    pub fn get(&self, i: usize) -> Option<Member<'_>> {
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

    pub fn push_back(&mut self, e: &[u8], limit: ChunkLimit) {
        self.room_for_chunk();
        let enc = encode(e);
        match self.chunks.back_mut() {
            Some(c) if limit.allows(c, &enc) => {
                let end = c.0.len();
                c.splice(end..end, &enc, 1);
            }
            _ => self.chunks.push_back(Chunk::from_encoded(&enc, 1)),
        }
        self.len += 1;
    }

    pub fn push_front(&mut self, e: &[u8], limit: ChunkLimit) {
        self.room_for_chunk();
        let enc = encode(e);
        match self.chunks.front_mut() {
            Some(c) if limit.allows(c, &enc) => c.push_front(&enc, limit),
            _ => self.chunks.push_front(Chunk::from_encoded(&enc, 1)),
        }
        self.len += 1;
    }

    pub fn pop_front(&mut self) -> Option<SmallBuf> {
        let c = self.chunks.front_mut()?;
        let start = c.start();
        let e = SmallBuf::new(&member_at(&c.0, start));
        let next = next_entry(&c.0, start);
        if c.count() == 1 {
            self.chunks.pop_front();
        } else {
            c.pop_front(next);
        }
        self.len -= 1;
        Some(e)
    }

    pub fn pop_back(&mut self) -> Option<SmallBuf> {
        let c = self.chunks.back_mut()?;
        let end = c.0.len();
        let start = prev_entry(&c.0, end);
        let e = SmallBuf::new(&member_at(&c.0, start));
        if c.count() == 1 {
            self.chunks.pop_back();
        } else {
            c.splice(start..end, &[], -1);
        }
        self.len -= 1;
        Some(e)
    }

    /// Splits chunk `c` while an insertion or replacement left it past
    /// the limit with more than one element, so that it stays cheap to
    /// change.
    fn rebalance(&mut self, c: usize, limit: ChunkLimit) {
        if limit.exceeded_by(&self.chunks[c]) {
            let tail = self.chunks[c].split();
            self.chunks.insert(c + 1, tail);
            self.rebalance(c + 1, limit);
            self.rebalance(c, limit);
        }
    }

    /// Replaces element `i` (< len).
    pub fn set(&mut self, i: usize, e: &[u8], limit: ChunkLimit) {
        let (c, j) = self.locate(i);
        let chunk = &mut self.chunks[c];
        let at = chunk.range_of(j);
        chunk.splice(at, &encode(e), 0);
        self.rebalance(c, limit);
    }

    /// Inserts `e` before element `i` (`len`: at the end).
    pub fn insert(&mut self, i: usize, e: &[u8], limit: ChunkLimit) {
        if i == self.len {
            return self.push_back(e, limit);
        }
        let (c, j) = self.locate(i);
        let chunk = &mut self.chunks[c];
        let at = chunk.range_of(j).start;
        chunk.splice(at..at, &encode(e), 1);
        self.len += 1;
        self.rebalance(c, limit);
    }

    /// Removes up to `limit` elements equal to `target`, the first ones
    /// or (`from_back`) the last ones; returns how many. Entries are
    /// compared as stored, each chunk rewritten once if it lost any.
    pub fn remove_matching(&mut self, target: &[u8], limit: usize, from_back: bool) -> usize {
        let want = encode(target);
        let mut removed = 0;
        let n = self.chunks.len();
        for k in 0..n {
            let c = if from_back { n - 1 - k } else { k };
            if removed == limit {
                break;
            }
            let (buf, first) = (&self.chunks[c].0, self.chunks[c].start());
            // The matching entries' byte ranges, up to what is left to remove.
            let mut hits: Vec<std::ops::Range<usize>> = Vec::new();
            if from_back {
                let mut end = buf.len();
                while end > first && removed + hits.len() < limit {
                    let start = prev_entry(buf, end);
                    if buf[start..end] == want[..] {
                        hits.push(start..end);
                    }
                    end = start;
                }
                hits.reverse();
            } else {
                let mut off = first;
                while off < buf.len() && removed + hits.len() < limit {
                    let next = next_entry(buf, off);
                    if buf[off..next] == want[..] {
                        hits.push(off..next);
                    }
                    off = next;
                }
            }
            if !hits.is_empty() {
                let mut entries = Vec::with_capacity(buf.len());
                let mut at = first;
                for h in &hits {
                    entries.extend_from_slice(&buf[at..h.start]);
                    at = h.end;
                }
                entries.extend_from_slice(&buf[at..]);
                let count = self.chunks[c].count() - hits.len();
                self.chunks[c] = Chunk::from_encoded(&entries, count);
                removed += hits.len();
            }
        }
        self.chunks.retain(|c| c.count() > 0);
        self.len -= removed;
        removed
    }

    /// Each element as stored, in order. An element is always stored the
    /// same way (see [`List::encoded`]), so a search compares these
    /// without decoding a thing.
    pub fn spans(&self) -> impl DoubleEndedIterator<Item = &[u8]> + '_ {
        self.chunks.iter().flat_map(Chunk::raw)
    }

    /// How `e` is stored, to compare with [`List::spans`].
    pub fn encoded(e: &[u8]) -> Vec<u8> {
        encode(e).into_vec()
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
        let first = head.start();
        head.splice(first..at, &[], -(j as isize));
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

impl List {
    pub fn from_elements<'a>(
        elements: impl IntoIterator<Item = &'a [u8]>,
        limit: ChunkLimit,
    ) -> List {
        let mut l = List::default();
        for e in elements {
            l.push_back(e, limit);
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const CHUNK_BYTES: usize = 8192;

    fn elem(rng: &mut impl Rng) -> Vec<u8> {
        // Integers (kept as such or, not canonical or too wide, as bytes)...
        if rng.gen_range(0..4) == 0 {
            let i: i64 = match rng.gen_range(0..6) {
                0 => rng.gen(),
                1 => [i64::MIN, i64::MAX, 1 << 62, -(1 << 62), (1 << 62) - 1][rng.gen_range(0..5)],
                _ => rng.gen_range(-300..300),
            };
            let mut s = i.to_string();
            if rng.gen_range(0..10) == 0 {
                s = format!("0{s}");
            }
            return s.into_bytes();
        }
        // ...and strings: mostly short, some past one-byte lengths, a few
        // past a chunk.
        let n = match rng.gen_range(0..20) {
            0 => rng.gen_range(120..400),
            1 if rng.gen_range(0..20) == 0 => rng.gen_range(CHUNK_BYTES..CHUNK_BYTES * 2),
            _ => rng.gen_range(0..12),
        };
        (0..n).map(|_| rng.gen_range(b'a'..=b'c')).collect()
    }

    #[test]
    fn limits_read_as_redis_reads_them() {
        let l = |fill| {
            let c = ChunkLimit::from_fill(fill);
            (c.bytes, c.entries)
        };
        assert_eq!(l(-2), (8192, usize::MAX));
        assert_eq!(l(-1), (4096, usize::MAX));
        assert_eq!(l(-9), (65536, usize::MAX));
        assert_eq!(l(0), (8192, 1));
        assert_eq!(l(128), (8192, 128));
        let mut list = List::default();
        for i in 0..10 {
            list.push_back(format!("e{i}").as_bytes(), ChunkLimit::from_fill(3));
        }
        assert_eq!(
            list.chunks.iter().map(Chunk::count).collect::<Vec<_>>(),
            [3, 3, 3, 1]
        );
    }

    #[test]
    fn entries_read_both_ways() {
        for i in [
            0,
            -1,
            63,
            64,
            127,
            128,
            -128,
            -129,
            1 << 40,
            i64::MIN,
            i64::MAX,
        ] {
            let e = i.to_string().into_bytes();
            let enc = encode(&e);
            assert!(enc.len() <= 11, "kept as an integer");
            let m = member_at(&enc, 0);
            assert!(matches!(m, Member::Int { value, .. } if value == i));
            assert_eq!((&*m, next_entry(&enc, 0)), (&e[..], enc.len()));
            assert_eq!(prev_entry(&enc, enc.len()), 0);
        }
        for (e, len) in [
            (&b"7"[..], 2),
            (b"127", 2),
            (b"128", 4),
            (b"-1", 3),
            (b"1000123", 5),
        ] {
            assert_eq!(encode(e).len(), len, "{e:?}");
        }
        for n in 0..=50 {
            let e: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert_eq!(encode(&e), encode_any(&e, None), "{n}");
        }
        for n in [0, 1, 63, 64, 125, 126, 127, 128, 300, 8255, 8256, 20_000] {
            let e = vec![7u8; n];
            let enc = encode(&e);
            assert_eq!(&*member_at(&enc, 0), &e[..], "{n}");
            assert_eq!(next_entry(&enc, 0), enc.len(), "{n}");
            assert_eq!(prev_entry(&enc, enc.len()), 0, "{n}");
        }
    }

    /// Pushes at the head fill the room they leave, and a full chunk keeps
    /// less than an entry's worth of it.
    #[test]
    fn pushes_at_the_head_leave_little_room_behind() {
        let limit = ChunkLimit::default();
        let mut l = List::default();
        for i in 0..100_000 {
            l.push_front(format!("e{}", i % 10).as_bytes(), limit);
        }
        assert!(l.chunks.len() > 10);
        assert!(
            l.chunks.iter().skip(1).all(|c| c.room() < 4),
            "full chunks keep room"
        );
        assert!(l.chunks[0].room() <= ROOM_MAX);
        let kept: Vec<_> = l.iter().take(3).map(|m| m.to_vec()).collect();
        assert_eq!(kept, [b"e9".to_vec(), b"e8".to_vec(), b"e7".to_vec()]);
    }

    /// Random operations against a VecDeque: same elements, in order.
    #[test]
    fn behaves_as_a_deque() {
        // Redis's default, a count of elements, the smallest size class.
        for fill in [-2, 5, -1] {
            behaves_as_a_deque_under(ChunkLimit::from_fill(fill));
        }
        // Elements of 20 bytes or more kept alone.
        behaves_as_a_deque_under(ChunkLimit::default().with_plain(20));
    }

    fn behaves_as_a_deque_under(limit: ChunkLimit) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut l = List::default();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut most_chunks = 0;
        for step in 0..20_000 {
            match rng.gen_range(0..12) {
                0..=2 => {
                    let e = elem(&mut rng);
                    l.push_back(&e, limit);
                    model.push_back(e);
                }
                3..=5 => {
                    let e = elem(&mut rng);
                    l.push_front(&e, limit);
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
                        l.set(i, &e, limit);
                        model[i] = e;
                    } else {
                        l.insert(i, &e, limit);
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
                assert!(l.iter().map(|m| m.to_vec()).eq(model.iter().cloned()));
                assert!(l
                    .iter()
                    .rev()
                    .map(|m| m.to_vec())
                    .eq(model.iter().rev().cloned()));
                assert!(l.chunks.iter().all(|c| c.count() > 0));
                assert!(l.chunks.iter().all(|c| !limit.exceeded_by(c)));
                assert_eq!(l.chunks.iter().map(Chunk::count).sum::<usize>(), l.len());
                if !model.is_empty() {
                    let i = rng.gen_range(0..model.len());
                    assert_eq!(l.get(i).map(|m| m.to_vec()).as_ref(), Some(&model[i]));
                    // Searching by encoding finds what a search by value finds.
                    let t = elem(&mut rng);
                    let want = List::encoded(&t);
                    assert_eq!(
                        l.spans().position(|s| s == want),
                        model.iter().position(|e| *e == t)
                    );
                    let want = List::encoded(&model[i]);
                    assert_eq!(
                        l.spans().position(|s| s == want),
                        model.iter().position(|e| *e == model[i])
                    );
                    assert!(l
                        .iter_from(i)
                        .map(|m| m.to_vec())
                        .eq(model.range(i..).cloned()));
                }
            }
        }
        assert!(most_chunks > 10, "the test crossed chunks: {most_chunks}");
    }
}
