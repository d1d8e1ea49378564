//! The latency monitor (LATENCY LATEST/HISTORY/RESET/GRAPH/DOCTOR).
//!
//! With `latency-monitor-threshold` above 0, anything that took at least
//! that many milliseconds is recorded as a sample of its event: `command`
//! and `fast-command` (a command's run, by its FAST flag), `expire-cycle`, `eviction-cycle`, and the log's
//! `aof-write` and `aof-fsync-always`, Redis's names. The monitor is shared
//! with the log writer, so it keeps its threshold itself. Each event keeps
//! its last 160 samples, one per second at most (a second's worst), and its
//! all-time worst, as Redis does, so the monitor's memory is bounded
//! whatever happens. Recording takes one lock, and only for a spike.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use parking_lot::Mutex;

/// Samples kept per event.
const SAMPLES: usize = 160;

#[derive(Clone, Copy)]
pub struct Sample {
    /// Unix seconds.
    pub time: i64,
    pub ms: u64,
}

#[derive(Default)]
struct Series {
    samples: VecDeque<Sample>,
    max: u64,
}

#[derive(Default)]
pub struct Monitor {
    /// `latency-monitor-threshold`, in ms; 0: off.
    threshold_ms: AtomicI64,
    events: Mutex<BTreeMap<&'static str, Series>>,
}

impl Monitor {
    pub fn set_threshold(&self, ms: i64) {
        self.threshold_ms.store(ms, Relaxed);
    }

    pub fn threshold(&self) -> i64 {
        self.threshold_ms.load(Relaxed)
    }

    /// Records `ms` for `event` if it is a spike.
    pub fn observe(&self, event: &'static str, ms: u64) {
        let threshold = self.threshold();
        if threshold <= 0 || ms < threshold as u64 {
            return;
        }
        let now_secs = crate::server::now_ms() / 1000;
        self.record(event, ms, now_secs);
    }

    fn record(&self, event: &'static str, ms: u64, now_secs: i64) {
        let mut events = self.events.lock();
        let s = events.entry(event).or_default();
        s.max = s.max.max(ms);
        match s.samples.back_mut() {
            Some(last) if last.time == now_secs => last.ms = last.ms.max(ms),
            _ => {
                if s.samples.len() == SAMPLES {
                    s.samples.pop_front();
                }
                s.samples.push_back(Sample { time: now_secs, ms });
            }
        }
    }

    /// LATENCY LATEST: each event's latest sample and all-time worst.
    pub fn latest(&self) -> Vec<(&'static str, Sample, u64)> {
        self.events
            .lock()
            .iter()
            .filter_map(|(e, s)| Some((*e, *s.samples.back()?, s.max)))
            .collect()
    }

    /// LATENCY HISTORY: an event's samples, oldest first.
    pub fn history(&self, event: &[u8]) -> Vec<Sample> {
        self.events
            .lock()
            .iter()
            .find(|(e, _)| e.as_bytes() == event)
            .map(|(_, s)| s.samples.iter().copied().collect())
            .unwrap_or_default()
    }

    /// LATENCY RESET: forgets the named events (all if none); returns how
    /// many there were.
    pub fn reset(&self, events: &[&[u8]]) -> usize {
        let mut all = self.events.lock();
        if events.is_empty() {
            let n = all.len();
            all.clear();
            return n;
        }
        let before = all.len();
        all.retain(|e, _| !events.contains(&e.as_bytes()));
        before - all.len()
    }

    /// LATENCY GRAPH: the event's samples as text, newest on the right,
    /// one column each, bars scaled between the lowest and highest sample;
    /// `None` if there are none.
    pub fn graph(&self, event: &[u8], now_secs: i64) -> Option<String> {
        let events = self.events.lock();
        let (name, s) = events.iter().find(|(e, _)| e.as_bytes() == event)?;
        let samples: Vec<Sample> = s.samples.iter().copied().collect();
        let high = samples.iter().map(|x| x.ms).max()?;
        let low = samples.iter().map(|x| x.ms).min()?;
        const ROWS: u64 = 4;
        let mut out = format!(
            "{name} - high {high} ms, low {low} ms (all time high {} ms)\n",
            s.max
        );
        out.push_str(&"-".repeat(80));
        out.push('\n');
        let level = |ms: u64| {
            if high == low {
                ROWS
            } else {
                1 + (ms - low) * (ROWS - 1) / (high - low)
            }
        };
        for row in (1..=ROWS).rev() {
            let line: String = samples
                .iter()
                .map(|x| if level(x.ms) >= row { '#' } else { ' ' })
                .collect();
            out.push_str(line.trim_end());
            out.push('\n');
        }
        // How long ago each sample was, one column per sample, read downwards.
        let ages: Vec<String> = samples
            .iter()
            .map(|x| age((now_secs - x.time).max(0)))
            .collect();
        let depth = ages.iter().map(String::len).max().unwrap_or(0);
        for i in 0..depth {
            let line: String = ages
                .iter()
                .map(|a| a.as_bytes().get(i).map_or(' ', |&c| c as char))
                .collect();
            out.push_str(line.trim_end());
            out.push('\n');
        }
        Some(out)
    }

