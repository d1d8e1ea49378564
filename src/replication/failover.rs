//! FAILOVER: a primary hands its role to one of its replicas, as Redis
//! 6.2's coordinated failover does.
//!
//! ```text
//!  primary                                        target replica
//!   FAILOVER ─▶ writes paused, expiry frozen
//!   waiting-for-sync: a replica (the target, or any) acknowledges the
//!     whole stream (a GETACK asks at once)            │
//!   failover-in-progress: becomes a replica of it ───▶│ PSYNC <replid> <off> FAILOVER
//!                                                     │ replid is its own: it becomes
//!                                                     │ a primary (REPLICAOF NO ONE),
//!   ◀──────────────── +CONTINUE (or +FULLRESYNC) ─────┘ then serves the PSYNC
//!   writes resume (and are refused: -READONLY)
//! ```
//!
//! Invariants:
//! - While a failover runs, the stream does not move by itself: client
//!   writes wait (CLIENT PAUSE WRITE's rule), keys are not expired or
//!   evicted (lookups hide them), and no PING is added for replicas. So
//!   "acknowledged the whole stream" is a state the target can reach and
//!   stay in. A command that passed the pause check just before it was
//!   set may still be running on another thread: the hand-over is decided
//!   under the transaction gate held exclusively (no command runs), and a
//!   write that takes the gate after the pause began waits, as the
//!   expiry cycle's rounds stop.
//! - The old primary keeps its data until the target accepts: a refusal,
//!   a link that cannot be made, a timeout (without FORCE) or FAILOVER
//!   ABORT makes it a primary again, under a new history id that keeps
//!   the old one valid up to here (as REPLICAOF NO ONE), so its replicas
//!   continue without a full sync.
//! - Exactly one failover at a time; the state is INFO's
//!   `master_failover_state`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::{PrimaryAddr, ONLINE};
use crate::server::{now_ms, Server};

pub const NONE: u8 = 0;
pub const WAITING: u8 = 1;
pub const IN_PROGRESS: u8 = 2;

/// What the running failover aims at.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The replica to hand over to; `None`: the first one in sync.
    pub target: Option<PrimaryAddr>,
    /// Unix ms after which waiting ends (0: wait for ever).
    pub end_ms: i64,
    /// At the end of the wait, hand over to the target anyway.
    pub force: bool,
}

