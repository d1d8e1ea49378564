//! Sorted set values: members ordered by (score, member).
//!
//! Redis keeps a skiplist for order and a dict for member → score. Shoal
//! keeps the order in a *chunked sorted array* with counted chunks:
//!
//! ```text
//!   chunks:  [e e e e] [e e e e e e] [e e e] ...     each chunk ≤ CHUNK_MAX, sorted,
//!   fenwick: prefix sums of chunk lengths            every chunk's last < next chunk's first
//! ```
//!
//! - Finding a position is a binary search over the chunks (by their last
//!   element) and then inside one chunk: O(log n).
//! - A rank is the Fenwick prefix of the chunks before plus the position in
//!   the chunk, and the element at a rank is a Fenwick descent: O(log n).
//! - Inserting or removing moves at most `CHUNK_MAX` entries of one chunk (a
//!   bounded memmove) and updates the Fenwick tree in O(log n); splitting a
//!   full chunk or dropping an empty one rebuilds the Fenwick tree in
//!   O(n / CHUNK_MAX), which happens at most once per `CHUNK_MAX / 2`
//!   inserts into that chunk.
//! - Range replies walk the chunks in order: contiguous memory, where a
//!   skiplist chases a pointer per element.
//!
//! An entry is 32 bytes (score + a member inline up to 22 bytes), where a
//! Redis skiplist node is 40-56 bytes plus a separate member allocation.
//!
//! Small sorted sets (at most `zset-max-listpack-entries` members, none
//! longer than `zset-max-listpack-value`) have no member index: a member's
//! score is found by scanning the few entries, as Redis's listpack encoding
//! does. Past the limits a hash index member → score is built, and stays.
//!
//! The index does not hold the members (they are in the order already):
//! an index entry is the member's 64-bit hash and its score, 16 bytes, and
//! a lookup confirms a candidate by finding (score, member) in the order,
//! O(log n). Redis's dict holds a pointer to the member and its score and
//! answers ZSCORE in O(1); this answers in O(log n) and saves a copy of
//! every member plus half of each index slot.

use std::cmp::Ordering;

use super::table::{hash_key, Buckets};
use super::value::SmallBuf;
use super::Limits;

const CHUNK_MAX: usize = 256;

#[derive(Clone, Debug)]
pub struct Entry {
    pub score: f64,
    pub member: SmallBuf,
}

fn cmp(a_score: f64, a: &[u8], b_score: f64, b: &[u8]) -> Ordering {
    // Scores are never NaN (every write path refuses NaN).
    a_score
        .partial_cmp(&b_score)
        .unwrap_or(Ordering::Equal)
        .then_with(|| a.cmp(b))
}

