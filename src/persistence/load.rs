//! Start-up recovery: replaying the append-only log into the keyspace.
//!
//! Every file the manifest lists is read in order and each record's effects
//! are executed through the command table, exactly as a client's commands
//! would be, but with no log attached yet (nothing is written back). A torn
//! tail in the last file is cut off with a warning naming the bytes cut
//! (unless `aof-load-truncated no`: then start-up stops, as Redis's does);
//! anything else that does not check out stops start-up with the file and
//! the offset, and `shoal check-aof --fix` as the way forward.
//!
//! A snapshot that is a Redis RDB file (redis-server's dump.rdb, copied in
//! to move a dataset over) is read as one and its keys restored.
//!
//! Redis's own append-only log found where Shoal's would be (a node started
//! on redis-server's data directory) is imported: loaded as Redis loads it
//! (an RDB base or preamble, then plain commands, `#` annotations skipped,
//! a torn last command dropped under `aof-load-truncated`), then written
//! out as this node's log, a base snapshot of what was loaded, before
//! anything else can write. Redis's files in the append-only directory are
//! then the unlisted leftovers a rewrite removes.

use std::fs;
use std::net::SocketAddr;

use bytes::BytesMut;

use super::aof::{scan, AofDir, Manifest, RedisLog, Scan};
use super::rdb::RdbItem;
use crate::command;
use crate::effects::StreamState;
use crate::error::CommandError;
use crate::protocol::{parse_request, Protocol, ReplyBuf, RequestLimits};
use crate::server::client::Client;
use crate::server::{now_ms, Server};

#[derive(Debug, Default)]
pub struct LoadReport {
    pub records: usize,
    pub bytes: u64,
    pub cut: Option<(String, u64)>,
    /// Where the records of the last file end when room written ahead
    /// (zeros) follows them: the node that carries on writing it cuts
    /// the file there first.
    pub records_end: Option<u64>,
    /// Where the effect stream stood at the end of the log, from its last
    /// state record and the stream bytes after it (see
    /// `effects::STATE_RECORD`); `None` for a log without one.
    pub stream: Option<StreamState>,
}

/// Follows the stream's position through the log while replaying it.
#[derive(Default)]
struct StreamPosition {
    /// The last state record, its offset moved on by the bytes after it.
    at: Option<StreamState>,
    /// The offset just before the open transaction's MULTI: a log that ends
    /// inside a transaction drops it, and the position goes back there.
    before_multi: Option<u64>,
}

/// Loads a SAVE snapshot file (a node without a log starting from one).
/// Snapshots are synced before they are renamed into place, so anything
/// but a clean file is refused.
pub fn load_snapshot(server: &Server, path: &std::path::Path) -> Result<LoadReport, String> {
    let (dir, m) = snapshot_as_log(path);
    load_from(server, &dir, &m, Source::Snapshot)
}

/// DEBUG RELOAD and DEBUG LOADAOF: a snapshot, or the log, loaded again
/// into a running node whose data it already is. Unlike at start-up the
/// commands are not recorded (the log and replicas have them), and the
/// stream's identity stays as it is. The caller holds the transaction gate
/// exclusively.
pub fn reload(
    server: &Server,
    dir: &AofDir,
    manifest: &Manifest,
    snapshot: bool,
) -> Result<LoadReport, String> {
    let source = if snapshot {
        Source::Snapshot
    } else {
        Source::Log
    };
    as_loader(server, |client| {
        // Applied as a primary's stream is: not recorded again, keys past
        // their time kept until their recorded DEL.
        client.from_primary = true;
        replay_all(
            server,
            client,
            dir,
            manifest,
            &mut StreamPosition::default(),
            source,
        )
    })
}

/// The directory and manifest that [`load_snapshot`] reads `path` as.
pub fn snapshot_as_log(path: &std::path::Path) -> (AofDir, Manifest) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = AofDir::new(
        path.parent().unwrap_or(std::path::Path::new(".")),
        "",
        &name,
    );
    let m = Manifest {
        base: Some((name, 0)),
        incr: Vec::new(),
    };
    (dir, m)
}

