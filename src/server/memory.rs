//! Memory figures from the allocator.
//!
//! Shoal runs on jemalloc (set in `main.rs`), and `used_memory` is jemalloc's
//! own count of allocated bytes, not an estimate: what INFO reports is what the
//! process holds, less what threads' caches keep of freed memory (jemalloc
//! counts that as allocated; Redis's count never includes it). Reading the
//! count takes a lock, so each thread reads it at most every 5 ms and adds
//! its own allocations since from jemalloc's per-thread counters ([`used`]):
//! a command's growth and an eviction's release count at once on the
//! thread that made them. RSS comes from the kernel (`/proc/self/statm`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tikv_jemalloc_ctl::{epoch, stats};

#[derive(Default, Clone, Copy)]
pub struct MemoryFigures {
    /// `used_memory`: what the program's allocations hold.
    pub used: u64,
    /// jemalloc's allocated bytes, threads' caches included.
    pub allocated: u64,
    pub active: u64,
    pub resident: u64,
    pub rss: u64,
}

pub fn read() -> MemoryFigures {
    // jemalloc caches its statistics; advancing the epoch refreshes them.
    let _ = epoch::advance();
    let allocated = stats::allocated::read().unwrap_or(0) as u64;
    MemoryFigures {
        used: allocated.saturating_sub(thread_cached()),
        allocated,
        active: stats::active::read().unwrap_or(0) as u64,
        resident: stats::resident::read().unwrap_or(0) as u64,
        rss: rss(),
    }
}

/// Only `used_memory` (no RSS: that is a file read).
pub fn read_used() -> u64 {
    let _ = epoch::advance();
    let allocated = stats::allocated::read().unwrap_or(0) as u64;
    allocated.saturating_sub(thread_cached())
}

/// `used_memory` now as this thread sees it: `read_allocator()`'s figure,
/// taken at most every 5 ms on each thread (reading it merges every
/// arena's statistics under a lock), plus what this thread allocated less
/// what it freed since, from jemalloc's per-thread counters (two loads).
/// A command's own growth, a 200 KB SETBIT, so counts the moment it is
/// made, and an eviction's release the moment the key is dropped, as in
/// Redis's exact count; other threads' show within 5 ms.
/// `fresh`: read the allocator anew unless this thread did in this very
/// millisecond (to confirm a figure over `maxmemory`: this thread's count
/// drifts high when others free what it allocated).
pub fn used(now_ms: i64, fresh: bool, read_allocator: impl FnOnce() -> u64) -> u64 {
    thread_local! {
        /// When this thread last read the allocator, what it read, and
        /// its own net allocation then.
        static SEEN: std::cell::Cell<(i64, u64, u64)> = const { std::cell::Cell::new((i64::MIN, 0, 0)) };
    }
    let net = thread_net();
    SEEN.with(|seen| {
        let (mut at, mut used, mut net_then) = seen.get();
        if now_ms.saturating_sub(at) >= 5 || now_ms < at || (fresh && now_ms != at) {
            (at, used, net_then) = (now_ms, read_allocator(), net);
            seen.set((at, used, net_then));
        }
        // Wrapping: the counters are cumulative; the difference is what
        // this thread holds more (or, freeing others' allocations, less).
        used.saturating_add_signed(net.wrapping_sub(net_then) as i64)
    })
}

/// This thread's allocated less freed bytes since it started (wrapping).
fn thread_net() -> u64 {
    use tikv_jemalloc_ctl::thread::{allocatedp, deallocatedp, ThreadLocal};
    thread_local! {
        static COUNTERS: Option<(ThreadLocal<u64>, ThreadLocal<u64>)> =
            allocatedp::read().ok().zip(deallocatedp::read().ok());
    }
    COUNTERS.with(|c| c.map_or(0, |(a, d)| a.get().wrapping_sub(d.get())))
}