/// See [`ZSet::probe`].
pub enum Probe<'a> {
    Set(&'a ZSet),
    Indexed(hashbrown::HashTable<(&'a [u8], f64)>),
}

impl Probe<'_> {
    pub fn score(&self, m: &[u8]) -> Option<f64> {
        match self {
            Probe::Set(z) => z.score(m),
            Probe::Indexed(t) => t.find(hash_key(m), |(x, _)| *x == m).map(|&(_, s)| s),
        }
    }
}

/// An index slot: which member (by hash) has which score.
#[derive(Clone, Copy, Debug)]
struct Indexed {
    hash: u64,
    score: f64,
}

#[derive(Clone, Debug, Default)]
pub struct ZSet {
    chunks: Vec<Vec<Entry>>,
    /// 1-based Fenwick tree over `chunks[i].len()`.
    fenwick: Vec<usize>,
    len: usize,
    /// member → score, once the set is past the small limits.
    index: Option<Buckets<Indexed>>,
}

/// What one bucket of a sorted set's index holds, for a scan.
pub enum Bucket<'a> {
    Empty,
    Full(&'a Entry),
    /// Its member is among too many members of one score to find cheaply.
    Unresolved,
}

/// Where (score, member) is in the order, if it is there.
fn position(chunks: &[Vec<Entry>], score: f64, member: &[u8]) -> Option<(usize, usize)> {
    let ci = chunks.partition_point(|c| {
        let last = c.last().expect("chunks are never empty");
        cmp(last.score, last.member.as_bytes(), score, member) == Ordering::Less
    });
    let chunk = chunks.get(ci)?;
    let pos = chunk
        .partition_point(|e| cmp(e.score, e.member.as_bytes(), score, member) == Ordering::Less);
    (pos < chunk.len() && chunk[pos].member.as_bytes() == member).then_some((ci, pos))
}

/// Removes the index slot of a member that is indexed with `score`. Which
/// slot goes needs no look at the order: two slots of the same hash and
/// score are the same 16 bytes, whichever members they stand for, and
/// either one may go. (Confirming in the order cost a binary search over
/// the chunks, a cache miss a step, per popped member.)
fn unindex(index: &mut Option<Buckets<Indexed>>, score: f64, member: &[u8]) {
    if let Some(t) = index {
        let h = hash_key(member);
        t.remove(
            h,
            |x| x.hash == h && x.score.to_bits() == score.to_bits(),
            |x| x.hash,
        );
    }
}

impl ZSet {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn encoding(&self) -> &'static str {
        if self.index.is_some() {
            "skiplist"
        } else {
            "listpack"
        }
    }

    pub fn heap_size(&self, samples: usize) -> usize {
        let entry = std::mem::size_of::<Entry>();
        let members = self.iter().map(|e| e.member.heap_size());
        let chunks = self
            .chunks
            .iter()
            .map(|c| c.capacity() * entry)
            .sum::<usize>()
            + super::value::sampled(members, self.len, samples);
        let index = self
            .index
            .as_ref()
            .map_or(0, |t| t.capacity() * (std::mem::size_of::<Indexed>() + 1));
        chunks
            + index
            + self.chunks.capacity() * std::mem::size_of::<Vec<Entry>>()
            + self.fenwick.capacity() * 8
    }

    // ---- the Fenwick tree over chunk lengths ----

    fn rebuild_fenwick(&mut self) {
        let n = self.chunks.len();
        self.fenwick.clear();
        self.fenwick.resize(n + 1, 0);
        for i in 1..=n {
            self.fenwick[i] += self.chunks[i - 1].len();
            let j = i + (i & i.wrapping_neg());
            if j <= n {
                self.fenwick[j] += self.fenwick[i];
            }
        }
    }

    fn fenwick_add(&mut self, chunk: usize, delta: isize) {
        let mut i = chunk + 1;
        while i < self.fenwick.len() {
            self.fenwick[i] = (self.fenwick[i] as isize + delta) as usize;
            i += i & i.wrapping_neg();
        }
    }

    /// How many entries the chunks before `chunk` hold.
    fn prefix(&self, chunk: usize) -> usize {
        let (mut i, mut sum) = (chunk, 0);
        while i > 0 {
            sum += self.fenwick[i];
            i -= i & i.wrapping_neg();
        }
        sum
    }

    /// The (chunk, position) of rank `rank` (< len).
    fn locate(&self, rank: usize) -> (usize, usize) {
        let n = self.chunks.len();
        let (mut pos, mut rem) = (0usize, rank);
        let mut step = n.next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next <= n && self.fenwick[next] <= rem {
                pos = next;
                rem -= self.fenwick[next];
            }
            step >>= 1;
        }
        (pos, rem)
    }

    // ---- order ----

    /// How many entries satisfy `below`, which must hold for a prefix of the
    /// order and fail for the rest (a lower bound by score, member or both).
    pub fn count_below(&self, below: impl Fn(f64, &[u8]) -> bool) -> usize {
        let ci = self.chunks.partition_point(|c| {
            let last = c.last().expect("chunks are never empty");
            below(last.score, last.member.as_bytes())
        });
        if ci == self.chunks.len() {
            return self.len;
        }
        self.prefix(ci) + self.chunks[ci].partition_point(|e| below(e.score, e.member.as_bytes()))
    }

    /// The chunk an entry (score, member) belongs in.
    fn chunk_for(&self, score: f64, member: &[u8]) -> usize {
        let ci = self.chunks.partition_point(|c| {
            let last = c.last().expect("chunks are never empty");
            cmp(last.score, last.member.as_bytes(), score, member) == Ordering::Less
        });
        ci.min(self.chunks.len().saturating_sub(1))
    }

    fn sorted_insert(&mut self, score: f64, member: SmallBuf) {
        if self.chunks.is_empty() {
            self.chunks.push(vec![Entry { score, member }]);
            self.rebuild_fenwick();
            self.len = 1;
            return;
        }
        let mut ci = self.chunk_for(score, member.as_bytes());
        if self.chunks[ci].len() >= CHUNK_MAX {
            let tail = self.chunks[ci].split_off(CHUNK_MAX / 2);
            self.chunks[ci].shrink_to(CHUNK_MAX);
            self.chunks.insert(ci + 1, tail);
            self.rebuild_fenwick();
            let last = self.chunks[ci].last().expect("half a full chunk");
            if cmp(last.score, last.member.as_bytes(), score, member.as_bytes()) == Ordering::Less {
                ci += 1;
            }
        }
        let chunk = &mut self.chunks[ci];
        let pos = chunk.partition_point(|e| {
            cmp(e.score, e.member.as_bytes(), score, member.as_bytes()) == Ordering::Less
        });
        chunk.insert(pos, Entry { score, member });
        self.fenwick_add(ci, 1);
        self.len += 1;
    }

    /// Removes the entry (score, member) from the order; returns its member buffer.
    fn sorted_remove(&mut self, score: f64, member: &[u8]) -> Option<SmallBuf> {
        if self.chunks.is_empty() {
            return None;
        }
        let ci = self.chunk_for(score, member);
        let chunk = &mut self.chunks[ci];
        let pos = chunk.partition_point(|e| {
            cmp(e.score, e.member.as_bytes(), score, member) == Ordering::Less
        });
        if pos >= chunk.len() || chunk[pos].member.as_bytes() != member {
            return None;
        }
        let e = chunk.remove(pos);
        self.len -= 1;
        if chunk.is_empty() {
            self.chunks.remove(ci);
            self.rebuild_fenwick();
        } else {
            if chunk.capacity() > 4 * chunk.len() + 8 {
                chunk.shrink_to(2 * chunk.len());
            }
            self.fenwick_add(ci, -1);
        }
        Some(e.member)
    }

    // ---- members ----

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        match &self.index {
            Some(t) => {
                let h = hash_key(member);
                t.find(h, |x| {
                    x.hash == h && position(&self.chunks, x.score, member).is_some()
                })
                .map(|x| x.score)
            }
            None => self
                .chunks
                .iter()
                .flatten()
                .find(|e| e.member.as_bytes() == member)
                .map(|e| e.score),
        }
    }

    /// A sorted set of distinct members, in any order, equal to inserting
    /// them one by one in that order (a -0 score becomes 0 where it would
    /// have been written while the set was small), built in one pass:
    /// inserting one by one scans a small set for each member.
    pub fn from_distinct<M: AsRef<[u8]>>(
        entries: impl IntoIterator<Item = (M, f64)>,
        limits: Limits,
    ) -> ZSet {
        let mut all: Vec<Entry> = Vec::new();
        let mut long = false;
        for (i, (m, score)) in entries.into_iter().enumerate() {
            let m = m.as_ref();
            long |= m.len() > limits.value;
            let small = !long && i < limits.entries;
            all.push(Entry {
                score: if small && score == 0.0 { 0.0 } else { score },
                member: SmallBuf::new(m),
            });
        }
        all.sort_by(|a, b| cmp(a.score, a.member.as_bytes(), b.score, b.member.as_bytes()));
        debug_assert!(all
            .windows(2)
            .all(|w| w[0].member.as_bytes() != w[1].member.as_bytes()));
        let mut z = ZSet {
            len: all.len(),
            ..ZSet::default()
        };
        // Half-full chunks, as inserts in order leave them.
        let mut rest = all.into_iter();
        loop {
            let chunk: Vec<Entry> = rest.by_ref().take(CHUNK_MAX / 2).collect();
            if chunk.is_empty() {
                break;
            }
            z.chunks.push(chunk);
        }
        z.rebuild_fenwick();
        if z.len > limits.entries || long {
            z.build_index();
        }
        z
    }

    /// The set, ready to be asked `asks` members' scores: a small set (no
    /// index, found by a scan) is hashed once into a temporary index when
    /// the asks would otherwise scan it whole each time.
    pub fn probe(&self, asks: usize) -> Probe<'_> {
        if self.index.is_some() || !super::packed::worth_indexing(self.len, asks) {
            return Probe::Set(self);
        }
        let mut t: hashbrown::HashTable<(&[u8], f64)> =
            hashbrown::HashTable::with_capacity(self.len);
        for e in self.iter() {
            let m = e.member.as_bytes();
            t.insert_unique(hash_key(m), (m, e.score), |(x, _)| hash_key(x));
        }
        Probe::Indexed(t)
    }

    /// Sets a member's score; returns the previous one.
    pub fn insert(&mut self, member: &[u8], score: f64, limits: Limits) -> Option<f64> {
        let old = self.score(member);
        // Redis writes a small sorted set's scores as listpack entries,
        // where -0 becomes the integer 0 and clients read 0 back; a set
        // that is (or is about to turn) a skiplist keeps -0.
        let small = self.index.is_none()
            && (old.is_some() || (self.len < limits.entries && member.len() <= limits.value));
        let score = if small && score == 0.0 { 0.0 } else { score };
        if let Some(o) = old {
            if o.to_bits() == score.to_bits() {
                return old;
            }
            // The index slot first: the order still confirms it.
            if let Some(t) = &mut self.index {
                let h = hash_key(member);
                let chunks = &self.chunks;
                if let Some(x) = t.find_mut(h, |x| {
                    x.hash == h
                        && x.score.to_bits() == o.to_bits()
                        && position(chunks, o, member).is_some()
                }) {
                    x.score = score;
                }
            }
            let buf = self
                .sorted_remove(o, member)
                .expect("indexed member is in the order");
            self.sorted_insert(score, buf);
            return old;
        }
        self.sorted_insert(score, SmallBuf::new(member));
        match &mut self.index {
            Some(t) => {
                let hash = hash_key(member);
                t.insert_unique(hash, Indexed { hash, score }, |x| x.hash);
            }
            None if self.len > limits.entries || member.len() > limits.value => self.build_index(),
            None => {}
        }
        None
    }

    fn build_index(&mut self) {
        let mut t = Buckets::with_capacity(self.len);
        for e in self.chunks.iter().flatten() {
            let hash = hash_key(e.member.as_bytes());
            t.insert_unique(
                hash,
                Indexed {
                    hash,
                    score: e.score,
                },
                |x: &Indexed| x.hash,
            );
        }
        self.index = Some(t);
    }

    /// Removes a member; returns its score.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let score = self.score(member)?;
        unindex(&mut self.index, score, member);
        self.sorted_remove(score, member);
        Some(score)
    }

    /// A member's 0-based rank in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<(usize, f64)> {
        let score = self.score(member)?;
        let r = self.count_below(|s, m| cmp(s, m, score, member) == Ordering::Less);
        Some((r, score))
    }

    /// The entry at a rank (< len).
    pub fn at(&self, rank: usize) -> &Entry {
        let (ci, i) = self.locate(rank);
        &self.chunks[ci][i]
    }

    /// Entries of ranks `lo..hi` (ascending), or `hi-1` down to `lo` when `rev`.
    pub fn range(&self, lo: usize, hi: usize, rev: bool) -> Range<'_> {
        let hi = hi.min(self.len);
        let lo = lo.min(hi);
        let start = if lo == hi {
            (0, 0)
        } else if rev {
            self.locate(hi - 1)
        } else {
            self.locate(lo)
        };
        Range {
            z: self,
            chunk: start.0,
            pos: start.1,
            left: hi - lo,
            rev,
        }
    }

    /// Removes the entries of ranks `lo..hi` and returns them in order.
    pub fn remove_range(&mut self, lo: usize, hi: usize) -> Vec<Entry> {
        let hi = hi.min(self.len);
        if lo >= hi {
            return Vec::new();
        }
        let (mut ci, start) = self.locate(lo);
        let mut out = Vec::with_capacity(hi - lo);
        let mut left = hi - lo;
        let mut pos = start;
        let mut emptied = false;
        while left > 0 {
            let chunk = &mut self.chunks[ci];
            let take = (chunk.len() - pos).min(left);
            out.extend(chunk.drain(pos..pos + take));
            emptied |= chunk.is_empty();
            if !emptied {
                if chunk.capacity() > 4 * chunk.len() + 8 {
                    chunk.shrink_to(2 * chunk.len());
                }
                self.fenwick_add(ci, -(take as isize));
            }
            left -= take;
            ci += 1;
            pos = 0;
        }
        for e in &out {
            unindex(&mut self.index, e.score, e.member.as_bytes());
        }
        self.len -= out.len();
        // A pop takes from one chunk at its end: O(log n), where dropping
        // emptied chunks renumbers them all.
        if emptied {
            self.chunks.retain(|c| !c.is_empty());
            self.rebuild_fenwick();
        }
        out
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.chunks.iter().flatten()
    }

    /// The index's bucket count and layout epoch (None while small).
    pub fn buckets(&self) -> Option<(usize, u16)> {
        self.index.as_ref().map(|t| (t.num_buckets(), t.epoch()))
    }

    /// The member in bucket `i` of the index: found in the order among the
    /// members of its score by its hash, giving up past 64 of them (a set
    /// where many members share a score is scanned in hash order instead).
    pub fn bucket(&self, i: usize) -> Bucket<'_> {
        let Some(x) = self.index.as_ref().and_then(|t| t.get_bucket(i)) else {
            return Bucket::Empty;
        };
        let ci = self
            .chunks
            .partition_point(|c| c.last().expect("chunks are never empty").score < x.score);
        let pos = self
            .chunks
            .get(ci)
            .map_or(0, |c| c.partition_point(|e| e.score < x.score));
        let ties = self.chunks[ci.min(self.chunks.len())..]
            .iter()
            .flatten()
            .skip(pos)
            .take_while(|e| e.score == x.score)
            .take(64);
        for e in ties {
            if hash_key(e.member.as_bytes()) == x.hash {
                return Bucket::Full(e);
            }
        }
        Bucket::Unresolved
    }
}

