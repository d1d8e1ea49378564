//! Functions: Redis 7's FUNCTION and FCALL. A library is Lua code whose
//! shebang line names it (`#!lua name=mylib`); loading it runs the code,
//! which registers functions that FCALL then calls by name.
//!
//! ```text
//!  FUNCTION LOAD ─▶ shebang read ─▶ the code runs on this thread's Lua
//!                   state, seeing only the load API (register_function,
//!                   log) ─▶ names and clashes checked ─▶ linked into the
//!                   registry (one per process), whose generation moves on
//!  FCALL f ─▶ f's flags from the registry (the command's own flags come
//!             from them: a function that may write is a write) ─▶ this
//!             thread's Lua state reloads the libraries if the generation
//!             moved ─▶ f runs as a script runs (`scripting::call_function`)
//! ```
//!
//! Libraries are data, as in Redis: FUNCTION LOAD, DELETE, FLUSH and
//! RESTORE are effects (logged and sent to replicas as given), a snapshot
//! (a log rewrite's base, a full sync, SAVE) starts with each library's
//! `FUNCTION LOAD`, a full sync replaces a replica's libraries, FUNCTION
//! DUMP and RESTORE carry them in Redis's payload, and a Redis RDB file's
//! libraries load with its keys. FLUSHALL leaves them be.
//!
//! Function names are matched ignoring case, library names exactly; a
//! library that loads registers at least one function, and no two
//! libraries register the same name.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use hashbrown::HashMap;
use parking_lot::RwLock;

use super::scripting::{self, ScriptFlags, G, S};
use super::{flags::*, key_flags::*, keys::help, keys_counted, spec, Ctx, Spec, NO_KEYS};
use crate::error::{CmdResult, CommandError};
use crate::protocol::request::{parse_i64, split_args};

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    Spec { flags_for: Some(fcall_flags), ..spec("fcall", -3, NOSCRIPT | STALE | SKIP_MONITOR | MAY_REPLICATE | NO_MANDATORY_KEYS | EXCLUSIVE | ON_PRIMARY, keys_counted(0, 0, 2).flags(RW | ACCESS | UPDATE), S, G, "Invoke a function", fcall) },
    Spec { flags_for: Some(fcall_flags), ..spec("fcall_ro", -3, READONLY | NOSCRIPT | STALE | SKIP_MONITOR | NO_MANDATORY_KEYS | EXCLUSIVE, keys_counted(0, 0, 2).flags(RO | ACCESS), S, G, "Invoke a read-only function", fcall_ro) },
    Spec { subcommands: FUNCTION, ..spec("function", -2, 0, NO_KEYS, &[], G, "A container for function commands", super::keys::help_only) },
];

/// The subcommands that change libraries hold the gate exclusively
/// (`EXCLUSIVE`), as scripts do: a snapshot's instant, taken under the
/// shared gate, then sees the libraries and the stream agree.
#[rustfmt::skip]
static FUNCTION: &[Spec] = &[
    spec("function|load", -3, WRITE | DENYOOM | NOSCRIPT | EXCLUSIVE, NO_KEYS, S, G, "Create a function with the given arguments (name, code, description)", function_load),
    spec("function|delete", 3, WRITE | NOSCRIPT | EXCLUSIVE, NO_KEYS, S, G, "Delete a function by name", function_delete),
    spec("function|flush", -2, WRITE | NOSCRIPT | EXCLUSIVE, NO_KEYS, S, G, "Deleting all functions", function_flush),
    spec("function|restore", -3, WRITE | DENYOOM | NOSCRIPT | EXCLUSIVE, NO_KEYS, S, G, "Restore all the functions on the given payload", function_restore),
    spec("function|dump", 2, NOSCRIPT, NO_KEYS, S, G, "Dump all functions into a serialized binary payload", function_dump),
    spec("function|list", -2, NOSCRIPT, NO_KEYS, S, G, "List information about all the functions", function_list),
    spec("function|stats", 2, NOSCRIPT | ALLOW_BUSY, NO_KEYS, S, G, "Return information about the function currently running (name, description, duration)", function_stats),
    spec("function|kill", 2, NOSCRIPT | ALLOW_BUSY, NO_KEYS, S, G, "Kill the function currently in execution.", function_kill),
    spec("function|help", 2, LOADING | STALE, NO_KEYS, S, G, "Show helpful text about the different subcommands", function_help),
];

