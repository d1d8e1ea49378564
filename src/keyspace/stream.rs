//! Streams: an append-only log of entries keyed by ID, and the consumer
//! groups that read it.
//!
//! ```text
//!  Stream ── entries: BTreeMap<StreamId, Entry>     ms-seq, strictly growing
//!         ├─ last_id, max_deleted, entries_added    survive XDEL/XTRIM/emptying
//!         └─ groups: BTreeMap<name, Group>          name order = Redis's rax order
//!              Group ── last_id, entries_read
//!                    ├─ pel: BTreeMap<StreamId, Pending>     who holds each entry
//!                    └─ consumers: BTreeMap<name, Consumer>  each with its own PEL
//! ```
//!
//! Invariants:
//! - Every key of `entries` is at most `last_id`; an append must be greater.
//! - An ID is in a consumer's `pel` exactly when the group's `pel` holds it
//!   with that consumer's name.
//! - A stream may be empty and stays a key (unlike other collections):
//!   Redis keeps its last ID and groups.
//!
//! An entry's fields and values live in one allocation, each prefixed by
//! its length as a LEB128 varint: a stream entry is small and read whole.

use std::collections::{BTreeMap, BTreeSet};

/// A stream entry's ID: milliseconds and a sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub const fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// The next ID, or `None` past the last one (Redis's streamIncrID).
    pub fn next(self) -> Option<StreamId> {
        match (self.ms, self.seq) {
            (u64::MAX, u64::MAX) => None,
            (ms, u64::MAX) => Some(StreamId::new(ms + 1, 0)),
            (ms, seq) => Some(StreamId::new(ms, seq + 1)),
        }
    }

    /// The previous ID, or `None` before 0-0.
    pub fn prev(self) -> Option<StreamId> {
        match (self.ms, self.seq) {
            (0, 0) => None,
            (ms, 0) => Some(StreamId::new(ms - 1, u64::MAX)),
            (ms, seq) => Some(StreamId::new(ms, seq - 1)),
        }
    }

    pub fn is_zero(self) -> bool {
        self == StreamId::MIN
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Reads an unsigned number as Redis's `string2ull` does: a plain decimal,
/// or else whatever C's `strtoull` accepts whole (leading blanks, a sign,
/// a minus that wraps around), but no negative plain decimal.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if let Some(n) = crate::protocol::request::parse_i64(s) {
        return u64::try_from(n).ok();
    }
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
        i += 1;
    }
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = &s[i..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if negative { n.wrapping_neg() } else { n })
}

/// How an ID argument may be written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum IdForm {
    /// `-` and `+` stand for the first and last possible IDs.
    Range,
    /// `-` and `+` are refused (Redis's strict parse).
    Strict,
    /// As strict, and `<ms>-*` asks for the next sequence (XADD).
    Add,
}

/// A parsed ID argument; `seq_given` is false for XADD's `<ms>-*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedId {
    pub id: StreamId,
    pub seq_given: bool,
}

/// Parses `ms[-seq]` as Redis does; a missing sequence is `missing_seq`.
pub fn parse_id(arg: &[u8], missing_seq: u64, form: IdForm) -> Option<ParsedId> {
    if arg.len() > 127 {
        return None;
    }
    // Redis copies the argument into a C string: a NUL ends it.
    let arg = match arg.iter().position(|&b| b == 0) {
        Some(end) => &arg[..end],
        None => arg,
    };
    let full = |id| {
        Some(ParsedId {
            id,
            seq_given: true,
        })
    };
    match arg {
        b"-" | b"+" if form != IdForm::Range => None,
        b"-" => full(StreamId::MIN),
        b"+" => full(StreamId::MAX),
        _ => {
            let (ms, seq) = match arg.iter().position(|&b| b == b'-') {
                Some(dash) => (&arg[..dash], Some(&arg[dash + 1..])),
                None => (arg, None),
            };
            let ms = parse_u64(ms)?;
            match seq {
                Some(b"*") if form == IdForm::Add => Some(ParsedId {
                    id: StreamId::new(ms, 0),
                    seq_given: false,
                }),
                Some(seq) => full(StreamId::new(ms, parse_u64(seq)?)),
                None => full(StreamId::new(ms, missing_seq)),
            }
        }
    }
}

