//! Turning the append-only log on and off on a running node (CONFIG SET
//! appendonly), as Redis's startAppendOnly and stopAppendOnly do.
//!
//! ```text
//!  yes: wait for any snapshot ─▶ new incr file N (not in the manifest)
//!       ─▶ snapshot at instant S: the log attaches at S, the writer starts
//!          on file N, the log counts as on ─▶ base N+1 written
//!       ─▶ manifest := base N+1, incr N; older files removed
//!  no:  log off ─▶ the writer writes and syncs what is pending, stops
//!       ─▶ records no longer kept; BGREWRITEAOF writes a base alone
//! ```
//!
//! Until its base is written the new log is in no manifest: a crash
//! meanwhile leaves the directory as it was (Redis's temporary incremental
//! file joins its manifest with the base in the same way). Turning on and
//! off are counted (`LogState::toggles`): a turning on that finds the count
//! moved (turned off meanwhile) gives up and removes what it wrote, and a
//! later turning on waits for it, as one snapshot runs at a time.

use std::fs;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::aof::AofDir;
use super::log::LogFile;
use crate::server::Server;

/// Starts the writer thread on the file set in `server.log.file`.
pub fn start_writer(server: &Arc<Server>) {
    server.log.resume();
    let s = server.clone();
    let handle = std::thread::Builder::new()
        .name("shoal-aof".into())
        .spawn(move || super::log::run_writer(&s.effects, s.log.clone()))
        .expect("spawn log writer");
    *server.log.writer.lock() = Some(handle);
}

/// CONFIG SET appendonly yes: the log starts with a snapshot of the data
/// as its base, on a thread of its own (the reply does not wait for it).
pub fn turn_on(server: &Arc<Server>) {
    let log = &server.log;
    if log.enabled() {
        return;
    }
    let generation = log.toggles.fetch_add(1, SeqCst) + 1;
    log.turning_on.fetch_add(1, SeqCst);
    let server = server.clone();
    std::thread::Builder::new()
        .name("shoal-aof-on".into())
        .spawn(move || {
            let started = Instant::now();
            let log = &server.log;
            // However this thread ends, this turning on no longer counts.
            struct Done<'a>(&'a std::sync::atomic::AtomicUsize);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, SeqCst);
                }
            }
            let _done = Done(&log.turning_on);
            // One snapshot at a time (a BGSAVE, a rewrite, a replica's
            // full sync, an earlier turning on): this one waits its turn.
            while log.snapshot_busy.swap(true, Relaxed) {
                if log.toggles.load(SeqCst) != generation || *server.shutdown.borrow() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            log.rewriting.store(true, Relaxed);
            log.rewrite_started_ms
                .store(crate::server::now_ms(), Relaxed);
            let ok = match start(&server, generation) {
                Ok(Some(size)) => {
                    tracing::info!(
                        "Append only file turned on: base of {size} bytes in {:.3} seconds",
                        started.elapsed().as_secs_f64()
                    );
                    true
                }
                Ok(None) => {
                    tracing::info!("Append only file turned off while it was being turned on");
                    true
                }
                Err(e) => {
                    tracing::warn!("Unable to turn on the append only file: {e}");
                    // Back to off, whatever had started, and said so.
                    if log.toggles.load(SeqCst) == generation {
                        stop(&server);
                        let _ = server.config.write().set("appendonly", "no");
                    }
                    false
                }
            };
            log.last_rewrite_ok.store(ok, Relaxed);
            log.rewrites.fetch_add(1, Relaxed);
            log.last_rewrite_secs
                .store(started.elapsed().as_secs() as i64, Relaxed);
            log.rewrite_started_ms.store(0, Relaxed);
            log.rewriting.store(false, Relaxed);
            log.snapshot_busy.store(false, Relaxed);
        })
        .expect("spawn the thread turning the log on");
}

/// The turning on itself: the base's size, or None if the log was turned
/// off meanwhile.
fn start(server: &Arc<Server>, generation: u64) -> std::io::Result<Option<u64>> {
    let log = &server.log;
    let dir = AofDir::configured(server);
    fs::create_dir_all(&dir.path)?;
    // Numbered past what an earlier log left, so that nothing it names is
    // overwritten before the new manifest replaces it.
    let seq = dir.existing_manifest().map_or(1, |m| m.next_seq());
    let incr_name = dir.incr_name(seq);
    let incr = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.file(&incr_name))?;
    incr.sync_all()?;
    let tmp = super::rewrite::tmp_base(&dir, seq);
    let mut attached = false;
    let size = super::rewrite::write_snapshot(server, &tmp, || {
        if log.toggles.load(SeqCst) != generation {
            return;
        }
        // Every slot is locked: records from here on are the log's.
        let at = server.effects.attach_log();
        *log.file.lock() = Some(LogFile::new(incr, at, log));
        start_writer(server);
        log.set_enabled(true);
        attached = true;
    });
    let size = match size {
        Ok(size) if attached && log.toggles.load(SeqCst) == generation => size,
        other => {
            let _ = fs::remove_file(&tmp);
            let _ = fs::remove_file(dir.file(&incr_name));
            return other.map(|_| None);
        }
    };
    let manifest = super::rewrite::install_base(&dir, seq, size, log)?;
    log.size_after_rewrite
        .store(size + log.size.load(Relaxed), Relaxed);
    *log.files.lock() = Some((dir, manifest));
    Ok(Some(size))
}

/// CONFIG SET appendonly no: what is pending is written and synced, then
/// the log stops (and a turning on under way gives up).
pub fn turn_off(server: &Arc<Server>) {
    server.log.toggles.fetch_add(1, SeqCst);
    stop(server);
}

fn stop(server: &Server) {
    let log = &server.log;
    log.set_enabled(false);
    log.stop_writer(&server.effects);
    server.effects.detach_log();
    *log.file.lock() = None;
    *log.files.lock() = None;
}
