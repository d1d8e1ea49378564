//! One value in Redis's RDB encoding, and the DUMP payload around it.
//!
//! ```text
//!  DUMP payload:  [type byte][value encoding][RDB version: u16 LE][CRC64: u64 LE]
//!  string value:  [length][bytes]            length: 00xxxxxx | 01xxxxxx xxxxxxxx
//!                 | [0xC0|0xC1|0xC2][int LE]            | 0x80 u32 BE | 0x81 u64 BE
//!                 | [0xC3][clen][len][LZF bytes]   (read only: Shoal writes plain)
//! ```
//!
//! The CRC is CRC-64/Jones as Redis computes it over everything before it.
//! We write RDB version 10 (Redis 7.0's) so that every Redis 7 accepts our
//! payloads, and accept versions up to 12 on RESTORE.

use crate::keyspace::Value;

const RDB_TYPE_STRING: u8 = 0;
const WRITE_VERSION: u16 = 10;
const MAX_READ_VERSION: u16 = 12;

static CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_REDIS);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RdbError {
    #[error("DUMP payload version or checksum are wrong")]
    Checksum,
    #[error("Bad data format")]
    BadFormat,
}

fn write_len(out: &mut Vec<u8>, len: usize) {
    if len < 64 {
        out.push(len as u8);
    } else if len < 16384 {
        out.push(0x40 | (len >> 8) as u8);
        out.push(len as u8);
    } else if len <= u32::MAX as usize {
        out.push(0x80);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

fn write_string(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Int(n) if i8::try_from(*n).is_ok() => {
            out.push(0xC0);
            out.push(*n as i8 as u8);
        }
        Value::Int(n) if i16::try_from(*n).is_ok() => {
            out.push(0xC1);
            out.extend_from_slice(&(*n as i16).to_le_bytes());
        }
        Value::Int(n) if i32::try_from(*n).is_ok() => {
            out.push(0xC2);
            out.extend_from_slice(&(*n as i32).to_le_bytes());
        }
        _ => {
            let mut b = itoa::Buffer::new();
            let bytes = v.str_bytes(&mut b).unwrap_or_default();
            write_len(out, bytes.len());
            out.extend_from_slice(bytes);
        }
    }
}

/// Serialises a value as DUMP does.
pub fn dump(v: &Value) -> Vec<u8> {
    let mut out = vec![RDB_TYPE_STRING];
    write_string(&mut out, v);
    out.extend_from_slice(&WRITE_VERSION.to_le_bytes());
    let crc = CRC64.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RdbError> {
        if self.b.len() < n {
            return Err(RdbError::BadFormat);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    fn byte(&mut self) -> Result<u8, RdbError> {
        Ok(self.take(1)?[0])
    }

    /// A length, or `Err(encoding)` for the special encodings (0xC0..).
    fn len_or_special(&mut self) -> Result<Result<usize, u8>, RdbError> {
        let first = self.byte()?;
        Ok(match first >> 6 {
            0 => Ok((first & 0x3F) as usize),
            1 => Ok((((first & 0x3F) as usize) << 8) | self.byte()? as usize),
            2 if first == 0x80 => {
                Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()) as usize)
            }
            2 if first == 0x81 => {
                Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()) as usize)
            }
            3 => Err(first & 0x3F),
            _ => return Err(RdbError::BadFormat),
        })
    }

    fn len(&mut self) -> Result<usize, RdbError> {
        self.len_or_special()?.map_err(|_| RdbError::BadFormat)
    }

    fn string(&mut self) -> Result<Value, RdbError> {
        match self.len_or_special()? {
            Ok(n) => Ok(Value::string(self.take(n)?)),
            Err(0) => Ok(Value::Int(self.byte()? as i8 as i64)),
            Err(1) => Ok(Value::Int(
                i16::from_le_bytes(self.take(2)?.try_into().unwrap()) as i64,
            )),
            Err(2) => Ok(Value::Int(
                i32::from_le_bytes(self.take(4)?.try_into().unwrap()) as i64,
            )),
            Err(3) => {
                let clen = self.len()?;
                let len = self.len()?;
                let data = lzf_decompress(self.take(clen)?, len)?;
                Ok(Value::string(&data))
            }
            Err(_) => Err(RdbError::BadFormat),
        }
    }
}

