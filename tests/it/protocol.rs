use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::{encode, Frame, TestNode};
use crate::{bulk, info_field, ok};

#[test]
fn pipeline_of_ten_thousand_commands() {
    let node = TestNode::start();
    let mut r = node.raw();
    let mut batch = Vec::new();
    for i in 0..10_000 {
        batch.extend_from_slice(&encode(&[b"INCR", b"counter"]));
        if i % 1000 == 0 {
            batch.extend_from_slice(&encode(&[b"SET", format!("k{i}").as_bytes(), b"v"]));
        }
    }
    r.send(&batch);
    let mut last = 0;
    for i in 0..10_000 {
        let Frame::Int(n) = r.read2() else { panic!() };
        assert_eq!(n, i + 1, "replies come back in order");
        last = n;
        if i % 1000 == 0 {
            assert_eq!(r.read2(), Frame::Simple("OK".into()));
        }
    }
    assert_eq!(last, 10_000);
}

#[test]
fn inline_commands() {
    let node = TestNode::start();
    let mut r = node.raw();
    r.send(b"SET inline \"hello world\"\r\nGET inline\nPING\r\n");
    assert_eq!(r.read2(), Frame::Simple("OK".into()));
    assert_eq!(r.read2(), Frame::bulk("hello world"));
    assert_eq!(r.read2(), Frame::Simple("PONG".into()));
    r.send(b"\r\n\r\nPING\r\n");
    assert_eq!(
        r.read2(),
        Frame::Simple("PONG".into()),
        "empty lines are skipped"
    );
    // A NUL ends an inline line as it ends a C string; it once made the
    // argument splitter loop, pushing empty arguments until memory ran out.
    r.send(b"\0$536870913\r\nECHO ab\0cd\r\nPING\r\n");
    assert_eq!(r.read2(), Frame::bulk("ab"));
    assert_eq!(r.read2(), Frame::Simple("PONG".into()));
}

#[test]
fn requests_split_across_reads() {
    let node = TestNode::start();
    let mut r = node.raw();
    let req = encode(&[b"SET", b"split", b"value-in-pieces"]);
    for b in &req {
        r.send(&[*b]);
    }
    assert_eq!(r.read2(), Frame::Simple("OK".into()));
    assert_eq!(
        bulk(&mut r, &["GET", "split"]).as_deref(),
        Some("value-in-pieces")
    );
}

fn protocol_error(input: &[u8], want: &str) {
    let node = TestNode::start();
    let mut r = node.raw();
    r.send(input);
    assert_eq!(
        r.read2(),
        Frame::Error(want.into()),
        "input {:?}",
        String::from_utf8_lossy(input)
    );
    assert!(r.is_closed(), "a protocol error closes the connection");
    // The server itself is fine.
    let mut again = node.raw();
    assert_eq!(again.call(&["PING"]), Frame::Simple("PONG".into()));
}

#[test]
fn malformed_frames_get_protocol_errors() {
    protocol_error(
        b"*2\r\n$3\r\nGET\r\n+k\r\n",
        "ERR Protocol error: expected '$', got '+'",
    );
    protocol_error(b"*abc\r\n", "ERR Protocol error: invalid multibulk length");
    protocol_error(b"*1\r\n$-3\r\n", "ERR Protocol error: invalid bulk length");
    protocol_error(
        b"*1\r\n$99999999999\r\n",
        "ERR Protocol error: invalid bulk length",
    );
    // Redis 7 takes counts up to INT_MAX (and waits for the arguments).
    protocol_error(
        b"*2147483648\r\n",
        "ERR Protocol error: invalid multibulk length",
    );
    protocol_error(
        b"SET \"unterminated\r\n",
        "ERR Protocol error: unbalanced quotes in request",
    );
    let mut long = vec![b'a'; 70 * 1024];
    long.push(b' ');
    protocol_error(&long, "ERR Protocol error: too big inline request");
}

#[test]
fn query_buffer_limit_closes_the_connection() {
    let node = TestNode::start_with(&["--client-query-buffer-limit", "1mb"]);
    let mut r = node.raw();
    // A 3 MB bulk that never completes: the pending query buffer passes 1 MB.
    r.send(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", 3 * 1024 * 1024).as_bytes());
    let chunk = vec![b'x'; 64 * 1024];
    let mut closed = false;
    for _ in 0..48 {
        if std::io::Write::write_all(&mut r.stream, &chunk).is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed || r.is_closed());
    let mut again = node.raw();
    assert_eq!(again.call(&["PING"]), Frame::Simple("PONG".into()));
}

#[test]
fn random_garbage_never_kills_the_server() {
    let node = TestNode::start();
    let mut seed = 0x2545F4914F6CDD1Du64;
    for round in 0..200 {
        let mut r = node.raw();
        let len = 1 + (round * 37) % 300;
        let mut junk = Vec::with_capacity(len);
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            junk.push(b"*$\r\n0123456789-+:abcSETGET \"'\\x"[(seed % 31) as usize]);
        }
        r.send(&junk);
        let _ = r.stream.shutdown(std::net::Shutdown::Write);
    }
    let mut r = node.raw();
    assert_eq!(r.call(&["PING"]), Frame::Simple("PONG".into()));
    ok(&mut r, &["SET", "still", "alive"]);
}

