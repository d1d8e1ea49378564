//! Replication commands: REPLICAOF (SLAVEOF), ROLE, WAIT, WAITAOF, and the ones a
//! replica sends its primary (REPLCONF, PSYNC, SYNC). What they set in
//! motion lives in `crate::replication`; these only parse and answer.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::args::{int, int_at_least};
use super::{flags::*, spec, wait_deadline, Action, Ctx, Spec, WaitFor, NO_KEYS};
use crate::error::{CmdResult, CommandError};
use crate::replication::failover;
use crate::replication::primary::Psync;
use crate::replication::PrimaryAddr;

const G: &str = "server";
const R: &[&str] = &["admin", "dangerous"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("replicaof", 3, ADMIN | NOSCRIPT | STALE | NO_ASYNC_LOADING, NO_KEYS, &[], G, "Configures a server as replica of another, or promotes it to a primary.", replicaof),
    spec("slaveof", 3, ADMIN | NOSCRIPT | STALE | NO_ASYNC_LOADING, NO_KEYS, &[], G, "Sets a Redis server as a replica of another, or promotes it to being a master.", replicaof),
    spec("role", 1, NOSCRIPT | LOADING | STALE | FAST, NO_KEYS, &["admin", "dangerous"], G, "Returns the replication role.", role),
    spec("wait", 3, NOSCRIPT | ON_PRIMARY, NO_KEYS, &["connection"], "generic", "Blocks until the asynchronous replication of all preceding write commands sent by the connection is completed.", wait),
    spec("waitaof", 4, ON_PRIMARY | NOSCRIPT, NO_KEYS, &["connection"], "generic", "Blocks until all of the preceding write commands sent by the connection are written to the append-only file of the master and/or replicas.", waitaof),
    spec("replconf", -1, ADMIN | NOSCRIPT | LOADING | STALE | ALLOW_BUSY, NO_KEYS, R, G, "An internal command for configuring the replication stream.", replconf),
    spec("psync", -3, ADMIN | NOSCRIPT | NO_MULTI | NO_ASYNC_LOADING, NO_KEYS, R, G, "An internal command used in replication.", psync),
    spec("sync", 1, ADMIN | NOSCRIPT | NO_MULTI | NO_ASYNC_LOADING, NO_KEYS, R, G, "An internal command used in replication.", sync),
    spec("failover", -1, ADMIN | NOSCRIPT | STALE, NO_KEYS, R, G, "Starts a coordinated failover from a server to one of its replicas.", failover),
];

fn replicaof(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let host = String::from_utf8_lossy(&argv[1]).into_owned();
    let r = &ctx.server.replication;
    if r.failover_state.load(Relaxed) != failover::NONE {
        return Err(CommandError::err(
            "REPLICAOF not allowed while failing over.",
        ));
    }
    if host.eq_ignore_ascii_case("no") && argv[2].eq_ignore_ascii_case(b"one") {
        if r.is_replica() {
            crate::replication::become_primary(ctx.server);
            tracing::info!(
                "MASTER MODE enabled (user request from 'id={}')",
                ctx.client.id
            );
        }
        ctx.out.ok();
        return Ok(());
    }
    // Port 0 is taken, as Redis takes it: a link that never comes up (a
    // way to make a node a stale replica on purpose).
    let port = match int(&argv[2]) {
        Ok(p) if (0..=65535).contains(&p) => p as u16,
        _ => return Err(CommandError::err("Invalid master port")),
    };
    let target = PrimaryAddr { host, port };
    if r.primary().as_ref() == Some(&target) {
        ctx.out.simple("OK Already connected to specified master");
        return Ok(());
    }
    tracing::info!(
        "REPLICAOF {}:{} enabled (user request from 'id={}')",
        target.host,
        target.port,
        ctx.client.id
    );
    crate::replication::become_replica(ctx.server, target);
    ctx.out.ok();
    Ok(())
}

