//! Streams: an append-only log of entries keyed by ID, and the consumer
//! groups that read it.
//!
//! ```text
//!  Stream ── nodes: BTreeMap<first ID, Node>        ms-seq, strictly growing
//!         │     Node ── up to 100 entries / 4 KB, packed: ID deltas, a flag,
//!         │             values only when the fields are the node's first's
//!         ├─ last_id, max_deleted, entries_added    survive XDEL/XTRIM/emptying
//!         └─ groups: BTreeMap<name, Group>          name order = Redis's rax order
//!              Group ── last_id, entries_read
//!                    ├─ pel: BTreeMap<StreamId, Pending>     who holds each entry
//!                    └─ consumers: BTreeMap<name, Consumer>  each with its own PEL
//! ```
//!
//! The nodes are Redis's radix tree of listpacks in spirit: an entry of a
//! few small fields costs a few bytes beyond its values, and approximate
//! trimming (`~`) removes whole nodes. A deletion rewrites its node.
//!
//! Invariants:
//! - Every entry's ID is at most `last_id`; an append must be greater.
//! - Nodes never overlap and are never empty; `length` is their sum.
//! - An ID is in a consumer's `pel` exactly when the group's `pel` holds it
//!   with that consumer's name.
//! - A stream may be empty and stays a key (unlike other collections):
//!   Redis keeps its last ID and groups.

use std::collections::{BTreeMap, BTreeSet};

use super::packed::{put_entry, put_varint, read_at, read_varint};

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

/// Reads the LEB128 number at `*at`, moving past it.
fn next_varint(b: &[u8], at: &mut usize) -> u64 {
    let (n, next) = read_varint(b, *at);
    *at = next;
    n as u64
}

/// Reads the length-prefixed bytes at `*at`, moving past them.
fn next_bytes<'a>(b: &'a [u8], at: &mut usize) -> &'a [u8] {
    let (item, next) = read_at(b, *at);
    *at = next;
    item
}

/// One entry's fields and values, as stored in its node: the values only
/// when its fields are the node's (`fields`), else fields and values.
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    fields: Option<&'a [u8]>,
    data: &'a [u8],
    pairs: usize,
}

impl<'a> Entry<'a> {
    /// Fields and values, alternating.
    pub fn items(self) -> impl Iterator<Item = &'a [u8]> {
        let (mut f, mut d) = (0, 0);
        let (fields, data) = (self.fields, self.data);
        (0..2 * self.pairs).map(move |i| match fields {
            Some(names) if i % 2 == 0 => next_bytes(names, &mut f),
            _ => next_bytes(data, &mut d),
        })
    }

    /// How many fields and values (twice the number of pairs).
    pub fn len(self) -> usize {
        2 * self.pairs
    }

    pub fn is_empty(self) -> bool {
        self.pairs == 0
    }
}

impl std::fmt::Debug for Entry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.items().map(String::from_utf8_lossy))
            .finish()
    }
}

/// Entries per node at most by default (Redis's `stream-node-max-entries`).
pub const NODE_ENTRIES: u64 = 100;

/// When a node is full and the next entry starts a new one:
/// `stream-node-max-entries` and `stream-node-max-bytes` (bytes of
/// entries), 0 for no limit, as Redis reads them. Nodes are what `~`
/// trimming removes whole, so these decide what an approximate trim and
/// its LIMIT leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeLimits {
    pub entries: u64,
    pub bytes: u64,
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            entries: NODE_ENTRIES,
            bytes: 4096,
        }
    }
}
const SAME_FIELDS: u8 = 1;

/// Consecutive entries packed together, as Redis's listpack nodes: each
/// entry is its ID as deltas from the node's first (the sequence as a
/// delta too within the first's millisecond), a flag, then its values alone when its field names are the
/// node's first entry's, else its pairs. Small entries cost a few bytes
/// beyond their values.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    last: StreamId,
    count: u32,
    /// The first entry's field names, packed.
    fields: Box<[u8]>,
    field_count: u32,
    data: Vec<u8>,
}