/// Bytes freed by the program but kept in threads' caches (jemalloc's
/// tcache) for their next allocations, as of the last epoch. The arenas
/// count them as allocated; left in, `used_memory` swung by some 300 KB
/// within a second on an idle node as the caches of Shoal's threads
/// filled and drained, enough to trip a `maxmemory` set 100 KB above
/// what INFO had just said. Redis's own count (what its allocations
/// hold) never includes them.
fn thread_cached() -> u64 {
    use tikv_jemalloc_ctl::raw;
    // 4096 is MALLCTL_ARENAS_ALL: the sum over every arena.
    static MIB: std::sync::OnceLock<Option<[usize; 4]>> = std::sync::OnceLock::new();
    let mib = MIB.get_or_init(|| {
        let mut mib = [0usize; 4];
        raw::name_to_mib(b"stats.arenas.4096.tcache_bytes\0", &mut mib)
            .ok()
            .map(|()| mib)
    });
    // SAFETY: the statistic is a size_t, read as the usize it is.
    mib.and_then(|m| unsafe { raw::read_mib::<usize>(&m) }.ok())
        .unwrap_or(0) as u64
}

fn rss() -> u64 {
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|pages| pages * page)
        .unwrap_or(0)
}

/// What the allocator really sets aside for a buffer of `capacity` bytes:
/// its size class, which `used_memory` counts (up to a quarter more than
/// asked for, for the largest buffers).
pub fn allocation_size(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    // SAFETY: nallocx only computes a size; flags 0 is plain malloc's.
    match unsafe { tikv_jemalloc_sys::nallocx(capacity, 0) } {
        0 => capacity,
        n => n,
    }
}

/// The peak of `used_memory`, sampled by the cron and by INFO.
#[derive(Default)]
pub struct Peak(AtomicU64);

impl Peak {
    pub fn observe(&self, used: u64) -> u64 {
        self.0.fetch_max(used, Relaxed).max(used)
    }
}

pub fn total_system_memory() -> u64 {
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (pages.max(0) as u64) * (page.max(0) as u64)
}

/// Redis's `*_human` format: `1.50M`, `912.00K`, `20B`.
pub fn human(n: u64) -> String {
    let f = n as f64;
    let units = [
        (1024f64.powi(5), "P"),
        (1024f64.powi(4), "T"),
        (1024f64.powi(3), "G"),
        (1024f64.powi(2), "M"),
        (1024.0, "K"),
    ];
    for (div, unit) in units {
        if f >= div {
            return format!("{:.2}{}", f / div, unit);
        }
    }
    format!("{n}B")
}

/// jemalloc's statistics report, as MEMORY MALLOC-STATS shows it.
pub fn malloc_stats() -> String {
    unsafe extern "C" fn append(out: *mut std::ffi::c_void, text: *const std::ffi::c_char) {
        // SAFETY: `out` is the String passed below, alive for the call;
        // jemalloc hands NUL-terminated text.
        let out = unsafe { &mut *(out as *mut String) };
        out.push_str(&unsafe { std::ffi::CStr::from_ptr(text) }.to_string_lossy());
    }
    let mut out = String::new();
    // SAFETY: the callback only appends to `out`, which outlives the call.
    unsafe {
        tikv_jemalloc_sys::malloc_stats_print(
            Some(append),
            &mut out as *mut String as *mut std::ffi::c_void,
            std::ptr::null(),
        )
    };
    out
}

/// Hands the unused dirty pages of every arena back to the system
/// (MEMORY PURGE), as Redis does; false if jemalloc refuses.
pub fn purge() -> bool {
    let Ok(n) = tikv_jemalloc_ctl::arenas::narenas::read() else {
        return false;
    };
    // `arena.<narenas>.purge` names every arena at once.
    let name = std::ffi::CString::new(format!("arena.{n}.purge")).expect("no NUL");
    // SAFETY: a void mallctl: no old value asked, none given.
    let r = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    r == 0
}

