//! INFO: Redis's sections and field names, so dashboards and exporters built
//! for Redis read Shoal unchanged.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use super::memory::{self, human};
use super::{now_ms, Server};
use crate::command::TABLE;

const DEFAULT: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "errorstats",
    "cluster",
    "keyspace",
];
const ALL_EXTRA: &[&str] = &["commandstats", "latencystats"];

/// Renders the sections asked for (`default`, `all`, `everything` or names).
pub fn render(server: &Server, asked: &[String]) -> String {
    let mut sections: Vec<&str> = Vec::new();
    let asked: Vec<String> = asked.iter().map(|s| s.to_ascii_lowercase()).collect();
    if asked.is_empty() {
        sections.extend(DEFAULT);
    }
    for a in &asked {
        match a.as_str() {
            "default" => sections.extend(DEFAULT),
            "all" | "everything" => {
                sections.extend(DEFAULT);
                sections.extend(ALL_EXTRA);
            }
            other => sections.push(
                match DEFAULT.iter().chain(ALL_EXTRA).find(|s| **s == other) {
                    Some(s) => s,
                    None => continue,
                },
            ),
        }
    }
    let order: Vec<&str> = DEFAULT
        .iter()
        .chain(ALL_EXTRA)
        .copied()
        .filter(|s| sections.contains(s))
        .collect();
    let mut out = String::new();
    for (i, s) in order.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        section(server, s, &mut out);
    }
    out
}

/// `uname`'s system, release and machine, as Redis shows them.
fn os_name() -> String {
    // SAFETY: uname fills the zeroed struct; its fields are NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
        }
        let field = |f: &[libc::c_char]| {
            std::ffi::CStr::from_ptr(f.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        format!(
            "{} {} {}",
            field(&u.sysname),
            field(&u.release),
            field(&u.machine)
        )
    }
}