impl Node {
    fn new<A: AsRef<[u8]>>(pairs: &[A]) -> Node {
        let mut fields = Vec::new();
        pairs
            .iter()
            .step_by(2)
            .for_each(|f| put_entry(&mut fields, f.as_ref()));
        Node {
            last: StreamId::MIN,
            count: 0,
            fields: fields.into_boxed_slice(),
            field_count: (pairs.len() / 2) as u32,
            data: Vec::new(),
        }
    }

    fn full(&self, limits: NodeLimits) -> bool {
        // A node never grows past Redis's largest listpack (1 GB).
        let bytes = match limits.bytes {
            0 => 1 << 30,
            b => b.min(1 << 30),
        };
        (limits.entries > 0 && u64::from(self.count) >= limits.entries)
            || self.data.len() as u64 >= bytes
    }

    fn same_fields<A: AsRef<[u8]>>(&self, pairs: &[A]) -> bool {
        if pairs.len() / 2 != self.field_count as usize {
            return false;
        }
        let mut at = 0;
        pairs
            .iter()
            .step_by(2)
            .all(|f| next_bytes(&self.fields, &mut at) == f.as_ref())
    }

    /// Appends an entry whose ID is past every other (`first` is the
    /// node's key).
    fn push<A: AsRef<[u8]>>(&mut self, first: StreamId, id: StreamId, pairs: &[A]) {
        // Within the first entry's millisecond the sequence is a delta too.
        let ms = id.ms - first.ms;
        put_varint(&mut self.data, ms as usize);
        put_varint(
            &mut self.data,
            (if ms == 0 { id.seq - first.seq } else { id.seq }) as usize,
        );
        if self.same_fields(pairs) {
            self.data.push(SAME_FIELDS);
            pairs
                .iter()
                .skip(1)
                .step_by(2)
                .for_each(|v| put_entry(&mut self.data, v.as_ref()));
        } else {
            self.data.push(0);
            put_varint(&mut self.data, pairs.len() / 2);
            pairs
                .iter()
                .for_each(|p| put_entry(&mut self.data, p.as_ref()));
        }
        self.last = id;
        self.count += 1;
    }

    /// Every entry, in order.
    fn decode(&self, first: StreamId) -> Vec<(StreamId, Entry<'_>)> {
        let mut out = Vec::with_capacity(self.count as usize);
        let mut at = 0;
        while at < self.data.len() {
            let ms = next_varint(&self.data, &mut at);
            let seq = next_varint(&self.data, &mut at);
            let seq = if ms == 0 { first.seq + seq } else { seq };
            let ms = first.ms + ms;
            let flag = self.data[at];
            at += 1;
            let (fields, pairs) = if flag & SAME_FIELDS != 0 {
                (Some(&self.fields[..]), self.field_count as usize)
            } else {
                (None, next_varint(&self.data, &mut at) as usize)
            };
            let body = at;
            let items = if fields.is_some() { pairs } else { 2 * pairs };
            for _ in 0..items {
                next_bytes(&self.data, &mut at);
            }
            let e = Entry {
                fields,
                data: &self.data[body..at],
                pairs,
            };
            out.push((StreamId::new(ms, seq), e));
        }
        out
    }

