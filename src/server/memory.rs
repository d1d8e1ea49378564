//! Memory figures from the allocator.
//!
//! Shoal runs on jemalloc (set in `main.rs`), and `used_memory` is jemalloc's
//! own count of allocated bytes, not an estimate: what INFO reports is what the
//! process holds. RSS comes from the kernel (`/proc/self/statm`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tikv_jemalloc_ctl::{epoch, stats};

#[derive(Default, Clone, Copy)]
pub struct MemoryFigures {
    pub allocated: u64,
    pub active: u64,
    pub resident: u64,
    pub rss: u64,
}

pub fn read() -> MemoryFigures {
    // jemalloc caches its statistics; advancing the epoch refreshes them.
    let _ = epoch::advance();
    MemoryFigures {
        allocated: stats::allocated::read().unwrap_or(0) as u64,
        active: stats::active::read().unwrap_or(0) as u64,
        resident: stats::resident::read().unwrap_or(0) as u64,
        rss: rss(),
    }
}

/// Only `used_memory` (no RSS: that is a file read).
pub fn read_allocated() -> u64 {
    let _ = epoch::advance();
    stats::allocated::read().unwrap_or(0) as u64
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
