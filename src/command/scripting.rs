//! Lua scripting: EVAL, EVALSHA, their _RO forms and SCRIPT, as Redis 7
//! runs them (Lua 5.1, `redis.call`/`redis.pcall`, KEYS and ARGV, Redis's
//! conversions between Lua values and replies, its error texts).
//!
//! ```text
//!  EVAL ─▶ gate held exclusively (no other command interleaves; inside
//!          EXEC the transaction already holds it)
//!       ─▶ this thread's Lua state: the script compiled once per thread as
//!          a function of chunk `@user_script`, KEYS and ARGV set
//!       ─▶ each redis.call resolves the command in the table and runs it
//!          as a transaction's command runs: its effects recorded, wrapped
//!          with the script's others in MULTI … EXEC for the log and replicas
//!       ─▶ the script's value converted to the reply
//! ```
//!
//! Scripts are replicated by their effects (Redis 7's only mode), so what a
//! script reads or computes never needs replaying. Each I/O thread has its
//! own Lua state; the script cache (SCRIPT LOAD, EVAL) is the process's.
//! Globals are read-only and reading a missing one fails, as in Redis 7, so
//! a script leaves nothing behind for the next.
//!
//! A script is stopped with an error once it has run past
//! `busy-reply-threshold` (5 s): every other command waits for it, where
//! Redis answers them BUSY and waits for SCRIPT KILL.
//!
//! Libraries: Lua's table, string and math, `cjson` (encode, decode,
//! `cjson.null`) as Redis bundles lua-cjson, `cmsgpack` (pack, unpack) as
//! it bundles lua-cmsgpack, and `bit` as it bundles LuaBitOp.
//!
//! Not here: SCRIPT KILL of a running script, SCRIPT DEBUG, FUNCTION,
//! RESP3 replies inside scripts, and the struct library.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::LazyLock;

use bytes::Bytes;
use mlua::{Function, Lua, MultiValue, Table, Value};
use parking_lot::Mutex;
use redis_protocol::resp2::types::OwnedFrame as Frame;
use sha1::{Digest as _, Sha1};

use super::{flags::*, keys_counted, spec, Ctx, Spec, NO_KEYS, TABLE};
use crate::error::{CmdResult, CommandError};
use crate::protocol::reply::format_double;
use crate::protocol::{Protocol, ReplyBuf};

const G: &str = "scripting";
const S: &[&str] = &["scripting"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("eval", -3, NOSCRIPT | STALE | SKIP_MONITOR | NO_MANDATORY_KEYS | EXCLUSIVE | ON_PRIMARY, keys_counted(0, 0, 2), S, G, "Executes a server-side Lua script.", eval),
    spec("evalsha", -3, NOSCRIPT | STALE | SKIP_MONITOR | NO_MANDATORY_KEYS | EXCLUSIVE | ON_PRIMARY, keys_counted(0, 0, 2), S, G, "Executes a server-side Lua script by SHA1 digest.", evalsha),
    spec("eval_ro", -3, READONLY | NOSCRIPT | STALE | SKIP_MONITOR | NO_MANDATORY_KEYS | EXCLUSIVE, keys_counted(0, 0, 2), S, G, "Executes a read-only server-side Lua script.", eval_ro),
    spec("evalsha_ro", -3, READONLY | NOSCRIPT | STALE | SKIP_MONITOR | NO_MANDATORY_KEYS | EXCLUSIVE, keys_counted(0, 0, 2), S, G, "Executes a read-only server-side Lua script by SHA1 digest.", evalsha_ro),
    Spec { subcommands: SCRIPT, ..spec("script", -2, 0, NO_KEYS, &[], G, "A container for Lua scripts management commands.", super::keys::help_only) },
];

#[rustfmt::skip]
static SCRIPT: &[Spec] = &[
    spec("script|load", 3, NOSCRIPT | STALE, NO_KEYS, S, G, "Loads a server-side Lua script to the script cache.", script_load),
    spec("script|exists", -3, NOSCRIPT, NO_KEYS, S, G, "Determines whether server-side Lua scripts exist in the script cache.", script_exists),
    spec("script|flush", -2, NOSCRIPT, NO_KEYS, S, G, "Removes all server-side Lua scripts from the script cache.", script_flush),
    spec("script|kill", 2, NOSCRIPT | ALLOW_BUSY, NO_KEYS, S, G, "Terminates a server-side Lua script during execution.", script_kill),
    spec("script|debug", 3, NOSCRIPT, NO_KEYS, S, G, "Sets the debug mode of server-side Lua scripts.", script_debug),
    spec("script|help", 2, LOADING | STALE, NO_KEYS, S, G, "Returns helpful text about the different subcommands.", script_help),
];

/// The process's scripts by SHA1 (lower-case hex), and a generation that
/// SCRIPT FLUSH moves on so that every thread drops what it compiled.
static CACHE: LazyLock<Mutex<HashMap<String, Bytes>>> = LazyLock::new(Default::default);
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// One thread's Lua state and the scripts it compiled.
struct Vm {
    lua: Lua,
    generation: u64,
    /// SHA1 to function, in a Lua table: a Rust handle per script would
    /// each hold one of mlua's few thousand reference slots.
    compiled: Table,
    xpcall: Function,
    handler: Function,
}

thread_local! {
    static VM: RefCell<Option<Vm>> = const { RefCell::new(None) };
}

