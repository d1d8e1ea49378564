//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//!
//! ```text
//!  MULTI ─▶ commands are checked (name, arity, auth) and queued: +QUEUED
//!           a refused command marks the transaction failed
//!  EXEC  ─▶ failed?          -EXECABORT, nothing runs
//!           watched changed? null reply, nothing runs
//!           otherwise        gate taken exclusively, every queued command
//!                            runs in order, one reply each (errors included:
//!                            a runtime error does not stop the others)
//! ```
//!
//! Atomicity comes from the transaction gate (`server::watches::Gate`): every
//! command holds it shared and EXEC exclusively, so no other client's
//! command interleaves with a transaction, whichever keys and slots it
//! touches. In the effect stream the transaction's effects are wrapped in
//! `MULTI` … `EXEC` (only if it had more than one, as in Redis: one effect
//! is atomic by itself), so the log and replicas apply it whole: replaying
//! a log that ends inside the wrapper queues the tail and never executes it.
//!
//! WATCH registers the keys with the server's watch registry; any effect on
//! them (a write, an expiry deletion, FLUSHALL, SWAPDB...) sets the client's
//! flag. A watched key that was live at WATCH time and has expired by EXEC
//! counts as changed too, as in Redis 7.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;

use super::{flags::*, key_flags::*, keys, spec, Ctx, Spec, NO_KEYS};
use crate::error::{CmdResult, CommandError};
use crate::server::client::{Client, Multi};
use crate::server::Server;

const G: &str = "transactions";
const T: &[&str] = &["transaction"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("multi", 1, NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY | NO_QUEUE | ON_PRIMARY, NO_KEYS, T, G, "Starts a transaction.", multi),
    spec("exec", 1, NOSCRIPT | LOADING | STALE | SKIP_SLOWLOG | NO_QUEUE | EXCLUSIVE, NO_KEYS, T, G, "Executes all commands in a transaction.", exec),
    spec("discard", 1, NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY | NO_QUEUE, NO_KEYS, T, G, "Discards a transaction.", discard),
    spec("watch", -2, NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY | NO_QUEUE | ON_PRIMARY, keys(1, -1, 1).flags(RO), T, G, "Monitors changes to keys to determine the execution of a transaction.", watch),
    spec("unwatch", 1, NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY | ON_PRIMARY, NO_KEYS, T, G, "Forgets about watched keys of a transaction.", unwatch),
];

/// Queues a command inside MULTI.
pub fn queue(ctx: &mut Ctx, spec: &'static Spec, argv: &[Bytes]) -> CmdResult {
    let m = ctx.client.multi.as_mut().expect("called inside MULTI");
    if spec.has(NO_MULTI) {
        m.failed = true;
        return Err(CommandError::err(
            "Command not allowed inside a transaction",
        ));
    }
    m.bytes += argv.iter().map(|a| a.len() + 8).sum::<usize>();
    m.queue.push((spec, argv.to_vec()));
    ctx.out.simple("QUEUED");
    Ok(())
}

fn multi(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    if ctx.client.multi.is_some() {
        return Err(CommandError::err("MULTI calls can not be nested"));
    }
    ctx.client.multi = Some(Multi::default());
    ctx.out.ok();
    Ok(())
}

fn discard(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    if ctx.client.multi.take().is_none() {
        return Err(CommandError::err("DISCARD without MULTI"));
    }
    unwatch_all(ctx.server, ctx.client);
    ctx.out.ok();
    Ok(())
}

/// Whether a watched key changed or expired since WATCH.
fn watch_broken(ctx: &Ctx) -> bool {
    if ctx.client.watch_dirty.load(Relaxed) {
        return true;
    }
    ctx.client.watching.iter().any(|(db, key, expired_then)| {
        !expired_then.load(Relaxed)
            && ctx
                .server
                .keyspace
                .db(*db)
                .lock_slot(Ctx::slot(key))
                .peek(key)
                .is_some_and(|n| n.is_expired(ctx.now_ms))
    })
}

/// EXEC's reply when a command of its transaction was refused.
pub const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