/// What is being loaded, for what a damaged file's message advises.
#[derive(Clone, Copy, PartialEq)]
enum Source {
    /// The log: check-aof --fix cuts it at the last good record.
    Log,
    /// A snapshot, written whole and synced before it is renamed into
    /// place: no tool mends one, and check-aof must not be pointed at it.
    Snapshot,
}

pub fn load(server: &Server, dir: &AofDir, manifest: &Manifest) -> Result<LoadReport, String> {
    load_from(server, dir, manifest, Source::Log)
}

fn load_from(
    server: &Server,
    dir: &AofDir,
    manifest: &Manifest,
    source: Source,
) -> Result<LoadReport, String> {
    as_loader(server, |client| {
        let mut pos = StreamPosition::default();
        let mut result = replay_all(server, client, dir, manifest, &mut pos, source);
        if let (Some(at), Some(before)) = (&mut pos.at, pos.before_multi) {
            at.id.offset = before;
        }
        if let (Ok(r), Some(mut at)) = (&mut result, pos.at) {
            // The database the log's last stream bytes left selected.
            at.db = Some(client.db);
            r.stream = Some(at);
        }
        result
    })
}

/// Runs `load` with a client of its own, as Redis's loader runs a log's
/// commands through a fake client. A log that ends inside a transaction
/// (a crash while recording it) had its commands only queued: they are
/// dropped whole.
fn as_loader<T>(server: &Server, load: impl FnOnce(&mut Client) -> T) -> T {
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    let handle = server.clients.register(addr, addr, now_ms());
    let mut client = Client::new(handle, true);
    let result = load(&mut client);
    if let Some(m) = client.multi.take() {
        tracing::warn!(
            "The append only file ends inside a transaction; its {} queued commands were discarded",
            m.queue.len()
        );
    }
    server.clients.unregister(client.id);
    result
}