/// Sets up `redis` and read-only globals; `redis.call` and `redis.pcall`
/// are bound to the running script's context for the length of each run.
const PRELUDE: &str = r#"
local raw_get, err = rawget, error
redis = {}
local function error_table(e)
  if string.sub(e, 1, 1) ~= '-' then e = '-' .. e end
  local space = string.find(e, ' ', 1, true)
  if space then
    return {err = string.sub(e, 2, space - 1) .. ' ' .. string.sub(e, space + 1)}
  end
  return {err = 'ERR ' .. string.sub(e, 2)}
end
local bad_args = {err = 'ERR wrong number or type of arguments'}
redis.error_reply = function(e)
  if type(e) ~= 'string' then return bad_args end
  e = string.gsub(e, '[\r\n]+$', '')
  return error_table(e)
end
redis.status_reply = function(s)
  if type(s) ~= 'string' then return bad_args end
  return {ok = s}
end
redis.sha1hex = function(s) return raw_get(_G, '__redis_sha1hex')(s) end
redis.log = function(level, ...) end
redis.setresp = function(v)
  if v ~= 2 then err('RESP3 replies in scripts are not supported', 2) end
end
redis.set_repl = function() end
redis.replicate_commands = function() return true end
redis.breakpoint = function() return false end
redis.debug = function() end
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3
setmetatable(_G, {
  __index = function(t, k)
    err("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
  end,
  __newindex = function(t, k, v) err('Attempt to modify a readonly table', 2) end,
})
"#;

impl Vm {
    fn new() -> mlua::Result<Vm> {
        use mlua::StdLib;
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            mlua::LuaOptions::default(),
        )?;
        let g = lua.globals();
        g.raw_set(
            "__redis_sha1hex",
            lua.create_function(|_, s: mlua::String| Ok(sha1_hex(&s.as_bytes())))?,
        )?;
        // Error objects carry where in the script they arose, as Redis's
        // error handler records it.
        let handler = lua.create_function(|lua, e: Value| {
            let line = script_line(lua);
            let t = match e {
                Value::Table(t) => t,
                // A refused redis.call: its reply's text, as Redis raises it.
                Value::Error(e) if call_error(&e).is_some() => {
                    let t = lua.create_table()?;
                    t.raw_set("err", call_error(&e).unwrap_or_default())?;
                    t
                }
                Value::String(s) => {
                    let t = lua.create_table()?;
                    t.raw_set("err", format!("ERR {}", s.to_string_lossy()))?;
                    t
                }
                // A library function's error, worded as Lua words one raised
                // from C: with the script's position.
                Value::Error(e) => {
                    let t = lua.create_table()?;
                    t.raw_set("err", format!("ERR user_script:{line}: {}", innermost(&e)))?;
                    t
                }
                other => {
                    let t = lua.create_table()?;
                    t.raw_set("err", format!("ERR {}", other.to_string()?))?;
                    t
                }
            };
            t.raw_set("line", line)?;
            Ok(t)
        })?;
        g.raw_set("cjson", cjson::library(&lua)?)?;
        g.raw_set("cmsgpack", cmsgpack::library(&lua)?)?;
        g.raw_set("bit", bit::library(&lua)?)?;
        let xpcall: Function = g.raw_get("xpcall")?;
        lua.load(PRELUDE).set_name("@__redis_prelude").exec()?;
        let compiled = lua.create_table()?;
        Ok(Vm {
            lua,
            generation: GENERATION.load(Relaxed),
            compiled,
            xpcall,
            handler,
        })
    }

    /// The script's function, compiled on first use on this thread.
    fn function(&mut self, sha: &str, body: &[u8]) -> Result<Function, CommandError> {
        let lua_err = |e: mlua::Error| CommandError::err(format!("Lua: {e}"));
        let generation = GENERATION.load(Relaxed);
        if generation != self.generation {
            self.compiled = self.lua.create_table().map_err(lua_err)?;
            self.generation = generation;
        }
        if let Some(f) = self
            .compiled
            .raw_get::<Option<Function>>(sha)
            .map_err(lua_err)?
        {
            return Ok(f);
        }
        let f = compile(&self.lua, body)?;
        self.compiled.raw_set(sha, f.clone()).map_err(lua_err)?;
        Ok(f)
    }
}

fn compile(lua: &Lua, body: &[u8]) -> Result<Function, CommandError> {
    lua.load(body)
        .set_name("@user_script")
        .into_function()
        .map_err(|e| {
            let text = match &e {
                mlua::Error::SyntaxError { message, .. } => message.clone(),
                other => other.to_string(),
            };
            CommandError::err(format!("Error compiling script (new function): {text}"))
        })
}

/// The line of the innermost frame that belongs to the script.
fn script_line(lua: &Lua) -> i64 {
    (0..64)
        .find_map(|level| {
            lua.inspect_stack(level, |d| {
                let src = d.source();
                (src.source.as_deref() == Some("@user_script"))
                    .then(|| d.current_line().map_or(0, |n| n as i64))
            })?
        })
        .unwrap_or(0)
}

/// The Rust error by which redis.call raises a command's error reply.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CallError(String);

/// The command error a Lua error carries, if it is redis.call's.
fn call_error(e: &mlua::Error) -> Option<String> {
    match e {
        mlua::Error::CallbackError { cause, .. } => call_error(cause),
        mlua::Error::ExternalError(inner) => inner.downcast_ref::<CallError>().map(|c| c.0.clone()),
        _ => None,
    }
}

