//! SLOWLOG: the last `slowlog-max-len` commands that took longer than
//! `slowlog-log-slower-than` microseconds, with Redis's argument trimming
//! (at most 32 arguments, each at most 128 bytes) so a slow command with a
//! huge value cannot make the log itself large.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::Mutex;

const MAX_ARGS: usize = 32;
const MAX_ARG_LEN: usize = 128;

pub struct Entry {
    pub id: u64,
    pub time: i64,
    pub duration_us: u64,
    pub args: Vec<Vec<u8>>,
    pub addr: String,
    pub name: String,
}

#[derive(Default)]
pub struct SlowLog {
    inner: Mutex<(u64, VecDeque<Entry>)>,
}

impl SlowLog {
    pub fn push(
        &self,
        argv: &[Bytes],
        duration_us: u64,
        addr: String,
        name: String,
        max_len: usize,
    ) {
        let mut args: Vec<Vec<u8>> = Vec::new();
        for (i, a) in argv.iter().enumerate() {
            if i == MAX_ARGS - 1 && argv.len() > MAX_ARGS {
                args.push(
                    format!("... ({} more arguments)", argv.len() - MAX_ARGS + 1).into_bytes(),
                );
                break;
            }
            if a.len() > MAX_ARG_LEN {
                let mut v = a[..MAX_ARG_LEN].to_vec();
                v.extend_from_slice(
                    format!("... ({} more bytes)", a.len() - MAX_ARG_LEN).as_bytes(),
                );
                args.push(v);
            } else {
                args.push(a.to_vec());
            }
        }
        let mut g = self.inner.lock();
        let id = g.0;
        g.0 += 1;
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        g.1.push_front(Entry {
            id,
            time,
            duration_us,
            args,
            addr,
            name,
        });
        g.1.truncate(max_len);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().1.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn reset(&self) {
        self.inner.lock().1.clear();
    }

    pub fn trim(&self, max_len: usize) {
        self.inner.lock().1.truncate(max_len);
    }

    /// Runs `f` over the newest `n` entries.
    pub fn with_entries<R>(
        &self,
        n: usize,
        f: impl FnOnce(&mut dyn Iterator<Item = &Entry>) -> R,
    ) -> R {
        let g = self.inner.lock();
        let mut it = g.1.iter().take(n);
        f(&mut it)
    }
}