/// One entry's fields and values.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry(Box<[u8]>);

impl Entry {
    pub fn new<A: AsRef<[u8]>>(pairs: &[A]) -> Entry {
        let mut out = Vec::with_capacity(pairs.iter().map(|p| p.as_ref().len() + 2).sum());
        for p in pairs {
            let p = p.as_ref();
            let mut n = p.len();
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
            out.extend_from_slice(p);
        }
        Entry(out.into_boxed_slice())
    }

    /// Fields and values, alternating.
    pub fn items(&self) -> EntryItems<'_> {
        EntryItems(&self.0)
    }

    /// How many fields and values (twice the number of pairs).
    pub fn len(&self) -> usize {
        self.items().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn heap_size(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.items().map(String::from_utf8_lossy))
            .finish()
    }
}

pub struct EntryItems<'a>(&'a [u8]);

impl<'a> Iterator for EntryItems<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.0.is_empty() {
            return None;
        }
        let mut n = 0usize;
        let mut shift = 0;
        let mut i = 0;
        loop {
            let b = self.0[i];
            n |= usize::from(b & 0x7f) << shift;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let item = &self.0[i..i + n];
        self.0 = &self.0[i + n..];
        Some(item)
    }
}

/// A delivered entry not yet acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub consumer: Box<[u8]>,
    /// Unix milliseconds of the last delivery.
    pub delivery_time: i64,
    pub delivery_count: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Consumer {
    /// Unix milliseconds of the consumer's last read or claim.
    pub seen_time: i64,
    pub pel: BTreeSet<StreamId>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    pub last_id: StreamId,
    /// Entries the group has read, counted from the first ever added;
    /// `None` when it cannot be known (Redis's -1).
    pub entries_read: Option<u64>,
    pub pel: BTreeMap<StreamId, Pending>,
    pub consumers: BTreeMap<Box<[u8]>, Consumer>,
}

impl Group {
    pub fn new(last_id: StreamId, entries_read: Option<u64>) -> Group {
        Group {
            last_id,
            entries_read,
            ..Group::default()
        }
    }

    /// The consumer called `name`, created if absent (the flag says so).
    pub fn consumer(&mut self, name: &[u8], now_ms: i64) -> (&mut Consumer, bool) {
        let created = !self.consumers.contains_key(name);
        let c = self
            .consumers
            .entry(name.into())
            .or_insert_with(|| Consumer {
                seen_time: now_ms,
                pel: BTreeSet::new(),
            });
        (c, created)
    }

    /// Hands a pending entry to `consumer` (created by the caller), from
    /// whoever held it; creates the entry if absent.
    pub fn assign(&mut self, id: StreamId, consumer: &[u8], time: i64, count: u64) {
        if let Some(old) = self.pel.get(&id) {
            if &*old.consumer != consumer {
                if let Some(c) = self.consumers.get_mut(&old.consumer) {
                    c.pel.remove(&id);
                }
            }
        }
        self.pel.insert(
            id,
            Pending {
                consumer: consumer.into(),
                delivery_time: time,
                delivery_count: count,
            },
        );
        if let Some(c) = self.consumers.get_mut(consumer) {
            c.pel.insert(id);
        }
    }

    /// Acknowledges one entry; whether it was pending.
    pub fn ack(&mut self, id: StreamId) -> bool {
        match self.pel.remove(&id) {
            Some(p) => {
                if let Some(c) = self.consumers.get_mut(&p.consumer) {
                    c.pel.remove(&id);
                }
                true
            }
            None => false,
        }
    }