/// The message at the root of a Lua error raised by Rust code.
fn innermost(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => innermost(cause),
        mlua::Error::RuntimeError(m) => m.clone(),
        other => other.to_string(),
    }
}

fn sha1_hex(b: &[u8]) -> String {
    crate::persistence::digest::hex(&Sha1::digest(b))
}

/// Caches `body` under `sha`.
fn cache(sha: &str, body: &Bytes) {
    CACHE
        .lock()
        .entry(sha.to_string())
        .or_insert_with(|| body.clone());
}

fn with_vm<R>(f: impl FnOnce(&mut Vm) -> Result<R, CommandError>) -> Result<R, CommandError> {
    VM.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let vm = Vm::new().map_err(|e| CommandError::err(format!("Lua: {e}")))?;
            *slot = Some(vm);
        }
        f(slot.as_mut().expect("set above"))
    })
}

fn eval(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let sha = sha1_hex(&argv[1]);
    run_script(ctx, argv, &sha, argv[1].clone(), false)
}

fn eval_ro(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let sha = sha1_hex(&argv[1]);
    run_script(ctx, argv, &sha, argv[1].clone(), true)
}

fn evalsha(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    by_sha(ctx, argv, false)
}

fn evalsha_ro(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    by_sha(ctx, argv, true)
}

fn by_sha(ctx: &mut Ctx, argv: &[Bytes], read_only: bool) -> CmdResult {
    let sha = String::from_utf8_lossy(&argv[1]).to_ascii_lowercase();
    let body = CACHE.lock().get(&sha).cloned();
    let Some(body) = body else {
        return Err(CommandError::err_code(
            "NOSCRIPT No matching script. Please use EVAL.",
        ));
    };
    run_script(ctx, argv, &sha, body, read_only)
}

fn run_script(ctx: &mut Ctx, argv: &[Bytes], sha: &str, body: Bytes, read_only: bool) -> CmdResult {
    let numkeys = super::args::int(&argv[2])?;
    if numkeys < 0 {
        return Err(CommandError::err("Number of keys can't be negative"));
    }
    if numkeys as usize > argv.len() - 3 {
        return Err(CommandError::err(
            "Number of keys can't be greater than number of args",
        ));
    }
    let split = 3 + numkeys as usize;
    let (keys, args) = (&argv[3..split], &argv[split..]);
    // Inside EXEC the transaction holds the gate and wraps the effects.
    let nested = ctx.client.exec_effects.get().is_some();
    let _gate = (!nested).then(|| ctx.server.gate.exclusive());
    if !nested {
        ctx.client.exec_effects.set(Some(false));
    }
    let result = with_vm(|vm| {
        let f = vm.function(sha, &body)?;
        // Cached once it compiles, as Redis caches what EVAL ran.
        cache(sha, &body);
        execute(vm, ctx, f, keys, args, sha, read_only)
    });
    if !nested {
        if ctx.client.exec_effects.get() == Some(true) {
            ctx.emit_global(&[b"EXEC"]);
        }
        ctx.client.exec_effects.set(None);
    }
    result
}

/// Runs the compiled script with KEYS and ARGV, its redis.call bound to
/// `ctx`, and writes its value as the reply.
fn execute(
    vm: &Vm,
    ctx: &mut Ctx,
    f: Function,
    keys: &[Bytes],
    args: &[Bytes],
    sha: &str,
    read_only: bool,
) -> CmdResult {
    let lua = &vm.lua;
    let lua_err = |e: mlua::Error| CommandError::err(format!("Lua: {e}"));
    let strings = |items: &[Bytes]| -> mlua::Result<Table> {
        let t = lua.create_table_with_capacity(items.len(), 0)?;
        for (i, a) in items.iter().enumerate() {
            t.raw_set(i + 1, lua.create_string(&a[..])?)?;
        }
        Ok(t)
    };
    let g = lua.globals();
    g.raw_set("KEYS", strings(keys).map_err(lua_err)?)
        .map_err(lua_err)?;
    g.raw_set("ARGV", strings(args).map_err(lua_err)?)
        .map_err(lua_err)?;
    let limit = ctx.server.config.read().int("busy-reply-threshold").max(0) as u64;
    // The script's value is written in the client's protocol (a nil is
    // RESP3's null to a RESP3 client).
    let protocol = ctx.out.proto;
    let cell = RefCell::new(&mut *ctx);
    let redis: Table = g.raw_get("redis").map_err(lua_err)?;
    let outcome = lua.scope(|scope| {
        // Functions, not Lua wrappers: a script's `return redis.call(...)`
        // is then no tail call, and an error knows the script's line.
        let call = scope.create_function(|lua, call: MultiValue| {
            let mut ctx = cell.borrow_mut();
            redis_call(lua, &mut ctx, call, read_only)
                .map_err(|e| mlua::Error::external(CallError(e.to_string())))
        })?;
        let pcall = scope.create_function(|lua, call: MultiValue| {
            let mut ctx = cell.borrow_mut();
            match redis_call(lua, &mut ctx, call, read_only) {
                Ok(v) => Ok(v),
                Err(e) => Ok(Value::Table(error_table(lua, &e)?)),
            }
        })?;
        redis.raw_set("call", call)?;
        redis.raw_set("pcall", pcall)?;
        // Every other command waits for a script: one that runs past
        // busy-reply-threshold is stopped rather than left to hold the
        // node for ever (Redis answers BUSY meanwhile and waits for
        // SCRIPT KILL).
        let started = std::time::Instant::now();
        lua.set_hook(
            mlua::HookTriggers::new().every_nth_instruction(100_000),
            move |_, _| {
                if limit > 0 && started.elapsed() > std::time::Duration::from_millis(limit) {
                    return Err(mlua::Error::external(CallError(format!(
                        "ERR Script stopped: it ran past busy-reply-threshold ({limit} ms)"
                    ))));
                }
                Ok(mlua::VmState::Continue)
            },
        )?;
        let r = vm.xpcall.call::<(bool, Value)>((f, vm.handler.clone()));
        lua.remove_hook();
        let r = r?;
        redis.raw_set("call", Value::Nil)?;
        redis.raw_set("pcall", Value::Nil)?;
        // The reply is written while the values still live.
        let mut out = ReplyBuf::scratch(protocol);
        let failed = match &r {
            (true, v) => {
                to_reply(&mut out, v);
                None
            }
            (false, Value::Table(t)) => {
                let e: String = t.raw_get::<Option<String>>("err")?.unwrap_or_default();
                let line: i64 = t.raw_get::<Option<i64>>("line")?.unwrap_or(0);
                Some(format!("{e} script: {sha}, on @user_script:{line}."))
            }
            (false, other) => Some(format!("ERR {other:?} script: {sha}")),
        };
        Ok((out.buf.to_vec(), failed))
    });
    let (reply, failed) = outcome.map_err(lua_err)?;
    let _ = g.raw_set("KEYS", Value::Nil);
    let _ = g.raw_set("ARGV", Value::Nil);
    if let Some(e) = failed {
        return Err(CommandError::err_code(
            e.trim_start_matches('-').to_string(),
        ));
    }
    ctx.out.buf.extend_from_slice(&reply);
    Ok(())
}

