//! When an I/O thread that runs out of work polls again instead of sleeping.
//!
//! A thread asleep in `epoll_wait` is woken by the client whose request
//! arrives: the client's send pays for the wake-up (an inter-processor
//! interrupt, dear on virtual machines) and the thread pays for going to
//! sleep and coming back. Under a steady load the next request is only
//! microseconds away, so a thread that served a batch a moment ago polls
//! its sockets again without sleeping for up to `WINDOW`; one that found
//! nothing in that time sleeps.
//!
//! Polling costs the CPU the sleep would have left free, so it is kept for
//! threads whose sleeps have been short: an average of the recent sleeps
//! under `WINDOW` says that requests come densely enough for the polls to
//! find them. At a moderate load (requests tens of microseconds apart) the
//! sleeps are long, the thread sleeps at once, and its CPU stays
//! proportional to its work. `WINDOW` is `io-threads-poll-usec`; 0 turns
//! polling off, for a node whose CPU is rationed (a container's quota)
//! more than its wake-ups are dear. Redis never polls; its longer event
//! loop turns make its sleeps rarer instead.
//!
//! The state is the thread's own (thread-locals): each I/O thread runs one
//! single-threaded runtime whose park hook calls [`parked`] and whose
//! unpark hook calls [`unparked`].

use std::cell::Cell;
use std::time::{Duration, Instant};

/// A sleep counts for at most this much in the average, so that a long
/// idle spell is forgotten within a few sleeps once the load returns.
const LONGEST: Duration = Duration::from_millis(1);

thread_local! {
    /// When this thread last found work.
    static LAST_WORK: Cell<Option<Instant>> = const { Cell::new(None) };
    /// When this thread went to sleep; `None` while it polls instead.
    static SLEPT_AT: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Average of the recent sleeps, in nanoseconds (an exponential
    /// moving average over about eight sleeps).
    static AVERAGE_SLEEP: Cell<u64> = const { Cell::new(u64::MAX) };
}

/// The thread is out of work (`worked`: it ran a batch since the last
/// call): whether it should poll its sockets once more instead of sleeping
/// (always when the caller `must_poll`, which is then no sleep either).
///
/// `window` (`WINDOW` above, 20 µs by default) is how long a thread polls
/// after its last batch, and how short its sleeps must have been on
/// average for it to poll at all. Measured on two cores (redis-benchmark,
/// SET, pipeline 1): 20 µs takes 2 clients from 36,000 to 76,000-106,000
/// requests/s with less CPU per request, 50 clients from 108,000 to
/// 120,000 with 1 µs more, and leaves a lone client (sleeps of about 33 µs
/// between its requests) as it was; 50 µs had a lone client make the
/// thread poll, at 45% more CPU per request.
pub fn parked(worked: bool, must_poll: bool, window: Duration) -> bool {
    let now = Instant::now();
    if worked {
        LAST_WORK.set(Some(now));
    }
    let recent = LAST_WORK
        .get()
        .is_some_and(|t| now.duration_since(t) < window);
    let poll = must_poll || (recent && AVERAGE_SLEEP.get() < window.as_nanos() as u64);
    SLEPT_AT.set((!poll).then_some(now));
    poll
}

/// The thread runs again, after a sleep or a poll.
pub fn unparked() {
    if let Some(t) = SLEPT_AT.take() {
        let slept = t.elapsed().min(LONGEST).as_nanos() as u64;
        let avg = AVERAGE_SLEEP.get();
        AVERAGE_SLEEP.set(if avg == u64::MAX {
            slept
        } else {
            avg - avg / 8 + slept / 8
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short sleep, as the runtime's hooks see one.
    fn nap() {
        assert!(!parked(true, false, Duration::ZERO));
        unparked();
    }

    #[test]
    fn polls_only_after_short_sleeps_and_never_with_no_window() {
        let long = Duration::from_secs(1);
        // No sleep seen yet: nothing says requests come densely.
        assert!(!parked(true, false, long));
        unparked();
        // Short sleeps and work just now: poll.
        nap();
        assert!(parked(true, false, long));
        unparked();
        // A window of 0 turns polling off, whatever the sleeps were.
        for _ in 0..10 {
            nap();
        }
        assert!(!parked(true, false, Duration::ZERO));
        unparked();
        // What the caller must poll for is polled regardless.
        assert!(parked(false, true, Duration::ZERO));
        unparked();
    }
}
