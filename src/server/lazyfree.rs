//! Freeing large values off the command path, as Redis's lazyfree: UNLINK
//! (and DEL with `lazyfree-lazy-user-del yes`) hands a value whose freeing
//! is real work (more than 64 allocations: a large collection's elements
//! or a long list's chunks) to one thread that drops it, so the command,
//! and the slot lock it holds, do not wait for the allocator. A smaller
//! value is freed in place, where handing it over would cost more.
//!
//! INFO memory's `lazyfree_pending_objects` counts the values handed over
//! and not yet freed, and `lazyfreed_objects` those freed since start-up
//! (or CONFIG RESETSTAT), as Redis counts them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{channel, Sender};

use parking_lot::Mutex;

/// Freeing effort past which a value goes to the thread (Redis's
/// LAZYFREE_THRESHOLD).
pub const THRESHOLD: usize = 64;

type Job = Box<dyn Send>;

#[derive(Default)]
pub struct LazyFree {
    /// The thread's queue, started with the first value handed over.
    tx: Mutex<Option<Sender<(Job, usize)>>>,
    pub pending: std::sync::Arc<AtomicUsize>,
    pub freed: std::sync::Arc<AtomicU64>,
}

impl LazyFree {
    /// Frees `value` on the thread if `effort` says it is worth it, else
    /// here; returns whether it went to the thread.
    pub fn free<T: Send + 'static>(&self, value: T, effort: usize) -> bool {
        if effort <= THRESHOLD {
            drop(value);
            return false;
        }
        self.hand_over(value, 1);
        true
    }

    /// Frees `value`, `objects` values (a flushed database's keys), on
    /// the thread.
    pub fn hand_over<T: Send + 'static>(&self, value: T, objects: usize) {
        let mut tx = self.tx.lock();
        let sender = tx.get_or_insert_with(|| {
            let (tx, rx) = channel::<(Job, usize)>();
            let (pending, freed) = (self.pending.clone(), self.freed.clone());
            std::thread::Builder::new()
                .name("shoal-lazyfree".into())
                .spawn(move || {
                    for (job, objects) in rx {
                        drop(job);
                        pending.fetch_sub(objects, Relaxed);
                        freed.fetch_add(objects as u64, Relaxed);
                    }
                })
                .expect("spawn the lazy free thread");
            tx
        });
        self.pending.fetch_add(objects, Relaxed);
        if let Err(back) = sender.send((Box::new(value), objects)) {
            // The thread is gone (only a panic in a value's drop could end
            // it): free here.
            self.pending.fetch_sub(objects, Relaxed);
            drop(back);
        }
    }
}