/// The `{err = ...}` table of a refused call.
fn error_table(lua: &Lua, e: &CommandError) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("err", e.to_string())?;
    Ok(t)
}

/// redis.call's work: the command resolved and run as a script may run
/// it, its reply converted to a Lua value.
fn redis_call(
    lua: &Lua,
    ctx: &mut Ctx,
    call: MultiValue,
    read_only: bool,
) -> Result<Value, CommandError> {
    let mut argv: Vec<Bytes> = Vec::with_capacity(call.len());
    for v in call {
        match v {
            Value::String(s) => argv.push(Bytes::copy_from_slice(&s.as_bytes())),
            Value::Integer(n) => argv.push(Bytes::from(n.to_string())),
            // As Redis passes a Lua number to a command: `%.17g`.
            Value::Number(n) => argv.push(Bytes::from(format_double(n))),
            _ => {
                return Err(CommandError::err(
                    "Lua redis lib command arguments must be strings or integers",
                ))
            }
        }
    }
    if argv.is_empty() {
        return Err(CommandError::err(
            "Please specify at least one argument for this redis lib call",
        ));
    }
    if TABLE.index(&argv[0]).is_none() {
        return Err(CommandError::err(
            "Unknown Redis command called from script",
        ));
    }
    let (_, spec) = TABLE.resolve(&argv).map_err(|e| match e {
        CommandError::Arity(_) => {
            CommandError::err("Wrong number of args calling Redis command from script")
        }
        // A container's unknown subcommand is an unknown command to Redis.
        CommandError::UnknownSubcommand { .. } => {
            CommandError::err("Unknown Redis command called from script")
        }
        other => other,
    })?;
    if spec.has(NOSCRIPT) {
        return Err(CommandError::err(
            "This Redis command is not allowed from script",
        ));
    }
    if spec.is_write() {
        if read_only {
            return Err(CommandError::err(
                "Write commands are not allowed from read-only scripts.",
            ));
        }
        if ctx.server.replication.is_replica() && !ctx.client.from_primary {
            return Err(CommandError::err_code(
                "READONLY You can't write against a read only replica.",
            ));
        }
    }
    // Over `maxmemory` with nothing left to evict, a command that may
    // grow memory is refused inside a script too.
    if spec.has(DENYOOM) && ctx.server.tun.maxmemory.load(Relaxed) > 0 {
        ctx.make_room()?;
    }
    let scratch = ReplyBuf::scratch(Protocol::Resp2);
    let saved = std::mem::replace(&mut *ctx.out, scratch);
    let _ = super::run(ctx, spec, &argv);
    let scratch = std::mem::replace(&mut *ctx.out, saved);
    // Blocking and connection actions have no meaning inside a script.
    ctx.action = None;
    let reply = match redis_protocol::resp2::decode::decode(&scratch.buf) {
        Ok(Some((frame, _))) => frame,
        _ => {
            return Err(CommandError::err(
                "Unexpected reply from a command in a script",
            ))
        }
    };
    match reply {
        Frame::Error(e) => Err(CommandError::err_code(e)),
        r => to_lua(lua, r).map_err(|e| CommandError::err(format!("Lua: {e}"))),
    }
}