/// A loaded library.
pub struct Library {
    pub name: String,
    /// The code FUNCTION LOAD was given, shebang line included.
    pub code: Bytes,
    /// Where the shebang line ends: Lua runs the code from its line feed,
    /// so that line numbers stay the code's.
    body_at: usize,
    /// In the order the code registered them.
    pub functions: Vec<Function>,
}

impl Library {
    /// The code Lua runs.
    pub fn body(&self) -> &[u8] {
        &self.code[self.body_at..]
    }
}

/// A function a library registered.
#[derive(Clone)]
pub struct Function {
    pub name: String,
    pub description: Option<Bytes>,
    pub flags: ScriptFlags,
}

#[derive(Default)]
struct Registry {
    libraries: BTreeMap<String, Arc<Library>>,
    /// Each function's library, by lower-cased function name.
    functions: HashMap<String, Arc<Library>>,
    /// Moves on at every change: Lua states reload what they hold.
    generation: u64,
}

impl Registry {
    fn link(&mut self, library: Arc<Library>) {
        for f in &library.functions {
            self.functions
                .insert(f.name.to_ascii_lowercase(), library.clone());
        }
        self.libraries.insert(library.name.clone(), library);
        self.generation += 1;
    }

    fn unlink(&mut self, name: &str) -> Option<Arc<Library>> {
        let library = self.libraries.remove(name)?;
        for f in &library.functions {
            self.functions.remove(&f.name.to_ascii_lowercase());
        }
        self.generation += 1;
        Some(library)
    }

    fn clear(&mut self) {
        self.libraries.clear();
        self.functions.clear();
        self.generation += 1;
    }

    /// The first of `library`'s functions another library has registered.
    fn clash<'a>(&self, library: &'a Library) -> Option<&'a str> {
        library
            .functions
            .iter()
            .find(|f| self.functions.contains_key(&f.name.to_ascii_lowercase()))
            .map(|f| f.name.as_str())
    }
}

static REGISTRY: LazyLock<RwLock<Registry>> = LazyLock::new(Default::default);

/// The libraries' generation: a Lua state that loaded them at another
/// reloads them.
pub fn generation() -> u64 {
    REGISTRY.read().generation
}

/// The libraries and their generation, for a Lua state to load.
pub fn libraries() -> (u64, Vec<Arc<Library>>) {
    let r = REGISTRY.read();
    (r.generation, r.libraries.values().cloned().collect())
}

/// DEBUG RELOAD and DEBUG LOADAOF empty the libraries with the data, as
/// Redis's emptyData does: what is loaded back registers them again.
/// Nothing is recorded.
pub fn forget_all() {
    REGISTRY.write().clear();
}

/// Whether `name` may name a library or a function: letters, digits and
/// underscores, at least one.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

/// The function `name` (any case): its library and its place there.
fn lookup(name: &[u8]) -> Option<(Arc<Library>, usize)> {
    let name = std::str::from_utf8(name).ok()?;
    let r = REGISTRY.read();
    let library = if name.bytes().any(|c| c.is_ascii_uppercase()) {
        r.functions.get(&name.to_ascii_lowercase())
    } else {
        r.functions.get(name)
    }?;
    let at = library
        .functions
        .iter()
        .position(|f| f.name.eq_ignore_ascii_case(name))?;
    Some((library.clone(), at))
}

/// FCALL's and FCALL_RO's flags: those the function declares.
fn fcall_flags(row: u32, argv: &[Bytes]) -> u32 {
    lookup(&argv[1]).map_or(row, |(l, at)| l.functions[at].flags.command_flags(row))
}

/// A library's shebang line: its engine and name, and where the line
/// ends. Errors are Redis's texts.
fn metadata(code: &[u8]) -> Result<(String, String, usize), CommandError> {
    if !code.starts_with(b"#!") {
        return Err(CommandError::err("Missing library metadata"));
    }
    let invalid = || CommandError::err("Invalid library metadata");
    let end = code.iter().position(|&c| c == b'\n').ok_or_else(invalid)?;
    let parts = split_args(&code[..end]).ok_or_else(invalid)?;
    let (engine, options) = parts.split_first().ok_or_else(invalid)?;
    let mut name = None;
    for option in options {
        if option.len() >= 5 && option[..5].eq_ignore_ascii_case(b"name=") {
            if name.is_some() {
                return Err(CommandError::err(
                    "Invalid metadata value, name argument was given multiple times",
                ));
            }
            name = Some(String::from_utf8_lossy(&option[5..]).into_owned());
        } else {
            return Err(CommandError::err(format!(
                "Invalid metadata value given: {}",
                String::from_utf8_lossy(option)
            )));
        }
    }
    let name = name.ok_or_else(|| CommandError::err("Library name was not given"))?;
    let engine = String::from_utf8_lossy(&engine[2..]).into_owned();
    Ok((engine, name, end))
}

