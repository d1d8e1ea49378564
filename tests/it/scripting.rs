//! Lua scripting: replies and error texts compared with redis-server's,
//! the redis crate's own script helper (EVALSHA, then EVAL on NOSCRIPT),
//! atomicity against another client, and a script's effects in the log and
//! on a replica.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::support::{eventually, same_as_redis, Frame, Raw, TestNode};
use crate::{bulk, digest, info_field, int};

#[test]
fn scripts_answer_as_redis() {
    same_as_redis(&[
        &["EVAL", "return redis.call('incr', KEYS[1])", "1", "counter"],
        &["SET", "s", "text"],
        &["EVAL", "return redis.call('incr', KEYS[1])", "1", "s"],
        &["EVAL", "return redis.pcall('incr', KEYS[1])", "1", "s"],
        &[
            "EVAL",
            "local t = redis.pcall('incr', 's'); return t['err']",
            "0",
        ],
        &["EVAL", "return missing", "0"],
        &["EVAL", "x = 1", "0"],
        &["EVAL", "return redis.call('nosuch')", "0"],
        &["EVAL", "return 1 +", "0"],
        &[
            "EVAL",
            "return {1, 'a', {ok = 'fine'}, {err = 'bad'}, false, true, 3.9}",
            "0",
        ],
        &["EVAL", "return {1, 2, nil, 4}", "0"],
        &["EVAL", "return 1", "-1"],
        &["EVAL", "return 1", "3", "a"],
        &["EVAL", "return 1", "x"],
        &["EVAL", "redis.call('set', 'x')", "0"],
        &["EVAL_RO", "return redis.call('set', 'a', 'b')", "1", "a"],
        &["EVAL_RO", "return redis.call('get', KEYS[1])", "1", "s"],
        &["EVAL", "return redis.call('eval', 'return 1', '0')", "0"],
        // What pcall and xpcall catch of a refused redis.call.
        &["EVAL", "local ok, e = pcall(redis.call, 'incr', 's') error(e)", "0"],
        &["EVAL", "local ok, e = pcall(redis.call, 'nosuch') return {ok and 1 or 0, e}", "0"],
        &[
            "EVAL",
            "return {xpcall(function() return redis.call('incr', 's') end, function(e) return type(e) .. ':' .. e.err end)}",
            "0",
        ],
        &["EVAL", "local ok, e = pcall(function() redis.call('incr', 's') end) return e", "0"],
        &["EVAL", "local ok, e = pcall(error, {err = 'mine'}) return e", "0"],
        &["EVAL", "local ok, e = pcall(error, 'plain') return e", "0"],
        &["EVAL", "local ok, e = pcall(redis.sha1hex) return e", "0"],
        &["EVAL", "return redis.sha1hex('a', 'b')", "0"],
        // The bundled libraries' argument errors.
        &["EVAL", "return bit.band(1, 'x', {})", "0"],
        &["EVAL", "return bit.tohex(255, nil)", "0"],
        &["EVAL", "return {bit.tohex(255), bit.tohex(255, -4), bit.tobit('12')}", "0"],
        &["EVAL", "return bit.lshift(1)", "0"],
        &["EVAL", "return cmsgpack.unpack()", "0"],
        &["EVAL", "return cjson.encode()", "0"],
        &["EVAL", "return cjson.decode({})", "0"],
        &["EVAL", "local f = bit.band return f('x')", "0"],
        &["EVAL", "return {pcall(bit.band, 'x')}", "0"],
        // An error table's text is replied as it is.
        &["EVAL", "return {err = '-X bad'}", "0"],
        &["EVAL", "error({err = '-X bad'})", "0"],
        &["EVAL", "return redis.error_reply('-X bad')", "0"],
        &["EVAL", "return {redis.sha1hex(12), redis.sha1hex({}), redis.sha1hex(nil)}", "0"],
        &[
            "EVAL",
            "local co = coroutine.create(function() redis.call('incr', 's') end) local ok, e = coroutine.resume(co) return {type(e), e.err}",
            "0",
        ],
        &["EVAL", "return {err = 'My Error'}", "0"],
        &["EVAL", "return redis.error_reply('X')", "0"],
        &["EVAL", "return redis.error_reply('WRONGTYPE x')", "0"],
        &["EVAL", "return redis.error_reply(5)", "0"],
        &["EVAL", "return redis.status_reply('PONG')", "0"],
        &["EVAL", "error('boom')", "0"],
        &["EVAL", "error({err = 'CUSTOM boom'})", "0"],
        &[
            "EVAL",
            "\nlocal a = 1\nreturn redis.call('lpush', 's', a)",
            "0",
        ],
        &["EVAL", "return redis.call('set', 'k', {})", "0"],
        &["EVAL", "return redis.call('echo', 7)", "0"],
        &["EVAL", "return redis.call('blpop', 'nolist', 0)", "0"],
        &["EVAL", "return redis.call('xread', 'BLOCK', '0', 'STREAMS', 's', '$')", "0"],
        &["EVAL", "return redis.call('xreadgroup', 'GROUP', 'g', 'c', 'BLOCK', 'x', 'STREAMS', 's', '>')", "0"],
        &["EVAL", "return redis.call('xread', 'COUNT', '1', 'STREAMS', 'nostream', '0')", "0"],
        &[
            "EVAL",
            "return redis.call('hset', KEYS[1], ARGV[1], ARGV[2])",
            "1",
            "h",
            "f",
            "v",
        ],
        &["EVAL", "return redis.call('hgetall', KEYS[1])", "1", "h"],
        &["EVAL", "return redis.call('get', 'nokey')", "0"],
        &["EVAL", "return redis.sha1hex('')", "0"],
        &["EVAL", "return 3.99", "0"],
        &[
            "EVAL",
            "return table.concat({'a', 'b'}, '-') .. #ARGV",
            "0",
            "x",
            "y",
        ],
        &["EVAL", r#"return cjson.encode({1, 2, 'a/b', {x = 1}, {}, 'q"\\\t\1'})"#, "0"],
        &["EVAL", "return cjson.encode({a = 1.5, n = 3.14159265358979, big = 1e20, none = cjson.null})", "0"],
        &["EVAL", "return cjson.encode({[1] = 1, [3] = 3})", "0"],
        &["EVAL", "return cjson.encode({[1] = 1, [30] = 3})", "0"],
        &["EVAL", "local t = cjson.decode('{\"a\":[1,2,{\"b\":null}],\"c\":true}') return {t.a[1], tostring(t.c), type(t.a[3].b), cjson.encode(t.a)}", "0"],
        &["EVAL", "return cmsgpack.pack(1, -1, 300, -200, 70000, 5000000000, -40000, 1.5, 0.1, 1e20, true, nil)", "0"],
        &["EVAL", "return cmsgpack.pack('abc', string.rep('x', 40), string.rep('y', 300), {}, {1, 2, 3}, {1, nil, 3}, {a = {b = {1, 2}}, c = 'x'})", "0"],
        &["EVAL", "local a, b, c = cmsgpack.unpack(cmsgpack.pack({1, {x = 'y'}, 2.5}, 'str', -7)) return {a[1], a[2].x, tostring(a[3]), b, c}", "0"],
        &["EVAL", "return {bit.tobit(0xffffffff), bit.tobit(2^32 + 5), bit.bnot(0), bit.band(0xff, 0x0f, 0x3), bit.bor(1, 2, 4), bit.bxor(5, 3), bit.lshift(1, 31), bit.rshift(-1, 28), bit.arshift(-256, 4), bit.rol(0x12345678, 8), bit.ror(0x12345678, 8), bit.bswap(0x12345678), bit.tohex(255), bit.tohex(-1, -4), bit.tobit(2.5), bit.tobit(-3.5), bit.lshift(1, 33)}", "0"],
        &["EVAL", "return {struct.pack('>I2', 258), struct.pack('<i', -2), struct.pack('hHlLT', -1, 65535, -5, 5, 7), struct.pack('>d', 1.5), struct.pack('<f', 1.5), struct.pack('s', 'abc'), struct.pack('c3', 'abcdef'), struct.pack('!i b d', 1, 2, 3), struct.pack('i16', -1), struct.pack('i', 1e30)}", "0"],
        &["EVAL", "return {struct.unpack('>i', 'abcd')}", "0"],
        &["EVAL", "return {struct.unpack('bc0s', '\\3abcdef\\0x')}", "0"],
        &["EVAL", "return {struct.unpack('hHlLT', struct.pack('hHlLT', -1, 65535, -5, 5, 7))}", "0"],
        &["EVAL", "return {struct.unpack('!4 b i', struct.pack('!4 b i', 1, 2), 1)}", "0"],
        &["EVAL", "return {struct.size('>iI2'), struct.size('!8bd'), struct.size('xc3')}", "0"],
        &["EVAL", "return struct.pack('i100', 1)", "0"],
        &["EVAL", "return struct.pack('q', 1)", "0"],
        &["EVAL", "return struct.pack('i')", "0"],
        &["EVAL", "return struct.pack('c5', 'ab')", "0"],
        &["EVAL", "return struct.pack('!3i', 1)", "0"],
        &["EVAL", "return {struct.unpack('>i', 'ab')}", "0"],
        &["EVAL", "return {struct.unpack('i', 'abcd', 0)}", "0"],
        &["EVAL", "return {struct.unpack('c0', 'abc')}", "0"],
        &["EVAL", "return struct.size('s')", "0"],
        &["SCRIPT", "LOAD", "return 'hi'"],
        &["EVALSHA", "2f31ba2bb6d6a0f42cc159d2e2dad55440778de3", "0"],
        &["EVALSHA", "2F31BA2BB6D6A0F42CC159D2E2DAD55440778DE3", "0"],
        &[
            "SCRIPT",
            "EXISTS",
            "2f31ba2bb6d6a0f42cc159d2e2dad55440778de3",
            "abc",
        ],
        // What failed to compile, or was refused its key count, is not kept.
        &["EVAL", "return +", "0"],
        &["EVAL", "return 'counted'", "-1"],
        &["SCRIPT", "EXISTS", "1fd5091818ea327c4e55ed84125fdc6179ae44cf", "ae7ce082e368ee50eb5df57871809a87f8c353f2"],
        &["SCRIPT", "LOAD", "return +"],
        &["SCRIPT", "FLUSH"],
        &["SCRIPT", "FLUSH", "LATER"],
        &["EVALSHA", "2f31ba2bb6d6a0f42cc159d2e2dad55440778de3", "0"],
        &["SCRIPT", "KILL"],
        &["EVAL", "return 1e300", "0"],
        &["EVAL", "return {-1e300, 0/0, 2^63, -2^63}", "0"],
        &["EVAL", "return redis.call('object', 'nosuch', 'k')", "0"],
        &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
        &["CONFIG", "SET", "maxmemory", "1"],
        &["EVAL", "return redis.call('set', 'k', 'v')", "0"],
        &["EVAL", "return redis.pcall('set', 'k', 'v')", "0"],
        &["EVAL", "return redis.call('get', 'counter')", "0"],
        &["CONFIG", "SET", "maxmemory", "0"],
        &["MULTI"],
        &["EVAL", "return redis.call('incr', 'counter')", "0"],
        &["EXEC"],
    ]);
}

/// The globals, the libraries and `redis` are read-only, as in Redis 7:
/// whatever a script tries, the next one finds them as they were (each
/// I/O thread keeps one Lua state for every script it runs).
#[test]
fn scripts_cannot_change_what_later_scripts_see() {
    let tampering: &[&str] = &[
        "string.rep = nil",
        "rawset(string, 'rep', nil)",
        "cjson.encode = nil",
        "redis.call = nil",
        "rawset(redis, 'call', function() return 1 end)",
        "getmetatable('').__index = nil",
        "getmetatable(redis).__index = nil",
        "setmetatable(_G, nil)",
        "rawset(_G, 'leftover', 1)",
        "KEYS = nil",
        "math.random = nil",
        "bit.band = nil",
        "coroutine.x = 1",
        // Globals that exist are read-only too, the globals table itself
        // included (these once stuck, for every later script).
        "redis = function() return 1 end",
        "_G = {}",
        "pcall = 1",
        "_G.redis = 1",
        "rawget = 1",
        "loadstring = nil",
    ];
    let mut script: Vec<[&str; 3]> = tampering.iter().map(|t| ["EVAL", *t, "0"]).collect();
    let intact = "return {type(string.rep), #string, type(cjson.encode), ('x'):rep(2), \
                  redis.call('ping')['ok'], type(getmetatable('')), type(getmetatable(redis)), \
                  type(rawget(_G, 'leftover')), type(KEYS), math.floor(2.5), bit.band(6, 3), \
                  rawget(_G, 'KEYS')[1], rawget(_G, 'nosuch') == nil, type(redis), \
                  type(pcall), type(_G), type(rawget), type(loadstring), rawget(_G, 'redis') == redis}";
    script.push(["EVAL", intact, "1"]);
    let mut cmds: Vec<Vec<&str>> = script.iter().map(|c| c.to_vec()).collect();
    cmds.last_mut().unwrap().push("k");
    let refs: Vec<&[&str]> = cmds.iter().map(Vec::as_slice).collect();
    same_as_redis(&refs);
}

/// What scripts see of Lua and its libraries, compared with redis-server:
/// bytecode does not load (Redis's Lua parses every chunk as text), a
/// SELECT holds inside its script only, SORT BY a constant orders a set
/// for a script, cmsgpack's partial unpacking and large maps, and
/// lua-cjson's settings, limits and decoding (its errors word for word,
/// what strtod takes as numbers).
#[test]
fn lua_libraries_and_script_rules_match_redis() {
    let scripts: &[&str] = &[
        "return {loadstring(string.dump(function() return 1 end))}",
        "local f, e = load(function() return nil end) return {type(f), e}",
        "return redis.call('select', '9')",
        "redis.call('select', '9') return redis.call('set', 'in9', 'x')",
        "return redis.call('sort', KEYS[1], 'by', 'nosort')",
        "local e = cmsgpack.pack('x', {1, 2}, 'y') return {cmsgpack.unpack_one(e)}",
        "local e = cmsgpack.pack('x', {1, 2}, 'y') return {cmsgpack.unpack_one(e, 2)}",
        "local e = cmsgpack.pack('x', {1, 2}, 'y') return {cmsgpack.unpack_limit(e, 5, 2)}",
        "local e = cmsgpack.pack('x', {1, 2}, 'y') return {cmsgpack.unpack_limit(e, 0)}",
        "return {cmsgpack.unpack_limit('abc', -1)}",
        "return {cmsgpack.unpack_one('abc', 9)}",
        "return cmsgpack.unpack('\\146')",
        "local a = {} for i = 1, 20000 do a[tostring(i)] = i end \
         local d = cmsgpack.unpack(cmsgpack.pack(a)) local n = 0 \
         for k in pairs(d) do n = n + 1 end return n",
        "return cjson.encode({[1] = 1, [20] = 2})",
        "return cjson.encode({[true] = 1})",
        "return cjson.encode(function() end)",
        "return {cjson.encode_number_precision(3), cjson.encode(1/3), cjson.encode_number_precision(14)}",
        "return {cjson.encode_number_precision(15)}",
        "return {cjson.encode_max_depth(1, 2)}",
        "return {cjson.encode_sparse_array()}",
        "return {cjson.encode_sparse_array('maybe')}",
        "return {cjson.encode_sparse_array(true), cjson.encode({[1] = 1, [20] = 2}), \
         cjson.encode_sparse_array(false)}",
        "return {cjson.encode_invalid_numbers('null'), cjson.encode({0/0, 1/0}), \
         cjson.encode_invalid_numbers(true), cjson.encode({0/0, 1/0, -1/0}), \
         cjson.encode_invalid_numbers(false)}",
        "return {cjson.encode_keep_buffer(false), cjson.encode_keep_buffer(), cjson.encode_keep_buffer('on')}",
        "return {cjson.decode_invalid_numbers(false), pcall(cjson.decode, 'nan')}",
        "return {cjson.decode_invalid_numbers(true), cjson.decode('0x10'), tostring(cjson.decode('-Infinity'))}",
        "return {cjson.decode_max_depth(1), pcall(cjson.decode, '{\"a\": {\"b\": [1]}}'), cjson.decode_max_depth(1000)}",
        "return cjson.decode('[1,2')",
        "return cjson.decode('{\"a\":1,}')",
        "return cjson.decode('')",
        "return cjson.decode('[1] x')",
        "return cjson.decode('\"a\\\\qb\"')",
        "return cjson.decode('\"\\\\ud83d\\\\ude00\"')",
        "return cjson.decode('tru')",
        "return cjson.decode('1\\0garbage')",
        "return cjson.decode(string.rep('[', 1100))",
        "local t = {} t.a = t return cjson.encode(t)",
        "local c = cjson.new() c.encode_number_precision(2) return {c.encode(1/3), cjson.encode(1/3), cjson._VERSION}",
        "return cjson.encode(cjson.decode('{\"a\":[1,2,{\"b\":null}]}'))",
        "return {unpack({1, 2, 3}, -1, 5)}",
        "return {unpack({1, 2, 3}, '2', 3.7)}",
        "local u = unpack return u(nil)",
        "return unpack({}, 'x')",
    ];
    let mut cmds: Vec<Vec<&str>> = vec![
        vec!["SADD", "letters", "c", "a", "b", "aa"],
        vec!["SET", "in0", "y"],
    ];
    for s in scripts {
        cmds.push(vec!["EVAL", s, "1", "letters"]);
    }
    // The caller is still in database 0.
    cmds.push(vec!["GET", "in0"]);
    cmds.push(vec!["EXISTS", "in9"]);
    let refs: Vec<&[&str]> = cmds.iter().map(Vec::as_slice).collect();
    same_as_redis(&refs);
}

/// Lua 5.1's unpack counted `j - i + 1` in an int: a range wider than an
/// int wrapped and the values were pushed past the end of Lua's stack,
/// which crashed the node from one EVAL (Redis's CVE-2025-46817). Such a
/// range is refused as Redis refuses it, and the node lives; ranges the
/// stack holds unpack as before, 7,999 values included.
#[test]
fn unpack_refuses_ranges_wider_than_an_int() {
    let node = TestNode::start();
    let mut r = node.raw();
    for (i, j) in [
        ("-2", "2147483647"),
        ("0", "2147483647"),
        ("-2147483648", "-2"),
        ("-2147483648", "2147483647"),
        ("-2147483648", "1e300"),
    ] {
        let script = format!("return {{unpack({{1, 2, 3}}, {i}, {j})}}");
        let e = crate::err(&mut r, &["EVAL", &script, "0"]);
        assert!(e.contains("too many results to unpack"), "{i} {j}: {e}");
    }
    let many = "local a = {} for i = 1, 7999 do a[i] = 1 end \
                return redis.call('rpush', 'l', unpack(a))";
    assert_eq!(int(&mut r, &["EVAL", many, "0"]), 7999);
    let e = crate::err(&mut r, &["EVAL", "local u = unpack return u(nil)", "0"]);
    assert!(
        e.contains("bad argument #1 to 'u' (table expected, got nil)"),
        "{e}"
    );
    assert_eq!(r.call(&["PING"]), Frame::Simple("PONG".into()));
}

/// The commands a script calls count in INFO commandstats, errorstats
/// and total_commands_processed as a client's would, an error only once
/// where it arose; MONITOR shows the script, then its commands as `lua`.
#[test]
fn a_scripts_commands_are_counted_and_monitored_as_in_redis() {
    use crate::support::ReferenceRedis;
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    let (mut s, mut r) = (node.raw(), reference.raw());
    let mut m = node.raw();
    crate::ok(&mut m, &["MONITOR"]);
    let scripts: &[&[&str]] = &[
        &["SET", "a", "1"],
        &["CONFIG", "RESETSTAT"],
        &[
            "EVAL",
            "redis.call('set', 'a', '1') redis.call('get', 'a') return redis.pcall('incr', 'a')",
            "0",
        ],
        &["EVAL", "return redis.pcall('lpush', 'a', 1)", "0"],
        &["EVAL", "redis.pcall('lpush', 'a', 1) return 1", "0"],
        &["EVAL", "return redis.call('lpush', 'a', 1)", "0"],
        &["EVAL", "return {err = 'MYERR x'}", "0"],
        &["EVAL", "error('boom')", "0"],
        // Refused before it runs: a rejected call of SET, its error
        // counted once, caught or not.
        &["CONFIG", "SET", "maxmemory", "1"],
        &["EVAL", "return redis.call('set', 'x', 'y')", "1", "x"],
        &[
            "EVAL",
            "return redis.pcall('set', 'x', 'y')['err']",
            "1",
            "x",
        ],
        &["CONFIG", "SET", "maxmemory", "0"],
        &["EVAL_RO", "return redis.pcall('del', 'x')['err']", "1", "x"],
    ];
    for cmd in scripts {
        assert_eq!(s.call(cmd), r.call(cmd), "{cmd:?}");
    }
    let section = |text: Frame| -> Vec<String> {
        let Frame::Bulk(b) = text else {
            panic!("{text:?}")
        };
        let mut lines: Vec<String> = String::from_utf8(b)
            .unwrap()
            .lines()
            .filter(|l| l.contains(':'))
            .filter(|l| {
                l.starts_with("cmdstat_")
                    || l.starts_with("errorstat_")
                    || l.starts_with("total_error_replies")
                    || l.starts_with("total_commands_processed")
            })
            // Times differ; counts must not.
            .map(|l| {
                l.split(',')
                    .filter(|f| !f.starts_with("usec"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        lines.sort();
        lines
    };
    for what in ["commandstats", "errorstats", "stats"] {
        assert_eq!(
            section(s.call(&["INFO", what])),
            section(r.call(&["INFO", what])),
            "INFO {what}"
        );
    }
    let mut lines = Vec::new();
    while lines.len() < 4 {
        match m.read2() {
            Frame::Simple(line) if line.contains("\"EVAL\"") || line.contains("[0 lua]") => {
                lines.push(line)
            }
            _ => {}
        }
    }
    assert!(
        lines[0].contains("\"EVAL\" \"redis.call('set'"),
        "{lines:?}"
    );
    assert!(
        lines[1].ends_with("[0 lua] \"set\" \"a\" \"1\""),
        "{lines:?}"
    );
    assert!(lines[2].ends_with("[0 lua] \"get\" \"a\""), "{lines:?}");
    assert!(lines[3].ends_with("[0 lua] \"incr\" \"a\""), "{lines:?}");
}

/// Every distinct script is kept compiled on each thread that ran it:
/// thousands of them must not run out of what Lua handles are made of.
/// EVALSHA finds a script through its thread's memo of recent scripts
/// (and the function it compiled to) as through the cache itself: in
/// capitals too, not after SCRIPT FLUSH, and again once EVAL sent it
/// anew; FCALL finds a function replaced since it last called it as
/// replaced. A function does not see the KEYS and ARGV the last script
/// left, and a command name Redis does not know from scripts is refused
/// with Redis's words.
#[test]
fn recent_scripts_are_found_as_the_cache_has_them() {
    const SHA: &str = "dc8235f4444d746adf3374579406c129fb1f0f0a";
    let upper = SHA.to_ascii_uppercase();
    let body = "return KEYS[1] .. ARGV[1]";
    let library = "#!lua name=peeklib\nredis.register_function('peek', function() return KEYS end)";
    let version = |n: u32| {
        format!(
            "#!lua name=versions\nredis.register_function('version', function() return {n} end)"
        )
    };
    same_as_redis(&[
        &["SCRIPT", "LOAD", body],
        &["EVALSHA", SHA, "1", "a", "b"],
        &["EVALSHA", SHA, "1", "c", "d"],
        &["EVALSHA", &upper, "1", "e", "f"],
        &["FUNCTION", "LOAD", "REPLACE", library],
        &["EVALSHA", SHA, "1", "g", "h"],
        &["FCALL", "peek", "0"],
        &["SCRIPT", "FLUSH"],
        &["EVALSHA", SHA, "1", "a", "b"],
        &["EVALSHA_RO", &upper, "1", "a", "b"],
        &["EVAL", body, "1", "x", "y"],
        &["EVALSHA", SHA, "1", "i", "j"],
        &["EVAL", "return redis.call('config|get', 'maxmemory')", "0"],
        &["FUNCTION", "LOAD", "REPLACE", &version(1)],
        &["FCALL", "version", "0"],
        &["FCALL", "version", "0"],
        &["FUNCTION", "LOAD", "REPLACE", &version(2)],
        &["FCALL", "version", "0"],
        &["FUNCTION", "DELETE", "versions"],
        &["FCALL", "version", "0"],
        &["FUNCTION", "FLUSH"],
    ]);
}

#[test]
fn thousands_of_distinct_scripts_run() {
    let node = TestNode::start();
    let mut r = node.raw();
    for i in 0..9000 {
        assert_eq!(int(&mut r, &["EVAL", &format!("return {i}"), "0"]), i);
    }
    assert_eq!(r.call(&["SCRIPT", "FLUSH"]), Frame::Simple("OK".into()));
    assert_eq!(int(&mut r, &["EVAL", "return 7", "0"]), 7);
}

/// A script's nil reaches a RESP3 client as RESP3's null, as from Redis;
/// tables naming a type (map, set, double, big_number, verbatim_string)
/// are replied as that type; after `redis.setresp(3)` a script gets its
/// commands' replies in RESP3's types and replies booleans.
#[test]
fn a_script_answers_a_resp3_client_in_resp3() {
    let node = TestNode::start();
    let mut r = node.raw();
    r.cmd(&["HELLO", "3"]);
    r.read3();
    r.cmd(&["EVAL", "return {1, false}", "0"]);
    assert_eq!(r.read_exact_bytes(11), b"*2\r\n:1\r\n_\r\n");
    let reference = crate::support::ReferenceRedis::start();
    let mut theirs = reference.raw();
    theirs.cmd(&["HELLO", "3"]);
    theirs.read3();
    let scripts = [
        "redis.call('hset', 'h', 'f', 'v') redis.call('zadd', 'z', 1.5, 'm') redis.call('sadd', 's', 'x') return 1",
        "return {double = 3.5}",
        "return {map = {a = 1}}",
        "return {set = {a = true}}",
        "return {big_number = '123456789012345678901234567890'}",
        "return {verbatim_string = {format = 'txt', string = 'hello'}}",
        // A type's field of the wrong Lua type is no tag: the table is an
        // array (Redis checks the Lua type, it does not convert).
        "return {verbatim_string = {format = 'txt', string = 5}, 1}",
        "return {err = 5, 2}",
        "return {ok = {}, 3}",
        "return {double = '1.5', 4}",
        "return {big_number = 5, 5}",
        "local t = redis.pcall('nosuch') t.err = 6 return t",
        "redis.setresp(3) return {true, false}",
        "redis.setresp(3) return redis.call('hgetall', 'h')",
        "redis.setresp(3) return redis.call('zscore', 'z', 'm')",
        "redis.setresp(3) return redis.call('smembers', 's')",
        "redis.setresp(3) local h = redis.call('hgetall', 'h') return {h.map.f, redis.call('zscore', 'z', 'm').double, type(redis.call('get', 'nokey')), redis.call('smembers', 's').set.x}",
        "redis.setresp(3) return redis.pcall('incr', 'h')",
        "redis.setresp(4)",
        "return true",
        // A line reply cannot hold CR or LF: they become spaces, where
        // they would end the reply and forge the next.
        "return {ok = 'a\\r\\nb'}",
        "return redis.status_reply('x\\r\\ny')",
        "return {err = 'e\\r\\nf'}",
        "return {big_number = '12\\r\\n34'}",
        "return 'after'",
    ];
    for script in scripts {
        r.cmd(&["EVAL", script, "0"]);
        theirs.cmd(&["EVAL", script, "0"]);
        assert_eq!(r.read3(), theirs.read3(), "{script}");
    }
    // In RESP2 a big number is a bulk string, with the same text.
    let big = "return {big_number = '12\\r\\n34'}";
    let mut r2 = node.raw();
    r2.cmd(&["EVAL", big, "0"]);
    assert_eq!(r2.read2(), Frame::bulk("12  34"));
}

#[test]
fn the_redis_crates_script_helper_runs_scripts() {
    let node = TestNode::start();
    let mut con = node.conn();
    let script = redis::Script::new(
        "local n = redis.call('incrby', KEYS[1], ARGV[1]) return {n, redis.call('type', KEYS[1])}",
    );
    // Not cached yet: the helper's EVALSHA gets NOSCRIPT and falls back.
    let first: (i64, String) = script.key("hits").arg(5).invoke(&mut con).unwrap();
    assert_eq!(first, (5, "string".to_string()));
    let second: (i64, String) = script.key("hits").arg(2).invoke(&mut con).unwrap();
    assert_eq!(second, (7, "string".to_string()));
}

#[test]
fn a_script_runs_alone_and_its_effects_reach_the_log_and_replicas() {
    let mut node = TestNode::start();
    let port = node.port.to_string();
    let replica = TestNode::start_with(&["--replicaof", "127.0.0.1", &port]);
    let mut r = node.raw();
    // Another client never sees a script half-way: a and b move together.
    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let stop = stop.clone();
        let mut c = node.raw();
        std::thread::spawn(move || {
            let mut checks = 0;
            while !stop.load(Ordering::Relaxed) || checks < 200 {
                match c.call(&["MGET", "a", "b"]) {
                    Frame::Array(v) => assert_eq!(v[0], v[1], "a script was seen half-done"),
                    other => panic!("{other:?}"),
                }
                checks += 1;
            }
            checks
        })
    };
    let step = "local n = redis.call('incr', KEYS[1]) redis.call('set', KEYS[2], n) return n";
    for i in 1..=300 {
        assert_eq!(int(&mut r, &["EVAL", step, "2", "a", "b"]), i);
    }
    stop.store(true, Ordering::Relaxed);
    checker.join().unwrap();
    // A random choice inside a script is recorded as what it chose.
    int(&mut r, &["SADD", "pool", "1", "2", "3", "4", "5"]);
    let picked = bulk(
        &mut r,
        &["EVAL", "return redis.call('spop', KEYS[1])", "1", "pool"],
    );
    assert!(picked.is_some());
    let want = digest(&mut r);
    let mut rr = replica.raw();
    eventually("the replica has the scripts' effects", || {
        digest(&mut rr) == want
    });
    let info = bulk(&mut rr, &["INFO", "replication"]).unwrap();
    assert_eq!(info_field(&info, "master_link_status"), "up");
    crate::wait_synced(&mut r);
    node.restart(&[]).unwrap();
    let mut r = node.raw();
    assert_eq!(digest(&mut r), want);
    assert_eq!(bulk(&mut r, &["GET", "b"]).as_deref(), Some("300"));
}

/// A new connection whose PING was answered BUSY: a script runs past
/// busy-reply-threshold. Each try is a fresh connection with a read
/// timeout, in case one is answered by neither the script's thread nor
/// a stand-in. Which thread it ends on is not known: one accepted just
/// before the script started is the script thread's (and a stand-in's
/// meanwhile).
pub fn busy_conn(node: &TestNode) -> Raw {
    let mut found = None;
    eventually("the node to answer BUSY", || {
        let mut b = node.raw();
        b.stream
            .set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
        b.cmd(&["PING"]);
        match b.try_read2() {
            Some(Frame::Error(e)) if e.starts_with("BUSY") => {
                b.stream.set_read_timeout(None).unwrap();
                found = Some(b);
                true
            }
            _ => false,
        }
    });
    found.unwrap()
}

const BUSY_SCRIPT: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";

/// Past busy-reply-threshold a script that has not written is killed by
/// SCRIPT KILL, whatever it does to catch errors; meanwhile other clients
/// get BUSY, and its own connection is usable afterwards.
#[test]
fn a_script_past_the_threshold_is_busy_until_script_kill() {
    let node = TestNode::start();
    let mut r = node.raw();
    crate::ok(&mut r, &["CONFIG", "SET", "busy-reply-threshold", "100"]);
    assert_eq!(
        crate::err(&mut r, &["SCRIPT", "KILL"]),
        "NOTBUSY No scripts in execution right now."
    );
    for endless in [
        "while true do end",
        "local f = function() while 1 do redis.call('ping') end end while 1 do pcall(f) end",
        "while 1 do redis.pcall('ping') end",
        "return xpcall(function() while true do end end, function(e) return e end)",
        "while true do coroutine.resume(coroutine.create(function() while true do pcall(function() while true do end end) end end)) end",
    ] {
        let mut a = node.raw();
        a.cmd(&["EVAL", endless, "0"]);
        let mut b = busy_conn(&node);
        assert_eq!(crate::err(&mut b, &["GET", "x"]), BUSY_SCRIPT);
        assert_eq!(crate::err(&mut b, &["FUNCTION", "KILL"]), BUSY_SCRIPT);
        assert_eq!(crate::err(&mut b, &["FUNCTION", "STATS"]), BUSY_SCRIPT);
        crate::ok(&mut b, &["SCRIPT", "KILL"]);
        match a.read2() {
            Frame::Error(e) => assert!(
                e.starts_with("ERR Script killed by user with SCRIPT KILL..."),
                "{endless}: {e}"
            ),
            other => panic!("{endless}: {other:?}"),
        }
        assert_eq!(a.call(&["PING"]), Frame::Simple("PONG".into()));
        assert_eq!(b.call(&["PING"]), Frame::Simple("PONG".into()));
        assert_eq!(
            crate::err(&mut b, &["SCRIPT", "KILL"]),
            "NOTBUSY No scripts in execution right now."
        );
    }
    assert_eq!(bulk(&mut r, &["GET", "x"]), None);
}

/// The connections the script's own thread serves get their BUSY too (a
/// stand-in answers them meanwhile) and may SCRIPT KILL; their
/// transactions fare as in Redis (MULTI is let through, a command refused
/// BUSY fails the transaction, an EXEC refused BUSY discards it), and a
/// request that needs the connection itself (WATCH) and all after it are
/// answered, in order, once the script ends.
#[test]
fn connections_on_the_scripts_own_thread_are_answered_busy() {
    let node = TestNode::start_with(&["--io-threads", "1", "--busy-reply-threshold", "100"]);
    // All on the node's one I/O thread, the one the scripts will take.
    let mut r = node.raw();
    let mut q = node.raw();
    let mut a = node.raw();
    for c in [&mut r, &mut q, &mut a] {
        assert_eq!(c.call(&["PING"]), Frame::Simple("PONG".into()));
    }
    crate::ok(&mut r, &["SET", "xx", "1"]);
    // A transaction under way when the script starts.
    crate::ok(&mut q, &["MULTI"]);
    assert_eq!(q.call(&["INCR", "xx"]), Frame::Simple("QUEUED".into()));
    let execabort_busy = format!("EXECABORT Transaction discarded because of: {BUSY_SCRIPT}");
    let killed = |a: &mut Raw| {
        assert!(matches!(a.read2(), Frame::Error(e) if e.contains("killed by user")));
    };
    for round in 0..3 {
        a.cmd(&["EVAL", "while true do end", "0"]);
        eventually(
            "BUSY on a connection of the script's thread",
            || matches!(r.call(&["PING"]), Frame::Error(e) if e == BUSY_SCRIPT),
        );
        match round {
            0 => {
                // Longer than a stand-in first looks at.
                let long = "k".repeat(5000);
                assert_eq!(crate::err(&mut r, &["GET", &long]), BUSY_SCRIPT);
                assert_eq!(crate::err(&mut q, &["INCR", "xx"]), BUSY_SCRIPT);
                assert_eq!(crate::err(&mut q, &["EXEC"]), execabort_busy);
                crate::ok(&mut r, &["MULTI"]);
                assert_eq!(crate::err(&mut r, &["INCR", "xx"]), BUSY_SCRIPT);
                // The one I/O thread is taken: the busy thread accepts this.
                let mut n = node.raw();
                crate::ok(&mut n, &["MULTI"]);
                assert_eq!(crate::err(&mut n, &["SET", "x", "1"]), BUSY_SCRIPT);
                assert_eq!(crate::err(&mut n, &["EXEC"]), execabort_busy);
                crate::ok(&mut n, &["SCRIPT", "KILL"]);
                killed(&mut a);
                assert_eq!(
                    crate::err(&mut r, &["EXEC"]),
                    "EXECABORT Transaction discarded because of previous errors."
                );
                assert_eq!(q.call(&["PING", "x"]), Frame::bulk("x"));
            }
            1 => {
                // The stand-in's MULTI is the connection's after the script.
                crate::ok(&mut r, &["MULTI"]);
                crate::ok(&mut q, &["SCRIPT", "KILL"]);
                killed(&mut a);
                assert_eq!(r.call(&["INCR", "xx"]), Frame::Simple("QUEUED".into()));
                assert_eq!(r.call(&["EXEC"]), Frame::Array(vec![Frame::Int(2)]));
            }
            _ => {
                r.cmd(&["GET", "xx"]);
                r.cmd(&["WATCH", "xx"]);
                r.cmd(&["GET", "xx"]);
                assert_eq!(r.read2(), Frame::Error(BUSY_SCRIPT.into()));
                crate::ok(&mut q, &["SCRIPT", "KILL"]);
                killed(&mut a);
                assert_eq!(r.read2(), Frame::Simple("OK".into()));
                assert_eq!(r.read2(), Frame::bulk("2"));
            }
        }
        assert_eq!(r.call(&["PING"]), Frame::Simple("PONG".into()));
    }
}

/// A script that wrote is not stopped: it runs to its end however long
/// it takes, whole, as in Redis; one that never ends can only be stopped
/// with the node (SHUTDOWN NOSAVE), and none of its writes survive.
#[test]
fn a_script_that_wrote_runs_to_its_end_or_the_nodes() {
    let node = TestNode::start_with(&["--busy-reply-threshold", "100"]);
    let mut node = node;
    let mut r = node.raw();
    crate::ok(&mut r, &["SET", "before", "1"]);
    // Runs for 600 ms by the clock, writing all along.
    let long = "local t0 = redis.call('time') local n = 0 repeat n = n + 1 redis.call('incr', 'n') local t = redis.call('time') until (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > 600000 return n";
    let n = int(&mut r, &["EVAL", long, "0"]);
    assert_eq!(bulk(&mut r, &["GET", "n"]), Some(n.to_string()));
    let slow = "Slow script detected: still in execution after";
    eventually("the slow script warning", || {
        node.log.try_iter().any(|l| l.contains(slow))
    });

    let mut a = node.raw();
    a.cmd(&[
        "EVAL",
        "redis.call('set', 'during', 1) redis.call('incr', 'n') while true do end",
        "0",
    ]);
    let mut b = busy_conn(&node);
    assert_eq!(
        crate::err(&mut b, &["SCRIPT", "KILL"]),
        "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command."
    );
    assert_eq!(crate::err(&mut b, &["SHUTDOWN"]), BUSY_SCRIPT);
    b.cmd(&["SHUTDOWN", "NOSAVE"]);
    assert!(b.try_read2().is_none(), "SHUTDOWN NOSAVE has no reply");
    assert!(node.wait_exit().success());
    node.restart(&[]).unwrap();
    let mut r = node.raw();
    assert_eq!(bulk(&mut r, &["GET", "before"]).as_deref(), Some("1"));
    assert_eq!(bulk(&mut r, &["GET", "n"]), Some(n.to_string()));
    assert_eq!(bulk(&mut r, &["GET", "during"]), None);
}

/// A client blocked on a key that a timed-out script pushes to is served
/// once the script ends, not answered BUSY, as Redis serves no blocked
/// client meanwhile.
#[test]
fn a_blocked_client_waits_for_a_timed_out_script() {
    let node = TestNode::start_with(&["--io-threads", "1", "--busy-reply-threshold", "100"]);
    // Two clients on the thread that accepts while a script is timed out
    // (the one I/O thread is taken once BUSY was seen), so that they are
    // served while the next one runs.
    let mut a = node.raw();
    a.cmd(&["EVAL", "while true do end", "0"]);
    let mut d = busy_conn(&node);
    let mut c = node.raw();
    assert_eq!(c.call(&["PING"]), Frame::Error(BUSY_SCRIPT.into()));
    crate::ok(&mut d, &["SCRIPT", "KILL"]);
    assert!(matches!(a.read2(), Frame::Error(_)));
    eventually("the kill", || {
        d.call(&["PING"]) == Frame::Simple("PONG".into())
    });

    c.cmd(&["BLPOP", "x", "0"]);
    eventually("the client to block", || {
        let info = bulk(&mut d, &["INFO", "clients"]).unwrap();
        info_field(&info, "blocked_clients") == "1"
    });
    let spin = "redis.call('lpush', 'x', 'y') local t0 = redis.call('time') repeat local t = redis.call('time') until (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > 600000 redis.call('lpush', 'x', 'z') return 1";
    a.cmd(&["EVAL", spin, "0"]);
    assert_eq!(
        c.read2(),
        Frame::Array(vec![Frame::bulk("x"), Frame::bulk("z")])
    );
    assert_eq!(a.read2(), Frame::Int(1));
    assert_eq!(
        d.call(&["LRANGE", "x", "0", "-1"]),
        Frame::Array(vec![Frame::bulk("y")])
    );
}

/// Values nested past any reason are refused, not followed down.
#[test]
fn deep_values_are_refused() {
    let node = TestNode::start();
    let mut r = node.raw();
    let deep = "local t = {} for i = 1, 100000 do t = {t} end return t";
    assert_eq!(
        crate::err(&mut r, &["EVAL", deep, "0"]),
        "ERR reached lua stack limit"
    );
    let nested = "local t = {} for i = 1, 5000 do t = {t} end return cjson.encode(t)";
    let e = crate::err(&mut r, &["EVAL", nested, "0"]);
    assert!(e.contains("excessive nesting (1001)"), "{e}");
    let packed = "return cmsgpack.unpack(string.rep(string.char(0x91), 100000) .. string.char(1))";
    let e = crate::err(&mut r, &["EVAL", packed, "0"]);
    assert!(e.contains("nested too deeply"), "{e}");
    assert_eq!(r.call(&["PING"]), Frame::Simple("PONG".into()));
}

/// With too few good replicas (min-replicas-to-write), a script that
/// declares it may write is refused before it runs, and one without flags
/// runs but each write it makes is refused, as in Redis; reads go on.
#[test]
fn a_scripts_writes_meet_min_replicas_as_in_redis() {
    let read = "return redis.call('get', KEYS[1])";
    same_as_redis(&[
        &["SET", "x", "some value"],
        &["CONFIG", "SET", "min-replicas-to-write", "1"],
        &["EVAL", &format!("#!lua flags=no-writes\n{read}"), "1", "x"],
        &["EVAL", read, "1", "x"],
        &["EVAL", &format!("#!lua\n{read}"), "1", "x"],
        &["EVAL", "return redis.call('set', KEYS[1], 1)", "1", "x"],
        &[
            "EVAL",
            "return redis.pcall('set', KEYS[1], 1)['err']",
            "1",
            "x",
        ],
        &["CONFIG", "SET", "min-replicas-to-write", "0"],
        &["GET", "x"],
    ]);
}

/// DEBUG SET-DISABLE-DENY-SCRIPTS lets scripts call what scripts may not
/// (Redis's tests read CLIENT LIST and DEBUG PROTOCOL so), until it is
/// set back or SCRIPT FLUSH resets it, as in Redis.
#[test]
fn debug_can_let_scripts_call_anything() {
    let node = TestNode::start();
    let mut r = node.raw();
    let script = "return redis.call('debug', 'protocol', 'bignum')";
    let refused = "ERR This Redis command is not allowed from script";
    assert!(crate::err(&mut r, &["EVAL", script, "0"]).starts_with(refused));
    crate::ok(&mut r, &["DEBUG", "SET-DISABLE-DENY-SCRIPTS", "1"]);
    assert_eq!(
        bulk(&mut r, &["EVAL", script, "0"]).as_deref(),
        Some("1234567999999999999999999999999999999")
    );
    let list = bulk(
        &mut r,
        &["EVAL", "return redis.call('client', 'list')", "0"],
    )
    .unwrap();
    assert!(list.contains("cmd=eval"), "{list}");
    crate::ok(&mut r, &["SCRIPT", "FLUSH"]);
    assert!(crate::err(&mut r, &["EVAL", script, "0"]).starts_with(refused));
}

/// Scripts' garbage is collected as it comes, a step every 50 runs as in
/// Redis: the scripts' memory (`used_memory_lua`) stays level over 60,000
/// runs, where Lua's own cycle alone let it swing by twice what it holds.
#[test]
fn scripts_garbage_is_collected_as_it_comes() {
    let node = TestNode::start();
    let mut r = node.raw();
    let script = "return redis.call('incr', KEYS[1])";
    let batch: Vec<u8> = (0..500)
        .flat_map(|_| crate::support::encode(&[b"EVAL", script.as_bytes(), b"1", b"n"]))
        .collect();
    let mut samples = Vec::new();
    for round in 1..=120 {
        r.send(&batch);
        for _ in 0..500 {
            r.read2();
        }
        if round % 10 == 0 {
            let memory = bulk(&mut r, &["INFO", "memory"]).unwrap();
            samples.push(
                info_field(&memory, "used_memory_lua")
                    .parse::<i64>()
                    .unwrap(),
            );
        }
    }
    let (low, high) = (samples.iter().min().unwrap(), samples.iter().max().unwrap());
    assert!(high - low < 16 * 1024, "{samples:?}");
    assert_eq!(bulk(&mut r, &["GET", "n"]).as_deref(), Some("60000"));
}
