//! A script running past `busy-reply-threshold`, as the rest of the node
//! sees it.
//!
//! A script (or function) runs holding the transaction gate exclusively,
//! so every other command waits for it, as every client waits for Redis's
//! one thread. Past the threshold Redis stops making them wait: it answers
//! them BUSY and lets through only the commands whose rows say
//! `allow_busy` (SCRIPT KILL, FUNCTION KILL and STATS, SHUTDOWN NOSAVE,
//! AUTH, MULTI, ...). Here the hook that watches the script's run
//! (`command::scripting`) marks the run timed out ([`Busy::time_out`]);
//! a command waiting for the gate stops waiting once it sees that
//! (`connection::execute`, between waits): refused BUSY, or run without
//! the gate. The script itself runs on until it ends or is killed.
//!
//! SCRIPT KILL and a write by the script race for the run; one atomic
//! settles it: a script that has written cannot be killed (its effects
//! are in the stream, and Redis never undoes them), and a killed one
//! writes no more ([`Busy::may_write`]).
//!
//! The script's own I/O thread is taken by it, and a connection cannot
//! move to another thread. So that every client gets its BUSY as in Redis,
//! the first time-out starts one more I/O thread (`server::
//! start_busy_thread`), which, whenever a script is timed out:
//! - accepts new connections (and serves them for their whole life), so
//!   that a new client (redis-cli, an operator's SCRIPT KILL) can always
//!   reach the node, even one with a single I/O thread;
//! - stands in for the script thread's connections that were at rest
//!   (`connection::stand_in`): it answers their requests BUSY, runs SCRIPT
//!   KILL, FUNCTION KILL/STATS and SHUTDOWN for them, and leaves the first
//!   request that needs the connection's own state (MULTI, AUTH, ...) and
//!   all after it in the socket for the owner, once the script ends.
//!   [`Busy::end`] waits for a stand-in's request in hand before the
//!   script's thread goes back to its connections, so the two never
//!   touch a socket at once. A connection busy with anything else (a
//!   partly read request, replies being written, MULTI, a subscription)
//!   waits for the script's end.

use std::sync::atomic::{AtomicU8, Ordering::*};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::error::CommandError;

/// The run is past the threshold: others get BUSY.
const TIMED_OUT: u8 = 1;
/// It has called a write command: SCRIPT KILL cannot stop it.
const WROTE: u8 = 2;
/// SCRIPT KILL or FUNCTION KILL stopped it.
const KILLED: u8 = 4;
/// It is a function (FCALL), which only FUNCTION KILL stops.
const FUNCTION: u8 = 8;

/// What FUNCTION STATS shows of the timed-out run.
#[derive(Clone)]
pub struct Run {
    /// The function's name; `None` for a script (EVAL).
    pub function: Option<String>,
    /// The command that runs it, as its client sent it.
    pub argv: Vec<Bytes>,
    pub started: Instant,
}

pub struct Busy {
    state: AtomicU8,
    run: Mutex<Option<Run>>,
    /// Whether a run is timed out, for the thread that accepts meanwhile.
    timed_out: watch::Sender<bool>,
    /// That thread, once started (joined at shutdown).
    pub(super) thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The I/O thread the timed-out script runs on.
    script_thread: std::sync::atomic::AtomicU64,
    /// Counts time-outs: a stand-in serves only during its own.
    episode: std::sync::atomic::AtomicU64,
    /// Held shared by a stand-in while it handles a request, exclusively
    /// by [`Busy::end`].
    standing: parking_lot::RwLock<()>,
}

impl Default for Busy {
    fn default() -> Self {
        Busy {
            state: AtomicU8::new(0),
            run: Mutex::new(None),
            timed_out: watch::channel(false).0,
            thread: Mutex::new(None),
            script_thread: std::sync::atomic::AtomicU64::new(0),
            episode: std::sync::atomic::AtomicU64::new(0),
            standing: parking_lot::RwLock::new(()),
        }
    }
}

impl Busy {
    /// Whether a script runs past the threshold now.
    pub fn timed_out(&self) -> bool {
        self.state.load(Acquire) & TIMED_OUT != 0
    }

