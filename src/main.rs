//! The `shoal` binary: parses the command line as `redis-server` does
//! (`shoal [config-file] [--directive value ...]`) and runs a node.

use tikv_jemallocator::Jemalloc;

// jemalloc, so INFO's memory figures are the allocator's own and memory is
// returned to the system under churn.
#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("check-aof") {
        std::process::exit(check_aof(&args[1..]));
    }
    if args.iter().any(|a| a == "-v" || a == "--version") {
        println!("Shoal server v={}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("Usage: shoal [/path/to/shoal.conf] [--directive value ...]\n       shoal check-aof [--fix] DIR\n\nExamples:\n  shoal\n  shoal --port 7000 --dir /var/lib/shoal\n  shoal /etc/shoal.conf --loglevel verbose");
        return;
    }
    let config = match shoal::config::Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = shoal::logging::init(config.get("loglevel"), config.get("logfile")) {
        eprintln!("Can't open the log file: {e}");
        std::process::exit(1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(shoal::server::run(config)) {
        tracing::error!("{e}");
        eprintln!("{e}");
        std::process::exit(1);
    }
    // Work still waiting for the transaction gate (a script that never
    // ends holds it: see `server::busy`) is not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
}

/// `shoal check-aof [--fix] DIR`: DIR is a data directory (holding
/// `appendonlydir`) or the append-only directory itself; the manifest
/// found there names the files (whatever `appendfilename` was).
fn check_aof(args: &[String]) -> i32 {
    let fix = args.iter().any(|a| a == "--fix");
    let dirs: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let [dir] = dirs.as_slice() else {
        eprintln!("Usage: shoal check-aof [--fix] DIR");
        return 2;
    };
    let path = std::path::Path::new(dir.as_str());
    let manifests = |p: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(p)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.strip_suffix(".manifest").map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let candidates = [path.to_path_buf(), path.join("appendonlydir")];
    let Some((aof_path, names)) = candidates
        .iter()
        .map(|p| (p, manifests(p)))
        .find(|(_, m)| !m.is_empty())
    else {
        eprintln!(
            "check-aof: no append only file manifest in {} or its appendonlydir",
            path.display()
        );
        return 2;
    };
    let [name] = names.as_slice() else {
        eprintln!(
            "check-aof: several manifests in {} ({}): point at one node's directory",
            aof_path.display(),
            names.join(", ")
        );
        return 2;
    };
    let aof = shoal::persistence::aof::AofDir::new(aof_path, "", name);
    match shoal::persistence::aof::check(&aof, fix) {
        Ok(report) => {
            for l in &report.lines {
                println!("{l}");
            }
            if report.ok {
                println!(
                    "{}",
                    if fix {
                        "The append only files are now valid."
                    } else {
                        "The append only files are valid."
                    }
                );
                0
            } else {
                println!("The append only files are damaged; run with --fix to cut them at the last good record.");
                1
            }
        }
        Err(e) => {
            eprintln!("check-aof: {e}");
            2
        }
    }
}
