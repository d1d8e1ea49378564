//! The `shoal` binary: parses the command line as `redis-server` does
//! (`shoal [config-file] [--directive value ...]`) and runs a node.

use tikv_jemallocator::Jemalloc;

// jemalloc, so INFO's memory figures are the allocator's own and memory is
// returned to the system under churn.
#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-v" || a == "--version") {
        println!("Shoal server v={}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("Usage: shoal [/path/to/shoal.conf] [--directive value ...]\n\nExamples:\n  shoal\n  shoal --port 7000 --dir /var/lib/shoal\n  shoal /etc/shoal.conf --loglevel verbose");
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
}
