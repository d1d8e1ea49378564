//! The append-only log on disk: file layout, record framing, scanning.
//!
//! ```text
//!  dir/appendonlydir/                 (`appenddirname`; files named after
//!                                     `appendfilename`, as in Redis)
//!    appendonly.aof.manifest          which files, in which order
//!    appendonly.aof.2.base.aof        a snapshot (records), written by a rewrite
//!    appendonly.aof.3.incr.aof        records appended since that snapshot
//!
//!  manifest lines: file appendonly.aof.2.base.aof seq 2 type b
//!                  file appendonly.aof.3.incr.aof seq 3 type i
//!  record:         [payload length: u32 LE][CRC-32C of payload: u32 LE][payload]
//!  payload:        the RESP-encoded effects of one command (SELECT included
//!                  when the database changes), exactly as the effect stream
//!                  carries them
//! ```
//!
//! The layout follows Redis 7's multi-part AOF (a manifest naming base and
//! incremental files) so that compaction can later add a base snapshot and
//! switch files by rewriting the manifest atomically. Unlike Redis's AOF,
//! every record carries a checksum, so a torn write and a flipped byte are
//! told apart:
//! - a bad or incomplete record at the very end of the last file is a torn
//!   tail (a crash mid-write): start-up cuts it off and says how many bytes;
//! - a bad record followed by more data is corruption: start-up stops and
//!   names the file and offset; `shoal check-aof --fix` truncates there.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

static CRC32C: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

pub const HEADER: usize = 8;