/// Imports Redis's append-only log (see the module's header): loads it,
/// then writes what was loaded as the base of a new log in `dir`, listed
/// by a new manifest, and returns that manifest.
pub fn import_redis(
    server: &Server,
    dir: &AofDir,
    redis: &RedisLog,
) -> Result<(LoadReport, Manifest), String> {
    tracing::info!(
        "Importing Redis's append only file {}",
        redis
            .files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let report = as_loader(server, |client| load_redis_files(server, client, redis))?;
    let seq = redis.next_seq;
    let base = dir.base_name(seq);
    let m = Manifest {
        base: Some((base.clone(), seq)),
        incr: vec![(dir.incr_name(seq + 1), seq + 1)],
    };
    let written = (|| -> std::io::Result<u64> {
        fs::create_dir_all(&dir.path)?;
        let tmp = dir.file(&format!("{base}.tmp"));
        // Nothing else snapshots before the node serves.
        server
            .log
            .snapshot_busy
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let size = super::rewrite::write_snapshot(server, &tmp, || {});
        server
            .log
            .snapshot_busy
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let size = size?;
        fs::rename(&tmp, dir.file(&base))?;
        fs::File::create(dir.file(&m.incr[0].0))?.sync_all()?;
        dir.write_manifest(&m)?;
        Ok(size)
    })()
    .map_err(|e| {
        format!(
            "Can't write the imported data as the append only file in {}: {e}",
            dir.path.display()
        )
    })?;
    tracing::info!(
        "Imported {} records from Redis's append only file; the data is now this node's log ({} bytes of base)",
        report.records,
        written
    );
    if redis.single {
        tracing::info!(
            "{} is no longer read; remove it once you no longer need it",
            redis.files[0].display()
        );
    }
    Ok((report, m))
}

/// Loads Redis's files in order: an RDB part (a base, or a single file's
/// preamble), then plain commands.
fn load_redis_files(
    server: &Server,
    client: &mut Client,
    redis: &RedisLog,
) -> Result<LoadReport, String> {
    let mut report = LoadReport::default();
    let mut out = ReplyBuf::new(Protocol::Resp2);
    let cut_allowed = server.config.read().get("aof-load-truncated") == "yes";
    for (i, path) in redis.files.iter().enumerate() {
        let data = fs::read(path)
            .map_err(|e| format!("Can't read the append only file {}: {e}", path.display()))?;
        let mut at = 0;
        if super::rdb::is_rdb_file(&data) {
            let (keys, end) = load_rdb(server, client, &mut out, &data)
                .map_err(|e| format!("{e} ({})", path.display()))?;
            report.records += keys as usize;
            at = end;
        }
        let replayed =
            replay_commands(server, client, &mut out, &data[at..]).map_err(|e| match e {
                Unloadable::Format(offset, e) => format!(
                    "Bad file format reading the append only file {} at offset {}: {e}. \
                     It is Redis's: redis-check-aof --fix mends it",
                    path.display(),
                    at + offset
                ),
                Unloadable::Unknown(offset, name) => format!(
                    "Unknown command '{name}' reading the append only file {} at offset {}: \
                     Shoal does not have it (streams, modules, functions and scripts are not supported)",
                    path.display(),
                    at + offset
                ),
            })?;
        report.records += replayed.commands;
        report.bytes += data.len() as u64;
        if replayed.failed > 0 {
            tracing::warn!(
                "{} commands of the append only file {} failed as they were replayed (Redis loads past such commands too); the first: {}",
                replayed.failed,
                path.display(),
                replayed.first_failure
            );
        }
        if let Some(offset) = replayed.torn_at {
            let cut = (data.len() - at - offset) as u64;
            if i + 1 < redis.files.len() || !cut_allowed {
                return Err(format!(
                    "Unexpected end of file reading the append only file {} at offset {}: \
                     a command torn by a crash{}",
                    path.display(),
                    at + offset,
                    if cut_allowed {
                        ""
                    } else {
                        ", and aof-load-truncated is no"
                    }
                ));
            }
            tracing::warn!(
                "!!! Warning: the append only file {} ended with a torn command; its last {cut} bytes were not loaded (AOF loaded anyway)",
                path.display()
            );
            report.cut = Some((path.display().to_string(), cut));
        }
    }
    Ok(report)
}

/// Why Redis's commands cannot be loaded, and where.
enum Unloadable {
    Format(usize, String),
    Unknown(usize, String),
}

/// What [`replay_commands`] did with one file's commands.
#[derive(Default)]
struct Replayed {
    commands: usize,
    /// Where a command cut short at the end starts.
    torn_at: Option<usize>,
    /// Commands that failed as they ran, and the first of them.
    failed: usize,
    first_failure: String,
}

/// Replays Redis's plain commands (`*<n>` multibulk requests, `#` lines
/// being annotations); a request cut short at the end is left alone. An
/// error comes with its offset.
///
/// As in Redis's loader, a command that is not known stops the load, and
/// one that fails as it runs does not: Redis records some commands that
/// fail when replayed (seen: a RENAMENX of a key its log had deleted just
/// before), and loads past them itself.
fn replay_commands(
    server: &Server,
    client: &mut Client,
    out: &mut ReplyBuf,
    data: &[u8],
) -> Result<Replayed, Unloadable> {
    let limits = RequestLimits {
        max_bulk_len: i64::MAX,
    };
    let mut buf = BytesMut::from(data);
    let mut done = Replayed::default();
    while !buf.is_empty() {
        let offset = data.len() - buf.len();
        match buf[0] {
            b'#' => match buf.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    let _ = buf.split_to(end + 1);
                }
                None => {
                    done.torn_at = Some(offset);
                    break;
                }
            },
            b'*' => match parse_request(&mut buf, limits) {
                Ok(Some(argv)) if argv.is_empty() => {}
                Ok(Some(argv)) => {
                    let name = || String::from_utf8_lossy(&argv[0]).to_ascii_lowercase();
                    match command::replay(server, client, out, &argv) {
                        Ok(()) => {}
                        Err(CommandError::UnknownCommand { .. }) => {
                            return Err(Unloadable::Unknown(offset, name()))
                        }
                        Err(e) => {
                            done.failed += 1;
                            if done.failed == 1 {
                                done.first_failure = format!("{} at offset {offset}: {e}", name());
                            }
                        }
                    }
                    done.commands += 1;
                }
                Ok(None) => {
                    done.torn_at = Some(offset);
                    break;
                }
                Err(e) => return Err(Unloadable::Format(offset, e.to_string())),
            },
            other => {
                return Err(Unloadable::Format(
                    offset,
                    format!("a command starts with '*', not {:?}", other as char),
                ))
            }
        }
    }
    Ok(done)
}

