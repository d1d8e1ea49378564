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
//! Every operation is a linear scan, which is why the owning types convert
//! to a table past `*-max-listpack-entries` entries or
//! `*-max-listpack-value` bytes in one element, as Redis does. The buffer
//! is exactly its contents (as listpack's realloc makes it) and carries its
//! own count, so a `Packed` is one 16-byte pointer and one allocation:
//! these values are small and many, so every byte is paid a million times.

/// Appends `n` as LEB128.
fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn varint_len(mut n: usize) -> usize {
    let mut l = 1;
    while n >= 0x80 {
        n >>= 7;
        l += 1;
    }
    l
}

/// Reads the entry at `off`: its bytes and the offset of the next entry.
fn read_at(buf: &[u8], off: usize) -> (&[u8], usize) {
    let (mut n, mut shift, mut p) = (0usize, 0, off);
    loop {
        let b = buf[p];
        p += 1;
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
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
        let mut v = Vec::with_capacity(self.0.len() - at.len() + insert.len());
        v.extend_from_slice(&self.0[..at.start]);
        v.extend_from_slice(insert);
        v.extend_from_slice(&self.0[at.end..]);
        Self::set_len(&mut v, count);
        self.0 = v.into_boxed_slice();
    }

    fn encoded(e: &[u8]) -> Vec<u8> {
        let mut enc = Vec::with_capacity(varint_len(e.len()) + e.len());
        put_varint(&mut enc, e.len());
        enc.extend_from_slice(e);
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
            put_varint(&mut enc, e.len());
            enc.extend_from_slice(e);
            n += 1;
        }
        let end = self.0.len();
        self.splice(end..end, &enc, n);
    }

    /// Finds the first entry equal to `e` among entries `0, stride, 2*stride,
    /// ...` (a hash's fields are every other entry). Returns its byte offset.
    pub fn find(&self, e: &[u8], stride: usize) -> Option<usize> {
        let mut off = COUNT;
        let mut i = 0usize;
        while off < self.0.len() {
            let (cur, next) = read_at(&self.0, off);
            if i.is_multiple_of(stride) && cur == e {
                return Some(off);
            }
            off = next;
            i += 1;
        }
        None
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
}