    /// The BUSY reply for commands refused meanwhile: it names the
    /// command that may stop the run.
    pub fn error(&self) -> CommandError {
        if self.state.load(Acquire) & FUNCTION != 0 {
            CommandError::BusyFunction
        } else {
            CommandError::BusyScript
        }
    }

    /// Called once by the running script's thread as it passes the
    /// threshold; `wrote`: it has written already.
    pub fn time_out(&self, run: Run, wrote: bool) {
        let function = run.function.is_some();
        *self.run.lock() = Some(run);
        self.script_thread.store(super::this_io_thread(), Relaxed);
        self.episode.fetch_add(1, Relaxed);
        let state = TIMED_OUT | if wrote { WROTE } else { 0 } | if function { FUNCTION } else { 0 };
        self.state.store(state, Release);
        self.timed_out.send_replace(true);
    }

    /// The timed-out run has ended, however it ended. Called on the
    /// script's thread before it serves its connections again.
    pub fn end(&self) {
        self.state.store(0, Release);
        // A stand-in's request in hand is answered first; later ones find
        // the run over and leave the connection to its owner.
        drop(self.standing.write());
        *self.run.lock() = None;
        self.timed_out.send_replace(false);
    }

    /// The timed-out script is about to call a write command: false if it
    /// was killed first (then it must stop without writing).
    pub fn may_write(&self) -> bool {
        self.state.fetch_or(WROTE, AcqRel) & KILLED == 0
    }

    /// Whether SCRIPT KILL or FUNCTION KILL stopped the run.
    pub fn killed(&self) -> bool {
        self.state.load(Acquire) & KILLED != 0
    }

    /// SCRIPT KILL (`function` false) or FUNCTION KILL, with Redis's
    /// refusals: nothing timed out, a run that wrote, the other kind.
    pub fn kill(&self, function: bool) -> Result<(), CommandError> {
        let mut state = self.state.load(Acquire);
        loop {
            if state & TIMED_OUT == 0 {
                return Err(CommandError::NotBusy);
            }
            if state & WROTE != 0 {
                return Err(CommandError::Unkillable);
            }
            if (state & FUNCTION != 0) != function {
                return Err(self.error());
            }
            match self
                .state
                .compare_exchange(state, state | KILLED, AcqRel, Acquire)
            {
                Ok(_) => return Ok(()),
                Err(now) => state = now,
            }
        }
    }

    /// The timed-out run, if any.
    pub fn run(&self) -> Option<Run> {
        self.run.lock().clone()
    }

    /// The I/O thread of the timed-out script (see `this_io_thread`),
    /// and which time-out this is (for [`Busy::standing_in`]).
    pub fn script_thread(&self) -> (u64, u64) {
        (self.script_thread.load(Relaxed), self.episode.load(Relaxed))
    }

    /// Runs a stand-in's `work` if the time-out `episode` still lasts,
    /// holding it from ending meanwhile.
    pub fn standing_in<R>(&self, episode: u64, work: impl FnOnce() -> R) -> Option<R> {
        let _standing = self.standing.read();
        (self.timed_out() && self.episode.load(Relaxed) == episode).then(work)
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.timed_out.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(function: bool) -> Run {
        Run {
            function: function.then(|| "f".to_string()),
            argv: Vec::new(),
            started: Instant::now(),
        }
    }

    #[test]
    fn a_kill_and_a_write_exclude_each_other() {
        let b = Busy::default();
        assert_eq!(b.kill(false), Err(CommandError::NotBusy));
        b.time_out(run(false), false);
        assert_eq!(b.kill(true), Err(CommandError::BusyScript));
        assert_eq!(b.kill(false), Ok(()));
        assert!(b.killed() && !b.may_write());
        b.end();
        assert!(!b.timed_out() && b.run().is_none());

        b.time_out(run(true), false);
        assert_eq!(b.error(), CommandError::BusyFunction);
        assert!(b.may_write());
        assert_eq!(b.kill(true), Err(CommandError::Unkillable));
        b.end();
        b.time_out(run(false), true);
        assert_eq!(b.kill(false), Err(CommandError::Unkillable));
    }
}
