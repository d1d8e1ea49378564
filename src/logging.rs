//! Logging: `tracing` to standard output or to `logfile`, at `loglevel`
//! (Redis's level names), changeable at run time with CONFIG SET.

use std::sync::OnceLock;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::reload;
use tracing_subscriber::{fmt, prelude::*, Registry};

static HANDLE: OnceLock<reload::Handle<LevelFilter, Registry>> = OnceLock::new();

fn level(name: &str) -> LevelFilter {
    match name {
        "debug" => LevelFilter::TRACE,
        "verbose" => LevelFilter::DEBUG,
        "notice" => LevelFilter::INFO,
        "warning" => LevelFilter::WARN,
        _ => LevelFilter::OFF,
    }
}

/// Installs the global logger. `logfile` empty means standard output.
pub fn init(loglevel: &str, logfile: &str) -> std::io::Result<()> {
    let (filter, handle) = reload::Layer::new(level(loglevel));
    let _ = HANDLE.set(handle);
    let registry = tracing_subscriber::registry().with(filter);
    if logfile.is_empty() {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        let _ = registry
            .with(
                fmt::layer()
                    .with_target(false)
                    .with_ansi(ansi)
                    .with_writer(std::io::stdout),
            )
            .try_init();
    } else {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logfile)?;
        let _ = registry
            .with(
                fmt::layer()
                    .with_target(false)
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(file)),
            )
            .try_init();
    }
    Ok(())
}

pub fn set_level(name: &str) {
    if let Some(h) = HANDLE.get() {
        let _ = h.modify(|f| *f = level(name));
    }
}