/// A Redis RDB file where a snapshot is expected (a node taking over
/// from redis-server, its dump.rdb copied in): each key is restored as
/// RESTORE restores a DUMP of it, with its expiry, idle time and
/// frequency. Keys already expired are left out, as Redis leaves them
/// out when a primary loads.
fn load_rdb(
    server: &Server,
    client: &mut Client,
    out: &mut ReplyBuf,
    data: &[u8],
) -> Result<(u64, usize), String> {
    let enc = server.tun.encodings();
    let now = now_ms();
    let mut db = usize::MAX;
    let mut expired = 0u64;
    let mut empty = 0u64;
    let loaded = super::rdb::read_file(data, &enc, |item| {
        let k = match item {
            RdbItem::DbSize { db, keys } => {
                if db < server.keyspace.databases() {
                    server.keyspace.db(db).reserve_keys(keys);
                }
                return Ok(());
            }
            RdbItem::Key(k) => k,
            RdbItem::Function(code) => {
                let argv = [
                    bytes::Bytes::from_static(b"FUNCTION"),
                    bytes::Bytes::from_static(b"LOAD"),
                    bytes::Bytes::from(code),
                ];
                return command::replay(server, client, out, &argv)
                    .map_err(|e| format!("Bad RDB file: a function library: {e}"));
            }
        };
        if k.expire_ms.is_some_and(|at| at <= now) {
            expired += 1;
            return Ok(());
        }
        let mut run = |argv: &[&[u8]]| {
            let argv: Vec<bytes::Bytes> = argv
                .iter()
                .map(|a| bytes::Bytes::copy_from_slice(a))
                .collect();
            command::replay(server, client, out, &argv).map_err(|e| e.to_string())
        };
        if k.db != db {
            run(&[b"SELECT", k.db.to_string().as_bytes()])
                .map_err(|e| format!("Bad RDB file: database {}: {e}", k.db))?;
            db = k.db;
        }
        let ttl = k.expire_ms.unwrap_or(0).to_string();
        let mut argv: Vec<&[u8]> = vec![b"RESTORE", &k.key, ttl.as_bytes(), &k.payload, b"REPLACE"];
        if k.expire_ms.is_some() {
            argv.push(b"ABSTTL");
        }
        let (idle, freq) = (
            k.idle_secs.map(|i| i.to_string()),
            k.freq.map(|f| f.to_string()),
        );
        if let Some(i) = &idle {
            argv.extend([&b"IDLETIME"[..], i.as_bytes()]);
        } else if let Some(f) = &freq {
            argv.extend([&b"FREQ"[..], f.as_bytes()]);
        }
        match run(&argv) {
            // A collection stored empty (an old Redis could write one):
            // left out with a warning, as Redis loads such a file.
            Err(_)
                if super::rdb::restore(&k.payload, &enc, true).err()
                    == Some(super::rdb::RdbError::EmptyKey) =>
            {
                tracing::warn!("Skipping empty key: {}", String::from_utf8_lossy(&k.key));
                empty += 1;
                Ok(())
            }
            r => {
                r.map_err(|e| format!("Bad RDB file: key {}: {e}", String::from_utf8_lossy(&k.key)))
            }
        }
    })?;
    let loaded_keys = loaded.0 - expired - empty;
    tracing::info!(
        "Loaded {loaded_keys} keys from a Redis RDB file ({expired} already expired, {empty} empty, left out)"
    );
    use std::sync::atomic::Ordering::Relaxed;
    server.log.rdb_loaded_keys.store(loaded_keys, Relaxed);
    server.log.rdb_expired_keys.store(expired, Relaxed);
    Ok(loaded)
}

