//! SAVE and BGSAVE: a point-in-time snapshot of the whole keyspace in one
//! file (`dir/dbfilename`), for backups.
//!
//! The file holds the same checksummed records as a log base (see `aof`),
//! written by the same online snapshot (see `rewrite::write_snapshot`): to
//! `dbfilename.tmp`, synced, then renamed, so the file is always whole.
//! Copy it anywhere; a node started with `--dir` on a directory holding it
//! (and no log yet) starts from it, seeding its log with it as the base.
//!
//! The cron takes a snapshot by itself when a `save` rule is met (that many
//! changes, counted as effects, and that long since the last save), and
//! runs a BGSAVE SCHEDULE'd during a rewrite once the rewrite is done: the
//! keyspace captures one snapshot at a time.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::rewrite::write_snapshot;
use crate::server::{now_ms, Server};

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("Background save already in progress")]
    InProgress,
    #[error("An AOF log rewriting in progress: can't BGSAVE right now. Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible.")]
    RewriteInProgress,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What BGSAVE SCHEDULE did.
pub enum Scheduled {
    Started,
    /// A rewrite runs: the save starts once it is done (the cron checks).
    Later,
}

/// BGSAVE SCHEDULE: now if nothing else snapshots, else after the rewrite.
pub fn bgsave_schedule(server: &Arc<Server>) -> Result<Scheduled, SaveError> {
    match bgsave(server) {
        Err(SaveError::RewriteInProgress) => {
            server.log.save_scheduled.store(true, Relaxed);
            Ok(Scheduled::Later)
        }
        r => r.map(|_| Scheduled::Started),
    }
}

/// The cron's part: a scheduled BGSAVE once nothing else snapshots, and
/// the `save` rules (`seconds changes` pairs: that many changes and that
/// long since the last save). After a failed save, as in Redis, the next
/// try waits 5 seconds.
pub fn cron(server: &Arc<Server>, rules: &[(i64, u64)], now_ms: i64) {
    let log = &server.log;
    if log.saving.load(Relaxed) || log.snapshot_busy.load(Relaxed) || server.loading.load(Relaxed) {
        return;
    }
    if log.save_scheduled.swap(false, Relaxed) {
        if bgsave(server).is_err() {
            log.save_scheduled.store(true, Relaxed);
        }
        return;
    }
    let changes = server
        .effects
        .changes()
        .saturating_sub(server.saved_changes.load(Relaxed));
    let since = now_ms / 1000 - server.last_save.load(Relaxed);
    let retry_ok =
        log.last_save_ok.load(Relaxed) || now_ms - server.last_save_try.load(Relaxed) >= 5000;
    if let Some((secs, n)) = rules
        .iter()
        .find(|(secs, n)| changes >= *n && since >= *secs)
    {
        if retry_ok {
            tracing::info!("{n} changes in {secs} seconds. Saving...");
            if let Err(e) = bgsave(server) {
                tracing::warn!("Background saving could not start: {e}");
            }
        }
    }
}

pub fn snapshot_path(server: &Server) -> PathBuf {
    let cfg = server.config.read();
    Path::new(cfg.get("dir")).join(cfg.get("dbfilename"))
}

fn claim(server: &Server) -> Result<(), SaveError> {
    let log = &server.log;
    if log.saving.load(Relaxed) {
        return Err(SaveError::InProgress);
    }
    if log.snapshot_busy.swap(true, Relaxed) {
        return Err(SaveError::RewriteInProgress);
    }
    log.saving.store(true, Relaxed);
    Ok(())
}

fn run(server: &Server) -> Result<u64, SaveError> {
    let started = now_ms();
    server.log.save_started_ms.store(started, Relaxed);
    let path = snapshot_path(server);
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // The changes the snapshot holds: counted at its instant.
    let mut covered = 0;
    let result =
        write_snapshot(server, &tmp, || covered = server.effects.changes()).and_then(|size| {
            std::fs::rename(&tmp, &path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(size)
        });
    let log = &server.log;
    log.last_save_ok.store(result.is_ok(), Relaxed);
    log.last_save_secs
        .store((now_ms() - started) / 1000, Relaxed);
    log.save_started_ms.store(0, Relaxed);
    if result.is_ok() {
        log.saves.fetch_add(1, Relaxed);
        server.last_save.store(now_ms() / 1000, Relaxed);
        server.saved_changes.store(covered, Relaxed);
    }
    server.last_save_try.store(now_ms(), Relaxed);
    log.saving.store(false, Relaxed);
    log.snapshot_busy.store(false, Relaxed);
    Ok(result?)
}

/// SAVE: snapshot now; the caller waits (other clients go on).
pub fn save(server: &Server) -> Result<u64, SaveError> {
    claim(server)?;
    run(server)
}

/// BGSAVE: snapshot on a thread of its own.
pub fn bgsave(server: &Arc<Server>) -> Result<(), SaveError> {
    claim(server)?;
    let server = server.clone();
    std::thread::Builder::new()
        .name("shoal-save".into())
        .spawn(move || match run(&server) {
            Ok(size) => tracing::info!("Background saving terminated with success: {size} bytes"),
            Err(e) => tracing::warn!("Background saving error: {e}"),
        })
        .expect("spawn save thread");
    Ok(())
}