    /// Deletes a consumer and its pending entries; how many it had.
    pub fn remove_consumer(&mut self, name: &[u8]) -> Option<usize> {
        let c = self.consumers.remove(name)?;
        for id in &c.pel {
            self.pel.remove(id);
        }
        Some(c.pel.len())
    }

    fn heap_size(&self) -> usize {
        let pel: usize = self.pel.values().map(|p| 64 + p.consumer.len()).sum();
        let consumers: usize = self
            .consumers
            .iter()
            .map(|(n, c)| 64 + n.len() + 24 * c.pel.len())
            .sum();
        pel + consumers
    }
}

/// Why an append has no ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextIdError {
    /// Not greater than the stream's last ID.
    NotGreater,
    /// `ms-*` where the last ID already has that millisecond's last
    /// sequence number.
    SequenceExhausted,
}

/// How XADD/XTRIM trim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trim {
    MaxLen(u64),
    MinId(StreamId),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stream {
    entries: BTreeMap<StreamId, Entry>,
    pub last_id: StreamId,
    pub max_deleted: StreamId,
    pub entries_added: u64,
    pub groups: BTreeMap<Box<[u8]>, Group>,
    /// Bytes of the entries' own allocations.
    entry_bytes: usize,
}

/// Entries per node of Redis's radix tree of listpacks
/// (`stream-node-max-entries`), the grain of approximate trimming.
pub const NODE_ENTRIES: u64 = 100;

impl Stream {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn first_id(&self) -> Option<StreamId> {
        self.entries.keys().next().copied()
    }

    /// XINFO STREAM's recorded-first-entry-id: 0-0 when empty.
    pub fn recorded_first_id(&self) -> StreamId {
        self.first_id().unwrap_or(StreamId::MIN)
    }

    pub fn last_entry_id(&self) -> Option<StreamId> {
        self.entries.keys().next_back().copied()
    }

    pub fn get(&self, id: StreamId) -> Option<&Entry> {
        self.entries.get(&id)
    }

    /// The ID an append would get: `wanted` (a full ID, or `ms-*`) or,
    /// without one, the clock's millisecond or the last ID's successor.
    pub fn next_id(&self, wanted: Option<ParsedId>, now_ms: i64) -> Result<StreamId, NextIdError> {
        let id = match wanted {
            Some(ParsedId {
                id,
                seq_given: true,
            }) => id,
            // `ms-*` never moves on to the next millisecond.
            Some(ParsedId { id, .. }) if id.ms == self.last_id.ms => {
                if self.last_id.seq == u64::MAX {
                    return Err(NextIdError::SequenceExhausted);
                }
                StreamId::new(id.ms, self.last_id.seq + 1)
            }
            Some(ParsedId { id, .. }) => id,
            None => {
                let ms = now_ms.max(0) as u64;
                if ms > self.last_id.ms {
                    StreamId::new(ms, 0)
                } else {
                    self.last_id.next().ok_or(NextIdError::NotGreater)?
                }
            }
        };
        if id > self.last_id {
            Ok(id)
        } else {
            Err(NextIdError::NotGreater)
        }
    }

    /// Appends an entry whose ID [`Stream::next_id`] chose.
    pub fn append(&mut self, id: StreamId, entry: Entry) {
        debug_assert!(id > self.last_id);
        self.entry_bytes += entry.heap_size();
        self.entries.insert(id, entry);
        self.last_id = id;
        self.entries_added += 1;
    }

    /// Adds an entry read from a dump, in ID order; the caller sets the
    /// IDs and counters after.
    pub fn insert_loaded(&mut self, id: StreamId, entry: Entry) {
        self.entry_bytes += entry.heap_size();
        self.entries.insert(id, entry);
    }

    /// Deletes one entry; whether it was there.
    pub fn delete(&mut self, id: StreamId) -> bool {
        match self.entries.remove(&id) {
            Some(e) => {
                self.entry_bytes -= e.heap_size();
                if id > self.max_deleted {
                    self.max_deleted = id;
                }
                true
            }
            None => false,
        }
    }

