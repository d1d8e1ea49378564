//! [`Member`]: an element of a collection as its readers see it.
//!
//! Collections that keep integers as integers (an intset, a list's
//! integer entries) have no bytes to lend for them; a `Member` carries
//! the formatted digits itself, so every reader still sees bytes.

use std::ops::Deref;

/// A canonical 64-bit integer (Redis's rule: no sign but `-`, no leading
/// zero, no `-0`), the only strings kept as integers.
pub fn canonical_int(b: &[u8]) -> Option<i64> {
    crate::protocol::request::parse_i64(b)
}

/// An element as a collection hands it out: its bytes, borrowed, or an
/// integer kept as such (an intset's member, a list's integer entry)
/// formatted on the spot, with its value, so that an intset is asked
/// without parsing it back.
#[derive(Clone, Copy)]
pub enum Member<'a> {
    Bytes(&'a [u8]),
    Int {
        value: i64,
        digits: [u8; 20],
        len: u8,
    },
}

impl<'a> Member<'a> {
    pub fn int(value: i64) -> Member<'a> {
        let mut b = itoa::Buffer::new();
        let s = b.format(value).as_bytes();
        let mut digits = [0; 20];
        digits[..s.len()].copy_from_slice(s);
        Member::Int {
            value,
            digits,
            len: s.len() as u8,
        }
    }

    /// The bytes, when they are borrowed from the collection.
    pub fn borrowed(&self) -> Option<&'a [u8]> {
        match *self {
            Member::Bytes(b) => Some(b),
            Member::Int { .. } => None,
        }
    }
}

impl Deref for Member<'_> {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            Member::Bytes(b) => b,
            Member::Int { digits, len, .. } => &digits[..*len as usize],
        }
    }
}

impl std::fmt::Debug for Member<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self))
    }
}