/// A set's or a map's elements in one order (the decoder's is a hash's).
fn unordered(f: Frame) -> Frame {
    match f {
        Frame::Set(mut v) => {
            v.sort_by_key(|e| format!("{e:?}"));
            Frame::Set(v)
        }
        Frame::Map(mut v) => {
            v.sort_by_key(|e| format!("{e:?}"));
            Frame::Map(v)
        }
        other => other,
    }
}

/// DEBUG PROTOCOL answers each RESP type as redis-server does, in RESP2
/// and RESP3 (an attribute, and a push, come before a real reply).
#[test]
fn debug_protocol_replies_as_redis() {
    use crate::support::ReferenceRedis;
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    let types = [
        "string", "integer", "double", "bignum", "null", "array", "set", "map", "attrib", "push",
        "verbatim", "true", "false", "nope",
    ];
    for resp3 in [false, true] {
        let (mut s, mut r) = (node.raw(), reference.raw());
        if resp3 {
            s.cmd(&["HELLO", "3"]);
            s.read3();
            r.cmd(&["HELLO", "3"]);
            r.read3();
        }
        for t in types {
            s.cmd(&["DEBUG", "PROTOCOL", t]);
            r.cmd(&["DEBUG", "PROTOCOL", t]);
            // A push, then the real reply.
            let frames = if resp3 && t == "push" { 2 } else { 1 };
            for _ in 0..frames {
                let (a, b) = if resp3 {
                    (s.read3(), r.read3())
                } else {
                    (s.read2(), r.read2())
                };
                assert_eq!(unordered(a), unordered(b), "{t} (RESP3: {resp3})");
            }
        }
    }
    // The attribute's own bytes, which the frames above do not show.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", node.port)).unwrap();
    let hello = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n";
    let ask = b"*3\r\n$5\r\nDEBUG\r\n$8\r\nPROTOCOL\r\n$6\r\nattrib\r\n";
    raw.write_all(hello).unwrap();
    raw.write_all(ask).unwrap();
    let want: &[u8] = b"|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n$39\r\nSome real reply following the attribute\r\n";
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.ends_with(want) {
        let n = raw.read(&mut chunk).unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
}

/// Seeded garbage from many connections (pieces of requests, stray type
/// bytes, NULs, quotes, lengths past every limit) never stops the node nor
/// makes it grow without bound: the next client is served as before. A
/// NUL in an inline line once made the argument splitter loop for ever.
#[test]
fn garbage_from_many_clients_leaves_the_node_serving() {
    let node = TestNode::start();
    let pieces: &[&[u8]] = &[
        b"*",
        b"$",
        b"\r\n",
        b"\n",
        b"-1",
        b"0",
        b"3",
        b"99999999999",
        b"*2\r\n",
        b"$3\r\nGET\r\n",
        b"$3\r\nfoo\r\n",
        b"PING",
        b" ",
        b"\"",
        b"'",
        b"\\x4",
        b"\0",
        b"+OK",
        b":1",
        b"%1\r\n",
        b"~",
        b"$-1\r\n",
        b"*-1\r\n",
        b"SET a \"b\\\"c\"",
        b"*1048577\r\n",
        b"$536870913\r\n",
        b"*1\r\n$536870912\r\n",
    ];
    let mut rng = StdRng::seed_from_u64(24);
    for _ in 0..200 {
        let mut s = TcpStream::connect(("127.0.0.1", node.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        let data: Vec<u8> = (0..rng.gen_range(1..30))
            .flat_map(|_| pieces[rng.gen_range(0..pieces.len())].iter().copied())
            .collect();
        let _ = s.write_all(&data);
        // A reply, an error and a close, or nothing yet: all fine.
        let _ = s.read(&mut [0u8; 4096]);
    }
    let mut r = node.raw();
    assert_eq!(r.call(&["PING"]), Frame::Simple("PONG".into()));
    let used: u64 = info_field(&bulk(&mut r, &["INFO", "memory"]).unwrap(), "used_memory")
        .parse()
        .unwrap();
    assert!(used < 100 << 20, "used_memory {used}");
}