/// Where memory goes, reckoned as Redis reckons it for MEMORY STATS, INFO
/// memory and MEMORY DOCTOR: what the server holds beside the data set
/// (its start-up footprint, the replication backlog, replicas' and
/// clients' buffers, log records not yet written, the keys' tables), and
/// the allocator's and the kernel's view of the whole.
pub struct Overhead {
    pub figures: MemoryFigures,
    pub peak: u64,
    pub startup: u64,
    /// What the effect stream holds: backlog, replicas' buffers, log.
    pub stream: crate::effects::StreamMemory,
    pub clients: u64,
    /// Normal clients (not replicas): Redis's average-buffer check.
    pub client_count: usize,
    pub replica_count: usize,
    /// Each database holding keys: its index, its tables' bytes and its
    /// key count.
    pub dbs: Vec<(usize, u64, u64)>,
}

impl Overhead {
    pub fn read(server: &super::Server, now_ms: i64) -> Overhead {
        let mut figures = server.memory_figures(now_ms);
        // This thread's own allocations since the figures were read count.
        figures.used = server.used_memory(now_ms);
        let stream = server.effects.memory();
        let (mut clients, mut client_count, mut replica_count) = (0, 0, 0);
        for c in server.clients.all() {
            if c.kind.load(Relaxed) == super::client::KIND_REPLICA {
                replica_count += 1;
            } else {
                client_count += 1;
                clients += c.buffers.load(Relaxed) as u64;
            }
        }
        let dbs = server
            .keyspace
            .used_dbs()
            .filter_map(|(i, db)| {
                let keys = db.counts().0 as u64;
                (keys > 0).then(|| (i, db.table_overhead() as u64, keys))
            })
            .collect();
        Overhead {
            peak: server.peak_memory.observe(figures.used),
            figures,
            startup: server.startup_memory.load(Relaxed),
            stream,
            clients,
            client_count,
            replica_count,
            dbs,
        }
    }

    pub fn total(&self) -> u64 {
        self.startup
            + self.backlog()
            + self.replicas()
            + self.clients
            + self.log()
            + self.dbs.iter().map(|d| d.1).sum::<u64>()
    }

    /// `used_memory`.
    pub fn used(&self) -> u64 {
        self.figures.used
    }

    pub fn dataset(&self) -> u64 {
        self.used().saturating_sub(self.total())
    }

    /// What the data took since start-up.
    pub fn net(&self) -> u64 {
        self.used().saturating_sub(self.startup)
    }

    pub fn keys(&self) -> u64 {
        self.dbs.iter().map(|d| d.2).sum()
    }

    pub fn backlog(&self) -> u64 {
        self.stream.backlog as u64
    }

    /// Replicas' output buffers (`mem_clients_slaves`).
    pub fn replicas(&self) -> u64 {
        self.stream.replicas as u64
    }

    /// Log records not yet written (`mem_aof_buffer`).
    pub fn log(&self) -> u64 {
        self.stream.log as u64
    }

    pub fn not_counted_for_evict(&self) -> u64 {
        self.stream.not_counted_for_evict()
    }

    pub fn dataset_perc(&self) -> f32 {
        percent(self.dataset(), self.net())
    }

    pub fn peak_perc(&self) -> f32 {
        percent(self.used(), self.peak)
    }

    /// jemalloc's active pages against what it handed out.
    pub fn allocator_frag(&self) -> (f32, i64) {
        ratio(self.figures.active, self.figures.allocated)
    }

    /// jemalloc's resident pages against its active ones.
    pub fn allocator_rss(&self) -> (f32, i64) {
        ratio(self.figures.resident, self.figures.active)
    }

    /// The process's RSS against jemalloc's resident pages.
    pub fn rss_overhead(&self) -> (f32, i64) {
        ratio(self.figures.rss, self.figures.resident)
    }

    /// RSS against `used_memory` (`mem_fragmentation_ratio`).
    pub fn fragmentation(&self) -> (f32, i64) {
        ratio(self.figures.rss, self.figures.used)
    }
}

/// Redis computes these in C floats; so does this, digit for digit.
fn percent(part: u64, whole: u64) -> f32 {
    if whole == 0 {
        0.0
    } else {
        part as f32 * 100.0 / whole as f32
    }
}

fn ratio(a: u64, b: u64) -> (f32, i64) {
    let r = if b == 0 { 0.0 } else { a as f32 / b as f32 };
    (r, a as i64 - b as i64)
}
