//! Telling a service manager how the node is doing (`supervised`), as
//! redis-server does, so a unit or job written for Redis runs Shoal as is:
//! systemd's notify protocol (`STATUS=` and `READY=1` once ready,
//! `STOPPING=1` at shutdown, datagrams to `$NOTIFY_SOCKET`), or upstart's
//! convention of stopping (SIGSTOP) once ready. `auto` picks from the
//! environment: `$UPSTART_JOB`, then `$NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;

pub enum Supervisor {
    None,
    Systemd(String),
    Upstart,
}

impl Supervisor {
    /// INFO's `process_supervised`.
    pub fn word(&self) -> &'static str {
        match self {
            Supervisor::None => "no",
            Supervisor::Systemd(_) => "systemd",
            Supervisor::Upstart => "upstart",
        }
    }

    /// The manager `mode` (the directive) names, with Redis's log lines.
    pub fn detect(mode: &str) -> Supervisor {
        let upstart = std::env::var_os("UPSTART_JOB").is_some();
        let notify = std::env::var("NOTIFY_SOCKET").ok();
        let mode = match mode {
            "auto" if upstart => "upstart",
            "auto" if notify.is_some() => "systemd",
            m => m,
        };
        match mode {
            "upstart" => {
                tracing::info!("supervised by upstart, will stop to signal readiness.");
                if !upstart {
                    tracing::warn!("upstart supervision requested, but UPSTART_JOB not found!");
                    return Supervisor::None;
                }
                Supervisor::Upstart
            }
            "systemd" => {
                tracing::info!("supervised by systemd, will signal readiness");
                match notify {
                    Some(path) => Supervisor::Systemd(path),
                    None => {
                        tracing::warn!(
                            "systemd supervision requested or auto-detected, but NOTIFY_SOCKET environment variable not found!"
                        );
                        Supervisor::None
                    }
                }
            }
            _ => Supervisor::None,
        }
    }

    /// The data is loaded and the listeners are open.
    pub fn ready(&self, replica: bool) {
        match self {
            Supervisor::Systemd(_) => {
                self.notify(if replica {
                    "STATUS=Ready to accept connections in read-only mode. Waiting for MASTER <-> REPLICA sync\n"
                } else {
                    "STATUS=Ready to accept connections\n"
                });
                self.notify("READY=1\n");
            }
            Supervisor::Upstart => {
                // upstart sends SIGCONT once it has seen the stop.
                // SAFETY: raise only delivers a signal to this process.
                unsafe { libc::raise(libc::SIGSTOP) };
            }
            Supervisor::None => {}
        }
    }

    pub fn stopping(&self) {
        self.notify("STOPPING=1\n");
    }

    /// One datagram to systemd; a failure is logged, never fatal.
    fn notify(&self, msg: &str) {
        let Supervisor::Systemd(path) = self else {
            return;
        };
        let sent = UnixDatagram::unbound().and_then(|s| match path.strip_prefix('@') {
            // A leading '@' names a socket in the abstract namespace.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                s.send_to_addr(msg.as_bytes(), &addr)
            }
            None => s.send_to(msg.as_bytes(), path),
        });
        if let Err(e) = sent {
            tracing::warn!("Can't send notification to systemd: {e}");
        }
    }
}
