//! The listening sockets, which `CONFIG SET port` and `CONFIG SET bind`
//! replace at run time, as Redis's do.
//!
//! ```text
//!  CONFIG SET port/bind ─▶ bind_all: each address of `bind` on `port`
//!     (a socket already listening there is kept, not bound twice)
//!     ─ fails: the command fails, nothing changed (Redis's rollback)
//!     ─▶ Listeners::replace: the new set, its generation announced
//!  each I/O thread's acceptors ─▶ their accept loops stop and start
//!     again on the new set; sockets no longer in it close once the last
//!     loop lets go. Connections already made are not touched.
//! ```
//!
//! Port 0 binds a free port (the first address's; the others take the
//! same), as at start-up: CONFIG GET port then says which. Addresses are
//! Redis's: `-` before one makes it optional, `*` and `::*` are every
//! IPv4 and every IPv6 interface.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

/// One listening socket: the `bind` word it serves and where it listens.
#[derive(Debug)]
pub struct Bound {
    /// The word from `bind` (`-` for optional included).
    pub word: String,
    /// `host:port` (`[host]:port` for IPv6) as bound.
    pub addr: String,
    pub socket: std::net::TcpListener,
}

/// The current set of listening sockets and its generation.
pub struct Listeners {
    set: Mutex<Arc<Vec<Bound>>>,
    changed: watch::Sender<u64>,
}

impl Default for Listeners {
    fn default() -> Listeners {
        Listeners {
            set: Mutex::new(Arc::new(Vec::new())),
            changed: watch::channel(0).0,
        }
    }
}

impl Listeners {
    pub fn current(&self) -> Arc<Vec<Bound>> {
        self.set.lock().clone()
    }

    /// Installs `new` and tells every I/O thread's acceptors.
    pub fn replace(&self, new: Vec<Bound>) {
        *self.set.lock() = Arc::new(new);
        self.changed.send_modify(|g| *g += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// Why binding failed: the address and the error.
#[derive(Debug, thiserror::Error)]
#[error("{addr}: {source}")]
pub struct BindError {
    pub addr: String,
    pub source: std::io::Error,
}

impl BindError {
    /// The error as `strerror` words it, as Redis's messages have it
    /// (without Rust's "(os error N)").
    pub fn reason(&self) -> String {
        let text = self.source.to_string();
        match text.split_once(" (os error ") {
            Some((words, _)) => words.to_string(),
            None => text,
        }
    }
}

/// Listens on every address of `binds` at `port` (0: a free one), taking
/// a socket of `keep` that already listens on the same address and port
/// instead of binding it again. Returns the sockets and the port bound.
/// An address marked optional (`-::1`) that cannot be bound is skipped.
pub fn bind_all(
    binds: &[String],
    port: u16,
    backlog: i32,
    keep: &[Bound],
) -> Result<(Vec<Bound>, u16), BindError> {
    let mut bound_port = port;
    let mut out = Vec::new();
    for word in binds {
        let (optional, host) = host_of(word);
        let addr = address(host, bound_port);
        let kept = keep
            .iter()
            .find(|b| bound_port != 0 && b.addr == addr)
            .map(|b| b.socket.try_clone());
        let socket = match kept {
            Some(s) => s,
            None => listen(&addr, backlog),
        };
        match socket.and_then(|s| s.local_addr().map(|a| (s, a))) {
            Ok((socket, local)) => {
                bound_port = local.port();
                out.push(Bound {
                    word: word.clone(),
                    addr: address(host, bound_port),
                    socket,
                });
            }
            Err(e) if optional => tracing::warn!("skipping optional bind {addr}: {e}"),
            Err(source) => return Err(BindError { addr, source }),
        }
    }
    Ok((out, bound_port))
}

/// What a `bind` word asks for: whether it is optional (`-::1`: bound if
/// the address is available) and the host, Redis's wildcards made
/// addresses (`*` every IPv4 interface, `::*` every IPv6 one).
fn host_of(word: &str) -> (bool, &str) {
    let (optional, host) = match word.strip_prefix('-') {
        Some(h) => (true, h),
        None => (false, word),
    };
    let host = match host {
        "*" => "0.0.0.0",
        "::*" => "::",
        h => h,
    };
    (optional, host)
}

/// `host:port`, or `[host]:port` for an IPv6 address.
fn address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Binds `addr` and listens as redis-server does: the address reusable at
/// once after a restart, IPv6 sockets for IPv6 only, and `backlog`
/// (`tcp-backlog`) handshaken connections waiting to be accepted.
fn listen(addr: &str, backlog: i32) -> std::io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let sa = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no such address"))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(sa),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if sa.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&sa.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_words_read_as_redis_reads_them() {
        assert_eq!(host_of("127.0.0.1"), (false, "127.0.0.1"));
        assert_eq!(host_of("-::1"), (true, "::1"));
        assert_eq!(host_of("*"), (false, "0.0.0.0"));
        assert_eq!(host_of("-::*"), (true, "::"));
        assert_eq!(address("::", 6379), "[::]:6379");
        assert_eq!(address("0.0.0.0", 6379), "0.0.0.0:6379");
    }

    #[test]
    fn a_socket_already_listening_is_kept() {
        let words = ["127.0.0.1".to_string()];
        let (first, port) = bind_all(&words, 0, 16, &[]).unwrap();
        // Binding the same address and port again would fail; kept, it
        // is the same socket.
        let (again, same) = bind_all(&words, port, 16, &first).unwrap();
        assert_eq!(same, port);
        assert_eq!(
            again[0].socket.local_addr().unwrap(),
            first[0].socket.local_addr().unwrap()
        );
        let taken = bind_all(&words, port, 16, &[]).unwrap_err();
        assert_eq!(taken.addr, format!("127.0.0.1:{port}"));
        assert_eq!(taken.reason(), "Address already in use");
    }
}