/// Redis's conversion of a reply into a Lua value (RESP2).
fn to_lua(lua: &Lua, r: Frame) -> mlua::Result<Value> {
    Ok(match r {
        Frame::Integer(n) => Value::Number(n as f64),
        Frame::BulkString(b) => Value::String(lua.create_string(&b)?),
        Frame::Null => Value::Boolean(false),
        Frame::SimpleString(s) => {
            let t = lua.create_table()?;
            t.raw_set("ok", lua.create_string(&s)?)?;
            Value::Table(t)
        }
        Frame::Error(e) => {
            let t = lua.create_table()?;
            t.raw_set("err", e)?;
            Value::Table(t)
        }
        Frame::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.into_iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
    })
}

/// How deep a script's value may nest: deeper ones are refused rather
/// than run the server's own stack out.
const MAX_DEPTH: usize = 1000;

/// Redis's conversion of a script's value into a reply; `out` holds only
/// this reply, which gives way to an error if the value nests too deep.
fn to_reply(out: &mut ReplyBuf, v: &Value) {
    if to_reply_at(out, v, 0).is_err() {
        out.buf.clear();
        out.error("ERR reached lua stack limit");
    }
}

/// A double as C's cast to `long long` gives it on x86, as Redis replies a
/// Lua number: truncated, and out of range (or NaN) the lowest value.
fn c_long_long(n: f64) -> i64 {
    if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&n) {
        i64::MIN
    } else {
        n as i64
    }
}

/// Writes `v` at nesting `depth`; `Err` past [`MAX_DEPTH`].
fn to_reply_at(out: &mut ReplyBuf, v: &Value, depth: usize) -> Result<(), ()> {
    match v {
        Value::String(s) => out.bulk(&s.as_bytes()),
        Value::Integer(n) => out.int(*n),
        Value::Number(n) => out.int(c_long_long(*n)),
        Value::Boolean(true) => out.int(1),
        Value::Table(t) => {
            if let Ok(Some(e)) = t.raw_get::<Option<mlua::String>>("err") {
                out.error(&e.to_string_lossy());
                return Ok(());
            }
            if let Ok(Some(s)) = t.raw_get::<Option<mlua::String>>("ok") {
                out.simple(&s.to_string_lossy());
                return Ok(());
            }
            if depth >= MAX_DEPTH {
                return Err(());
            }
            // The array part, up to the first nil.
            let items: Vec<Value> = (1..)
                .map_while(|i| match t.raw_get::<Value>(i) {
                    Ok(Value::Nil) | Err(_) => None,
                    Ok(v) => Some(v),
                })
                .collect();
            out.array(items.len());
            for item in &items {
                to_reply_at(out, item, depth + 1)?;
            }
        }
        _ => out.null(),
    }
    Ok(())
}

fn script_load(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    with_vm(|vm| compile(&vm.lua, &argv[2]).map(|_| ()))?;
    let sha = sha1_hex(&argv[2]);
    cache(&sha, &argv[2]);
    ctx.out.bulk(sha.as_bytes());
    Ok(())
}

fn script_exists(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let cache = CACHE.lock();
    ctx.out.array(argv.len() - 2);
    for a in &argv[2..] {
        let sha = String::from_utf8_lossy(a).to_ascii_lowercase();
        ctx.out.int(cache.contains_key(&sha) as i64);
    }
    Ok(())
}

fn script_flush(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    match argv.get(2) {
        None => {}
        Some(a)
            if argv.len() == 3
                && (a.eq_ignore_ascii_case(b"async") || a.eq_ignore_ascii_case(b"sync")) => {}
        Some(_) => {
            return Err(CommandError::err(
                "SCRIPT FLUSH only support SYNC|ASYNC option",
            ))
        }
    }
    CACHE.lock().clear();
    GENERATION.fetch_add(1, Relaxed);
    ctx.out.ok();
    Ok(())
}

fn script_kill(_ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    Err(CommandError::err_code(
        "NOTBUSY No scripts in execution right now.",
    ))
}

fn script_debug(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mode = &argv[2];
    if mode.eq_ignore_ascii_case(b"no") {
        ctx.out.ok();
        return Ok(());
    }
    if mode.eq_ignore_ascii_case(b"yes") || mode.eq_ignore_ascii_case(b"sync") {
        return Err(CommandError::err(
            "SCRIPT DEBUG is not supported by this server",
        ));
    }
    Err(CommandError::err("Use SCRIPT DEBUG YES/SYNC/NO"))
}

fn script_help(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    super::keys::help(
        ctx,
        "SCRIPT",
        &[
            "DEBUG (YES|SYNC|NO)",
            "    Set the debug mode for subsequent scripts executed.",
            "EXISTS <sha1> [<sha1> ...]",
            "    Return information about the existence of the scripts in the script cache.",
            "FLUSH [ASYNC|SYNC]",
            "    Flush the Lua scripts cache. Very dangerous on replicas.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the scripts cache.",
            "    * SYNC: Synchronously flush the scripts cache.",
            "KILL",
            "    Kill the currently executing Lua script.",
            "LOAD <script>",
            "    Load a script into the scripts cache without executing it.",
        ],
    );
    Ok(())
}

/// If every key of `t` is a positive integer: the largest and how many
/// (the libraries' test for an array).
fn index_keys(t: &Table) -> mlua::Result<Option<(usize, usize)>> {
    let (mut max, mut count) = (0usize, 0usize);
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, _) = pair?;
        let index = match k {
            Value::Integer(i) if i >= 1 => i as usize,
            Value::Number(n) if n >= 1.0 && n.fract() == 0.0 => n as usize,
            _ => return Ok(None),
        };
        max = max.max(index);
        count += 1;
    }
    Ok(Some((max, count)))
}