fn role(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let r = &ctx.server.replication;
    let offset = ctx.server.effects.offset() as i64;
    match r.primary() {
        Some(p) => {
            ctx.out.array(5);
            ctx.out.bulk(b"slave");
            ctx.out.bulk(p.host.as_bytes());
            ctx.out.int(p.port as i64);
            ctx.out.bulk(r.link().word().as_bytes());
            ctx.out.int(if r.link_up() { offset } else { -1 });
        }
        None => {
            let replicas = r.replicas.lock().clone();
            ctx.out.array(3);
            ctx.out.bulk(b"master");
            ctx.out.int(offset);
            ctx.out.array(replicas.len());
            for e in replicas {
                ctx.out.array(3);
                ctx.out.bulk(e.ip.as_bytes());
                ctx.out.bulk(e.port.to_string().as_bytes());
                ctx.out
                    .bulk(e.ack_offset.load(Relaxed).to_string().as_bytes());
            }
        }
    }
    Ok(())
}

fn wait(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    if ctx.server.replication.is_replica() {
        return Err(CommandError::err(
            "WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.",
        ));
    }
    let numreplicas = int(&argv[1])?;
    let deadline = wait_deadline(&argv[2])?;
    let want = WaitFor::Received {
        replicas: numreplicas.max(0) as usize,
    };
    wait_for(ctx, want, deadline)
}

/// WAITAOF numlocal numreplicas timeout (Redis 7.2): until this node's log
/// (numlocal 1) and `numreplicas` replicas' logs have synced the
/// connection's writes.
fn waitaof(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let numlocal = int(&argv[1])?;
    if !(0..=1).contains(&numlocal) {
        return Err(CommandError::err(
            "value is out of range, value must between 0 and 1",
        ));
    }
    let numreplicas = int_at_least(&argv[2], 0, "value is out of range, must be positive")?;
    let deadline = wait_deadline(&argv[3])?;
    if ctx.server.replication.is_replica() {
        return Err(CommandError::err(
            "WAITAOF cannot be used with replica instances. Please also note that writes to replicas are just local and are not propagated.",
        ));
    }
    if numlocal == 1 && !ctx.server.log.enabled() {
        return Err(CommandError::err(
            "WAITAOF cannot be used when numlocal is set but appendonly is disabled.",
        ));
    }
    let want = WaitFor::Synced {
        local: numlocal == 1,
        replicas: numreplicas as usize,
    };
    wait_for(ctx, want, deadline)
}

/// Answers at once if the connection's writes are as far as `want` asks
/// (or inside EXEC, where nothing waits, as in Redis); otherwise asks the
/// replicas where they are and has the connection wait.
fn wait_for(ctx: &mut Ctx, want: WaitFor, deadline: Option<std::time::Instant>) -> CmdResult {
    let target = ctx.client.last_effect.get();
    let (done, local, replicas) = want.progress(ctx.server, target);
    if done || ctx.client.exec_effects.get().is_some() {
        want.reply(ctx.out, local, replicas);
        return Ok(());
    }
    // Replicas acknowledge once a second unless asked: ask now. The
    // question travels in the stream, after the writes it is about.
    if !ctx.server.replication.replicas.lock().is_empty() {
        ctx.server
            .effects
            .append_global(&[b"REPLCONF", b"GETACK", b"*"]);
        crate::effects::release_held_taps();
    }
    ctx.action = Some(Action::Wait {
        offset: target,
        want,
        deadline,
    });
    Ok(())
}

/// REPLCONF WRITE-OFFSET, Shoal's own question (a sidecar's, after each
/// run of forwarded commands).
pub fn is_write_offset(argv: &[Bytes]) -> bool {
    argv.len() == 2
        && argv[0].eq_ignore_ascii_case(b"replconf")
        && argv[1].eq_ignore_ascii_case(b"write-offset")
}

