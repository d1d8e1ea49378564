//! Start-up recovery: replaying the append-only log into the keyspace.
//!
//! Every file the manifest lists is read in order and each record's effects
//! are executed through the command table, exactly as a client's commands
//! would be, but with no log attached yet (nothing is written back). A torn
//! tail in the last file is cut off with a warning naming the bytes cut;
//! anything else that does not check out stops start-up with the file and
//! the offset, and `shoal check-aof --fix` as the way forward.

use std::fs;
use std::net::SocketAddr;

use bytes::BytesMut;

use super::aof::{scan, AofDir, Manifest, Scan};
use crate::command::{self, Ctx, TABLE};
use crate::protocol::{parse_request, Protocol, ReplyBuf, RequestLimits};
use crate::server::client::Client;
use crate::server::{now_ms, Server};

#[derive(Debug, Default)]
pub struct LoadReport {
    pub records: usize,
    pub bytes: u64,
    pub cut: Option<(String, u64)>,
}

/// Loads a SAVE snapshot file (a node without a log starting from one).
/// Snapshots are synced before they are renamed into place, so anything
/// but a clean file is refused.
pub fn load_snapshot(server: &Server, path: &std::path::Path) -> Result<LoadReport, String> {
    let dir = AofDir {
        path: path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .to_path_buf(),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let m = Manifest {
        base: Some((name, 0)),
        incr: Vec::new(),
    };
    let report = load(server, &dir, &m)?;
    Ok(report)
}

pub fn load(server: &Server, dir: &AofDir, manifest: &Manifest) -> Result<LoadReport, String> {
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    let handle = server.clients.register(addr, addr, now_ms());
    let mut client = Client::new(handle, true);
    let result = replay_all(server, &mut client, dir, manifest);
    if let Some(m) = client.multi.take() {
        // The log ends inside a transaction (a crash while recording it):
        // its commands were only queued, and are dropped whole.
        tracing::warn!(
            "The append only file ends inside a transaction; its {} queued commands were discarded",
            m.queue.len()
        );
    }
    server.clients.unregister(client.id);
    result
}

fn replay_all(
    server: &Server,
    client: &mut Client,
    dir: &AofDir,
    manifest: &Manifest,
) -> Result<LoadReport, String> {
    let mut report = LoadReport::default();
    let mut out = ReplyBuf::new(Protocol::Resp2);
    let limits = RequestLimits {
        max_bulk_len: i64::MAX,
    };
    let files = manifest.files();
    for (i, name) in files.iter().enumerate() {
        let path = dir.file(name);
        let data = fs::read(&path)
            .map_err(|e| format!("Can't read the append only file {}: {e}", path.display()))?;
        let last = i + 1 == files.len();
        let scanned = scan(&data, |payload| {
            let mut buf = BytesMut::from(payload);
            while let Some(argv) = parse_request(&mut buf, limits).map_err(|e| e.to_string())? {
                if argv.is_empty() {
                    continue;
                }
                let (_, spec) = TABLE.resolve(&argv).map_err(|e| e.to_string())?;
                let mut ctx = Ctx {
                    server,
                    client: &mut *client,
                    out: &mut out,
                    now_ms: now_ms(),
                    action: None,
                    event: std::cell::Cell::new(None),
                    emptied: Default::default(),
                };
                command::run(&mut ctx, spec, &argv)
                    .map_err(|e| format!("replaying {}: {e}", spec.name))?;
                out.buf.clear();
            }
            Ok(())
        })
        .map_err(|e| format!("Bad record in the append only file {}: {e}", path.display()))?;
        report.bytes += data.len() as u64;
        match scanned {
            Scan::Clean { records } => report.records += records,
            Scan::TornTail {
                records,
                good_len,
                cut,
            } if last && !manifest.incr.is_empty() => {
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
            Scan::TornTail {
                good_len: offset, ..
            }
            | Scan::Corrupt { offset, .. } => {
                return Err(format!(
                    "Bad file format reading the append only file {} at offset {offset}: the record there fails its checksum. \
                     Run 'shoal check-aof --fix {}' to cut the file at the last good record (what follows is lost)",
                    path.display(),
                    dir.path.parent().map(|p| p.display().to_string()).unwrap_or_default(),
                ));
            }
        }
    }
    Ok(report)
}