/// lua-cjson's `encode` and `decode` as Redis bundles them: numbers as
/// `%.14g`, `/` escaped, an empty table as an object, arrays where the keys
/// are 1..n (sparse ones refused past lua-cjson's ratio), JSON null as
/// `cjson.null`.
mod cjson {
    use mlua::{LightUserData, Lua, Table, Value};

    const MAX_DEPTH: usize = 1000;

    pub fn library(lua: &Lua) -> mlua::Result<Table> {
        let t = lua.create_table()?;
        t.raw_set(
            "encode",
            lua.create_function(|_, v: Value| {
                let mut out = String::new();
                encode(&v, &mut out, 0)?;
                Ok(out)
            })?,
        )?;
        t.raw_set(
            "decode",
            lua.create_function(|lua, s: mlua::String| {
                let v: serde_json::Value = serde_json::from_slice(&s.as_bytes())
                    .map_err(|e| mlua::Error::RuntimeError(format!("cjson.decode: {e}")))?;
                decode(lua, &v)
            })?,
        )?;
        t.raw_set("null", null())?;
        Ok(t)
    }

    fn null() -> Value {
        Value::LightUserData(LightUserData(std::ptr::null_mut()))
    }

    fn fail(what: &str) -> mlua::Error {
        mlua::Error::RuntimeError(format!("Cannot serialise {what}"))
    }

    fn number(n: f64, out: &mut String) -> mlua::Result<()> {
        if !n.is_finite() {
            return Err(fail("number: must not be NaN or Inf"));
        }
        let mut buf = [0u8; 64];
        // SAFETY: `buf` holds any %.14g output and snprintf writes at most
        // `buf.len()` bytes, NUL included.
        let len =
            unsafe { libc::snprintf(buf.as_mut_ptr().cast(), buf.len(), c"%.14g".as_ptr(), n) };
        out.push_str(&String::from_utf8_lossy(
            &buf[..(len.max(0) as usize).min(buf.len() - 1)],
        ));
        Ok(())
    }

    fn string(s: &[u8], out: &mut String) {
        out.push('"');
        for &b in s {
            match b {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                b'/' => out.push_str("\\/"),
                b'\n' => out.push_str("\\n"),
                b'\r' => out.push_str("\\r"),
                b'\t' => out.push_str("\\t"),
                0x08 => out.push_str("\\b"),
                0x0c => out.push_str("\\f"),
                0..=0x1f | 0x7f => out.push_str(&format!("\\u{b:04x}")),
                // Bytes pass as they are, UTF-8 or not, as lua-cjson passes them.
                _ => out.push(char::from(b)),
            }
        }
        out.push('"');
    }

    /// The length of a table that is an array (keys 1..n, holes allowed
    /// up to lua-cjson's sparse ratio), if it is one.
    fn array_len(t: &Table) -> mlua::Result<Option<usize>> {
        let Some((max, items)) = super::index_keys(t)? else {
            return Ok(None);
        };
        if max > items * 2 && max > 10 {
            return Err(fail("table: excessively sparse array"));
        }
        Ok(Some(max))
    }

    fn encode(v: &Value, out: &mut String, depth: usize) -> mlua::Result<()> {
        match v {
            Value::Nil => out.push_str("null"),
            Value::LightUserData(p) if p.0.is_null() => out.push_str("null"),
            Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Integer(n) => number(*n as f64, out)?,
            Value::Number(n) => number(*n, out)?,
            Value::String(s) => string(&s.as_bytes(), out),
            Value::Table(t) => {
                if depth >= MAX_DEPTH {
                    return Err(mlua::Error::RuntimeError(format!(
                        "Cannot serialise, excessive nesting ({})",
                        depth + 1
                    )));
                }
                match array_len(t)? {
                    Some(n) if n > 0 => {
                        out.push('[');
                        for i in 1..=n {
                            if i > 1 {
                                out.push(',');
                            }
                            encode(&t.raw_get::<Value>(i)?, out, depth + 1)?;
                        }
                        out.push(']');
                    }
                    _ => {
                        out.push('{');
                        let mut first = true;
                        for pair in t.clone().pairs::<Value, Value>() {
                            let (k, v) = pair?;
                            if !first {
                                out.push(',');
                            }
                            first = false;
                            match &k {
                                Value::String(s) => string(&s.as_bytes(), out),
                                Value::Integer(_) | Value::Number(_) => {
                                    let mut n = String::new();
                                    encode(&k, &mut n, depth + 1)?;
                                    string(n.as_bytes(), out);
                                }
                                _ => {
                                    return Err(fail("table key type: must be a string or number"))
                                }
                            }
                            out.push(':');
                            encode(&v, out, depth + 1)?;
                        }
                        out.push('}');
                    }
                }
            }
            other => return Err(fail(&format!("{}: type not supported", other.type_name()))),
        }
        Ok(())
    }