    /// The node without the entries `drop` says to remove, keyed by its
    /// new first entry; `None` if none is left.
    fn without(
        &self,
        first: StreamId,
        drop: impl Fn(StreamId) -> bool,
    ) -> Option<(StreamId, Node)> {
        let kept: Vec<_> = self
            .decode(first)
            .into_iter()
            .filter(|(id, _)| !drop(*id))
            .collect();
        let (new_first, e0) = kept.first()?;
        let pairs0: Vec<&[u8]> = e0.items().collect();
        let mut node = Node::new(&pairs0);
        for (id, e) in &kept {
            let pairs: Vec<&[u8]> = e.items().collect();
            node.push(*new_first, *id, &pairs);
        }
        Some((*new_first, node))
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
    /// Nodes by their first entry's ID.
    nodes: BTreeMap<StreamId, Node>,
    length: usize,
    pub last_id: StreamId,
    pub max_deleted: StreamId,
    pub entries_added: u64,
    pub groups: BTreeMap<Box<[u8]>, Group>,
}

impl Stream {
    pub fn len(&self) -> usize {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    pub fn first_id(&self) -> Option<StreamId> {
        self.nodes.keys().next().copied()
    }

    /// XINFO STREAM's recorded-first-entry-id: 0-0 when empty.
    pub fn recorded_first_id(&self) -> StreamId {
        self.first_id().unwrap_or(StreamId::MIN)
    }

    pub fn last_entry_id(&self) -> Option<StreamId> {
        self.nodes.values().next_back().map(|n| n.last)
    }

    /// The node that would hold `id`.
    fn node_of(&self, id: StreamId) -> Option<(StreamId, &Node)> {
        self.nodes
            .range(..=id)
            .next_back()
            .filter(|(_, n)| n.last >= id)
            .map(|(k, n)| (*k, n))
    }

    pub fn get(&self, id: StreamId) -> Option<Entry<'_>> {
        let (first, node) = self.node_of(id)?;
        node.decode(first)
            .into_iter()
            .find(|(i, _)| *i == id)
            .map(|(_, e)| e)
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
    pub fn append<A: AsRef<[u8]>>(&mut self, id: StreamId, pairs: &[A], limits: NodeLimits) {
        debug_assert!(id > self.last_id);
        self.insert_loaded(id, pairs, limits);
        self.last_id = id;
        self.entries_added += 1;
    }

    /// Adds an entry past every other without touching the IDs and
    /// counters (a dump's entries; the caller sets those after).
    pub fn insert_loaded<A: AsRef<[u8]>>(&mut self, id: StreamId, pairs: &[A], limits: NodeLimits) {
        let tail = self.nodes.last_entry().filter(|n| !n.get().full(limits));
        match tail {
            Some(mut n) => {
                let first = *n.key();
                n.get_mut().push(first, id, pairs);
            }
            None => {
                // The full tail takes no more entries: give back its slack.
                if let Some(mut tail) = self.nodes.last_entry() {
                    tail.get_mut().data.shrink_to_fit();
                }
                let mut node = Node::new(pairs);
                node.push(id, id, pairs);
                self.nodes.insert(id, node);
            }
        }
        self.length += 1;
    }

    /// Replaces the node keyed `first` by what `drop` leaves of it;
    /// returns how many entries went.
    fn rebuild(&mut self, first: StreamId, drop: impl Fn(StreamId) -> bool) -> usize {
        let Some(node) = self.nodes.remove(&first) else {
            return 0;
        };
        let before = node.count as usize;
        let after = match node.without(first, drop) {
            Some((key, n)) => {
                let c = n.count as usize;
                self.nodes.insert(key, n);
                c
            }
            None => 0,
        };
        self.length -= before - after;
        before - after
    }

    /// Deletes one entry; whether it was there.
    pub fn delete(&mut self, id: StreamId) -> bool {
        let Some((first, _)) = self.node_of(id) else {
            return false;
        };
        if self.rebuild(first, |i| i == id) == 0 {
            return false;
        }
        if id > self.max_deleted {
            self.max_deleted = id;
        }
        true
    }

    /// Trims from the oldest entry, a whole node at a time while every
    /// entry in it should go; then, unless `approx` (Redis's `~`), within
    /// the first node left. Approximate trimming removes at most `limit`
    /// entries when not 0. Returns how many went.
    pub fn trim(&mut self, how: Trim, approx: bool, limit: u64) -> u64 {
        let mut removed = 0u64;
        while let Some((&first, node)) = self.nodes.iter().next() {
            let count = u64::from(node.count);
            let whole = match how {
                Trim::MaxLen(max) => {
                    if self.length as u64 <= max {
                        break;
                    }
                    self.length as u64 - count >= max
                }
                Trim::MinId(min) => node.last < min,
            };
            if approx && limit > 0 && removed + count > limit {
                break;
            }
            if whole {
                self.nodes.remove(&first);
                self.length -= count as usize;
                removed += count;
                continue;
            }
            if approx {
                break;
            }
            removed += match how {
                Trim::MaxLen(max) => {
                    let n = self.length as u64 - max;
                    let cut: Vec<StreamId> = node
                        .decode(first)
                        .iter()
                        .take(n as usize)
                        .map(|(id, _)| *id)
                        .collect();
                    let last_cut = *cut.last().expect("n > 0 here");
                    self.rebuild(first, |id| id <= last_cut) as u64
                }
                Trim::MinId(min) => self.rebuild(first, |id| id < min) as u64,
            };
            break;
        }
        removed
    }

    /// Entries from `start` to `end` inclusive, in order or reversed.
    pub fn range(
        &self,
        start: StreamId,
        end: StreamId,
        rev: bool,
    ) -> Box<dyn Iterator<Item = (StreamId, Entry<'_>)> + '_> {
        if start > end {
            return Box::new(std::iter::empty());
        }
        // The node holding `start` may begin before it.
        let from = self
            .nodes
            .range(..=start)
            .next_back()
            .map_or(start, |(k, _)| *k);
        let nodes = self.nodes.range(from..=end);
        fn within<'a>(
            (first, node): (&'a StreamId, &'a Node),
            start: StreamId,
            end: StreamId,
        ) -> impl Iterator<Item = (StreamId, Entry<'a>)> {
            node.decode(*first)
                .into_iter()
                .filter(move |(id, _)| (start..=end).contains(id))
        }
        let within = move |n| within(n, start, end);
        if rev {
            Box::new(
                nodes
                    .rev()
                    .flat_map(move |n| within(n).collect::<Vec<_>>().into_iter().rev()),
            )
        } else {
            Box::new(nodes.flat_map(within))
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
            let before = self.entries_added - self.length as u64;
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
        // A B-tree slot per node (its key and the node) with slack.
        let nodes: usize = self
            .nodes
            .values()
            .map(|n| 96 + n.fields.len() + n.data.capacity())
            .sum();
        nodes
            + self
                .groups
                .iter()
                .map(|(n, g)| 96 + n.len() + g.heap_size())
                .sum::<usize>()
    }

    /// Redis's radix-tree-keys of XINFO STREAM: the nodes.
    pub fn nodes(&self) -> u64 {
        self.nodes.len() as u64
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
    fn entries_keep_their_fields_across_nodes() {
        let big = vec![b'x'; 300];
        let mut s = Stream::default();
        for i in 1..=450u64 {
            let id = StreamId::new(i, i % 3);
            // Every fifth entry has other fields than its node's first.
            let pairs: Vec<&[u8]> = if i % 5 == 0 {
                vec![b"other", b"", b"a", &big]
            } else {
                vec![b"a", &big[..(i as usize % 40)]]
            };
            s.append(id, &pairs, NodeLimits::default());
        }
        assert!(s.nodes() >= 5, "{} nodes", s.nodes());
        let e = s.get(StreamId::new(10, 1)).unwrap();
        assert_eq!(
            e.items().collect::<Vec<_>>(),
            vec![&b"other"[..], b"", b"a", &big]
        );
        let e = s.get(StreamId::new(11, 2)).unwrap();
        assert_eq!(e.items().collect::<Vec<_>>(), vec![&b"a"[..], &big[..11]]);
        assert!(s.get(StreamId::new(11, 0)).is_none());
        let fwd: Vec<StreamId> = s
            .range(StreamId::new(98, 0), StreamId::new(205, 0), false)
            .map(|(id, _)| id)
            .collect();
        let mut back: Vec<StreamId> = s
            .range(StreamId::new(98, 0), StreamId::new(205, 0), true)
            .map(|(id, _)| id)
            .collect();
        back.reverse();
        assert_eq!(fwd, back);
        assert_eq!(fwd.len(), 107);
        assert!(s.delete(StreamId::new(100, 1)));
        assert!(!s.delete(StreamId::new(100, 1)));
        assert_eq!(s.len(), 449);
        assert_eq!(s.max_deleted, StreamId::new(100, 1));
        assert_eq!(s.range(StreamId::MIN, StreamId::MAX, false).count(), 449);
        for i in 1..=450u64 {
            s.delete(StreamId::new(i, i % 3));
        }
        assert!(s.is_empty() && s.nodes() == 0);
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
            s.append(id, &[b"f", b"v"], NodeLimits::default());
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