/// Checks a DUMP payload's footer and decodes its value.
pub fn restore(payload: &[u8]) -> Result<Value, RdbError> {
    if payload.len() < 10 {
        return Err(RdbError::Checksum);
    }
    let (body, crc) = payload.split_at(payload.len() - 8);
    let version = u16::from_le_bytes([body[body.len() - 2], body[body.len() - 1]]);
    if version > MAX_READ_VERSION
        || CRC64.checksum(body) != u64::from_le_bytes(crc.try_into().unwrap())
    {
        return Err(RdbError::Checksum);
    }
    let mut r = Reader {
        b: &body[..body.len() - 2],
    };
    let v = match r.byte()? {
        RDB_TYPE_STRING => r.string()?,
        _ => return Err(RdbError::BadFormat),
    };
    if !r.b.is_empty() {
        return Err(RdbError::BadFormat);
    }
    Ok(v)
}

/// LZF decompression (the format Redis compresses long strings with).
fn lzf_decompress(input: &[u8], out_len: usize) -> Result<Vec<u8>, RdbError> {
    // A back-reference of at most 264 bytes costs at least two input bytes,
    // so a claimed length beyond that ratio is a lie: refuse it before
    // allocating for it.
    if out_len > input.len().saturating_mul(132) + 64 {
        return Err(RdbError::BadFormat);
    }
    let mut out: Vec<u8> = Vec::with_capacity(out_len);
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            let n = ctrl + 1;
            let lit = input.get(i..i + n).ok_or(RdbError::BadFormat)?;
            out.extend_from_slice(lit);
            i += n;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *input.get(i).ok_or(RdbError::BadFormat)? as usize;
                i += 1;
            }
            len += 2;
            let low = *input.get(i).ok_or(RdbError::BadFormat)? as usize;
            i += 1;
            let back = ((ctrl & 0x1F) << 8) + low + 1;
            if back > out.len() {
                return Err(RdbError::BadFormat);
            }
            let start = out.len() - back;
            for k in 0..len {
                out.push(out[start + k]);
            }
        }
        if out.len() > out_len {
            return Err(RdbError::BadFormat);
        }
    }
    if out.len() != out_len {
        return Err(RdbError::BadFormat);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips() {
        for v in [
            Value::string(b"hello"),
            Value::Int(7),
            Value::Int(-40000),
            Value::Int(1 << 40),
            Value::string(&[b'x'; 20000]),
        ] {
            let p = dump(&v);
            let back = restore(&p).unwrap();
            assert_eq!(format!("{back:?}"), format!("{v:?}"));
        }
    }

    #[test]
    fn redis_payloads_are_accepted() {
        // DUMP output of Redis 7.0.15 for "bar", a 108-byte LZF-compressed
        // string and the integer 12345.
        let bar = b"\x00\x03bar\n\x00\xe6\xbeI`\xeef\xfd\x17";
        assert_eq!(
            format!("{:?}", restore(bar).unwrap()),
            format!("{:?}", Value::string(b"bar"))
        );
        let big = b"\x00\xc3\x0b@l\x03abca\xe0]\x02\x01bc\n\x00:]Q\x06\xe7\xc6\x96\x84";
        let want = "abc".repeat(36);
        assert_eq!(
            format!("{:?}", restore(big).unwrap()),
            format!("{:?}", Value::string(want.as_bytes()))
        );
        let n = b"\x00\xc190\n\x00\x9d\x94\xea'\x93\xfc\x08\xb9";
        assert!(matches!(restore(n).unwrap(), Value::Int(12345)));
        // And ours byte for byte where the encoding is the same.
        assert_eq!(dump(&Value::string(b"bar")), bar.to_vec());
        let mut bad = dump(&Value::string(b"bar"));
        bad[2] ^= 1;
        assert_eq!(restore(&bad), Err(RdbError::Checksum));
    }

    #[test]
    fn lying_lengths_are_refused_without_allocating() {
        // Compressed string claiming 2^62 bytes of output.
        let mut p = vec![0u8, 0xC3, 0x01, 0x81];
        p.extend_from_slice(&(1u64 << 62).to_be_bytes());
        p.push(0);
        p.extend_from_slice(&10u16.to_le_bytes());
        let crc = CRC64.checksum(&p);
        p.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(restore(&p), Err(RdbError::BadFormat));
    }

    #[test]
    fn lzf_back_references() {
        // literal "abc" then a back-reference of length 3 at distance 3.
        let input = [2u8, b'a', b'b', b'c', (1 << 5), 2];
        assert_eq!(lzf_decompress(&input, 6).unwrap(), b"abcabc");
    }
}