    fn decode(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
        use serde_json::Value as J;
        Ok(match v {
            J::Null => null(),
            J::Bool(b) => Value::Boolean(*b),
            J::Number(n) => Value::Number(n.as_f64().unwrap_or(0.0)),
            J::String(s) => Value::String(lua.create_string(s)?),
            J::Array(items) => {
                let t = lua.create_table_with_capacity(items.len(), 0)?;
                for (i, item) in items.iter().enumerate() {
                    t.raw_set(i + 1, decode(lua, item)?)?;
                }
                Value::Table(t)
            }
            J::Object(map) => {
                let t = lua.create_table_with_capacity(0, map.len())?;
                for (k, item) in map {
                    t.raw_set(lua.create_string(k)?, decode(lua, item)?)?;
                }
                Value::Table(t)
            }
        })
    }
}

/// lua-cmsgpack's `pack` and `unpack` as Redis bundles them: integral
/// numbers in the smallest integer form, others as float32 when that holds
/// them exactly, else float64; tables with keys 1..n as arrays (an empty
/// one too), others as maps; nesting past 16 levels packed as nil.
mod cmsgpack {
    use mlua::{Lua, MultiValue, Table, Value};

    const MAX_NESTING: usize = 16;
    /// How deep a message unpacked may nest (serde_json's own limit for
    /// cjson): each level is a frame of the thread's stack.
    const MAX_UNPACK_DEPTH: usize = 128;

    pub fn library(lua: &Lua) -> mlua::Result<Table> {
        let t = lua.create_table()?;
        t.raw_set(
            "pack",
            lua.create_function(|lua, args: MultiValue| {
                if args.is_empty() {
                    return Err(mlua::Error::RuntimeError(
                        "MessagePack pack needs input.".into(),
                    ));
                }
                let mut out = Vec::new();
                for v in args.iter() {
                    pack(v, &mut out, 0)?;
                }
                lua.create_string(&out)
            })?,
        )?;
        t.raw_set(
            "unpack",
            lua.create_function(|lua, s: mlua::String| {
                let bytes = s.as_bytes();
                let mut at = 0;
                let mut values = Vec::new();
                while at < bytes.len() {
                    values.push(unpack(lua, &bytes, &mut at, 0)?);
                }
                Ok(MultiValue::from_iter(values))
            })?,
        )?;
        Ok(t)
    }

    fn io(e: impl std::fmt::Display) -> mlua::Error {
        mlua::Error::RuntimeError(format!("cmsgpack: {e}"))
    }

    fn number(n: f64, out: &mut Vec<u8>) -> mlua::Result<()> {
        use rmp::encode;
        if n.fract() == 0.0 && n >= i64::MIN as f64 && n < 9.223_372_036_854_776e18 {
            if n >= 0.0 {
                encode::write_uint(out, n as u64).map_err(io)?;
            } else {
                encode::write_sint(out, n as i64).map_err(io)?;
            }
        } else if f64::from(n as f32) == n || n.is_nan() {
            encode::write_f32(out, n as f32).map_err(io)?;
        } else {
            encode::write_f64(out, n).map_err(io)?;
        }
        Ok(())
    }

    /// The length of a table whose keys are exactly 1..n.
    fn array_len(t: &Table) -> mlua::Result<Option<usize>> {
        Ok(super::index_keys(t)?.and_then(|(max, count)| (max == count).then_some(count)))
    }

    fn pack(v: &Value, out: &mut Vec<u8>, depth: usize) -> mlua::Result<()> {
        use rmp::encode;
        match v {
            Value::Boolean(b) => encode::write_bool(out, *b).map_err(io)?,
            Value::Integer(n) => number(*n as f64, out)?,
            Value::Number(n) => number(*n, out)?,
            Value::String(s) => {
                let b = s.as_bytes();
                encode::write_str_len(out, b.len() as u32).map_err(io)?;
                out.extend_from_slice(&b);
            }
            Value::Table(t) if depth < MAX_NESTING => match array_len(t)? {
                Some(n) => {
                    encode::write_array_len(out, n as u32).map_err(io)?;
                    for i in 1..=n {
                        pack(&t.raw_get::<Value>(i)?, out, depth + 1)?;
                    }
                }
                None => {
                    let pairs: Vec<(Value, Value)> = t
                        .clone()
                        .pairs::<Value, Value>()
                        .collect::<mlua::Result<_>>()?;
                    encode::write_map_len(out, pairs.len() as u32).map_err(io)?;
                    for (k, v) in &pairs {
                        pack(k, out, depth + 1)?;
                        pack(v, out, depth + 1)?;
                    }
                }
            },
            _ => encode::write_nil(out).map_err(io)?,
        }
        Ok(())
    }