fn replconf(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    if is_write_offset(argv) {
        // Shoal's own, asked by a sidecar after each forwarded write: the
        // stream offset just past this connection's last write. The
        // sidecar's reads wait for its copy to reach it: what this thread
        // holds for replicas goes out now.
        ctx.out.int(ctx.client.last_effect.get() as i64);
        crate::effects::release_held_taps();
        return Ok(());
    }
    if argv.len().is_multiple_of(2) {
        return Err(CommandError::Syntax);
    }
    for pair in argv[1..].chunks(2) {
        let (opt, value) = (&pair[0], &pair[1]);
        match opt.to_ascii_lowercase().as_slice() {
            b"listening-port" => match int(value) {
                Ok(p) if (0..=65535).contains(&p) => ctx.client.replica_port = p as u16,
                _ => return Err(CommandError::err("value is not an integer or out of range")),
            },
            // Acknowledgements arrive on the feeding connection, which
            // reads them itself; elsewhere (and GETACK) there is no reply.
            b"ack" | b"fack" | b"getack" => return Ok(()),
            b"capa" if value.eq_ignore_ascii_case(b"sidecar") => ctx.client.replica_sidecar = true,
            b"ip-address" | b"capa" | b"rdb-only" | b"rdb-filter-only" => {}
            _ => {
                return Err(CommandError::err(format!(
                    "Unrecognized REPLCONF option: {}",
                    String::from_utf8_lossy(opt)
                )))
            }
        }
    }
    ctx.out.ok();
    Ok(())
}

fn psync(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    // A bad offset is an error, as in Redis, not a request for everything.
    let offset = int(&argv[2])?;
    // A primary handing over (FAILOVER) asks its replica to take its place
    // first: only a replica of that very history may.
    if argv.len() > 3 && argv[3].eq_ignore_ascii_case(b"failover") {
        if ctx.server.replication.sidecar {
            return Err(CommandError::err(
                "PSYNC FAILOVER is not valid on a sidecar.",
            ));
        }
        if argv[1].as_ref() != ctx.server.effects.ids().0.as_bytes() {
            return Err(CommandError::err(
                "PSYNC FAILOVER replid must match my replid.",
            ));
        }
        crate::replication::become_primary(ctx.server);
        tracing::info!(
            "MASTER MODE enabled (failover request from 'id={} addr={}')",
            ctx.client.id,
            ctx.client.handle.addr
        );
    }
    let from = match argv[1].as_ref() {
        b"?" => None,
        id if offset > 0 => Some((String::from_utf8_lossy(id).into_owned(), offset as u64)),
        _ => None,
    };
    start_feeding(
        ctx,
        Psync {
            from,
            legacy: false,
        },
    )
}

fn sync(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    start_feeding(
        ctx,
        Psync {
            from: None,
            legacy: true,
        },
    )
}

/// FAILOVER [TO host port [FORCE]] [ABORT] [TIMEOUT ms], read as Redis
/// reads it (see `crate::replication::failover`).
fn failover(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let server = ctx.server.this.get().and_then(|w| w.upgrade());
    let Some(server) = server else {
        return Err(CommandError::err("the server is shutting down"));
    };
    if argv.len() == 2 && argv[1].eq_ignore_ascii_case(b"abort") {
        failover::abort_command(&server).map_err(|e| CommandError::err(e.to_string()))?;
        ctx.out.ok();
        return Ok(());
    }
    let mut plan = failover::Plan::default();
    let mut timeout = 0;
    let mut j = 1;
    while j < argv.len() {
        let w = &argv[j];
        if w.eq_ignore_ascii_case(b"timeout") && j + 1 < argv.len() && timeout == 0 {
            timeout = int(&argv[j + 1])?;
            if timeout <= 0 {
                return Err(CommandError::err("FAILOVER timeout must be greater than 0"));
            }
            j += 2;
        } else if w.eq_ignore_ascii_case(b"to") && j + 2 < argv.len() && plan.target.is_none() {
            let port = int(&argv[j + 2])?;
            plan.target = Some(PrimaryAddr {
                host: String::from_utf8_lossy(&argv[j + 1]).into_owned(),
                port: u16::try_from(port).unwrap_or(0),
            });
            j += 3;
        } else if w.eq_ignore_ascii_case(b"force") && !plan.force {
            plan.force = true;
            j += 1;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    if timeout > 0 {
        plan.end_ms = ctx.now_ms.saturating_add(timeout);
    }
    failover::start(&server, plan).map_err(|e| CommandError::err(e.to_string()))?;
    ctx.out.ok();
    Ok(())
}

fn start_feeding(ctx: &mut Ctx, req: Psync) -> CmdResult {
    let r = &ctx.server.replication;
    if r.is_replica() && !r.link_up() {
        return Err(CommandError::NoMasterLink);
    }
    ctx.action = Some(Action::Feed(req));
    Ok(())
}