fn exec(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let Some(m) = ctx.client.multi.take() else {
        return Err(CommandError::err("EXEC without MULTI"));
    };
    if m.failed {
        unwatch_all(ctx.server, ctx.client);
        return Err(CommandError::err_code(EXECABORT));
    }
    // Gate first, then the watch check: nothing can change a watched key
    // between the check and the commands.
    let gate = ctx.server.gate.exclusive();
    if gate.waited {
        ctx.now_ms = crate::server::now_ms();
    }
    // Handed over while EXEC waited for the gate: the transaction is
    // discarded.
    if super::handed_over(ctx) && m.queue.iter().any(|(s, a)| s.flags_of(a) & WRITE != 0) {
        unwatch_all(ctx.server, ctx.client);
        return Err(CommandError::ReadOnly);
    }
    let broken = watch_broken(ctx);
    unwatch_all(ctx.server, ctx.client);
    if broken {
        ctx.out.null_array();
        return Ok(());
    }
    ctx.out.array(m.queue.len());
    ctx.start_unit();
    for (spec, argv) in &m.queue {
        let started = std::time::Instant::now();
        // Permissions are checked again as each command runs, as in
        // Redis: its user may have lost them since it was queued.
        if let Err(e) = super::acl_check(ctx.server, ctx.client, None, spec, argv, Some("multi")) {
            let reason = match e {
                CommandError::NoPermKey => "no permission to touch the specified keys",
                CommandError::NoPermChannel => {
                    "no permission to access one of the channels used as arguments"
                }
                _ => "no permission to execute the command or subcommand",
            };
            ctx.out.error(&format!(
                "NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. This command is no longer allowed for the following reason: {reason}"
            ));
            continue;
        }
        // A runtime error is this command's reply; the others still run.
        let _ = super::run(ctx, spec, argv);
        // Each command is the slow log's, not EXEC.
        let took = started.elapsed();
        let h = ctx.client.handle.clone();
        crate::server::connection::log_if_slow(ctx.server, spec, argv, took.as_micros() as u64, &h);
    }
    ctx.end_unit();
    Ok(())
}

fn watch(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    if ctx.client.multi.is_some() {
        return Err(CommandError::err("WATCH inside MULTI is not allowed"));
    }
    let db = ctx.db();
    for key in &argv[1..] {
        if ctx
            .client
            .watching
            .iter()
            .any(|(d, k, _)| *d == db && k == key)
        {
            continue;
        }
        let expired = ctx
            .server
            .keyspace
            .db(db)
            .lock_slot(Ctx::slot(key))
            .peek(key)
            .is_some_and(|n| n.is_expired(ctx.now_ms));
        let expired = Arc::new(AtomicBool::new(expired));
        ctx.server
            .watches
            .watch(db, key, &ctx.client.watch_dirty, &expired);
        ctx.client.watching.push((db, key.to_vec(), expired));
    }
    ctx.out.ok();
    Ok(())
}

fn unwatch(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    unwatch_all(ctx.server, ctx.client);
    ctx.out.ok();
    Ok(())
}

/// Forgets every watched key (EXEC, DISCARD, UNWATCH, RESET, disconnect).
/// Discards the transaction of an EXEC refused before it ran (Redis's
/// execCommandAbort) and says why.
pub fn abort_exec(server: &Server, client: &mut Client, why: &CommandError) -> CommandError {
    client.multi = None;
    unwatch_all(server, client);
    // Redis drops the ERR code here (its rejections are formatted without
    // one) and keeps any other (NOAUTH, BUSY, READONLY, ...).
    let why = why.to_string();
    let why = why.strip_prefix("ERR ").unwrap_or(&why);
    CommandError::err_code(format!("EXECABORT Transaction discarded because of: {why}"))
}

pub fn unwatch_all(server: &Server, client: &mut Client) {
    for (db, key, _) in client.watching.drain(..) {
        server.watches.unwatch(db, &key, &client.watch_dirty);
    }
    client.watch_dirty.store(false, Relaxed);
}

/// RESET: leaves any transaction and watch.
pub fn reset(server: &Server, client: &mut Client) {
    client.multi = None;
    unwatch_all(server, client);
}