    fn take<'a>(b: &'a [u8], at: &mut usize, n: usize) -> mlua::Result<&'a [u8]> {
        let s = b
            .get(*at..*at + n)
            .ok_or_else(|| io("Missing bytes in input."))?;
        *at += n;
        Ok(s)
    }

    fn be(b: &[u8]) -> u64 {
        b.iter().fold(0, |n, &x| (n << 8) | u64::from(x))
    }

    fn unpack(lua: &Lua, b: &[u8], at: &mut usize, depth: usize) -> mlua::Result<Value> {
        use rmp::Marker as M;
        if depth > MAX_UNPACK_DEPTH {
            return Err(io("input nested too deeply"));
        }
        let marker = M::from_u8(take(b, at, 1)?[0]);
        let len =
            |at: &mut usize, n: usize| -> mlua::Result<usize> { Ok(be(take(b, at, n)?) as usize) };
        let num = |x: f64| Ok(Value::Number(x));
        let string = |at: &mut usize, n: usize| -> mlua::Result<Value> {
            Ok(Value::String(lua.create_string(take(b, at, n)?)?))
        };
        let array = |at: &mut usize, n: usize| -> mlua::Result<Value> {
            let t = lua.create_table_with_capacity(n.min(1 << 16), 0)?;
            for i in 1..=n {
                t.raw_set(i, unpack(lua, b, at, depth + 1)?)?;
            }
            Ok(Value::Table(t))
        };
        let map = |at: &mut usize, n: usize| -> mlua::Result<Value> {
            let t = lua.create_table()?;
            for _ in 0..n {
                let k = unpack(lua, b, at, depth + 1)?;
                let v = unpack(lua, b, at, depth + 1)?;
                if !matches!(k, Value::Nil) {
                    t.raw_set(k, v)?;
                }
            }
            Ok(Value::Table(t))
        };
        match marker {
            M::FixPos(n) => num(f64::from(n)),
            M::FixNeg(n) => num(f64::from(n)),
            M::Null => Ok(Value::Nil),
            M::True => Ok(Value::Boolean(true)),
            M::False => Ok(Value::Boolean(false)),
            M::U8 | M::U16 | M::U32 | M::U64 => {
                let n = match marker {
                    M::U8 => 1,
                    M::U16 => 2,
                    M::U32 => 4,
                    _ => 8,
                };
                num(be(take(b, at, n)?) as f64)
            }
            M::I8 => num(f64::from(take(b, at, 1)?[0] as i8)),
            M::I16 => num(f64::from(be(take(b, at, 2)?) as u16 as i16)),
            M::I32 => num(f64::from(be(take(b, at, 4)?) as u32 as i32)),
            M::I64 => num(be(take(b, at, 8)?) as i64 as f64),
            M::F32 => num(f64::from(f32::from_bits(be(take(b, at, 4)?) as u32))),
            M::F64 => num(f64::from_bits(be(take(b, at, 8)?))),
            M::FixStr(n) => string(at, usize::from(n)),
            M::Str8 | M::Bin8 => {
                let n = len(at, 1)?;
                string(at, n)
            }
            M::Str16 | M::Bin16 => {
                let n = len(at, 2)?;
                string(at, n)
            }
            M::Str32 | M::Bin32 => {
                let n = len(at, 4)?;
                string(at, n)
            }
            M::FixArray(n) => array(at, usize::from(n)),
            M::Array16 => {
                let n = len(at, 2)?;
                array(at, n)
            }
            M::Array32 => {
                let n = len(at, 4)?;
                array(at, n)
            }
            M::FixMap(n) => map(at, usize::from(n)),
            M::Map16 => {
                let n = len(at, 2)?;
                map(at, n)
            }
            M::Map32 => {
                let n = len(at, 4)?;
                map(at, n)
            }
            _ => Err(io("Bad data format in input.")),
        }
    }
}

/// LuaBitOp's `bit` as Redis bundles it: operations on numbers taken as
/// 32-bit integers (rounded, then modulo 2^32), results signed.
mod bit {
    use mlua::{Lua, Table, Variadic};

    fn tobit(n: f64) -> i32 {
        n.round_ties_even() as i64 as u32 as i32
    }

    pub fn library(lua: &Lua) -> mlua::Result<Table> {
        let t = lua.create_table()?;
        let unary =
            |f: fn(i32) -> i32| lua.create_function(move |_, n: f64| Ok(f64::from(f(tobit(n)))));
        t.raw_set("tobit", unary(|x| x)?)?;
        t.raw_set("bnot", unary(|x| !x)?)?;
        t.raw_set("bswap", unary(i32::swap_bytes)?)?;
        let fold = |f: fn(i32, i32) -> i32| {
            lua.create_function(move |_, (first, rest): (f64, Variadic<f64>)| {
                Ok(f64::from(
                    rest.iter().fold(tobit(first), |acc, &n| f(acc, tobit(n))),
                ))
            })
        };
        t.raw_set("band", fold(|a, b| a & b)?)?;
        t.raw_set("bor", fold(|a, b| a | b)?)?;
        t.raw_set("bxor", fold(|a, b| a ^ b)?)?;
        let shift = |f: fn(i32, u32) -> i32| {
            lua.create_function(move |_, (x, n): (f64, f64)| {
                Ok(f64::from(f(tobit(x), tobit(n) as u32 & 31)))
            })
        };
        t.raw_set("lshift", shift(|x, n| ((x as u32) << n) as i32)?)?;
        t.raw_set("rshift", shift(|x, n| ((x as u32) >> n) as i32)?)?;
        t.raw_set("arshift", shift(|x, n| x >> n)?)?;
        t.raw_set("rol", shift(|x, n| (x as u32).rotate_left(n) as i32)?)?;
        t.raw_set("ror", shift(|x, n| (x as u32).rotate_right(n) as i32)?)?;
        t.raw_set(
            "tohex",
            lua.create_function(|_, (x, n): (f64, Option<f64>)| {
                let n = n.map_or(8, tobit);
                let upper = n < 0;
                let digits = (n.unsigned_abs() as usize).min(8);
                let v = tobit(x) as u32;
                let hex = if upper {
                    format!("{v:08X}")
                } else {
                    format!("{v:08x}")
                };
                Ok(hex[8 - digits..].to_string())
            })?,
        )?;
        Ok(t)
    }
}