/// Iterates a rank range, forwards or backwards.
pub struct Range<'a> {
    z: &'a ZSet,
    chunk: usize,
    pos: usize,
    left: usize,
    rev: bool,
}

impl<'a> Iterator for Range<'a> {
    type Item = &'a Entry;

    fn next(&mut self) -> Option<&'a Entry> {
        if self.left == 0 {
            return None;
        }
        let e = &self.z.chunks[self.chunk][self.pos];
        self.left -= 1;
        if self.left > 0 {
            if self.rev {
                if self.pos == 0 {
                    self.chunk -= 1;
                    self.pos = self.z.chunks[self.chunk].len() - 1;
                } else {
                    self.pos -= 1;
                }
            } else {
                self.pos += 1;
                if self.pos == self.z.chunks[self.chunk].len() {
                    self.chunk += 1;
                    self.pos = 0;
                }
            }
        }
        Some(e)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Range<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: Limits = Limits {
        entries: 16,
        value: 64,
    };

    fn members(z: &ZSet) -> Vec<String> {
        z.iter()
            .map(|e| String::from_utf8_lossy(e.member.as_bytes()).into_owned())
            .collect()
    }

    #[test]
    fn order_rank_and_ranges_match_a_sorted_model() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut z = ZSet::default();
        let mut model: std::collections::BTreeMap<Vec<u8>, f64> = Default::default();
        for _ in 0..20_000 {
            let m = format!("m{}", rng.gen_range(0..3000)).into_bytes();
            if rng.gen_bool(0.7) {
                let s = rng.gen_range(0..500) as f64;
                z.insert(&m, s, BIG);
                model.insert(m, s);
            } else {
                assert_eq!(z.remove(&m), model.remove(&m));
            }
        }
        let mut sorted: Vec<(f64, Vec<u8>)> = model.iter().map(|(m, s)| (*s, m.clone())).collect();
        sorted.sort_by(|a, b| cmp(a.0, &a.1, b.0, &b.1));
        assert_eq!(z.len(), sorted.len());
        assert_eq!(z.encoding(), "skiplist");
        for (r, (s, m)) in sorted.iter().enumerate().step_by(37) {
            assert_eq!(z.rank(m), Some((r, *s)));
            assert_eq!(z.at(r).member.as_bytes(), &m[..]);
        }
        let fwd: Vec<&[u8]> = z
            .range(10, 200, false)
            .map(|e| e.member.as_bytes())
            .collect();
        let want: Vec<&[u8]> = sorted[10..200].iter().map(|e| &e.1[..]).collect();
        assert_eq!(fwd, want);
        let rev: Vec<&[u8]> = z
            .range(10, 200, true)
            .map(|e| e.member.as_bytes())
            .collect();
        assert_eq!(rev, want.iter().rev().copied().collect::<Vec<_>>());
        let below_100 = z.count_below(|s, _| s < 100.0);
        assert_eq!(below_100, sorted.iter().filter(|e| e.0 < 100.0).count());
        let removed = z.remove_range(5, 1000);
        assert_eq!(removed.len(), 995);
        assert_eq!(z.len(), sorted.len() - 995);
        assert_eq!(z.score(removed[0].member.as_bytes()), None);
        assert_eq!(z.at(5).member.as_bytes(), &sorted[1000].1[..]);
    }

    /// Pops from both ends and cuts from the middle, within one chunk and
    /// across several: ranks, members and scores stay those of the model.
    #[test]
    fn removed_ranges_keep_ranks_exact() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut z = ZSet::default();
        let mut model: Vec<(f64, Vec<u8>)> = Vec::new();
        for i in 0..5000 {
            let m = format!("m{i}").into_bytes();
            let s = rng.gen_range(0..1000) as f64;
            z.insert(&m, s, BIG);
            model.push((s, m));
        }
        model.sort_by(|a, b| cmp(a.0, &a.1, b.0, &b.1));
        while !model.is_empty() {
            let n = match rng.gen_range(0..10) {
                0 => rng.gen_range(1..600),
                _ => rng.gen_range(1..4),
            }
            .min(model.len());
            let lo = match rng.gen_range(0..3) {
                0 => 0,
                1 => model.len() - n,
                _ => rng.gen_range(0..=model.len() - n),
            };
            let got = z.remove_range(lo, lo + n);
            let want: Vec<_> = model.drain(lo..lo + n).collect();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!((g.score, g.member.as_bytes()), (w.0, &w.1[..]));
                assert_eq!(z.score(&w.1), None);
            }
            assert_eq!(z.len(), model.len());
            for r in (0..model.len()).step_by(97) {
                assert_eq!(z.at(r).member.as_bytes(), &model[r].1[..]);
                assert_eq!(z.rank(&model[r].1), Some((r, model[r].0)));
            }
        }
    }

    /// Built at once or inserted one by one: the same order, scores (to
    /// the bit, -0 included), encoding and lookups.
    #[test]
    fn built_at_once_equals_inserted_one_by_one() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for round in 0..200 {
            let n = rng.gen_range(0..40);
            let mut seen = std::collections::HashSet::new();
            let mut entries: Vec<(Vec<u8>, f64)> = Vec::new();
            while entries.len() < n {
                let m = if rng.gen_ratio(1, 30) {
                    vec![b'l'; 20 + rng.gen_range(0..3)]
                } else {
                    format!("m{}", rng.gen_range(0..60)).into_bytes()
                };
                if seen.insert(m.clone()) {
                    let s = [0.0, -0.0, 1.5, -2.0, f64::INFINITY][rng.gen_range(0..5)];
                    entries.push((m, s));
                }
            }
            let limits = Limits {
                entries: 16,
                value: 20,
            };
            let mut one = ZSet::default();
            for (m, s) in &entries {
                one.insert(m, *s, limits);
            }
            let all = ZSet::from_distinct(entries.iter().map(|(m, s)| (m, *s)), limits);
            let view = |z: &ZSet| -> Vec<(Vec<u8>, u64)> {
                z.iter()
                    .map(|e| (e.member.as_bytes().to_vec(), e.score.to_bits()))
                    .collect()
            };
            assert_eq!(view(&all), view(&one), "round {round}");
            assert_eq!(all.encoding(), one.encoding(), "round {round}");
            for (r, (m, _)) in view(&one).iter().enumerate() {
                assert_eq!(all.rank(m), one.rank(m));
                assert_eq!(all.rank(m).map(|x| x.0), Some(r));
            }
        }
    }

    #[test]
    fn small_sets_have_no_index_and_ties_order_by_member() {
        let mut z = ZSet::default();
        for m in ["c", "a", "b"] {
            z.insert(m.as_bytes(), 1.0, BIG);
        }
        z.insert(b"z", f64::NEG_INFINITY, BIG);
        assert_eq!(members(&z), ["z", "a", "b", "c"]);
        assert_eq!(z.encoding(), "listpack");
        assert_eq!(z.insert(b"a", 5.0, BIG), Some(1.0));
        assert_eq!(members(&z), ["z", "b", "c", "a"]);
    }
}