    /// LATENCY DOCTOR: what was seen, and what to look at.
    pub fn doctor(&self, slowlog_slower_than_us: i64) -> String {
        let threshold_ms = self.threshold();
        let events = self.events.lock();
        if events.is_empty() && threshold_ms <= 0 {
            return "The latency monitor is off: no spike is recorded while \
                    latency-monitor-threshold is 0. Turn it on with \
                    'CONFIG SET latency-monitor-threshold <milliseconds>'.\n"
                .into();
        }
        if events.is_empty() {
            return format!(
                "No latency spike of {threshold_ms} ms or more has been recorded. \
                 Nothing to worry about.\n"
            );
        }
        let mut out = String::from("Latency spikes were recorded:\n\n");
        let mut advice = Vec::new();
        for (i, (name, s)) in events.iter().enumerate() {
            let n = s.samples.len() as u64;
            let avg = s.samples.iter().map(|x| x.ms).sum::<u64>() / n.max(1);
            let mad = s.samples.iter().map(|x| x.ms.abs_diff(avg)).sum::<u64>() / n.max(1);
            let first = s.samples.front().map_or(0, |x| x.time);
            let last = s.samples.back().map_or(0, |x| x.time);
            let _ = writeln!(
                out,
                "{}. {name}: {n} spikes, average {avg} ms, mean deviation {mad} ms, \
                 one every {:.2} s; worst ever {} ms.",
                i + 1,
                (last - first) as f64 / n.max(1) as f64,
                s.max
            );
            match *name {
                "command" => {
                    if slowlog_slower_than_us < 0 {
                        advice.push(format!(
                            "Turn the slow log on to see which commands are slow: \
                             'CONFIG SET slowlog-log-slower-than {}'.",
                            threshold_ms.max(0) * 1000
                        ));
                    } else {
                        advice.push(
                            "SLOWLOG GET shows the slow commands and their arguments.".into(),
                        );
                    }
                    advice.push(
                        "Commands over large keys (KEYS, SMEMBERS, HGETALL, SORT, \
                         deleting big collections) take time in proportion to their \
                         size; split large keys or use the SCAN family."
                            .into(),
                    );
                }
                "fast-command" => advice.push(
                    "Fast commands were slow: the machine did not give Shoal the CPU \
                     (load, a noisy neighbour, CPU limits in the pod)."
                        .into(),
                ),
                "expire-cycle" => advice.push(
                    "Many keys expiring at the same moment make the expiry cycle \
                     long; spread the expiry times."
                        .into(),
                ),
                "aof-write" | "aof-fsync-always" => advice.push(
                    "Writing or syncing the log was slow: the volume is slow or \
                     shared; appendfsync everysec takes syncs off the request path."
                        .into(),
                ),
                "eviction-cycle" => advice.push(
                    "Eviction under maxmemory takes time when writes outrun it; raise \
                     maxmemory or lower the write rate."
                        .into(),
                ),
                _ => {}
            }
        }
        out.push_str("\nWhat to look at:\n\n");
        for a in advice {
            let _ = writeln!(out, "- {a}");
        }
        out
    }
}

/// A short age: `15s`, `3m`, `2h`, `4d`.
fn age(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_per_second_and_a_bounded_history() {
        let m = Monitor::default();
        m.observe("command", 5);
        assert!(m.latest().is_empty(), "threshold 0 is off");
        m.set_threshold(10);
        m.observe("command", 5);
        assert!(m.latest().is_empty(), "below the threshold");
        m.record("command", 20, 100);
        m.record("command", 30, 100);
        m.record("command", 15, 100);
        let h = m.history(b"command");
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].ms, 30, "a second keeps its worst");
        for t in 101..400 {
            m.record("command", 11, t);
        }
        assert_eq!(m.history(b"command").len(), SAMPLES);
        let (e, last, max) = m.latest()[0];
        assert_eq!((e, last.time, last.ms, max), ("command", 399, 11, 30));
        assert!(m
            .graph(b"command", 400)
            .unwrap()
            .starts_with("command - high 11 ms"));
        assert!(m.graph(b"other", 400).is_none());
        assert_eq!(m.reset(&[b"other"]), 0);
        assert_eq!(m.reset(&[]), 1);
        assert!(m.latest().is_empty());
    }
}