/// Reads `code`'s shebang and runs its code on this thread, giving the
/// library it defines (not linked yet). Refused if a library of that name
/// exists and `replace` is not given.
fn create(registry: &Registry, code: Bytes, replace: bool) -> Result<Library, CommandError> {
    let (engine, name, body_at) = metadata(&code)?;
    if !valid_name(name.as_bytes()) {
        return Err(CommandError::err("Library names can only contain letters, numbers, or underscores(_) and must be at least one character long"));
    }
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(CommandError::err(format!("Engine '{engine}' not found")));
    }
    if !replace && registry.libraries.contains_key(&name) {
        return Err(CommandError::err(format!(
            "Library '{name}' already exists"
        )));
    }
    let registered =
        scripting::with_vm(|vm| vm.load_library(&code[body_at..]).map_err(CommandError::err))?;
    if registered.is_empty() {
        return Err(CommandError::err("No functions registered"));
    }
    let functions = registered
        .into_iter()
        .map(|r| Function {
            name: r.name,
            description: r.description,
            flags: r.flags,
        })
        .collect();
    Ok(Library {
        name,
        code,
        body_at,
        functions,
    })
}

/// Loads `code` as FUNCTION LOAD does; returns the library's name.
fn load(code: Bytes, replace: bool) -> Result<String, CommandError> {
    let mut registry = REGISTRY.write();
    let library = create(&registry, code, replace)?;
    let old = registry.unlink(&library.name);
    if let Some(name) = registry.clash(&library) {
        let e = CommandError::err(format!("Function {name} already exists"));
        if let Some(old) = old {
            registry.link(old);
        }
        return Err(e);
    }
    let name = library.name.clone();
    registry.link(Arc::new(library));
    Ok(name)
}

/// Records a change to the libraries as the command that made it.
fn emit(ctx: &Ctx, argv: &[Bytes]) {
    let argv: Vec<&[u8]> = argv.iter().map(|a| &a[..]).collect();
    ctx.emit_global(&argv);
}

fn function_load(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut replace = false;
    for option in &argv[2..argv.len() - 1] {
        if !option.eq_ignore_ascii_case(b"replace") {
            return Err(CommandError::err(format!(
                "Unknown option given: {}",
                String::from_utf8_lossy(option)
            )));
        }
        replace = true;
    }
    // A copy: the code may be a slice of the request's read buffer, which
    // a library kept for good would pin whole.
    let code = Bytes::copy_from_slice(&argv[argv.len() - 1]);
    let _gate = alone_to_change(ctx)?;
    let name = load(code, replace)?;
    emit(ctx, argv);
    ctx.out.bulk(name.as_bytes());
    Ok(())
}

/// The gate held exclusively to change the libraries, which a node
/// handed over meanwhile refuses ([`super::handed_over`]).
fn alone_to_change<'s>(
    ctx: &Ctx<'s>,
) -> Result<Option<crate::server::watches::Exclusive<'s>>, CommandError> {
    let gate = scripting::alone(ctx.server, ctx.client);
    if super::handed_over(ctx) {
        return Err(CommandError::ReadOnly);
    }
    Ok(gate)
}

fn function_delete(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let name = String::from_utf8_lossy(&argv[2]);
    let _gate = alone_to_change(ctx)?;
    REGISTRY
        .write()
        .unlink(&name)
        .ok_or_else(|| CommandError::err("Library not found"))?;
    emit(ctx, argv);
    ctx.out.ok();
    Ok(())
}

fn function_flush(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    match argv.get(2) {
        _ if argv.len() > 3 => return Err(CommandError::subcommand_syntax(argv, "FUNCTION")),
        Some(a) if !a.eq_ignore_ascii_case(b"sync") && !a.eq_ignore_ascii_case(b"async") => {
            return Err(CommandError::err(
                "FUNCTION FLUSH only supports SYNC|ASYNC option",
            ))
        }
        _ => {}
    }
    let _gate = alone_to_change(ctx)?;
    REGISTRY.write().clear();
    emit(ctx, argv);
    ctx.out.ok();
    Ok(())
}