    /// Trims from the oldest entry; returns how many went. `approx` trims
    /// whole nodes of [`NODE_ENTRIES`] only, as Redis does with `~`, and
    /// at most `limit` entries when not 0.
    pub fn trim(&mut self, how: Trim, approx: bool, limit: u64) -> u64 {
        let mut removed = 0u64;
        loop {
            let len = self.entries.len() as u64;
            let want = match how {
                Trim::MaxLen(max) => len.saturating_sub(max),
                Trim::MinId(min) => self.entries.range(..min).count() as u64,
            };
            if want == 0 {
                break;
            }
            let n = if approx {
                // A whole node goes only if every entry in it should.
                let node = NODE_ENTRIES.min(len);
                if want < node || (limit > 0 && removed + node > limit) {
                    break;
                }
                node
            } else {
                want
            };
            for _ in 0..n {
                if let Some((_, e)) = self.entries.pop_first() {
                    self.entry_bytes -= e.heap_size();
                }
            }
            removed += n;
            if !approx {
                break;
            }
        }
        removed
    }

    /// Entries from `start` to `end` inclusive, in order or reversed.
    pub fn range(
        &self,
        start: StreamId,
        end: StreamId,
        rev: bool,
    ) -> Box<dyn Iterator<Item = (StreamId, &Entry)> + '_> {
        if start > end {
            return Box::new(std::iter::empty());
        }
        let r = self.entries.range(start..=end).map(|(id, e)| (*id, e));
        if rev {
            Box::new(r.rev())
        } else {
            Box::new(r)
        }
    }

    /// Redis's streamRangeHasTombstones from `start` on: whether a deleted
    /// entry may lie at or after `start` among the entries.
    fn has_tombstones_from(&self, start: StreamId) -> bool {
        match self.first_id() {
            Some(first) if !self.max_deleted.is_zero() && first <= self.max_deleted => {
                start <= self.max_deleted
            }
            _ => false,
        }
    }

    /// How many entries came before and up to `id` since the first ever
    /// added, if that can be known (Redis's
    /// streamEstimateDistanceFromFirstEverEntry).
    pub fn entries_read_at(&self, id: StreamId) -> Option<u64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if self.is_empty() && id <= self.last_id {
            return Some(self.entries_added);
        }
        if id == self.last_id {
            return Some(self.entries_added);
        }
        if id > self.last_id {
            return None;
        }
        let first = self.first_id().unwrap_or(StreamId::MAX);
        if self.max_deleted.is_zero() || self.max_deleted < first {
            let before = self.entries_added - self.entries.len() as u64;
            if id < first {
                return Some(before);
            }
            if id == first {
                return Some(before + 1);
            }
        }
        None
    }

    /// A group's lag (XINFO GROUPS), if it can be known; negative when a
    /// group was told it read more than was ever added, as Redis says.
    pub fn lag(&self, g: &Group) -> Option<i64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        let lag = |read: u64| self.entries_added as i64 - read as i64;
        if let Some(read) = g.entries_read {
            if !self.has_tombstones_from(g.last_id) {
                return Some(lag(read));
            }
        }
        self.entries_read_at(g.last_id).map(lag)
    }

    /// Moves a group's last delivered ID forward to `id` as a read of it
    /// does, keeping its read counter when it can.
    pub fn advance_group(&mut self, group: &[u8], id: StreamId) {
        let tombstones = self.has_tombstones_from(id);
        let estimate = self.entries_read_at(id);
        let added = self.entries_added;
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        if id <= g.last_id {
            return;
        }
        match g.entries_read {
            Some(n) if !tombstones => g.entries_read = Some(n + 1),
            _ if added > 0 => g.entries_read = estimate,
            _ => {}
        }
        g.last_id = id;
    }

    /// Approximate heap bytes (MEMORY USAGE).
    pub fn heap_size(&self) -> usize {
        // A B-tree slot per entry: its key, the entry's box, and node slack.
        self.entry_bytes
            + self.entries.len() * 40
            + self
                .groups
                .iter()
                .map(|(n, g)| 96 + n.len() + g.heap_size())
                .sum::<usize>()
    }

    /// Redis's radix-tree-keys of XINFO STREAM: the listpack nodes the
    /// entries would fill.
    pub fn nodes(&self) -> u64 {
        (self.entries.len() as u64).div_ceil(NODE_ENTRIES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_as_redis_reads_them() {
        let p = |s: &str, f| parse_id(s.as_bytes(), 0, f).map(|p| (p.id, p.seq_given));
        assert_eq!(p("5", IdForm::Strict), Some((StreamId::new(5, 0), true)));
        assert_eq!(p("5-3", IdForm::Strict), Some((StreamId::new(5, 3), true)));
        assert_eq!(p("5-*", IdForm::Add), Some((StreamId::new(5, 0), false)));
        assert_eq!(p("5-*", IdForm::Strict), None);
        assert_eq!(p("-", IdForm::Strict), None);
        assert_eq!(p("+", IdForm::Range), Some((StreamId::MAX, true)));
        assert_eq!(p("-1", IdForm::Strict), None);
        assert_eq!(p("1--1", IdForm::Strict), None);
        assert_eq!(p(" 7", IdForm::Strict), Some((StreamId::new(7, 0), true)));
        assert_eq!(p("+7-1", IdForm::Strict), Some((StreamId::new(7, 1), true)));
        assert_eq!(
            p("1- -1", IdForm::Strict),
            Some((StreamId::new(1, u64::MAX), true))
        );
        assert_eq!(p("18446744073709551616", IdForm::Strict), None);
        assert_eq!(p("", IdForm::Strict), None);
        assert_eq!(p("1-", IdForm::Strict), None);
        assert_eq!(p("0x1", IdForm::Strict), None);
    }

    #[test]
    fn entries_keep_their_fields() {
        let big = vec![b'x'; 300];
        let e = Entry::new(&[&b"a"[..], b"", &big]);
        let items: Vec<&[u8]> = e.items().collect();
        assert_eq!(items, vec![&b"a"[..], b"", &big[..]]);
    }

    #[test]
    fn appends_and_trims() {
        let given = |ms, seq_given| {
            Some(ParsedId {
                id: StreamId::new(ms, 0),
                seq_given,
            })
        };
        let mut s = Stream::default();
        for i in 1..=250 {
            let id = s.next_id(given(i, true), 0).unwrap();
            s.append(id, Entry::new(&[b"f", b"v"]));
        }
        assert_eq!(s.next_id(given(3, true), 0), Err(NextIdError::NotGreater));
        assert_eq!(s.next_id(given(250, false), 0), Ok(StreamId::new(250, 1)));
        assert_eq!(s.next_id(given(3, false), 0), Err(NextIdError::NotGreater));
        assert_eq!(s.next_id(None, 7), Ok(StreamId::new(250, 1)));
        assert_eq!(s.trim(Trim::MaxLen(120), true, 0), 100);
        assert_eq!(s.len(), 150);
        assert_eq!(s.trim(Trim::MaxLen(120), false, 0), 30);
        assert_eq!(s.first_id(), Some(StreamId::new(131, 0)));
        assert_eq!(s.trim(Trim::MinId(StreamId::new(200, 0)), false, 0), 69);
        assert_eq!(s.entries_added, 250);
        s.last_id = StreamId::new(250, u64::MAX);
        assert_eq!(
            s.next_id(given(250, false), 0),
            Err(NextIdError::SequenceExhausted)
        );
        assert_eq!(s.next_id(None, 0), Ok(StreamId::new(251, 0)));
    }
}