fn replay_all(
    server: &Server,
    client: &mut Client,
    dir: &AofDir,
    manifest: &Manifest,
    pos: &mut StreamPosition,
    source: Source,
) -> Result<LoadReport, String> {
    let mut report = LoadReport::default();
    let mut out = ReplyBuf::new(Protocol::Resp2);
    let limits = RequestLimits {
        max_bulk_len: i64::MAX,
    };
    // Redis's aof-load-truncated: cut a torn tail (yes) or refuse to start.
    let cut_allowed = server.config.read().get("aof-load-truncated") == "yes";
    let files = manifest.files();
    for (i, name) in files.iter().enumerate() {
        let path = dir.file(name);
        let data = fs::read(&path)
            .map_err(|e| format!("Can't read the append only file {}: {e}", path.display()))?;
        let last = i + 1 == files.len();
        if i == 0 && manifest.base.is_some() && super::rdb::is_rdb_file(&data) {
            report.records += load_rdb(server, client, &mut out, &data)
                .map_err(|e| format!("{e} ({})", path.display()))?
                .0 as usize;
            report.bytes += data.len() as u64;
            continue;
        }
        let scanned = scan(&data, |payload| {
            let mut buf = BytesMut::from(payload);
            loop {
                let before = buf.len();
                let Some(argv) = parse_request(&mut buf, limits).map_err(|e| e.to_string())? else {
                    break;
                };
                if argv.is_empty() {
                    continue;
                }
                if let Some(state) = StreamState::parse(&argv) {
                    let state = state?;
                    if let Some(db) = state.db {
                        client.db = db;
                    }
                    pos.at = Some(state);
                    pos.before_multi = None;
                    continue;
                }
                if let Some(StreamState { id: at, .. }) = &mut pos.at {
                    if argv[0].eq_ignore_ascii_case(b"multi") {
                        pos.before_multi = Some(at.offset);
                    } else if argv[0].eq_ignore_ascii_case(b"exec") {
                        pos.before_multi = None;
                    }
                    at.offset += (before - buf.len()) as u64;
                }
                command::replay(server, client, &mut out, &argv).map_err(|e| {
                    format!(
                        "replaying {}: {e}",
                        String::from_utf8_lossy(&argv[0]).to_ascii_lowercase()
                    )
                })?;
            }
            Ok(())
        })
        .map_err(|e| format!("Bad record in the append only file {}: {e}", path.display()))?;
        report.bytes += data.len() as u64;
        match scanned {
            Scan::Clean { records, room } => {
                report.records += records;
                if last && room > 0 {
                    report.records_end = Some(data.len() as u64 - room);
                }
            }
            Scan::TornTail {
                records,
                good_len,
                cut,
            } if last && !manifest.incr.is_empty() && cut_allowed => {
                report.records += records;
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| e.to_string())?;
                f.set_len(good_len)
                    .map_err(|e| format!("Can't truncate {}: {e}", path.display()))?;
                f.sync_all().map_err(|e| e.to_string())?;
                tracing::warn!(
                    "!!! Warning: the append only file {} ended with a torn record; {cut} bytes were cut (AOF loaded anyway)",
                    path.display()
                );
                report.cut = Some((path.display().to_string(), cut));
            }
            Scan::TornTail { good_len, .. } if last && !manifest.incr.is_empty() => {
                return Err(format!(
                    "Unexpected end of file reading the append only file {} at offset {good_len}: \
                     a record torn by a crash, and aof-load-truncated is no. Run 'shoal check-aof --fix {}' \
                     to cut it, or set aof-load-truncated yes",
                    path.display(),
                    dir.path.parent().map(|p| p.display().to_string()).unwrap_or_default(),
                ));
            }
            Scan::TornTail {
                good_len: offset, ..
            }
            | Scan::Corrupt { offset, .. } => {
                return Err(match source {
                    Source::Log => format!(
                        "Bad file format reading the append only file {} at offset {offset}: the record there fails its checksum. \
                         Run 'shoal check-aof --fix {}' to cut the file at the last good record (what follows is lost)",
                        path.display(),
                        dir.path.parent().map(|p| p.display().to_string()).unwrap_or_default(),
                    ),
                    Source::Snapshot => format!(
                        "Bad file format reading the snapshot {} at offset {offset}: the record there fails its checksum. \
                         The snapshot is damaged: start from a backup of it, or move it away to start without it.",
                        path.display(),
                    ),
                });
            }
        }
    }
    Ok(report)
}