fn function_restore(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    #[derive(PartialEq)]
    enum Policy {
        Flush,
        Append,
        Replace,
    }
    if argv.len() > 4 {
        return Err(CommandError::subcommand_syntax(argv, "FUNCTION"));
    }
    let policy = match argv.get(3) {
        None => Policy::Append,
        Some(p) if p.eq_ignore_ascii_case(b"append") => Policy::Append,
        Some(p) if p.eq_ignore_ascii_case(b"replace") => Policy::Replace,
        Some(p) if p.eq_ignore_ascii_case(b"flush") => Policy::Flush,
        Some(_) => {
            return Err(CommandError::err(
                "Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            ))
        }
    };
    let codes = crate::persistence::rdb::restore_functions(&argv[2]).map_err(CommandError::err)?;
    let _gate = alone_to_change(ctx)?;
    // The payload's libraries load among themselves first (Redis loads
    // them into a context of their own), then join the registry.
    let mut restored = Registry::default();
    for code in codes {
        let library = create(&restored, Bytes::from(code), false)?;
        if let Some(name) = restored.clash(&library) {
            return Err(CommandError::err(format!("Function {name} already exists")));
        }
        restored.link(Arc::new(library));
    }
    let mut registry = REGISTRY.write();
    if policy == Policy::Flush {
        registry.clear();
    }
    let mut replaced = Vec::new();
    let mut refused = None;
    for name in restored.libraries.keys() {
        if registry.libraries.contains_key(name) {
            if policy != Policy::Replace {
                refused = Some(format!("Library {name} already exists"));
                break;
            }
            replaced.extend(registry.unlink(name));
        }
    }
    if refused.is_none() {
        refused = restored
            .libraries
            .values()
            .find_map(|l| registry.clash(l))
            .map(|name| format!("Function {name} already exists"));
    }
    if let Some(e) = refused {
        for old in replaced {
            registry.link(old);
        }
        return Err(CommandError::err(e));
    }
    for library in restored.libraries.into_values() {
        registry.link(library);
    }
    drop(registry);
    emit(ctx, argv);
    ctx.out.ok();
    Ok(())
}

fn function_dump(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let (_, libraries) = libraries();
    let payload = crate::persistence::rdb::dump_functions(libraries.iter().map(|l| &l.code[..]));
    ctx.out.bulk(&payload);
    Ok(())
}

fn function_list(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (mut with_code, mut pattern) = (false, None);
    let mut i = 2;
    while i < argv.len() {
        let a = &argv[i];
        if !with_code && a.eq_ignore_ascii_case(b"withcode") {
            with_code = true;
        } else if pattern.is_none() && a.eq_ignore_ascii_case(b"libraryname") {
            i += 1;
            let p = argv
                .get(i)
                .ok_or_else(|| CommandError::err("library name argument was not given"))?;
            pattern = Some(p.clone());
        } else {
            return Err(CommandError::err(format!(
                "Unknown argument {}",
                String::from_utf8_lossy(a)
            )));
        }
        i += 1;
    }
    let (_, libraries) = libraries();
    let shown: Vec<&Arc<Library>> = libraries
        .iter()
        .filter(|l| {
            pattern
                .as_ref()
                .is_none_or(|p| crate::glob::glob_match(p, l.name.as_bytes(), true))
        })
        .collect();
    let out = &mut *ctx.out;
    out.array(shown.len());
    for library in shown {
        out.map(if with_code { 4 } else { 3 });
        out.bulk(b"library_name");
        out.bulk(library.name.as_bytes());
        out.bulk(b"engine");
        out.bulk(b"LUA");
        out.bulk(b"functions");
        out.array(library.functions.len());
        for f in &library.functions {
            out.map(3);
            out.bulk(b"name");
            out.bulk(f.name.as_bytes());
            out.bulk(b"description");
            match &f.description {
                Some(d) => out.bulk(d),
                None => out.null(),
            }
            out.bulk(b"flags");
            let names: Vec<&str> = f.flags.names().collect();
            out.set(names.len());
            for n in names {
                out.simple(n);
            }
        }
        if with_code {
            out.bulk(b"library_code");
            out.bulk(&library.code);
        }
    }
    Ok(())
}

/// Runs while a script is timed out (`allow_busy`), which is the only
/// time another command can see one running (`server::busy`).
fn function_stats(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let running = match ctx.server.busy.run() {
        Some(run) if run.function.is_none() => return Err(CommandError::BusyScript),
        running => running,
    };
    let (libraries, functions) = {
        let r = REGISTRY.read();
        (r.libraries.len(), r.functions.len())
    };
    let out = &mut *ctx.out;
    out.map(2);
    out.bulk(b"running_script");
    match running {
        None => out.null(),
        Some(run) => {
            out.map(3);
            out.bulk(b"name");
            out.bulk(run.function.unwrap_or_default().as_bytes());
            out.bulk(b"command");
            out.array(run.argv.len());
            for a in &run.argv {
                out.bulk(a);
            }
            out.bulk(b"duration_ms");
            out.int(run.started.elapsed().as_millis() as i64);
        }
    }
    out.bulk(b"engines");
    out.map(1);
    out.bulk(b"LUA");
    out.map(2);
    out.bulk(b"libraries_count");
    out.int(libraries as i64);
    out.bulk(b"functions_count");
    out.int(functions as i64);
    Ok(())
}

/// Runs while a script is timed out (`allow_busy`): see `server::busy`.
fn function_kill(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    ctx.server.busy.kill(true)?;
    ctx.out.ok();
    Ok(())
}

fn function_help(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    help(
        ctx,
        "FUNCTION",
        &[
            "LOAD [REPLACE] <FUNCTION CODE>",
            "    Create a new library with the given library name and code.",
            "DELETE <LIBRARY NAME>",
            "    Delete the given library.",
            "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
            "    Return general information on all the libraries:",
            "    * Library name",
            "    * The engine used to run the Library",
            "    * Library description",
            "    * Functions list",
            "    * Library code (if WITHCODE is given)",
            "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
            "STATS",
            "    Return information about the current function running:",
            "    * Function name",
            "    * Command used to run the function",
            "    * Duration in MS that the function is running",
            "    If no function is running, return nil",
            "    In addition, returns a list of available engines.",
            "KILL",
            "    Kill the current running function.",
            "FLUSH [ASYNC|SYNC]",
            "    Delete all the libraries.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the libraries.",
            "    * SYNC: Synchronously flush the libraries.",
            "DUMP",
            "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
            "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
            "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
            "    control how to handle existing libraries (default APPEND):",
            "    * FLUSH: delete all existing libraries.",
            "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
            "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
            "      libraries with the new libraries (notice that even on this option there is a chance of failure",
            "      in case of functions name collision with another library).",
        ],
    );
    Ok(())
}

fn fcall(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    call(ctx, argv, false)
}

fn fcall_ro(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    call(ctx, argv, true)
}

fn call(ctx: &mut Ctx, argv: &[Bytes], ro: bool) -> CmdResult {
    scripting::tell_monitors(ctx, argv);
    let (library, at) = lookup(&argv[1]).ok_or_else(|| CommandError::err("Function not found"))?;
    let f = &library.functions[at];
    let numkeys =
        parse_i64(&argv[2]).ok_or_else(|| CommandError::err("Bad number of keys provided"))?;
    if numkeys > argv.len() as i64 - 3 {
        return Err(CommandError::err(
            "Number of keys can't be greater than number of args",
        ));
    }
    if numkeys < 0 {
        return Err(CommandError::err("Number of keys can't be negative"));
    }
    let split = 3 + numkeys as usize;
    scripting::call_function(ctx, &f.name, f.flags, argv, split, ro)
}

/// Each library's `FUNCTION LOAD REPLACE`, for a snapshot to start with.
/// The caller holds the gate (shared): no library changes meanwhile.
pub fn snapshot_records() -> Vec<Vec<u8>> {
    let (_, libraries) = libraries();
    libraries
        .iter()
        .map(|l| {
            let mut rec = Vec::new();
            crate::effects::encode_command::<&[u8]>(
                &mut rec,
                &[b"FUNCTION", b"LOAD", b"REPLACE", &l.code],
            );
            rec
        })
        .collect()
}

/// How many libraries and functions are loaded, and their bytes: code,
/// names and descriptions (INFO).
pub fn counts() -> (usize, usize, usize) {
    let r = REGISTRY.read();
    let bytes = r
        .libraries
        .values()
        .map(|l| {
            l.name.len()
                + l.code.len()
                + l.functions
                    .iter()
                    .map(|f| f.name.len() + f.description.as_ref().map_or(0, |d| d.len()))
                    .sum::<usize>()
        })
        .sum();
    (r.libraries.len(), r.functions.len(), bytes)
}