/// Appends one framed record to `out`.
pub fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&CRC32C.checksum(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Starts a record whose payload will be written in place after it; call
/// [`seal`] with the same start once the payload is complete.
pub fn begin(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    start
}

pub fn seal(out: &mut [u8], start: usize) {
    let payload_len = out.len() - start - HEADER;
    let crc = CRC32C.checksum(&out[start + HEADER..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The first whole record of `data`, for records that arrive in pieces
/// (a full sync's snapshot): `Ok(None)` until it is all there, then its
/// total length. A checksum mismatch is an error: the bytes came over a
/// connection, where nothing is torn.
pub fn first_record(data: &[u8]) -> Result<Option<usize>, String> {
    if data.len() < HEADER {
        return Ok(None);
    }
    let len = u32::from_le_bytes(data[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(data[4..8].try_into().unwrap());
    if data.len() < HEADER + len {
        return Ok(None);
    }
    if CRC32C.checksum(&data[HEADER..HEADER + len]) != crc {
        return Err("a snapshot record fails its checksum".into());
    }
    Ok(Some(HEADER + len))
}

/// The result of reading one file's records.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Every byte is part of a good record, but for `room` zero bytes at
    /// the end: space written ahead for more records (see `log.rs`).
    Clean { records: usize, room: u64 },
    /// Good up to `good_len`; what follows is an incomplete or bad last record.
    TornTail {
        records: usize,
        good_len: u64,
        cut: u64,
    },
    /// A bad record at `offset` with more data after it.
    Corrupt { records: usize, offset: u64 },
}

/// Whether a log file starts as Redis writes its append-only files: a
/// RESP command (`*<count>\r\n$`) or a timestamp annotation (`#TS:`). A
/// Shoal record starts with its length, which never reads so.
pub fn is_redis_commands(head: &[u8]) -> bool {
    if head.starts_with(b"#TS:") {
        return true;
    }
    let Some(rest) = head.strip_prefix(b"*") else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && rest[digits..].starts_with(b"\r\n$")
}

/// Reads `data` record by record, handing each good payload to `each`.
pub fn scan(
    data: &[u8],
    mut each: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<Scan, String> {
    let mut pos = 0usize;
    let mut records = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        if is_zeros(rest) {
            return Ok(Scan::Clean {
                records,
                room: rest.len() as u64,
            });
        }
        if rest.len() < HEADER {
            return Ok(Scan::TornTail {
                records,
                good_len: pos as u64,
                cut: rest.len() as u64,
            });
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
        if rest.len() < HEADER + len {
            // A length running past the end is what a torn write leaves.
            return Ok(Scan::TornTail {
                records,
                good_len: pos as u64,
                cut: rest.len() as u64,
            });
        }
        let payload = &rest[HEADER..HEADER + len];
        if CRC32C.checksum(payload) != crc {
            // Followed by nothing, or by room written ahead: the last
            // record, torn.
            if is_zeros(&rest[HEADER + len..]) {
                return Ok(Scan::TornTail {
                    records,
                    good_len: pos as u64,
                    cut: (HEADER + len) as u64,
                });
            }
            return Ok(Scan::Corrupt {
                records,
                offset: pos as u64,
            });
        }
        each(payload)?;
        records += 1;
        pos += HEADER + len;
    }
    Ok(Scan::Clean { records, room: 0 })
}

/// Whether `bytes` are all zero. A zero header reads as an empty record
/// (its checksum is zero too), so zeros are room only when nothing but
/// zeros follows.
fn is_zeros(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// The files a manifest lists: an optional base, then incremental files,
/// replayed in that order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub base: Option<(String, u64)>,
    pub incr: Vec<(String, u64)>,
}

impl Manifest {
    fn render(&self) -> String {
        let mut out = String::new();
        if let Some((name, seq)) = &self.base {
            out.push_str(&format!("file {name} seq {seq} type b\n"));
        }
        for (name, seq) in &self.incr {
            out.push_str(&format!("file {name} seq {seq} type i\n"));
        }
        out
    }

    /// Every file, in replay order.
    pub fn files(&self) -> Vec<&str> {
        self.base
            .iter()
            .chain(self.incr.iter())
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// The next unused sequence number.
    pub fn next_seq(&self) -> u64 {
        self.base
            .iter()
            .chain(self.incr.iter())
            .map(|(_, s)| *s)
            .max()
            .unwrap_or(0)
            + 1
    }

    fn parse(text: &str) -> Result<Manifest, String> {
        let mut incr = Vec::new();
        let mut base = None;
        for (i, line) in text.lines().enumerate() {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.is_empty() || w[0].starts_with('#') {
                continue;
            }
            match w.as_slice() {
                // Redis's manifest lists files awaiting deletion as
                // history; they hold nothing to load.
                ["file", _, "seq", _, "type", "h"] => {}
                ["file", name, "seq", seq, "type", kind @ ("i" | "b")] => {
                    let seq = seq
                        .parse()
                        .map_err(|_| format!("manifest line {}: bad seq '{seq}'", i + 1))?;
                    if name.contains('/') {
                        return Err(format!(
                            "manifest line {}: file name '{name}' has a path",
                            i + 1
                        ));
                    }
                    if *kind == "b" {
                        base = Some((name.to_string(), seq));
                    } else {
                        incr.push((name.to_string(), seq));
                    }
                }
                _ => return Err(format!("manifest line {}: cannot parse '{line}'", i + 1)),
            }
        }
        if incr.is_empty() {
            return Err("manifest lists no incremental file".to_string());
        }
        Ok(Manifest { base, incr })
    }
}

/// Redis's append-only log found in a data directory
/// ([`AofDir::redis_log`]).
#[derive(Debug)]
pub struct RedisLog {
    /// In load order: Redis 7's base then incremental files, or Redis 6's
    /// one file (an RDB preamble, if any, then commands).
    pub files: Vec<PathBuf>,
    /// Redis 6's single file, outside the append-only directory.
    pub single: bool,
    /// The first sequence number Redis's manifest does not use.
    pub next_seq: u64,
}

/// The append-only directory of a data dir, and the name its files are
/// named after (`appendfilename`: `<name>.manifest`, `<name>.<seq>.base.aof`,
/// `<name>.<seq>.incr.aof`).
#[derive(Clone)]
pub struct AofDir {
    pub path: PathBuf,
    pub name: String,
}

impl AofDir {
    pub fn new(dir: &Path, dirname: &str, filename: &str) -> AofDir {
        AofDir {
            path: dir.join(dirname),
            name: filename.to_string(),
        }
    }

    /// The directory `dir`, `appenddirname` and `appendfilename` name now.
    pub fn configured(server: &crate::server::Server) -> AofDir {
        let cfg = server.config.read();
        AofDir::new(
            Path::new(cfg.get("dir")),
            cfg.get("appenddirname"),
            cfg.get("appendfilename"),
        )
    }

    fn manifest(&self) -> PathBuf {
        self.path.join(format!("{}.manifest", self.name))
    }

    pub fn base_name(&self, seq: u64) -> String {
        format!("{}.{seq}.base.aof", self.name)
    }

    pub fn incr_name(&self, seq: u64) -> String {
        format!("{}.{seq}.incr.aof", self.name)
    }

    /// Redis's own append-only log where Shoal's would be, if `dir` (the
    /// node's data directory) holds one: Redis 7's manifest naming files
    /// of plain commands (or an RDB base and such files), or Redis 6's
    /// single file (named as this directory's files are, in `dir`) with
    /// no manifest. Shoal neither continues such files nor cuts them as
    /// torn records (its checksummed records are another format): it
    /// imports them (`load::import_redis`).
    pub fn redis_log(&self, dir: &Path) -> Option<RedisLog> {
        let single = dir.join(&self.name);
        if !self.manifest().exists() {
            return single.is_file().then(|| RedisLog {
                files: vec![single],
                single: true,
                next_seq: 1,
            });
        }
        let m = fs::read_to_string(self.manifest()).ok()?;
        let m = Manifest::parse(&m).ok()?;
        let plain_commands = |name: &str| {
            let mut head = [0u8; 32];
            let Ok(n) = fs::File::open(self.path.join(name))
                .and_then(|mut f| io::Read::read(&mut f, &mut head))
            else {
                return false;
            };
            // A Shoal file whose first record's length happens to read so
            // still checks out as records.
            is_redis_commands(&head[..n])
                && !matches!(
                    fs::read(self.path.join(name)).map(|d| scan(&d, |_| Ok(()))),
                    Ok(Ok(Scan::Clean { .. }))
                )
        };
        m.files().into_iter().any(plain_commands).then(|| RedisLog {
            files: m.files().iter().map(|n| self.path.join(n)).collect(),
            single: false,
            next_seq: m.next_seq(),
        })
    }

    /// The manifest, if one is there and reads.
    pub fn existing_manifest(&self) -> Option<Manifest> {
        let text = fs::read_to_string(self.manifest()).ok()?;
        Manifest::parse(&text).ok()
    }

    /// Reads the manifest. With none yet, creates the directory, the
    /// manifest and a first incremental file; if `seed` names a snapshot
    /// file (SAVE's), it becomes the base, so a node starts from a backup.
    pub fn open_or_create(&self, seed: Option<&Path>) -> io::Result<Manifest> {
        fs::create_dir_all(&self.path)?;
        let mpath = self.manifest();
        match fs::read_to_string(&mpath) {
            Ok(text) => Manifest::parse(&text).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", mpath.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let m = match seed.filter(|p| p.exists()) {
                    Some(snapshot) => {
                        let base = self.base_name(1);
                        fs::copy(snapshot, self.path.join(&base))?;
                        fs::File::open(self.path.join(&base))?.sync_all()?;
                        tracing::info!(
                            "Starting from the snapshot {}: it is the base of a new log",
                            snapshot.display()
                        );
                        Manifest {
                            base: Some((base, 1)),
                            incr: vec![(self.incr_name(2), 2)],
                        }
                    }
                    None => Manifest {
                        base: None,
                        incr: vec![(self.incr_name(1), 1)],
                    },
                };
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.path.join(&m.incr[0].0))?;
                self.write_manifest(&m)?;
                Ok(m)
            }
            Err(e) => Err(e),
        }
    }

    /// Replaces the manifest atomically: write a temporary file, fsync it,
    /// rename it over the old one, fsync the directory.
    pub fn write_manifest(&self, m: &Manifest) -> io::Result<()> {
        let tmp = self.path.join(format!("{}.manifest.tmp", self.name));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(m.render().as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, self.manifest())?;
        fs::File::open(&self.path)?.sync_all()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Removes files of the directory that the manifest does not name
    /// (left by a rewrite that a crash interrupted, or replaced by one).
    pub fn remove_unlisted(&self, m: &Manifest) {
        let keep: Vec<&str> = m.files();
        if let Ok(entries) = fs::read_dir(&self.path) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name
                    .strip_prefix(self.name.as_str())
                    .is_some_and(|rest| rest.starts_with('.') && rest != ".manifest")
                    && !keep.contains(&name.as_str())
                {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }

    /// The file new records go to: the manifest's last incremental file.
    pub fn current(&self, m: &Manifest) -> PathBuf {
        self.file(&m.incr.last().expect("a manifest lists at least one file").0)
    }
}

/// What `shoal check-aof` found.
pub struct CheckReport {
    pub lines: Vec<String>,
    pub ok: bool,
}

/// `shoal check-aof [--fix] DIR`: verifies every file the manifest lists;
/// with `fix`, truncates a damaged file at its last good record (dropping
/// what follows, as redis-check-aof --fix does) and drops later files.
pub fn check(aof: &AofDir, fix: bool) -> io::Result<CheckReport> {
    let text = fs::read_to_string(aof.manifest())?;
    let mut m =
        Manifest::parse(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut lines = Vec::new();
    let mut ok = true;
    let files: Vec<String> = m.files().iter().map(|s| s.to_string()).collect();
    let base_count = m.base.is_some() as usize;
    for (i, name) in files.iter().enumerate() {
        let path = aof.file(name);
        let data = fs::read(&path)?;
        // A base that is a Redis RDB file (a dump.rdb a node started from)
        // is checked as one, and never cut: records are not its format.
        if i < base_count && super::rdb::is_rdb_file(&data) {
            let enc = crate::keyspace::Encodings::default();
            match super::rdb::read_file(&data, &enc, |_| Ok(())) {
                Ok((keys, _)) => lines.push(format!(
                    "{}: OK, a Redis RDB file of {keys} keys, {} bytes",
                    path.display(),
                    data.len()
                )),
                Err(e) => {
                    lines.push(format!("{}: {e} (an RDB file is not cut)", path.display()));
                    ok = false;
                }
            }
            continue;
        }
        let report =
            scan(&data, |_| Ok(())).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if !matches!(report, Scan::Clean { .. }) && is_redis_commands(&data[..data.len().min(32)]) {
            lines.push(format!(
                "{}: Redis's plain commands, not Shoal's records (left alone)",
                path.display()
            ));
            ok = false;
            continue;
        }
        let cut_at = match report {
            Scan::Clean { records, room } => {
                lines.push(format!(
                    "{}: OK, {records} records, {} bytes{}",
                    path.display(),
                    data.len() as u64 - room,
                    if room > 0 {
                        format!(", then {room} bytes of zeros written ahead for more")
                    } else {
                        String::new()
                    }
                ));
                continue;
            }
            Scan::TornTail {
                records,
                good_len,
                cut,
            } => {
                lines.push(format!("{}: {records} good records, then a torn tail of {cut} bytes at offset {good_len}", path.display()));
                good_len
            }
            Scan::Corrupt { records, offset } => {
                lines.push(format!(
                    "{}: {records} good records, then a corrupt record at offset {offset} ({} bytes would be cut)",
                    path.display(),
                    data.len() as u64 - offset
                ));
                offset
            }
        };
        ok = false;
        if fix {
            let f = fs::OpenOptions::new().write(true).open(&path)?;
            f.set_len(cut_at)?;
            f.sync_all()?;
            lines.push(format!("{}: truncated to {cut_at} bytes", path.display()));
            if i + 1 < files.len() {
                lines.push(format!(
                    "dropping {} later file(s) from the manifest",
                    files.len() - i - 1
                ));
                if i < base_count {
                    // The base itself is damaged: keep what is good of it
                    // and start a fresh incremental file after it.
                    let seq = m.next_seq();
                    m.incr = vec![(aof.incr_name(seq), seq)];
                    fs::File::create(aof.file(&m.incr[0].0))?;
                } else {
                    m.incr.truncate(i + 1 - base_count);
                }
                aof.write_manifest(&m)?;
            }
            ok = true;
            break;
        }
    }
    Ok(CheckReport { lines, ok })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(payloads: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in payloads {
            frame(&mut v, p);
        }
        v
    }

    #[test]
    fn clean_files_replay_every_record() {
        let data = records(&[b"one", b"", b"two"]);
        let mut seen = Vec::new();
        assert_eq!(
            scan(&data, |p| {
                seen.push(p.to_vec());
                Ok(())
            })
            .unwrap(),
            Scan::Clean {
                records: 3,
                room: 0
            }
        );
        assert_eq!(seen, vec![b"one".to_vec(), vec![], b"two".to_vec()]);
    }

    /// Under appendfsync always the writer keeps zeros ahead of the
    /// records; a crash leaves them in the file.
    #[test]
    fn zeros_after_the_records_are_room() {
        let mut data = records(&[b"one", b"two\0\0"]);
        let len = data.len() as u64;
        data.resize(data.len() + 5000, 0);
        let mut seen = 0;
        let r = scan(&data, |_| {
            seen += 1;
            Ok(())
        });
        assert_eq!(
            r.unwrap(),
            Scan::Clean {
                records: 2,
                room: 5000
            }
        );
        assert_eq!(seen, 2);
        assert_eq!(data.len() as u64 - 5000, len);
        // Fewer zeros than a header are room too.
        data.truncate(len as usize + 3);
        assert_eq!(
            scan(&data, |_| Ok(())).unwrap(),
            Scan::Clean {
                records: 2,
                room: 3
            }
        );
    }

    #[test]
    fn a_record_torn_into_the_room_is_a_torn_tail() {
        let mut data = records(&[b"first", b"second record"]);
        let first_len = (HEADER + 5) as u64;
        let whole = data.len();
        // The last record's end never reached the disk: zeros instead.
        data[whole - 4..].fill(0);
        data.resize(whole + 4096, 0);
        assert_eq!(
            scan(&data, |_| Ok(())).unwrap(),
            Scan::TornTail {
                records: 1,
                good_len: first_len,
                cut: whole as u64 - first_len
            }
        );
        // Data after the zeros is not room: the bad record is corruption.
        let n = data.len();
        data[n - 1] = 7;
        assert_eq!(
            scan(&data, |_| Ok(())).unwrap(),
            Scan::Corrupt {
                records: 1,
                offset: first_len
            }
        );
    }

    #[test]
    fn a_cut_anywhere_in_the_last_record_is_a_torn_tail() {
        let data = records(&[b"first", b"second record"]);
        let first_len = (HEADER + 5) as u64;
        for cut in first_len as usize + 1..data.len() {
            let r = scan(&data[..cut], |_| Ok(())).unwrap();
            assert_eq!(
                r,
                Scan::TornTail {
                    records: 1,
                    good_len: first_len,
                    cut: cut as u64 - first_len
                }
            );
        }
    }

    #[test]
    fn a_flipped_byte_in_the_middle_is_corruption() {
        let mut data = records(&[b"first", b"second", b"third"]);
        data[HEADER + 5 + HEADER + 2] ^= 0x40;
        assert_eq!(
            scan(&data, |_| Ok(())).unwrap(),
            Scan::Corrupt {
                records: 1,
                offset: (HEADER + 5) as u64
            }
        );
        // The same flip in the last record reads as a torn tail.
        let mut data = records(&[b"first", b"second"]);
        let n = data.len();
        data[n - 1] ^= 1;
        assert!(matches!(
            scan(&data, |_| Ok(())).unwrap(),
            Scan::TornTail { records: 1, .. }
        ));
    }

    #[test]
    fn sealed_records_equal_framed_ones() {
        let mut a = Vec::new();
        frame(&mut a, b"payload");
        let mut b = Vec::new();
        let start = begin(&mut b);
        b.extend_from_slice(b"payload");
        seal(&mut b, start);
        assert_eq!(a, b);
    }

    #[test]
    fn manifest_round_trips_and_rejects_paths() {
        let m = Manifest {
            base: Some(("a.3.base.aof".into(), 3)),
            incr: vec![("a.1.incr.aof".into(), 1), ("a.4.incr.aof".into(), 4)],
        };
        assert_eq!(Manifest::parse(&m.render()).unwrap(), m);
        assert_eq!(
            m.files(),
            vec!["a.3.base.aof", "a.1.incr.aof", "a.4.incr.aof"]
        );
        assert_eq!(m.next_seq(), 5);
        assert!(
            Manifest::parse("file a.3.base.aof seq 3 type b\n").is_err(),
            "an incremental file is required"
        );
        assert!(Manifest::parse("file ../x seq 1 type i\n").is_err());
    }

    /// Redis's manifest lists files awaiting deletion as history (type h):
    /// they are not loaded, and their sequence numbers stay below the
    /// live files' (Redis only counts up), so new names never meet them.
    #[test]
    fn redis_history_lines_are_skipped() {
        let text = "file appendonly.aof.1.base.rdb seq 1 type h\n\
                    file appendonly.aof.1.incr.aof seq 1 type h\n\
                    file appendonly.aof.2.base.rdb seq 2 type b\n\
                    file appendonly.aof.2.incr.aof seq 2 type i\n";
        let m = Manifest::parse(text).unwrap();
        assert_eq!(
            m.files(),
            vec!["appendonly.aof.2.base.rdb", "appendonly.aof.2.incr.aof"]
        );
        assert_eq!(m.next_seq(), 3);
    }
}