/// INFO's word for a state.
pub fn state_word(state: u8) -> &'static str {
    match state {
        WAITING => "waiting-for-sync",
        IN_PROGRESS => "failover-in-progress",
        _ => "no-failover",
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FailoverError {
    #[error("FAILOVER already in progress.")]
    InProgress,
    #[error("FAILOVER is not valid when server is a replica.")]
    IsReplica,
    #[error("FAILOVER requires connected replicas.")]
    NoReplicas,
    #[error("FAILOVER with force option requires both a timeout and target HOST and IP.")]
    ForceNeedsTarget,
    #[error("FAILOVER target HOST and PORT is not a replica.")]
    NotAReplica,
    #[error("FAILOVER target replica is not online.")]
    NotOnline,
    #[error("FAILOVER target HOST and PORT is a sidecar, which never takes over.")]
    Sidecar,
    #[error("No failover in progress.")]
    NotInProgress,
}

/// Starts a failover (the FAILOVER command, its arguments checked).
pub fn start(server: &Arc<Server>, plan: Plan) -> Result<(), FailoverError> {
    let r = &server.replication;
    if r.failover_state.load(Relaxed) != NONE {
        return Err(FailoverError::InProgress);
    }
    if r.is_replica() {
        return Err(FailoverError::IsReplica);
    }
    // Sidecars live in applications' pods: they never take over.
    if r.replicas.lock().iter().all(|e| e.sidecar) {
        return Err(FailoverError::NoReplicas);
    }
    if plan.force && (plan.end_ms == 0 || plan.target.is_none()) {
        return Err(FailoverError::ForceNeedsTarget);
    }
    match &plan.target {
        Some(t) => {
            let (state, sidecar) = find(server, t).ok_or(FailoverError::NotAReplica)?;
            if sidecar {
                return Err(FailoverError::Sidecar);
            }
            if state != ONLINE {
                return Err(FailoverError::NotOnline);
            }
            tracing::info!("FAILOVER requested to {}:{}.", t.host, t.port);
        }
        None => tracing::info!("FAILOVER requested to any replica."),
    }
    *r.failover.lock() = plan;
    r.failover_state.store(WAITING, Relaxed);
    server.pause.failover.store(true, Relaxed);
    // Ask the replicas where they stand now rather than at their next
    // second's acknowledgement.
    server
        .effects
        .append_global(&[b"REPLCONF", b"GETACK", b"*"]);
    let s = server.clone();
    tokio::spawn(async move { drive(&s).await });
    Ok(())
}

/// FAILOVER ABORT.
pub fn abort_command(server: &Server) -> Result<(), FailoverError> {
    if server.replication.failover_state.load(Relaxed) == NONE {
        return Err(FailoverError::NotInProgress);
    }
    abort(server, "Failover manually aborted");
    Ok(())
}

/// Ends a failover without handing over: a node that already turned
/// replica becomes a primary again.
pub fn abort(server: &Server, why: &str) {
    let r = &server.replication;
    let state = r.failover_state.load(Relaxed);
    if state == NONE {
        return;
    }
    match &r.failover.lock().target {
        Some(t) => tracing::info!("FAILOVER to {}:{} aborted: {why}", t.host, t.port),
        None => tracing::info!("FAILOVER to any replica aborted: {why}"),
    }
    if state == IN_PROGRESS {
        super::become_primary(server);
    }
    clear(server);
}

/// The failover is over (done or aborted): writes and expiry resume.
pub fn clear(server: &Server) {
    let r = &server.replication;
    *r.failover.lock() = Plan::default();
    r.failover_state.store(NONE, Relaxed);
    server.pause.failover.store(false, Relaxed);
    server.pause.resumed.notify_waiters();
}

/// The state of the replica at `addr` (its announced port), and whether
/// it is a sidecar, if attached.
fn find(server: &Server, addr: &PrimaryAddr) -> Option<(u8, bool)> {
    server
        .replication
        .replicas
        .lock()
        .iter()
        .find(|e| e.ip.eq_ignore_ascii_case(&addr.host) && e.port == addr.port)
        .map(|e| (e.state.load(Relaxed), e.sidecar))
}

/// Waits for a replica to acknowledge the whole stream (or the deadline),
/// then turns this node into that replica's replica, asking it to take
/// over (the link in `replica.rs` sends the PSYNC ... FAILOVER).
async fn drive(server: &Arc<Server>) {
    let r = &server.replication;
    loop {
        if r.failover_state.load(Relaxed) != WAITING {
            return;
        }
        let acked = r.acked.notified();
        let plan = r.failover.lock().clone();
        let offset = server.effects.offset();
        if plan.end_ms != 0 && now_ms() >= plan.end_ms {
            match (plan.force, plan.target) {
                (true, Some(t)) => {
                    tracing::info!(
                        "FAILOVER to {}:{} time out exceeded, failing over.",
                        t.host,
                        t.port
                    );
                    hand_over(server, t);
                }
                _ => abort(server, "Replica never caught up before timeout"),
            }
            return;
        }
        let synced = r
            .replicas
            .lock()
            .iter()
            .filter(|e| e.state.load(Relaxed) == ONLINE && !e.sidecar)
            .filter(|e| e.ack_offset.load(Relaxed) == offset)
            .map(|e| PrimaryAddr {
                host: e.ip.clone(),
                port: e.port,
            })
            .find(|a| {
                plan.target
                    .as_ref()
                    .is_none_or(|t| t.host.eq_ignore_ascii_case(&a.host) && t.port == a.port)
            });
        if let Some(t) = synced {
            // Commands that passed the pause check just before it was set
            // finish under the gate held shared; with it held exclusively
            // (later ones wait, see `connection::execute`), the stream is
            // still where the target acknowledged it, or the wait goes on.
            let still = {
                let _gate = server.gate.exclusive();
                let still = server.effects.offset() == offset;
                if still {
                    tracing::info!(
                        "Failover target {}:{} is synced, failing over.",
                        t.host,
                        t.port
                    );
                    hand_over(server, t);
                }
                still
            };
            if still {
                return;
            }
            server
                .effects
                .append_global(&[b"REPLCONF", b"GETACK", b"*"]);
            continue;
        }
        // Acknowledgements wake this; the deadline is checked at least
        // every 100 ms.
        let _ = tokio::time::timeout(Duration::from_millis(100), acked).await;
    }
}

fn hand_over(server: &Server, target: PrimaryAddr) {
    let r = &server.replication;
    r.failover.lock().target = Some(target.clone());
    r.failover_state.store(IN_PROGRESS, Relaxed);
    super::become_replica(server, target);
}