fn section(server: &Server, name: &str, o: &mut String) {
    let now = now_ms();
    match name {
        "server" => {
            let uptime = server.started.elapsed().as_secs();
            let cfg = server.config.read();
            let _ = write!(
                o,
                "# Server\r\nredis_version:7.2.0\r\nshoal_version:{}\r\nredis_git_sha1:00000000\r\n\
                 redis_git_dirty:0\r\nredis_build_id:0\r\nredis_mode:standalone\r\nos:{}\r\n\
                 arch_bits:64\r\nmonotonic_clock:POSIX clock_gettime\r\nmultiplexing_api:epoll\r\n\
                 atomicvar_api:c11-builtin\r\ngcc_version:0.0.0\r\nprocess_id:{}\r\nprocess_supervised:{}\r\n\
                 run_id:{}\r\ntcp_port:{}\r\n\
                 server_time_usec:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nhz:{}\r\nconfigured_hz:{}\r\n\
                 lru_clock:{}\r\nexecutable:{}\r\nconfig_file:{}\r\nio_threads_active:{}\r\n",
                env!("CARGO_PKG_VERSION"),
                os_name(),
                std::process::id(),
                server.supervised.get().copied().unwrap_or("no"),
                server.run_id,
                server.tcp_port.load(Relaxed),
                now * 1000,
                uptime,
                uptime / 86400,
                cfg.int("hz"),
                cfg.int("hz"),
                (now / 1000) & ((1 << 24) - 1),
                server.executable.display(),
                cfg.file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                (server.io_threads.load(Relaxed) > 1) as u8,
            );
        }
        "clients" => {
            let clients = server.clients.all();
            let max_q = clients
                .iter()
                .map(|c| c.query_buf.load(Relaxed))
                .max()
                .unwrap_or(0);
            let _ = write!(
                o,
                "# Clients\r\nconnected_clients:{}\r\ncluster_connections:0\r\nmaxclients:{}\r\n\
                 client_recent_max_input_buffer:{}\r\nclient_recent_max_output_buffer:0\r\nblocked_clients:{}\r\n\
                 tracking_clients:{}\r\nclients_in_timeout_table:0\r\ntotal_blocking_keys:0\r\n",
                clients.len(),
                server.tun.maxclients.load(Relaxed),
                max_q,
                server.blocked.count() + server.pause.held.load(Relaxed),
                server.tracking.totals().0,
            );
        }
        "memory" => {
            let m = memory::Overhead::read(server, now_ms());
            let f = m.figures;
            let sys = memory::total_system_memory();
            let (frag, frag_bytes) = m.fragmentation();
            let (afrag, afrag_bytes) = m.allocator_frag();
            let (arss, arss_bytes) = m.allocator_rss();
            let (rss_over, rss_over_bytes) = m.rss_overhead();
            let lua = crate::command::scripting::memory();
            let _ = write!(
                o,
                "# Memory\r\nused_memory:{}\r\nused_memory_human:{}\r\nused_memory_rss:{}\r\nused_memory_rss_human:{}\r\n\
                 used_memory_peak:{}\r\nused_memory_peak_human:{}\r\nused_memory_peak_perc:{:.2}%\r\n\
                 used_memory_overhead:{}\r\nused_memory_startup:{}\r\nused_memory_dataset:{}\r\nused_memory_dataset_perc:{:.2}%\r\n\
                 allocator_allocated:{}\r\nallocator_active:{}\r\nallocator_resident:{}\r\n\
                 total_system_memory:{}\r\ntotal_system_memory_human:{}\r\n\
                 used_memory_lua:{}\r\nused_memory_vm_eval:{}\r\nused_memory_lua_human:{}\r\n\
                 used_memory_scripts_eval:{}\r\nnumber_of_cached_scripts:{}\r\nnumber_of_functions:{}\r\n\
                 number_of_libraries:{}\r\nused_memory_vm_functions:{}\r\nused_memory_vm_total:{}\r\n\
                 used_memory_vm_total_human:{}\r\nused_memory_functions:{}\r\nused_memory_scripts:{}\r\n\
                 used_memory_scripts_human:{}\r\nmaxmemory:{}\r\nmaxmemory_human:{}\r\n\
                 maxmemory_policy:{}\r\nallocator_frag_ratio:{:.2}\r\nallocator_frag_bytes:{}\r\n\
                 allocator_rss_ratio:{:.2}\r\nallocator_rss_bytes:{}\r\nrss_overhead_ratio:{:.2}\r\nrss_overhead_bytes:{}\r\n\
                 mem_fragmentation_ratio:{:.2}\r\nmem_fragmentation_bytes:{}\r\nmem_not_counted_for_evict:{}\r\n\
                 mem_replication_backlog:{}\r\nmem_total_replication_buffers:{}\r\nmem_clients_slaves:{}\r\n\
                 mem_clients_normal:{}\r\nmem_cluster_links:0\r\nmem_aof_buffer:{}\r\n\
                 mem_allocator:jemalloc-5.3.0\r\nactive_defrag_running:0\r\nlazyfree_pending_objects:{}\r\nlazyfreed_objects:{}\r\n",
                f.used,
                human(f.used),
                f.rss,
                human(f.rss),
                m.peak,
                human(m.peak),
                m.peak_perc(),
                m.total(),
                m.startup,
                m.dataset(),
                m.dataset_perc(),
                f.allocated,
                f.active,
                f.resident,
                sys,
                human(sys),
                lua.vm_eval,
                lua.vm_eval,
                human(lua.vm_eval),
                lua.scripts_bytes,
                lua.cached_scripts,
                lua.functions,
                lua.libraries,
                lua.vm_functions,
                lua.vm_eval + lua.vm_functions,
                human(lua.vm_eval + lua.vm_functions),
                lua.functions_bytes,
                lua.scripts_bytes + lua.functions_bytes,
                human((lua.scripts_bytes + lua.functions_bytes) as u64),
                server.tun.maxmemory.load(Relaxed),
                human(server.tun.maxmemory.load(Relaxed).max(0) as u64),
                crate::keyspace::evict::POLICY_NAMES[server.tun.maxmemory_policy.load(Relaxed) as usize],
                afrag,
                afrag_bytes,
                arss,
                arss_bytes,
                rss_over,
                rss_over_bytes,
                frag,
                frag_bytes,
                m.not_counted_for_evict(),
                m.backlog(),
                m.backlog() + m.replicas(),
                m.replicas(),
                m.clients,
                m.log(),
                server.lazyfree.pending.load(Relaxed),
                server.lazyfree.freed.load(Relaxed),
            );
        }
        "persistence" => {
            let log = &server.log;
            let failure = log.failure();
            // Seconds since a running one began, -1 when none runs.
            let running = |started: i64| {
                if started == 0 {
                    -1
                } else {
                    (now - started) / 1000
                }
            };
            // Shoal never forks: its snapshots are taken from memory as
            // clients go on, so the copy-on-write lines are 0; a snapshot's
            // progress is told as Redis tells its fork child's.
            let (done, total) = server.keyspace.snapshot_progress();
            let perc = if total > 0 {
                (done.min(total) as f64 * 100.0) / total as f64
            } else {
                0.0
            };
            let _ = write!(
                o,
                "# Persistence\r\nloading:{}\r\nasync_loading:0\r\ncurrent_cow_peak:0\r\ncurrent_cow_size:0\r\n\
                 current_cow_size_age:0\r\ncurrent_fork_perc:{perc:.2}\r\ncurrent_save_keys_processed:{done}\r\n\
                 current_save_keys_total:{total}\r\nrdb_changes_since_last_save:{}\r\n\
                 rdb_bgsave_in_progress:{}\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\n\
                 rdb_last_bgsave_time_sec:{}\r\nrdb_current_bgsave_time_sec:{}\r\nrdb_saves:{}\r\n\
                 rdb_last_cow_size:0\r\nrdb_last_load_keys_expired:{}\r\nrdb_last_load_keys_loaded:{}\r\n\
                 aof_enabled:{}\r\naof_rewrite_in_progress:{}\r\naof_rewrite_scheduled:0\r\n\
                 aof_last_rewrite_time_sec:{}\r\naof_current_rewrite_time_sec:{}\r\n\
                 aof_last_bgrewrite_status:{}\r\naof_rewrites:{}\r\naof_rewrites_consecutive_failures:{}\r\n\
                 aof_last_write_status:{}\r\naof_last_cow_size:0\r\nmodule_fork_in_progress:0\r\n\
                 module_fork_last_cow_size:0\r\n\
                 aof_current_size:{}\r\naof_base_size:{}\r\naof_fsync_offset:{}\r\n",
                server.loading.load(Relaxed) as u8,
                server
                    .effects
                    .changes()
                    .saturating_sub(server.saved_changes.load(Relaxed)),
                log.saving.load(Relaxed) as u8,
                server.last_save.load(Relaxed),
                if log.last_save_ok.load(Relaxed) { "ok" } else { "err" },
                log.last_save_secs.load(Relaxed),
                running(log.save_started_ms.load(Relaxed)),
                log.saves.load(Relaxed),
                log.rdb_expired_keys.load(Relaxed),
                log.rdb_loaded_keys.load(Relaxed),
                log.enabled() as u8,
                log.rewrite_in_progress() as u8,
                log.last_rewrite_secs.load(Relaxed),
                running(log.rewrite_started_ms.load(Relaxed)),
                if log.last_rewrite_ok.load(Relaxed) { "ok" } else { "err" },
                log.rewrites.load(Relaxed),
                log.rewrite_failures.load(Relaxed),
                if failure.is_some() { "err" } else { "ok" },
                log.base_size.load(Relaxed) + log.size.load(Relaxed),
                log.base_size.load(Relaxed),
                log.durable.load(Relaxed),
            );
        }
        "stats" => {
            use super::stats::Rate;
            let s = &server.stats;
            let tracking = server.tracking.totals();
            let kbps = |r: Rate| s.instantaneous(r) as f64 / 1024.0;
            let threaded = server.io_threads.load(Relaxed) > 1;
            let exceeded = server.eviction_time.times(now);
            let shard_channels = server
                .pubsub
                .names(crate::server::pubsub::Space::Shard, None)
                .len();
            // Mechanisms Shoal does not have (forks, active defrag, MIGRATE's
            // socket cache, keys written on a writable replica, client
            // eviction) have nothing to count: 0, as on a Redis that never
            // used them.
            let _ = write!(
                o,
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
                 instantaneous_ops_per_sec:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\n\
                 total_net_repl_input_bytes:{}\r\ntotal_net_repl_output_bytes:{}\r\n\
                 instantaneous_input_kbps:{:.2}\r\ninstantaneous_output_kbps:{:.2}\r\n\
                 instantaneous_input_repl_kbps:{:.2}\r\ninstantaneous_output_repl_kbps:{:.2}\r\n\
                 rejected_connections:{}\r\nsync_full:{}\r\nsync_partial_ok:{}\r\nsync_partial_err:{}\r\n\
                 expired_keys:{}\r\nexpired_stale_perc:{:.2}\r\nexpired_time_cap_reached_count:{}\r\n\
                 expire_cycle_cpu_milliseconds:{}\r\nevicted_keys:{}\r\nevicted_clients:0\r\n\
                 total_eviction_exceeded_time:{}\r\ncurrent_eviction_exceeded_time:{}\r\n\
                 keyspace_hits:{}\r\nkeyspace_misses:{}\r\n\
                 pubsub_channels:{}\r\npubsub_patterns:{}\r\npubsubshard_channels:{}\r\n\
                 latest_fork_usec:0\r\ntotal_forks:0\r\nmigrate_cached_sockets:0\r\nslave_expires_tracked_keys:0\r\n\
                 active_defrag_hits:0\r\nactive_defrag_misses:0\r\nactive_defrag_key_hits:0\r\n\
                 active_defrag_key_misses:0\r\ntotal_active_defrag_time:0\r\ncurrent_active_defrag_time:0\r\n\
                 tracking_total_keys:{}\r\ntracking_total_items:{}\r\ntracking_total_prefixes:{}\r\n\
                 unexpected_error_replies:0\r\ntotal_error_replies:{}\r\ndump_payload_sanitizations:0\r\n\
                 total_reads_processed:{}\r\ntotal_writes_processed:{}\r\n\
                 io_threaded_reads_processed:{}\r\nio_threaded_writes_processed:{}\r\n",
                s.connections_received.get(),
                s.commands_processed.get(),
                s.instantaneous(Rate::Ops),
                s.net_input_bytes.get(),
                s.net_output_bytes.get(),
                s.net_repl_input_bytes.get(),
                s.net_repl_output_bytes.get(),
                kbps(Rate::NetInput),
                kbps(Rate::NetOutput),
                kbps(Rate::ReplInput),
                kbps(Rate::ReplOutput),
                s.rejected_connections.get(),
                server.replication.sync_full.load(Relaxed),
                server.replication.sync_partial_ok.load(Relaxed),
                server.replication.sync_partial_err.load(Relaxed),
                s.expired_keys.get(),
                f64::from_bits(server.expired_stale_perc.load(Relaxed)) * 100.0,
                server.expire_cycles_capped.load(Relaxed),
                s.expire_cycle_usec.get() / 1000,
                s.evicted_keys.get(),
                exceeded.1,
                exceeded.0,
                s.keyspace_hits.get(),
                s.keyspace_misses.get(),
                server.pubsub.names(crate::server::pubsub::Space::Channel, None).len(),
                server.pubsub.distinct_patterns(),
                shard_channels,
                tracking.1,
                tracking.2,
                tracking.3,
                s.error_replies.get(),
                s.reads_processed.get(),
                s.writes_processed.get(),
                if threaded { s.reads_processed.get() } else { 0 },
                if threaded { s.writes_processed.get() } else { 0 },
            );
        }
        "replication" => crate::replication::info(server, o),
        "cpu" => {
            let (us, sy) = rusage(libc::RUSAGE_SELF);
            let (cus, csy) = rusage(libc::RUSAGE_CHILDREN);
            let (mus, msy) = command_threads_cpu();
            let _ = write!(
                o,
                "# CPU\r\nused_cpu_sys:{sy:.6}\r\nused_cpu_user:{us:.6}\r\nused_cpu_sys_children:{csy:.6}\r\n\
                 used_cpu_user_children:{cus:.6}\r\nused_cpu_sys_main_thread:{msy:.6}\r\n\
                 used_cpu_user_main_thread:{mus:.6}\r\n"
            );
        }
        "errorstats" => {
            o.push_str("# Errorstats\r\n");
            let errs = server.stats.errors.lock();
            let mut codes: Vec<_> = errs.iter().collect();
            codes.sort();
            for (code, n) in codes {
                let _ = write!(o, "errorstat_{code}:count={n}\r\n");
            }
        }
        // No modules: the section is there, empty, as on a Redis without.
        "modules" => o.push_str("# Modules\r\n"),
        "cluster" => o.push_str("# Cluster\r\ncluster_enabled:0\r\n"),
        "keyspace" => {
            o.push_str("# Keyspace\r\n");
            for (i, db) in server.keyspace.used_dbs() {
                let (keys, volatile) = db.counts();
                if keys > 0 {
                    let avg_ttl = db.avg_ttl.load(Relaxed);
                    let _ = write!(
                        o,
                        "db{i}:keys={keys},expires={volatile},avg_ttl={avg_ttl}\r\n"
                    );
                }
            }
        }
        "latencystats" => {
            o.push_str("# Latencystats\r\n");
            let wanted = server
                .config
                .read()
                .get("latency-tracking-info-percentiles")
                .to_string();
            let wanted: Vec<f64> = crate::config::percentiles(&wanted).collect();
            for (i, spec) in TABLE.all.iter().enumerate() {
                let Some(h) = server.stats.commands[i].latencies() else {
                    continue;
                };
                let values: Vec<String> = wanted
                    .iter()
                    .map(|p| {
                        let v = crate::server::stats::value_at_percentile(&h, *p);
                        format!("p{p}={:.3}", v as f64 / 1000.0)
                    })
                    .collect();
                let _ = write!(
                    o,
                    "latency_percentiles_usec_{}:{}\r\n",
                    spec.name,
                    values.join(",")
                );
            }
        }
        "commandstats" => {
            o.push_str("# Commandstats\r\n");
            for (i, spec) in TABLE.all.iter().enumerate() {
                let st = server.stats.commands[i].totals();
                let (calls, rejected) = (st.calls, st.rejected);
                if calls == 0 && rejected == 0 {
                    continue;
                }
                let usec = st.usec;
                let per = if calls > 0 {
                    usec as f64 / calls as f64
                } else {
                    0.0
                };
                let _ = write!(
                    o,
                    "cmdstat_{}:calls={calls},usec={usec},usec_per_call={per:.2},rejected_calls={rejected},failed_calls={}\r\n",
                    spec.name,
                    st.failed,
                );
            }
        }
        _ => {}
    }
}

/// User and system CPU seconds of the threads that run commands (the I/O
/// threads, `shoal-io-N`): what Redis reports as its main thread's, from
/// `/proc` (to the clock tick).
fn command_threads_cpu() -> (f64, f64) {
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let (mut user, mut sys) = (0u64, 0u64);
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = task.path();
        let is_io =
            std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.starts_with("shoal-io"));
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces): state is
        // the first, utime the 12th, stime the 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        if is_io && fields.len() > 12 {
            user += fields[11].parse::<u64>().unwrap_or(0);
            sys += fields[12].parse::<u64>().unwrap_or(0);
        }
    }
    (user as f64 / tick, sys as f64 / tick)
}

fn rusage(who: i32) -> (f64, f64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}
