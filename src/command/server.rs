//! Server commands: INFO, CONFIG, COMMAND, SLOWLOG, MEMORY, DEBUG, MONITOR,
//! SHUTDOWN, TIME, LASTSAVE, MODULE (no modules: LIST is empty).
//!
//! COMMAND answers from the same [`Spec`] rows that dispatch uses, so what a
//! client library learns from `COMMAND INFO` is what the server enforces.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::args::{float, int, positive_count, text, Args};
use super::keys::help;
use super::{flags, flags::*, key_flags::*, keys, spec, Action, Ctx, Spec, NO_KEYS, TABLE};
use crate::config::ConfigError;
use crate::error::{CmdResult, CommandError};
use crate::glob::glob_match;

const G: &str = "server";
const A: &[&str] = &["admin", "dangerous"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("info", -1, LOADING | STALE, NO_KEYS, &["dangerous"], G, "Returns information and statistics about the server.", info),
    spec("time", 1, LOADING | STALE | FAST, NO_KEYS, &[], G, "Returns the server time.", time),
    spec("lastsave", 1, LOADING | STALE | FAST, NO_KEYS, &["admin", "dangerous"], G, "Returns the Unix timestamp of the last successful save to disk.", lastsave),
    spec("monitor", 1, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Listens for all requests received by the server in real-time.", monitor),
    spec("save", 1, ADMIN | NOSCRIPT | NO_MULTI | NO_ASYNC_LOADING, NO_KEYS, A, G, "Synchronously saves the database(s) to disk.", save),
    spec("bgsave", -1, ADMIN | NOSCRIPT | NO_ASYNC_LOADING, NO_KEYS, A, G, "Asynchronously saves the database(s) to disk.", bgsave),
    spec("bgrewriteaof", 1, ADMIN | NOSCRIPT | NO_ASYNC_LOADING, NO_KEYS, A, G, "Asynchronously rewrites the append-only file to disk.", bgrewriteaof),
    spec("shutdown", -1, ADMIN | NOSCRIPT | LOADING | STALE | NO_MULTI | ALLOW_BUSY, NO_KEYS, A, G, "Synchronously saves the database(s) to disk and shuts down the Redis server.", shutdown),
    Spec { subcommands: CONFIG_SUBCOMMANDS, ..spec("config", -2, 0, NO_KEYS, &[], G, "A container for server configuration commands.", keys::help_only) },
    Spec { subcommands: COMMAND_SUBCOMMANDS, ..spec("command", -1, LOADING | STALE, NO_KEYS, &["connection"], G, "Returns detailed information about all commands.", command_all) },
    Spec { subcommands: SLOWLOG_SUBCOMMANDS, ..spec("slowlog", -2, 0, NO_KEYS, &[], G, "A container for slow log commands.", keys::help_only) },
    Spec { subcommands: MEMORY_SUBCOMMANDS, ..spec("memory", -2, 0, NO_KEYS, &[], G, "A container for memory diagnostics commands.", keys::help_only) },
    Spec { subcommands: LATENCY_SUBCOMMANDS, ..spec("latency", -2, 0, NO_KEYS, &[], G, "A container for latency diagnostics commands.", keys::help_only) },
    Spec { subcommands: DEBUG_SUBCOMMANDS, ..spec("debug", -2, ADMIN | NOSCRIPT | LOADING | STALE | PROTECTED, NO_KEYS, A, G, "A container for debugging commands.", keys::help_only) },
    Spec { subcommands: MODULE_SUBCOMMANDS, ..spec("module", -2, 0, NO_KEYS, &[], G, "A container for module commands.", keys::help_only) },
];

/// Shoal loads no modules (its commands are its own); MODULE answers as a
/// Redis without any does, so that clients probing for them hear "none".
#[rustfmt::skip]
static MODULE_SUBCOMMANDS: &[Spec] = &[
    spec("module|list", 2, ADMIN | NOSCRIPT, NO_KEYS, A, G, "Returns all loaded modules.", module_list),
    spec("module|load", -3, ADMIN | NOSCRIPT | NO_ASYNC_LOADING | PROTECTED, NO_KEYS, A, G, "Loads a module.", module_load),
    spec("module|loadex", -3, ADMIN | NOSCRIPT | NO_ASYNC_LOADING | PROTECTED, NO_KEYS, A, G, "Loads a module using extended parameters.", module_load),
    spec("module|unload", 3, ADMIN | NOSCRIPT | NO_ASYNC_LOADING | PROTECTED, NO_KEYS, A, G, "Unloads a module.", module_unload),
    spec("module|help", 2, LOADING | STALE, NO_KEYS, &[], G, "Returns helpful text about the different subcommands.", module_help),
];

fn module_list(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    ctx.out.array(0);
    Ok(())
}

fn module_load(_ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    tracing::warn!(
        "Module {} not loaded: Shoal does not load modules",
        text(&argv[2])
    );
    Err(CommandError::err(
        "Error loading the extension. Please check the server logs.",
    ))
}

fn module_unload(_ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    Err(CommandError::err(
        "Error unloading module: no such module with that name",
    ))
}

fn module_help(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    help(
        ctx,
        "MODULE",
        &[
            "LIST",
            "    Return a list of loaded modules.",
            "LOAD <path> [<arg> ...]",
            "    Load a module library from <path>, passing to it any optional arguments.",
            "LOADEX <path> [[CONFIG NAME VALUE] [CONFIG NAME VALUE]] [ARGS ...]",
            "    Load a module library from <path>, while passing it module configurations and optional arguments.",
            "UNLOAD <name>",
            "    Unload a module.",
        ],
    );
    Ok(())
}

#[rustfmt::skip]
static CONFIG_SUBCOMMANDS: &[Spec] = &[
    spec("config|get", -3, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Returns the effective values of configuration parameters.", config_get),
    spec("config|set", -4, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Sets configuration parameters in-flight.", config_set),
    spec("config|resetstat", 2, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Resets the server's statistics.", config_resetstat),
    spec("config|rewrite", 2, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Persists the effective configuration to file.", config_rewrite),
    spec("config|help", 2, LOADING | STALE, NO_KEYS, &[], G, "Returns helpful text about the different subcommands.", config_help),
];

#[rustfmt::skip]
static COMMAND_SUBCOMMANDS: &[Spec] = &[
    spec("command|count", 2, LOADING | STALE, NO_KEYS, &["connection"], G, "Returns a count of commands.", command_count),
    spec("command|info", -2, LOADING | STALE, NO_KEYS, &["connection"], G, "Returns information about one, multiple or all commands.", command_info),
    spec("command|docs", -2, LOADING | STALE, NO_KEYS, &["connection"], G, "Returns documentary information about one, multiple or all commands.", command_docs),
    spec("command|getkeys", -3, LOADING | STALE, NO_KEYS, &["connection"], G, "Extracts the key names from an arbitrary command.", command_getkeys),
    spec("command|getkeysandflags", -4, LOADING | STALE, NO_KEYS, &["connection"], G, "Returns a list of command keys and their flags from an arbitrary command.", command_getkeysandflags),
    spec("command|list", -2, LOADING | STALE, NO_KEYS, &["connection"], G, "Returns a list of command names.", command_list),
    spec("command|help", 2, LOADING | STALE, NO_KEYS, &["connection"], G, "Returns helpful text about the different subcommands.", command_help),
];

#[rustfmt::skip]
static SLOWLOG_SUBCOMMANDS: &[Spec] = &[
    spec("slowlog|get", -2, ADMIN | LOADING | STALE, NO_KEYS, A, G, "Returns the slow log's entries.", slowlog_get),
    spec("slowlog|len", 2, ADMIN | LOADING | STALE, NO_KEYS, A, G, "Returns the number of entries in the slow log.", slowlog_len),
    spec("slowlog|reset", 2, ADMIN | LOADING | STALE, NO_KEYS, A, G, "Clears all entries from the slow log.", slowlog_reset),
    spec("slowlog|help", 2, LOADING | STALE, NO_KEYS, &[], G, "Show helpful text about the different subcommands", slowlog_help),
];

#[rustfmt::skip]
static LATENCY_SUBCOMMANDS: &[Spec] = &[
    spec("latency|latest", 2, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Returns the latest latency samples for all events.", latency_latest),
    spec("latency|history", 3, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Returns timestamp-latency samples for an event.", latency_history),
    spec("latency|reset", -2, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Resets the latency data for one or more events.", latency_reset),
    spec("latency|graph", 3, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Returns a latency graph for an event.", latency_graph),
    spec("latency|doctor", 2, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Returns a human-readable latency analysis report.", latency_doctor),
    spec("latency|histogram", -2, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Returns the cumulative distribution of latencies of a subset or all commands.", latency_histogram),
    spec("latency|help", 2, LOADING | STALE, NO_KEYS, &[], G, "Returns helpful text about the different subcommands.", latency_help),
];

#[rustfmt::skip]
static MEMORY_SUBCOMMANDS: &[Spec] = &[
    spec("memory|usage", -3, READONLY, super::keys(2, 2, 1).flags(RO), &["read"], G, "Estimates the memory usage of a key.", memory_usage),
    spec("memory|help", 2, LOADING | STALE, NO_KEYS, &[], G, "Returns helpful text about the different subcommands.", memory_help),
    spec("memory|malloc-stats", 2, 0, NO_KEYS, &[], G, "Returns the allocator statistics.", memory_malloc_stats),
    spec("memory|stats", 2, 0, NO_KEYS, &[], G, "Returns details about memory usage.", memory_stats),
    spec("memory|doctor", 2, 0, NO_KEYS, &[], G, "Outputs a memory problems report.", memory_doctor),
    spec("memory|purge", 2, 0, NO_KEYS, &[], G, "Asks the allocator to release memory.", memory_purge),
];

#[rustfmt::skip]
static DEBUG_SUBCOMMANDS: &[Spec] = &[
    spec("debug|sleep", 3, ADMIN | NOSCRIPT | LOADING | STALE | PROTECTED | EXCLUSIVE, NO_KEYS, A, G, "Stops the server for a number of seconds.", debug_sleep),
    spec("debug|protocol", 3, ADMIN | NOSCRIPT | LOADING | STALE | PROTECTED, NO_KEYS, A, G, "Replies with a value of the named protocol type.", debug_protocol),
    spec("debug|reload", -2, ADMIN | NOSCRIPT | PROTECTED | EXCLUSIVE, NO_KEYS, A, G, "Saves the snapshot and loads it back.", debug_reload),
    spec("debug|loadaof", 2, ADMIN | NOSCRIPT | PROTECTED | EXCLUSIVE, NO_KEYS, A, G, "Writes what the log has pending and loads the log back.", debug_loadaof),
    spec("debug|pause-cron", 3, ADMIN | NOSCRIPT | LOADING | STALE | PROTECTED, NO_KEYS, A, G, "Stops (1) or resumes (0) the server's cron.", debug_pause_cron),
    spec("debug|set-active-expire", 3, ADMIN | NOSCRIPT | LOADING | STALE | PROTECTED, NO_KEYS, A, G, "Turns the active expiry cycle on (1) or off (0).", debug_set_active_expire),
    spec("debug|set-disable-deny-scripts", 3, ADMIN | NOSCRIPT | LOADING | STALE | PROTECTED, NO_KEYS, A, G, "Lets scripts call commands not allowed from scripts (1), or not (0).", debug_set_disable_deny_scripts),
    spec("debug|set-skip-checksum-validation", 3, ADMIN | NOSCRIPT | LOADING | STALE | PROTECTED, NO_KEYS, A, G, "Makes RESTORE skip payloads' checksums (1), or check them (0).", debug_set_skip_checksum_validation),
    spec("debug|quicklist-packed-threshold", 3, ADMIN | NOSCRIPT | LOADING | STALE | PROTECTED, NO_KEYS, A, G, "Keeps list elements of at least this size alone in a chunk (0: back to 1gb).", debug_quicklist_packed_threshold),
    spec("debug|object", 3, ADMIN | NOSCRIPT | LOADING | STALE | PROTECTED, NO_KEYS, A, G, "Shows low-level information about a key.", debug_object),
    spec("debug|digest", 2, ADMIN | NOSCRIPT | LOADING | STALE | PROTECTED, NO_KEYS, A, G, "Returns a digest of the whole dataset, equal on any two nodes with the same data.", debug_digest),
    spec("debug|digest-value", -2, ADMIN | NOSCRIPT | LOADING | STALE | PROTECTED, NO_KEYS, A, G, "Returns the digests of the given keys' values.", debug_digest_value),
    spec("debug|populate", -3, WRITE | DENYOOM | ADMIN | NOSCRIPT | PROTECTED, NO_KEYS, A, G, "Creates string keys key:0 to key:<count-1> (or <prefix>:N) that do not exist yet.", debug_populate),
    spec("debug|help", 2, LOADING | STALE | PROTECTED, NO_KEYS, &[], G, "Returns helpful text about the different subcommands.", debug_help),
];

fn info(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let sections: Vec<String> = argv[1..].iter().map(|a| text(a)).collect();
    let s = crate::server::info::render(ctx.server, &sections);
    ctx.out.verbatim(&s);
    Ok(())
}

fn time(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    ctx.out.array(2);
    ctx.out.bulk_int(d.as_secs() as i64);
    ctx.out.bulk_int(d.subsec_micros() as i64);
    Ok(())
}

fn lastsave(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    ctx.out.int(ctx.server.last_save.load(Relaxed));
    Ok(())
}

fn monitor(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    // Inside EXEC a client expects one reply per command, as Redis says.
    if ctx.client.exec_effects.get().is_some() {
        return Err(CommandError::err(
            "MONITOR isn't allowed for DENY BLOCKING client",
        ));
    }
    ctx.out.ok();
    ctx.action = Some(Action::Monitor);
    Ok(())
}

fn shutdown(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    use crate::server::ShutdownSave;
    let (mut save, mut abort, mut other) = (None, false, false);
    for w in &argv[1..] {
        match w.to_ascii_lowercase().as_slice() {
            b"nosave" if save != Some(ShutdownSave::Always) => save = Some(ShutdownSave::Never),
            b"save" if save != Some(ShutdownSave::Never) => save = Some(ShutdownSave::Always),
            b"now" | b"force" => other = true,
            b"abort" => abort = true,
            _ => return Err(CommandError::Syntax),
        }
    }
    if abort {
        if save.is_some() || other {
            return Err(CommandError::Syntax);
        }
        // A shutdown, once asked, is under way: there is none to abort.
        return Err(CommandError::err("No shutdown in progress."));
    }
    // A script past busy-reply-threshold holds the data: only NOSAVE
    // stops the node under it, as in Redis (`allow_busy`).
    if save != Some(ShutdownSave::Never) && ctx.server.busy.timed_out() {
        return Err(ctx.server.busy.error());
    }
    // The snapshot (if any) is written once connections are closed, so it
    // holds every write acknowledged; no reply is sent, as in Redis.
    ctx.server
        .set_shutdown_save(save.unwrap_or(ShutdownSave::IfRules));
    ctx.action = Some(Action::Shutdown);
    Ok(())
}

/// The server as an owned handle, for work that outlives the command.
fn owned(ctx: &Ctx) -> Result<std::sync::Arc<crate::server::Server>, CommandError> {
    ctx.server
        .this
        .get()
        .and_then(|w| w.upgrade())
        .ok_or_else(|| CommandError::err("server is shutting down"))
}

fn save(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    crate::persistence::save::save(ctx.server).map_err(|e| CommandError::err(e.to_string()))?;
    ctx.out.ok();
    Ok(())
}

fn bgsave(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    use crate::persistence::save::{self, Scheduled};
    let schedule = match argv.get(1) {
        None => false,
        Some(a) if argv.len() == 2 && a.eq_ignore_ascii_case(b"schedule") => true,
        Some(_) => return Err(CommandError::Syntax),
    };
    let server = owned(ctx)?;
    let err = |e: save::SaveError| CommandError::err(e.to_string());
    if !schedule {
        save::bgsave(&server).map_err(err)?;
        ctx.out.simple("Background saving started");
        return Ok(());
    }
    match save::bgsave_schedule(&server).map_err(err)? {
        Scheduled::Started => ctx.out.simple("Background saving started"),
        Scheduled::Later => ctx.out.simple("Background saving scheduled"),
    }
    Ok(())
}

fn bgrewriteaof(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let server = owned(ctx)?;
    crate::persistence::rewrite::start(&server).map_err(|e| CommandError::err(e.to_string()))?;
    ctx.out
        .simple("Background append only file rewriting started");
    Ok(())
}

fn config_get(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let cfg = ctx.server.config.read();
    let mut pairs: Vec<(&'static str, String)> = Vec::new();
    for p in &argv[2..] {
        for (k, v) in cfg.matching(p) {
            if !pairs.iter().any(|(n, _)| *n == k) {
                pairs.push((k, v));
            }
        }
    }
    drop(cfg);
    ctx.out.map(pairs.len());
    for (k, v) in pairs {
        ctx.out.bulk(k.as_bytes());
        ctx.out.bulk(v.as_bytes());
    }
    Ok(())
}

fn config_set(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    if !argv.len().is_multiple_of(2) {
        return Err(CommandError::Arity("config|set".into()));
    }
    // Redis looks every name up first: an unknown one answers at once, a
    // name given twice (aliases included) fails the whole command.
    let mut seen: Vec<&str> = Vec::new();
    let mut duplicate = None;
    for kv in argv[2..].chunks(2) {
        let name = text(&kv[0]);
        let Some(d) = crate::config::directive(&name) else {
            return Err(CommandError::err(format!(
                "Unknown option or number of arguments for CONFIG SET - '{name}'"
            )));
        };
        if seen.contains(&d.name) {
            duplicate.get_or_insert(name);
        }
        seen.push(d.name);
    }
    if let Some(name) = duplicate {
        return Err(CommandError::err(format!(
            "CONFIG SET failed (possibly related to argument '{name}') - duplicate parameter"
        )));
    }
    // All or nothing: validate every pair on a copy, then swap it in.
    let mut cfg = ctx.server.config.write();
    let mut next = cfg.clone();
    let mut changed = Vec::new();
    for kv in argv[2..].chunks(2) {
        let name = text(&kv[0]);
        match next.set(&name, &text(&kv[1])) {
            Ok((n, v)) => changed.push((n, v)),
            Err(ConfigError::BadDirective) => {
                return Err(CommandError::err(format!(
                    "Unknown option or number of arguments for CONFIG SET - '{name}'"
                )))
            }
            Err(e) => {
                return Err(CommandError::err(format!(
                    "CONFIG SET failed (possibly related to argument '{name}') - {e}"
                )))
            }
        }
    }
    // A new port or bind address: the sockets are bound first, so one that
    // cannot be listened on fails the whole command with nothing changed
    // (Redis's rollback on an apply error).
    let rebound = match changed.iter().find(|(n, _)| *n == "port" || *n == "bind") {
        Some((name, _))
            if next.get("port") != cfg.get("port") || next.get("bind") != cfg.get("bind") =>
        {
            let current = ctx.server.listeners.current();
            let bound = crate::server::listeners::bind_all(
                &next.words("bind"),
                next.int("port") as u16,
                next.int("tcp-backlog") as i32,
                &current,
            );
            Some(bound.map_err(|e| {
                let why = match *name {
                    "port" => format!("Unable to listen on this port: {}", e.reason()),
                    _ => format!(
                        "Failed to bind to specified addresses: {}: {}",
                        e.addr,
                        e.reason()
                    ),
                };
                CommandError::err(format!(
                    "CONFIG SET failed (possibly related to argument '{name}') - {why}"
                ))
            })?)
        }
        _ => None,
    };
    // More clients than the open files limit allows: the limit is raised
    // if it can be, else the command fails, as in Redis.
    if let Some((_, v)) = changed.iter().find(|(n, _)| *n == "maxclients") {
        let asked: u64 = v.parse().unwrap_or(0);
        if asked > cfg.int("maxclients") as u64 {
            match crate::server::fit_open_files(asked) {
                Ok(fits) if fits < asked => {
                    return Err(CommandError::err(format!(
                        "CONFIG SET failed (possibly related to argument 'maxclients') - The operating system is not able to handle the specified number of clients, try with {fits}"
                    )))
                }
                Err(e) => {
                    return Err(CommandError::err(format!(
                        "CONFIG SET failed (possibly related to argument 'maxclients') - {e}"
                    )))
                }
                Ok(_) => {}
            }
        }
    }
    *cfg = next;
    if let Some((sockets, port)) = rebound {
        cfg.set_bound_port(port);
        ctx.server.tcp_port.store(port, Relaxed);
        ctx.server.listeners.replace(sockets);
        tracing::info!("Listening again, tcp port {port}");
    }
    drop(cfg);
    for (n, v) in changed {
        ctx.server.config_changed(n, &v);
    }
    ctx.out.ok();
    Ok(())
}

fn config_resetstat(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    ctx.server.stats.reset();
    ctx.server.replication.sidecar_counters.reset();
    ctx.server
        .lazyfree
        .freed
        .store(0, std::sync::atomic::Ordering::Relaxed);
    ctx.out.ok();
    Ok(())
}

/// CONFIG REWRITE: the config file the node started with, brought up to
/// the running configuration (see `Config::rewrite`), replaced atomically.
fn config_rewrite(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let cfg = ctx.server.config.read().clone();
    let Some(path) = cfg.file.clone() else {
        return Err(CommandError::err(
            "The server is running without a config file",
        ));
    };
    // Users are written as `user` lines unless they live in an aclfile;
    // the default user only when it is not as shipped, as Redis does.
    let users: Vec<String> = if cfg.get("aclfile").is_empty() {
        ctx.server
            .users
            .describe()
            .into_iter()
            .filter(|l| l != "user default on nopass ~* &* +@all")
            .collect()
    } else {
        Vec::new()
    };
    let written = (|| -> std::io::Result<()> {
        // A file removed since start-up is written anew, as Redis does.
        let old = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            r => r?,
        };
        let mut tmp = path.clone().into_os_string();
        tmp.push(format!(".rewrite-{}", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, cfg.rewrite(&old, &users).as_bytes())?;
            if let Ok(meta) = std::fs::metadata(&path) {
                f.set_permissions(meta.permissions())?;
            }
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    })();
    match written {
        Ok(()) => {
            tracing::info!("CONFIG REWRITE executed with success.");
            ctx.out.ok();
            Ok(())
        }
        Err(e) => {
            let why = crate::persistence::log::describe(&e);
            tracing::warn!("CONFIG REWRITE failed: {why}");
            Err(CommandError::err(format!("Rewriting config file: {why}")))
        }
    }
}

fn config_help(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    help(
        ctx,
        "CONFIG",
        &[
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
            "SET <directive> <value>",
            "    Set the configuration <directive> to <value>.",
            "RESETSTAT",
            "    Reset statistics reported by the INFO command.",
            "REWRITE",
            "    Rewrite the configuration file.",
        ],
    );
    Ok(())
}

/// One command's COMMAND INFO entry.
fn write_info(ctx: &mut Ctx, s: &Spec) {
    let out = &mut *ctx.out;
    out.array(10);
    out.bulk(s.name.as_bytes());
    out.int(s.arity as i64);
    let mut fl: Vec<&str> = flags::NAMES
        .iter()
        .filter(|(f, _)| s.has(*f))
        .map(|(_, n)| *n)
        .collect();
    if s.keys.numkeys > 0
        || s.option_keys.is_some()
        || s.keys_for.is_some()
        || s.has(flags::PATTERN_KEYS)
    {
        fl.push("movablekeys");
    }
    out.set(fl.len());
    for f in fl {
        out.simple(f);
    }
    out.int(s.keys.first as i64);
    out.int(s.keys.last as i64);
    // Redis derives the triple from a range key spec; keys found only by
    // count have none, and show a step of 0 too.
    out.int(if s.keys.first > 0 {
        s.keys.step as i64
    } else {
        0
    });
    let cats = s.acl_categories();
    out.set(cats.len());
    for c in cats {
        out.simple(&format!("@{c}"));
    }
    out.array(0); // tips
    let specs = key_specs(s);
    out.array(specs.len());
    for k in specs {
        write_key_spec(out, &k);
    }
    out.array(s.subcommands.len());
    for sub in s.subcommands {
        write_info(ctx, sub);
    }
}

/// How one of COMMAND INFO's key specifications finds its keys.
enum Find {
    /// From argument `index`: up to `lastkey` (negative: from the end),
    /// every `keystep`-th.
    Range {
        index: i32,
        lastkey: i32,
        keystep: i32,
    },
    /// A count at argument `index`, that many keys after it.
    Keynum { index: i32 },
    /// After an option word (see [`super::KeySearch::Keyword`]).
    Keyword {
        word: &'static str,
        from: i32,
        lastkey: i32,
        keystep: i32,
        limit: i32,
    },
    /// Only the command knows (a key after an option word).
    Unknown,
}

struct KeySpec {
    flags: u16,
    find: Find,
}

/// A row's key specifications as Redis lays them out: the first key and
/// the others apart where the command does different things with them
/// (LMOVE's source and destination, a STORE's destination and sources),
/// fixed keys before counted ones, keys after option words last.
fn key_specs(s: &Spec) -> Vec<KeySpec> {
    let k = s.keys;
    let mut out = Vec::new();
    if k.first > 0 {
        let relative = |from: i32| if k.last < 0 { k.last } else { k.last - from };
        let more = k.last < 0 || k.last >= k.first + k.step;
        if more && k.flags != k.rest {
            out.push(KeySpec {
                flags: k.flags,
                find: Find::Range {
                    index: k.first,
                    lastkey: 0,
                    keystep: 1,
                },
            });
            out.push(KeySpec {
                flags: k.rest,
                find: Find::Range {
                    index: k.first + k.step,
                    lastkey: relative(k.first + k.step),
                    keystep: k.step,
                },
            });
        } else {
            out.push(KeySpec {
                flags: k.flags,
                find: Find::Range {
                    index: k.first,
                    lastkey: relative(k.first),
                    keystep: k.step,
                },
            });
        }
    }
    if k.numkeys > 0 {
        out.push(KeySpec {
            flags: if k.first > 0 { k.rest } else { k.flags },
            find: Find::Keynum { index: k.numkeys },
        });
    }
    for search in s.key_search {
        out.push(match *search {
            super::KeySearch::Keyword {
                word,
                from,
                lastkey,
                step,
                limit,
                flags,
            } => KeySpec {
                flags,
                find: Find::Keyword {
                    word,
                    from,
                    lastkey,
                    keystep: step,
                    limit,
                },
            },
            super::KeySearch::Unknown { flags } => KeySpec {
                flags,
                find: Find::Unknown,
            },
        });
    }
    out
}

fn write_key_flags(out: &mut crate::protocol::ReplyBuf, flags: u16) {
    let names: Vec<&str> = super::key_flags::NAMES
        .iter()
        .filter(|(f, _)| flags & f != 0)
        .map(|(_, n)| *n)
        .collect();
    out.set(names.len());
    for n in names {
        out.simple(n);
    }
}

/// One key specification: `flags`, `begin_search` (where the search
/// starts) and `find_keys` (how keys are found from there).
fn write_key_spec(out: &mut crate::protocol::ReplyBuf, k: &KeySpec) {
    let mut keyword = None;
    let (begin, index, find, fields): (&str, Option<i32>, &str, Vec<(&str, i32)>) = match k.find {
        Find::Range {
            index,
            lastkey,
            keystep,
        } => (
            "index",
            Some(index),
            "range",
            vec![("lastkey", lastkey), ("keystep", keystep), ("limit", 0)],
        ),
        Find::Keynum { index } => (
            "index",
            Some(index),
            "keynum",
            vec![("keynumidx", 0), ("firstkey", 1), ("keystep", 1)],
        ),
        Find::Keyword {
            word,
            from,
            lastkey,
            keystep,
            limit,
        } => {
            keyword = Some((word, from));
            (
                "keyword",
                None,
                "range",
                vec![("lastkey", lastkey), ("keystep", keystep), ("limit", limit)],
            )
        }
        Find::Unknown => ("unknown", None, "unknown", vec![]),
    };
    out.map(3);
    out.bulk(b"flags");
    write_key_flags(out, k.flags);
    out.bulk(b"begin_search");
    out.map(2);
    out.bulk(b"type");
    out.bulk(begin.as_bytes());
    out.bulk(b"spec");
    match (index, keyword) {
        (Some(i), _) => {
            out.map(1);
            out.bulk(b"index");
            out.int(i as i64);
        }
        (None, Some((word, from))) => {
            out.map(2);
            out.bulk(b"keyword");
            out.bulk(word.as_bytes());
            out.bulk(b"startfrom");
            out.int(from as i64);
        }
        (None, None) => out.map(0),
    }
    out.bulk(b"find_keys");
    out.map(2);
    out.bulk(b"type");
    out.bulk(find.as_bytes());
    out.bulk(b"spec");
    out.map(fields.len());
    for (name, v) in fields {
        out.bulk(name.as_bytes());
        out.int(v as i64);
    }
}

fn command_all(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    if argv.len() > 1 {
        return Err(CommandError::UnknownSubcommand {
            sub: crate::error::truncated(&argv[1], 128),
            container: "COMMAND".into(),
        });
    }
    let all: Vec<&Spec> = TABLE.top_level().collect();
    ctx.out.array(all.len());
    for s in all {
        write_info(ctx, s);
    }
    Ok(())
}

fn command_count(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    ctx.out.int(TABLE.top_level().count() as i64);
    Ok(())
}

fn command_info(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    if argv.len() == 2 {
        return command_all(ctx, &argv[..1]);
    }
    ctx.out.array(argv.len() - 2);
    for name in &argv[2..] {
        match TABLE.get(name) {
            Some(s) => write_info(ctx, s),
            None => ctx.out.null_array(),
        }
    }
    Ok(())
}

fn write_doc(ctx: &mut Ctx, s: &Spec) {
    let out = &mut *ctx.out;
    out.bulk(s.name.as_bytes());
    let n = if s.subcommands.is_empty() { 2 } else { 3 };
    out.map(n);
    out.bulk(b"summary");
    out.bulk(s.summary.as_bytes());
    out.bulk(b"group");
    out.bulk(s.group.as_bytes());
    if !s.subcommands.is_empty() {
        out.bulk(b"subcommands");
        out.map(s.subcommands.len());
        for sub in s.subcommands {
            write_doc(ctx, sub);
        }
    }
}

fn command_docs(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let specs: Vec<&Spec> = if argv.len() == 2 {
        TABLE.top_level().collect()
    } else {
        argv[2..].iter().filter_map(|n| TABLE.get(n)).collect()
    };
    ctx.out.map(specs.len());
    for s in specs {
        write_doc(ctx, s);
    }
    Ok(())
}

/// COMMAND GETKEYS, judged in Redis's order: the command, whether it
/// takes keys at all, its arity, then the keys (none is an empty answer
/// for a command whose keys are optional, as EVAL's).
fn command_getkeys(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let inner = &argv[2..];
    let (_, idx) = keys_of(inner)?;
    ctx.out.strings(idx.iter().map(|&i| inner[i].as_ref()));
    Ok(())
}

/// COMMAND GETKEYSANDFLAGS: GETKEYS' keys, each with what the command
/// does with it.
fn command_getkeysandflags(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let inner = &argv[2..];
    let (spec, idx) = keys_of(inner)?;
    ctx.out.array(idx.len());
    for (ordinal, &i) in idx.iter().enumerate() {
        ctx.out.array(2);
        ctx.out.bulk(&inner[i]);
        write_key_flags(ctx.out, spec.key_flags_of(inner, ordinal));
    }
    Ok(())
}

/// The row of the command `inner` and the positions of its keys.
fn keys_of(inner: &[Bytes]) -> Result<(&'static Spec, Vec<usize>), CommandError> {
    let spec = match TABLE.resolve(inner) {
        Ok((_, s)) => s,
        Err(CommandError::Arity(_)) => {
            // The row itself (a container's subcommand if named), for the
            // checks that come before arity.
            let Some(top) = TABLE.get(&inner[0]) else {
                return Err(CommandError::err("Invalid command specified"));
            };
            let sub = inner.get(1).and_then(|w| {
                let mut full = top.name.as_bytes().to_vec();
                full.push(b'|');
                full.extend_from_slice(w);
                TABLE.get(&full)
            });
            if !has_keys(sub.unwrap_or(top)) {
                return Err(CommandError::err("The command has no key arguments"));
            }
            return Err(CommandError::err(
                "Invalid number of arguments specified for command",
            ));
        }
        Err(_) => return Err(CommandError::err("Invalid command specified")),
    };
    if !has_keys(spec) {
        return Err(CommandError::err("The command has no key arguments"));
    }
    let idx = spec.key_indexes(inner);
    if idx.is_empty() && !spec.has(flags::NO_MANDATORY_KEYS) {
        return Err(CommandError::err("Invalid arguments specified for command"));
    }
    Ok((spec, idx))
}

/// Whether a command names keys in its arguments at all: a shard
/// channel, routed as a key, is none (Redis's answer).
fn has_keys(s: &Spec) -> bool {
    let named = s.keys.first > 0 || s.keys.numkeys > 0;
    let not_key = s.keys.flags & s.keys.rest & super::key_flags::NOT_KEY != 0;
    (named && !not_key) || s.option_keys.is_some() || s.keys_for.is_some()
}

fn command_list(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut a = Args::new(argv, 1);
    let filter: Option<(Vec<u8>, Bytes)> = if a.eat("filterby") {
        let kind = a.value()?.to_ascii_lowercase();
        let v = a.value()?.clone();
        a.finish()?;
        if !matches!(kind.as_slice(), b"module" | b"aclcat" | b"pattern") {
            return Err(CommandError::Syntax);
        }
        Some((kind, v))
    } else {
        a.finish()?;
        None
    };
    let names: Vec<&str> = TABLE
        .all
        .iter()
        .filter(|s| match &filter {
            None => true,
            Some((k, v)) if k == b"module" => {
                let _ = v;
                false
            }
            Some((k, v)) if k == b"aclcat" => {
                let cat = text(v).to_ascii_lowercase();
                s.acl_categories().contains(&cat.as_str())
            }
            Some((_, v)) => glob_match(v, s.name.as_bytes(), true),
        })
        .map(|s| s.name)
        .collect();
    ctx.out.strings(names.iter().map(|n| n.as_bytes()));
    Ok(())
}

fn command_help(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    help(
        ctx,
        "COMMAND",
        &[
            "(no subcommand)",
            "    Return details about all commands.",
            "COUNT",
            "    Return the total number of commands in this server.",
            "LIST",
            "    Return a list of all commands in this server.",
            "INFO [<command-name> ...]",
            "    Return details about multiple commands.",
            "DOCS [<command-name> ...]",
            "    Return documentation details about multiple commands.",
            "GETKEYS <full-command>",
            "    Return the keys from a full command.",
            "GETKEYSANDFLAGS <full-command>",
            "    Return the keys and the access flags from a full command.",
        ],
    );
    Ok(())
}

fn slowlog_get(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let n = match argv.get(2) {
        None => 10,
        Some(a) => match int(a) {
            Ok(-1) => usize::MAX,
            Ok(n) if n >= 0 => n as usize,
            _ => {
                return Err(CommandError::err(
                    "count should be greater than or equal to -1",
                ))
            }
        },
    };
    let out = &mut *ctx.out;
    ctx.server.slowlog.with_entries(n, |it| {
        let entries: Vec<_> = it.collect();
        out.array(entries.len());
        for e in entries {
            out.array(6);
            out.int(e.id as i64);
            out.int(e.time);
            out.int(e.duration_us as i64);
            out.strings(e.args.iter().map(|a| a.as_slice()));
            out.bulk(e.addr.as_bytes());
            out.bulk(e.name.as_bytes());
        }
    });
    Ok(())
}

fn latency_latest(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let latest = ctx.server.latency.latest();
    ctx.out.array(latest.len());
    for (event, last, max) in latest {
        ctx.out.array(4);
        ctx.out.bulk(event.as_bytes());
        ctx.out.int(last.time);
        ctx.out.int(last.ms as i64);
        ctx.out.int(max as i64);
    }
    Ok(())
}

fn latency_history(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let samples = ctx.server.latency.history(&argv[2]);
    ctx.out.array(samples.len());
    for s in samples {
        ctx.out.array(2);
        ctx.out.int(s.time);
        ctx.out.int(s.ms as i64);
    }
    Ok(())
}

fn latency_reset(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let events: Vec<&[u8]> = argv[2..].iter().map(|a| &a[..]).collect();
    let n = ctx.server.latency.reset(&events);
    ctx.out.int(n as i64);
    Ok(())
}

fn latency_graph(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let now_secs = ctx.now_ms / 1000;
    match ctx.server.latency.graph(&argv[2], now_secs) {
        Some(g) => ctx.out.verbatim(&g),
        None => {
            return Err(CommandError::err(format!(
                "No samples available for event '{}'",
                String::from_utf8_lossy(&argv[2])
            )))
        }
    }
    Ok(())
}

fn latency_doctor(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let slowlog = ctx.server.tun.slowlog_slower_than.load(Relaxed);
    let report = ctx.server.latency.doctor(slowlog);
    ctx.out.verbatim(&report);
    Ok(())
}

/// LATENCY HISTOGRAM [command ...]: each named command (a container names
/// its subcommands too; unknown names are skipped), or every command, that
/// has run since the last CONFIG RESETSTAT.
fn latency_histogram(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut picked = Vec::new();
    if argv.len() == 2 {
        picked.extend(0..TABLE.all.len());
    }
    for name in &argv[2..] {
        let Some(i) = TABLE.index(name) else {
            continue;
        };
        picked.push(i);
        for sub in TABLE.all[i].subcommands {
            picked.extend(TABLE.index(sub.name.as_bytes()));
        }
    }
    let histograms: Vec<_> = picked
        .into_iter()
        .filter_map(|i| Some((TABLE.all[i].name, ctx.server.stats.commands[i].latencies()?)))
        .collect();
    let out = &mut *ctx.out;
    out.map(histograms.len());
    for (name, h) in histograms {
        out.bulk(name.as_bytes());
        out.map(2);
        out.bulk(b"calls");
        out.int(h.len() as i64);
        out.bulk(b"histogram_usec");
        let points = crate::server::stats::cumulative(&h);
        out.map(points.len());
        for (usec, calls) in points {
            out.int(usec as i64);
            out.int(calls as i64);
        }
    }
    Ok(())
}

fn latency_help(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    help(
        ctx,
        "LATENCY",
        &[
            "DOCTOR",
            "    Return a human readable latency analysis report.",
            "GRAPH <event>",
            "    Return an ASCII latency graph for the <event> class.",
            "HISTORY <event>",
            "    Return time-latency samples for the <event> class.",
            "LATEST",
            "    Return the latest latency samples for all events.",
            "RESET [<event> ...]",
            "    Reset latency data of one or more <event> classes.",
            "    (default: reset all data for all event classes)",
            "HISTOGRAM [COMMAND ...]",
            "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
            "    If no commands are specified then all histograms are replied.",
        ],
    );
    Ok(())
}

fn slowlog_len(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    ctx.out.int(ctx.server.slowlog.len() as i64);
    Ok(())
}

fn slowlog_reset(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    ctx.server.slowlog.reset();
    ctx.out.ok();
    Ok(())
}

fn slowlog_help(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    help(
        ctx,
        "SLOWLOG",
        &[
            "GET [<count>]",
            "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
            "LEN",
            "    Return the length of the slowlog.",
            "RESET",
            "    Reset the slowlog.",
        ],
    );
    Ok(())
}

fn memory_usage(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut a = Args::new(argv, 2);
    // Redis samples 5 elements of a collection unless told (0: all).
    let mut samples = 5;
    if a.eat("samples") {
        samples = usize::try_from(a.int()?).map_err(|_| CommandError::Syntax)?;
    }
    a.finish()?;
    // Redis looks the key up in its table directly: not a read, no use.
    let t = ctx.lock_key(&argv[2]);
    match t.peek(&argv[2]).filter(|n| !n.is_expired(ctx.now_ms)) {
        Some(n) => ctx.out.int(n.memory_usage(samples) as i64),
        None => ctx.out.null(),
    }
    Ok(())
}

fn memory_help(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    help(
        ctx,
        "MEMORY",
        &[
            "DOCTOR",
            "    Return memory problems reports.",
            "MALLOC-STATS",
            "    Return internal statistics report from the memory allocator.",
            "PURGE",
            "    Attempt to purge dirty pages for reclamation by the allocator.",
            "STATS",
            "    Return information about the memory usage of the server.",
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value. Nested values are",
            "    sampled up to <count> times (default: 5, 0 means sample all).",
        ],
    );
    Ok(())
}

/// Redis's MEMORY STATS, field for field (a map in RESP3). Shoal runs no
/// scripts and no cluster bus yet: those lines are 0. A database's keys
/// live in per-slot tables and carry their expiry in the key itself, so
/// `overhead.hashtable.main` is the tables' bytes and the other two are 0.
fn memory_stats(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let m = crate::server::memory::Overhead::read(ctx.server, ctx.now_ms);
    let scripts = super::scripting::memory();
    let out = &mut *ctx.out;
    let f = m.figures;
    out.map(27 + m.dbs.len());
    let ints = |out: &mut crate::protocol::ReplyBuf, fields: &[(&str, i64)]| {
        for (name, v) in fields {
            out.bulk(name.as_bytes());
            out.int(*v);
        }
    };
    ints(
        out,
        &[
            ("peak.allocated", m.peak as i64),
            ("total.allocated", f.used as i64),
            ("startup.allocated", m.startup as i64),
            ("replication.backlog", m.backlog() as i64),
            ("clients.slaves", m.replicas() as i64),
            ("clients.normal", m.clients as i64),
            ("cluster.links", 0),
            ("aof.buffer", m.log() as i64),
            ("lua.caches", scripts.scripts_bytes as i64),
            ("functions.caches", scripts.functions_bytes as i64),
        ],
    );
    for &(db, tables, _) in &m.dbs {
        out.bulk(format!("db.{db}").as_bytes());
        out.map(3);
        ints(
            out,
            &[
                ("overhead.hashtable.main", tables as i64),
                ("overhead.hashtable.expires", 0),
                ("overhead.hashtable.slot-to-keys", 0),
            ],
        );
    }
    let keys = m.keys();
    ints(
        out,
        &[
            ("overhead.total", m.total() as i64),
            ("keys.count", keys as i64),
            (
                "keys.bytes-per-key",
                m.net().checked_div(keys).unwrap_or(0) as i64,
            ),
            ("dataset.bytes", m.dataset() as i64),
        ],
    );
    let double = |out: &mut crate::protocol::ReplyBuf, name: &str, v: f32| {
        out.bulk(name.as_bytes());
        out.double(v as f64);
    };
    double(out, "dataset.percentage", m.dataset_perc());
    double(out, "peak.percentage", m.peak_perc());
    ints(
        out,
        &[
            ("allocator.allocated", f.allocated as i64),
            ("allocator.active", f.active as i64),
            ("allocator.resident", f.resident as i64),
        ],
    );
    for (ratio, bytes, (r, b)) in [
        (
            "allocator-fragmentation.ratio",
            "allocator-fragmentation.bytes",
            m.allocator_frag(),
        ),
        (
            "allocator-rss.ratio",
            "allocator-rss.bytes",
            m.allocator_rss(),
        ),
        ("rss-overhead.ratio", "rss-overhead.bytes", m.rss_overhead()),
        ("fragmentation", "fragmentation.bytes", m.fragmentation()),
    ] {
        double(out, ratio, r);
        ints(out, &[(bytes, b)]);
    }
    Ok(())
}

/// MEMORY DOCTOR: Redis's checks (a peak far above today's use, memory
/// the allocator or the process holds beyond what is in use, big client
/// or replica buffers), said plainly.
fn memory_doctor(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    use crate::server::memory::human;
    let m = crate::server::memory::Overhead::read(ctx.server, ctx.now_ms);
    let used = m.used();
    const MB: i64 = 1 << 20;
    let mut found = Vec::new();
    if used < 5 * MB as u64 {
        ctx.out.verbatim(
            "This instance is empty or uses very little memory: there is nothing for the memory doctor to look at yet.\n",
        );
        return Ok(());
    }
    if m.peak as f64 / used as f64 > 1.5 {
        found.push(format!(
            " * Peak memory: at some point the memory in use was more than 150% of what it is now ({} against {}). The allocator may still hold pages from then, so the fragmentation figures can look worse than they are; MEMORY PURGE hands back what it can.\n\n",
            human(m.peak),
            human(used)
        ));
    }
    let checks = [
        (m.fragmentation(), 1.4, "High total RSS: the process's resident memory is", "the memory in use. Usually the allocator keeps pages that once held data (after a peak, or after many deletions); MEMORY PURGE may help, and INFO memory's allocator_* lines say where it stands."),
        (m.allocator_frag(), 1.1, "High allocator fragmentation: the allocator's active pages are", "what it handed out. This is normal after many small keys were deleted, and it shrinks as the memory is reused."),
        (m.allocator_rss(), 1.1, "High allocator RSS overhead: the allocator's resident pages are", "its active pages: it holds free pages it has not handed back. MEMORY PURGE hands them back."),
        (m.rss_overhead(), 1.1, "High process RSS overhead: the process's resident memory is", "the allocator's resident pages: memory held outside the allocator (the program, its threads' stacks, the kernel's pages for it)."),
    ];
    for ((ratio, bytes), limit, what, why) in checks {
        if ratio > limit && bytes > 10 * MB {
            found.push(format!(
                " * {what} {ratio:.2} times {why} ({} more)\n\n",
                human(bytes as u64)
            ));
        }
    }
    if m.client_count > 0 && m.clients / m.client_count as u64 > 200 * 1024 {
        found.push(format!(
            " * Big client buffers: the {} normal clients hold {} of buffers, more than 200K each on average. Clients sending long pipelines or reading large replies slowly do this; client-query-buffer-limit and client-output-buffer-limit bound it.\n\n",
            m.client_count,
            human(m.clients)
        ));
    }
    if m.replica_count > 0 && m.replicas() > 10 * MB as u64 {
        found.push(format!(
            " * Big replica buffers: {} waits to be sent to the {} replicas. A replica too slow for the write load, or a link too slow, does this; client-output-buffer-limit replica bounds it.\n\n",
            human(m.replicas()),
            m.replica_count
        ));
    }
    let report = if found.is_empty() {
        "The memory doctor found no memory issue in this instance.\n".to_string()
    } else {
        format!(
            "The memory doctor found {} possible issue{} in this instance's memory:\n\n{}",
            found.len(),
            if found.len() == 1 { "" } else { "s" },
            found.concat()
        )
    };
    ctx.out.verbatim(&report);
    Ok(())
}

fn memory_malloc_stats(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    ctx.out.verbatim(&crate::server::memory::malloc_stats());
    Ok(())
}

fn memory_purge(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    if !crate::server::memory::purge() {
        return Err(CommandError::err("Error purging dirty pages"));
    }
    ctx.out.ok();
    Ok(())
}

/// The whole node sleeps, as Redis's one thread does (what users of DEBUG
/// SLEEP want: a stalled server): the transaction gate, held exclusively
/// (its row says `EXCLUSIVE`; inside EXEC, EXEC holds it), keeps every
/// other command out, and this I/O thread sleeps. Its sleep is its run
/// time (slow log, statistics, latency monitor).
fn debug_sleep(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let secs = float(&argv[2])?;
    let d = super::connection::sleep_duration(secs);
    let _gate = ctx.server.gate.exclusive();
    std::thread::sleep(d);
    ctx.out.ok();
    Ok(())
}

fn debug_set_active_expire(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    debug_switch(ctx, argv, &ctx.server.active_expire)
}

fn debug_pause_cron(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    debug_switch(ctx, argv, &ctx.server.cron_paused)
}

fn debug_set_disable_deny_scripts(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    debug_switch(ctx, argv, &ctx.server.scripts_run_anything)
}

fn debug_set_skip_checksum_validation(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    debug_switch(ctx, argv, &ctx.server.skip_checksum)
}

/// DEBUG QUICKLIST-PACKED-THRESHOLD size: Redis's bounds and error; 0
/// restores the default. Lists change as their chunks are next changed.
fn debug_quicklist_packed_threshold(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let size = crate::config::parse_memory(&text(&argv[2]))
        .filter(|&s| (0..=(1i64 << 32) - (1 << 20)).contains(&s))
        .ok_or_else(|| {
            CommandError::err("argument must be a memory value bigger than 1 and smaller than 4gb")
        })?;
    let size = if size == 0 {
        crate::keyspace::list::PLAIN_DEFAULT as i64
    } else {
        size
    };
    ctx.server.tun.list_packed_threshold.store(size, Relaxed);
    ctx.out.ok();
    Ok(())
}

/// DEBUG's on/off switches: `1` (any non-zero integer) sets `flag`.
fn debug_switch(ctx: &mut Ctx, argv: &[Bytes], flag: &std::sync::atomic::AtomicBool) -> CmdResult {
    flag.store(int(&argv[2])? != 0, Relaxed);
    ctx.out.ok();
    Ok(())
}

/// DEBUG POPULATE count [prefix] [size]: `prefix:N` → `value:N` (cut or
/// padded with zero bytes to `size`) for every N below `count` whose key
/// does not exist, as in Redis. Unlike Redis, each key is recorded as a
/// SET, so the log and replicas hold what the node holds; like Redis, no
/// keyspace notification is sent.
fn debug_populate(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    if argv.len() > 5 {
        return Err(CommandError::err(format!(
            "unknown subcommand or wrong number of arguments for '{}'. Try DEBUG HELP.",
            String::from_utf8_lossy(&argv[1])
        )));
    }
    let count = positive_count(&argv[2])?;
    let prefix: &[u8] = argv.get(3).map_or(b"key", |p| &p[..]);
    let size = argv.get(4).map(|s| positive_count(s)).transpose()?;
    let (mut key, mut value) = (Vec::new(), Vec::new());
    for i in 0..count {
        key.clear();
        key.extend_from_slice(prefix);
        key.extend_from_slice(format!(":{i}").as_bytes());
        value.clear();
        value.extend_from_slice(format!("value:{i}").as_bytes());
        if let Some(size) = size {
            value.resize(size, 0);
        }
        let mut t = ctx.lock_key(&key);
        if ctx.lookup(&mut t, &key).is_some() {
            continue;
        }
        t.set(
            &key,
            crate::keyspace::Value::string(&value),
            ctx.now_ms,
            false,
        );
        ctx.emit_as("", &[b"SET", &key, &value]);
    }
    ctx.out.ok();
    Ok(())
}

fn debug_object(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let t = ctx.lock_key(&argv[2]);
    // A key past its expiry but not yet deleted is still there to look
    // at, as Redis's DEBUG OBJECT finds it (its tests tell so whether a
    // command deleted it).
    let Some(n) = t.peek(&argv[2]) else {
        return Err(CommandError::NoSuchKey);
    };
    let ser = crate::persistence::rdb::dump(&n.value).len() - 11;
    let idle = (ctx.now_ms / 1000 - n.access as i64).max(0);
    let line = format!(
        "Value at:{:p} refcount:1 encoding:{} serializedlength:{} lru:{} lru_seconds_idle:{}",
        n as *const _,
        n.encoding(),
        ser,
        n.access & ((1 << 24) - 1),
        idle
    );
    drop(t);
    ctx.out.simple(&line);
    Ok(())
}

fn debug_digest(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    use crate::persistence::digest::{hex, DatasetDigest};
    let ks = &ctx.server.keyspace;
    // All of it under lock: a digest of a moving dataset compares with nothing.
    let (_, mut locked) = ks.lock_used_dbs();
    let mut acc = DatasetDigest::default();
    let mut current = None;
    for (db, _, t) in locked.tables() {
        for n in t.iter().filter(|n| !n.is_expired(ctx.now_ms)) {
            if current != Some(db) {
                acc.begin_db(db);
                current = Some(db);
            }
            acc.add(n);
        }
    }
    drop(locked);
    ctx.out.simple(&hex(&acc.finish()));
    Ok(())
}

fn debug_digest_value(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    use crate::persistence::digest::{hex, value_digest};
    let db = ctx.db();
    let mut locked = ctx.lock_keys(argv[2..].iter());
    let digests: Vec<String> = argv[2..]
        .iter()
        .map(|k| {
            let t = locked.table_for(db, k);
            match t.peek(k).filter(|n| !n.is_expired(ctx.now_ms)) {
                Some(n) => hex(&value_digest(n)),
                None => hex(&[0; 20]),
            }
        })
        .collect();
    drop(locked);
    ctx.out.array(digests.len());
    for d in digests {
        ctx.out.simple(&d);
    }
    Ok(())
}

/// DEBUG RELOAD [MERGE] [NOFLUSH] [NOSAVE]: the snapshot saved (unless
/// NOSAVE), the data emptied (unless NOFLUSH) and the snapshot loaded back,
/// every other command held meanwhile, as Redis's. A way to check that
/// what is saved is what comes back. With NOFLUSH the snapshot's
/// libraries replace those there (as with Redis's MERGE), but a key there
/// that the snapshot holds too may fail the load whatever the options: its
/// records do not replace it as Redis's MERGE replaces a key.
fn debug_reload(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (mut flush, mut save) = (true, true);
    for opt in &argv[2..] {
        match opt.to_ascii_lowercase().as_slice() {
            b"merge" => {}
            b"noflush" => flush = false,
            b"nosave" => save = false,
            _ => {
                return Err(CommandError::err(
                    "DEBUG RELOAD only supports the MERGE, NOFLUSH and NOSAVE options.",
                ))
            }
        }
    }
    let server = ctx.server;
    // Between commands, a replica's applier's included: its lock, then the
    // gate, in the order the applier takes them.
    let _applying = server.replication.apply.write();
    let _gate = server.gate.exclusive();
    if save {
        crate::persistence::save::save(server).map_err(|e| {
            tracing::warn!("DEBUG RELOAD could not save: {e}");
            CommandError::err_code("ERR")
        })?;
    }
    if flush {
        super::keys::empty_for_reload(ctx);
    }
    let path = crate::persistence::save::snapshot_path(server);
    let (dir, m) = crate::persistence::load::snapshot_as_log(&path);
    crate::persistence::load::reload(server, &dir, &m, true).map_err(|e| {
        tracing::warn!("DEBUG RELOAD could not load {}: {e}", path.display());
        CommandError::err("Error trying to load the RDB dump")
    })?;
    tracing::warn!("DB reloaded by DEBUG RELOAD");
    ctx.out.ok();
    Ok(())
}

/// DEBUG LOADAOF: what the log has pending written and synced, the data
/// emptied, and the log loaded back, every other command held meanwhile,
/// as Redis's. The log's writer stops while its files are read.
fn debug_loadaof(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let server = ctx.server;
    let Some(arc) = server.this.get().and_then(|w| w.upgrade()) else {
        return Err(CommandError::err("DEBUG LOADAOF: the server is stopping"));
    };
    let _applying = server.replication.apply.write();
    let _gate = server.gate.exclusive();
    let with_log = server.log.enabled();
    // With the log off, what the directory's manifest names (what the log
    // left, or a base BGREWRITEAOF wrote; none: an empty dataset), as
    // Redis loads.
    let (dir, m) = match server.log.files.lock().clone() {
        Some(files) if with_log => files,
        _ if with_log => {
            return Err(CommandError::err(
                "DEBUG LOADAOF: the append only file is being turned on",
            ))
        }
        _ => {
            let dir = crate::persistence::aof::AofDir::configured(server);
            let m = dir.existing_manifest().unwrap_or_default();
            (dir, m)
        }
    };
    if with_log {
        server.log.stop_writer(&server.effects);
    }
    super::keys::empty_for_reload(ctx);
    let loaded = crate::persistence::load::reload(server, &dir, &m, false);
    if with_log {
        crate::persistence::toggle::start_writer(&arc);
    }
    loaded.map_err(|e| {
        tracing::warn!("DEBUG LOADAOF could not load the log: {e}");
        CommandError::err(format!("Error trying to load the append only file: {e}"))
    })?;
    tracing::warn!("Append Only File loaded by DEBUG LOADAOF");
    ctx.out.ok();
    Ok(())
}

/// DEBUG PROTOCOL <type>: a reply of each RESP type, with Redis's values,
/// for client libraries to test their parsers against (RESP2 clients get
/// RESP2's forms; an attribute or a push is followed by a real reply).
fn debug_protocol(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let out = &mut *ctx.out;
    match argv[2].to_ascii_lowercase().as_slice() {
        b"string" => out.bulk(b"Hello World"),
        b"integer" => out.int(12345),
        // Redis's test value, not an approximation of pi.
        #[allow(clippy::approx_constant)]
        b"double" => out.double(3.141),
        b"bignum" => out.big_number(b"1234567999999999999999999999999999999"),
        b"null" => out.null(),
        b"array" | b"set" => {
            if argv[2].eq_ignore_ascii_case(b"set") {
                out.set(3);
            } else {
                out.array(3);
            }
            (0..3).for_each(|j| out.int(j));
        }
        b"map" => {
            out.map(3);
            for j in 0..3 {
                out.int(j);
                out.boolean(j == 1);
            }
        }
        b"attrib" => {
            if out.resp3() {
                out.attribute(1);
                out.bulk(b"key-popularity");
                out.array(2);
                out.bulk(b"key:123");
                out.int(90);
            }
            out.bulk(b"Some real reply following the attribute");
        }
        b"push" => {
            if !out.resp3() {
                return Err(CommandError::err("RESP2 is not supported by this command"));
            }
            out.push(2);
            out.bulk(b"server-cpu-usage");
            out.int(42);
            out.bulk(b"Some real reply following the push reply");
        }
        b"true" => out.boolean(true),
        b"false" => out.boolean(false),
        b"verbatim" => out.verbatim("This is a verbatim\nstring"),
        _ => {
            return Err(CommandError::err(
                "Wrong protocol type name. Please use one of the following: string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|true|false",
            ))
        }
    }
    Ok(())
}

fn debug_help(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    help(
        ctx,
        "DEBUG",
        &[
            "DIGEST",
            "    Output a hex signature representing the current DB content.",
            "DIGEST-VALUE <key> [<key> ...]",
            "    Output a hex signature of the values of all the specified keys.",
            "LOADAOF",
            "    Flush the append only file's pending records to disk and load it back.",
            "OBJECT <key>",
            "    Show low level info about the <key> and associated value.",
            "PAUSE-CRON <0|1>",
            "    Stop periodic cron job processing.",
            "POPULATE <count> [<prefix>] [<size>]",
            "    Create string keys <prefix>:0 to <prefix>:<count-1> (prefix 'key' by",
            "    default) holding 'value:<num>', cut or zero-padded to <size> bytes.",
            "    Keys that exist are left as they are.",
            "QUICKLIST-PACKED-THRESHOLD <size>",
            "    Keep list elements of at least <size> bytes alone in a chunk (0: 1gb).",
            "PROTOCOL <type>",
            "    Reply with a test value of the specified type. <type> can be: string,",
            "    integer, double, bignum, null, array, set, map, attrib, push, verbatim,",
            "    true, false.",
            "RELOAD [MERGE] [NOFLUSH] [NOSAVE]",
            "    Save the snapshot on disk and load it back (NOSAVE: the one on disk;",
            "    NOFLUSH: over the data there, its libraries replacing those there;",
            "    MERGE: accepted).",
            "SET-ACTIVE-EXPIRE <0|1>",
            "    Setting it to 0 disables expiring keys in background when they are not accessed.",
            "SET-DISABLE-DENY-SCRIPTS <0|1>",
            "    Setting it to 1 lets scripts call commands not allowed from scripts.",
            "SET-SKIP-CHECKSUM-VALIDATION <0|1>",
            "    Setting it to 1 makes RESTORE skip checking payloads' checksums.",
            "SLEEP <seconds>",
            "    Stop the server for <seconds>. Decimals allowed.",
        ],
    );
    Ok(())
}
