//! A seeded random walk over the data commands, sent to Shoal and to
//! redis-server side by side: every reply must be equal, errors word for
//! word, so the order in which Redis checks a command's arguments counts
//! as much as the result. A second walk compares what each write signals:
//! the keys a BCAST tracking client is told of and the keyspace
//! notifications. Six keys shared by every type make WRONGTYPE
//! frequent; odd numbers, bounds and option mixes make errors frequent.
//! Geo commands share the keys too, so they meet sorted sets whose scores
//! no GEOADD wrote, and scores past 2^53 (longitude 180) meet ZINCRBY.
//!
//! Left out on purpose: replies that are random (SPOP with a count,
//! SRANDMEMBER, HRANDFIELD, ZRANDMEMBER), that depend on hash order (a
//! set's order, SORT BY over a set), that Redis 7.0 and later versions
//! answer differently (BITCOUNT/BITPOS ranges on a missing key, LPOS RANK
//! -9223372036854775808), lex ranges over mixed scores, which Redis
//! documents as unspecified, and HyperLogLogs (their own differential
//! test; a string APPENDed to one is read differently: Redis edits the
//! sparse form in place and may not notice the damage, Shoal refuses it).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::{run, sorted, Frame, Raw, ReferenceRedis, TestNode};

struct Gen(StdRng);

impl Gen {
    fn pick(&mut self, from: &[&str]) -> String {
        from[self.0.gen_range(0..from.len())].to_string()
    }
    fn key(&mut self) -> String {
        self.pick(&["k0", "k1", "k2", "k3", "k4", "k5"])
    }
    fn val(&mut self) -> String {
        self.pick(&[
            "a", "b", "c", "d", "1", "2", "10", "-3", "3.5", "", "hello", "zz",
        ])
    }
    fn num(&mut self) -> String {
        self.pick(&[
            "0",
            "1",
            "-1",
            "2",
            "5",
            "100",
            "-100",
            "x",
            "1.5",
            "9223372036854775807",
            " 1",
        ])
    }
    fn flt(&mut self) -> String {
        self.pick(&[
            "0", "1", "-1", "2.5", "-inf", "+inf", "1e3", "nan", "x", "(1", "0x10", "-0",
        ])
    }
    fn idx(&mut self) -> String {
        self.pick(&["0", "1", "-1", "2", "-2", "5", "-5", "100", "x"])
    }
    fn bound(&mut self) -> String {
        self.pick(&[
            "-inf", "+inf", "0", "1", "(1", "2", "(2", "-1", "x", "", " 3",
        ])
    }
    fn field(&mut self) -> String {
        self.pick(&["f1", "f2", "f3", "a", "b"])
    }
    /// 1 to 3 of `f`.
    fn some(&mut self, f: fn(&mut Gen) -> String) -> Vec<String> {
        (0..self.0.gen_range(1..=3)).map(|_| f(self)).collect()
    }
    /// Half the time, one of `options`.
    fn maybe(&mut self, options: &[&[&str]]) -> Vec<String> {
        if self.0.gen_bool(0.5) {
            let o = options[self.0.gen_range(0..options.len())];
            o.iter().map(|s| s.to_string()).collect()
        } else {
            Vec::new()
        }
    }
}

fn cmd(parts: &[&str], rest: Vec<String>) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).chain(rest).collect()
}

fn random_command(g: &mut Gen) -> Vec<String> {
    let k = g.key();
    let k2 = g.key();
    let v = |parts: &[&str], rest: Vec<String>| {
        let mut c = cmd(parts, Vec::new());
        c.insert(1, k.clone());
        c.extend(rest);
        c
    };
    match g.0.gen_range(0..56) {
        0 => {
            let (val, opt) = (
                g.val(),
                g.maybe(&[
                    &["NX"],
                    &["XX"],
                    &["GET"],
                    &["EX", "1000"],
                    &["PX", "x"],
                    &["EX", "0"],
                    &["NX", "XX"],
                ]),
            );
            v(&["SET"], [vec![val], opt].concat())
        }
        1 => v(
            &["GETEX"],
            g.maybe(&[&["EX", "1000"], &["PX", "x"], &["PERSIST"], &["EX", "-1"]]),
        ),
        2 => match g.0.gen_range(0..3) {
            0 => v(&["INCRBYFLOAT"], vec![g.flt()]),
            1 => v(&["INCRBY"], vec![g.num()]),
            _ => v(&["APPEND"], vec![g.val()]),
        },
        3 => v(&["SETRANGE"], vec![g.idx(), g.val()]),
        4 => v(&["GETRANGE"], vec![g.idx(), g.idx()]),
        5 => cmd(&["MSET"], vec![k.clone(), g.val(), k2.clone(), g.val()]),
        6 => cmd(
            &["LCS", &k, &k2],
            g.maybe(&[&["LEN"], &["IDX", "WITHMATCHLEN"]]),
        ),
        7 => cmd(&["COPY", &k, &k2], g.maybe(&[&["REPLACE"]])),
        8 => cmd(
            &[
                g.pick(&["RENAME", "RENAMENX", "RPOPLPUSH"]).as_str(),
                &k,
                &k2,
            ],
            vec![],
        ),
        39 => cmd(&["SMOVE", &k, &k2], vec![g.val()]),
        // Keys come and go, so each is of every type in turn.
        41..=45 => cmd(&["DEL", &k], vec![]),
        9 => v(&["HSET"], vec![g.field(), g.val(), g.field(), g.val()]),
        10 => v(
            &[g.pick(&["HGET", "HDEL", "HEXISTS", "HSTRLEN"]).as_str()],
            vec![g.field()],
        ),
        11 => v(
            &[g.pick(&["HINCRBY", "HINCRBYFLOAT"]).as_str()],
            vec![g.field(), g.flt()],
        ),
        12 => v(
            &[g.pick(&[
                "HGETALL", "HKEYS", "HLEN", "LLEN", "SCARD", "ZCARD", "TYPE", "STRLEN", "GET",
            ])
            .as_str()],
            vec![],
        ),
        13 => v(
            &[g.pick(&["LPUSH", "RPUSH", "LPUSHX", "SADD", "SREM"])
                .as_str()],
            g.some(Gen::val),
        ),
        14 => v(
            &[g.pick(&["LPOP", "RPOP"]).as_str()],
            g.maybe(&[&["2"], &["0"], &["x"], &["-1"]]),
        ),
        15 => v(&["LINDEX"], vec![g.idx()]),
        16 => {
            let (a, b) = (g.val(), g.val());
            v(&["LINSERT", &g.pick(&["BEFORE", "AFTER", "x"])], vec![a, b])
        }
        17 => {
            let e = g.val();
            v(
                &["LPOS"],
                [
                    vec![e],
                    g.maybe(&[
                        &["RANK", "-1"],
                        &["RANK", "0"],
                        &["COUNT", "x"],
                        &["MAXLEN", "x"],
                        &["COUNT", "0", "MAXLEN", "2"],
                    ]),
                ]
                .concat(),
            )
        }
        18 => v(
            &[g.pick(&["LRANGE", "LTRIM"]).as_str()],
            vec![g.idx(), g.idx()],
        ),
        19 => v(&["LSET"], vec![g.idx(), g.val()]),
        20 => cmd(
            &[
                "LMOVE",
                &k,
                &k2,
                &g.pick(&["LEFT", "RIGHT", "UP"]),
                &g.pick(&["LEFT", "RIGHT"]),
            ],
            vec![],
        ),
        21 => cmd(
            &[
                g.pick(&["LMPOP", "ZMPOP"]).as_str(),
                &g.pick(&["1", "2", "0"]),
                &k,
                &k2,
                &g.pick(&["LEFT", "MIN", "MAX"]),
            ],
            g.maybe(&[&["COUNT", "2"], &["COUNT", "x"], &["COUNT", "0"]]),
        ),
        22 => v(
            &[g.pick(&["SISMEMBER", "SMISMEMBER"]).as_str()],
            g.some(Gen::val),
        ),
        23 => cmd(
            &[
                g.pick(&["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"])
                    .as_str(),
                &k,
            ],
            vec![k2.clone(), g.key()],
        ),
        24 => cmd(
            &["SINTERCARD", "2", &k, &k2],
            g.maybe(&[&["LIMIT", "1"], &["LIMIT", "x"], &["LIMIT", "-1"]]),
        ),
        25 => {
            let opts = g.maybe(&[
                &["NX"],
                &["XX"],
                &["GT"],
                &["LT"],
                &["CH"],
                &["INCR"],
                &["NX", "GT"],
                &["XX", "CH"],
            ]);
            let pairs = vec![g.flt(), g.val(), g.flt(), g.val()];
            v(&["ZADD"], [opts, pairs].concat())
        }
        26 => v(&["ZINCRBY"], vec![g.flt(), g.val()]),
        27 => v(
            &[g.pick(&["ZSCORE", "ZRANK", "ZREVRANK", "ZREM", "ZMSCORE"])
                .as_str()],
            vec![g.val()],
        ),
        28 => v(&["ZCOUNT"], vec![g.bound(), g.bound()]),
        29 => v(
            &["ZRANGE"],
            [
                vec![g.idx(), g.idx()],
                g.maybe(&[&["WITHSCORES"], &["REV"], &["REV", "WITHSCORES"]]),
            ]
            .concat(),
        ),
        30 => v(
            &["ZRANGE"],
            [
                vec![g.bound(), g.bound(), "BYSCORE".into()],
                g.maybe(&[
                    &["WITHSCORES"],
                    &["REV"],
                    &["LIMIT", "1", "2"],
                    &["LIMIT", "x", "1"],
                ]),
            ]
            .concat(),
        ),
        31 => v(
            &[
                g.pick(&["ZRANGEBYSCORE", "ZREVRANGEBYSCORE", "ZREMRANGEBYSCORE"])
                    .as_str(),
            ],
            vec![g.bound(), g.bound()],
        ),
        32 => v(
            &[g.pick(&["ZREMRANGEBYRANK", "ZREVRANGE"]).as_str()],
            vec![g.idx(), g.idx()],
        ),
        33 => v(
            &[g.pick(&["ZPOPMIN", "ZPOPMAX"]).as_str()],
            g.maybe(&[&["2"], &["x"], &["-1"]]),
        ),
        34 => {
            let name = g.pick(&["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"]);
            let opts = g.maybe(&[
                &["WEIGHTS", "2", "x"],
                &["WEIGHTS", "2", "0.5"],
                &["AGGREGATE", "MAX"],
                &["AGGREGATE", "x"],
            ]);
            cmd(&[&name, &k, "2", &k2, &g.key()], opts)
        }
        35 => cmd(
            &[
                g.pick(&["ZUNION", "ZINTER", "ZDIFF"]).as_str(),
                "2",
                &k,
                &k2,
            ],
            g.maybe(&[&["WITHSCORES"], &["WEIGHTS", "1", "2"]]),
        ),
        36 => cmd(
            &["ZINTERCARD", "2", &k, &k2],
            g.maybe(&[&["LIMIT", "1"], &["LIMIT", "x"]]),
        ),
        37 => v(
            &["SETBIT"],
            vec![
                g.pick(&["0", "7", "100", "-1", "x"]),
                g.pick(&["0", "1", "2"]),
            ],
        ),
        38 => v(
            &["SORT"],
            g.maybe(&[
                &["ALPHA"],
                &["DESC"],
                &["LIMIT", "1", "2"],
                &["ALPHA", "DESC"],
                &["STORE", "k9"],
            ]),
        ),
        // Geo commands over the same keys: positions, bounds, bad pairs,
        // and sorted sets whose scores no GEOADD wrote.
        46 | 47 => {
            let mut pairs = Vec::new();
            for _ in 0..g.0.gen_range(1..3) {
                pairs.push(g.pick(&["13.36", "-180", "180", "181", "0", "x", "2.3522"]));
                pairs.push(g.pick(&["38.1", "85.05112878", "85.06", "-85", "0", "48.86"]));
                pairs.push(g.val());
            }
            v(
                &["GEOADD"],
                [g.maybe(&[&["NX"], &["XX"], &["CH"]]), pairs].concat(),
            )
        }
        48 => v(
            &[g.pick(&["GEOPOS", "GEOHASH"]).as_str()],
            vec![g.val(), g.val()],
        ),
        49 => v(
            &["GEODIST"],
            [
                vec![g.val(), g.val()],
                g.maybe(&[&["km"], &["MI"], &["yd"]]),
            ]
            .concat(),
        ),
        50 | 51 => {
            let from = g.maybe(&[&["FROMMEMBER", "a"], &["FROMMEMBER", "1"]]);
            let from = if from.is_empty() {
                vec![
                    "FROMLONLAT".into(),
                    g.pick(&["13", "0", "181"]),
                    g.pick(&["38", "0", "-85"]),
                ]
            } else {
                from
            };
            let by = if g.0.gen_bool(0.5) {
                vec![
                    "BYRADIUS".into(),
                    g.pick(&["1", "500", "20000", "-1"]),
                    g.pick(&["km", "m"]),
                ]
            } else {
                vec![
                    "BYBOX".into(),
                    g.pick(&["1", "900"]),
                    g.pick(&["1", "900"]),
                    "km".into(),
                ]
            };
            let opts = g.maybe(&[
                &["WITHDIST"],
                &["COUNT", "2"],
                &["DESC", "WITHCOORD"],
                &["COUNT", "1", "ANY"],
            ]);
            if g.0.gen_bool(0.3) {
                cmd(&["GEOSEARCHSTORE", "k9", &k], [from, by].concat())
            } else {
                v(&["GEOSEARCH"], [from, by, opts].concat())
            }
        }
        _ => cmd(
            &[
                g.pick(&["SMEMBERS", "SINTER", "SUNION", "SDIFF"]).as_str(),
                &k,
                &k2,
            ],
            vec![],
        ),
    }
}

/// Set replies are compared as sets (a set's order is its hash order).
fn normalise(args: &[&str], r: Result<redis::Value, String>) -> Result<redis::Value, String> {
    if matches!(args[0], "SMEMBERS" | "SINTER" | "SUNION" | "SDIFF") {
        sorted(r)
    } else {
        r
    }
}

#[test]
fn random_commands_reply_as_redis_does() {
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    let mut ours = node.conn();
    let mut theirs = reference.client().get_connection().unwrap();
    let mut g = Gen(StdRng::seed_from_u64(0x5a0a1));
    let (mut errors, mut wrongtype, mut data) = (0, 0, 0);
    for i in 0..12000 {
        let c = random_command(&mut g);
        let args: Vec<&str> = c.iter().map(String::as_str).collect();
        let a = normalise(&args, run(&mut ours, &args));
        let b = normalise(&args, run(&mut theirs, &args));
        assert_eq!(a, b, "command {i}: {args:?}");
        match &a {
            Err(e) if e.contains("WRONGTYPE") => wrongtype += 1,
            Err(_) => errors += 1,
            Ok(redis::Value::Nil | redis::Value::Okay) => {}
            Ok(_) => data += 1,
        }
    }
    // The walk reaches every kind of answer, not only errors.
    assert!(
        data > 4000 && errors > 600 && wrongtype > 600,
        "data {data}, errors {errors}, wrongtype {wrongtype}"
    );
}

/// What a write tells the rest of the server, compared with redis-server
/// over the same random walk: the keys it signals as changed (seen by a
/// BCAST tracking client, the same hook WATCH uses) and its keyspace
/// notifications. A write that signals a key it only read, or misses one
/// it changed, breaks WATCH and client caches without any reply showing it.
#[test]
fn random_writes_signal_what_redis_signals() {
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    let mut g = Gen(StdRng::seed_from_u64(0x51c4a1));
    let mut ours = Signals::open(
        node.conn(),
        Raw::connect(node.port),
        Raw::connect(node.port),
    );
    let mut theirs = Signals::open(
        reference.client().get_connection().unwrap(),
        reference.raw(),
        reference.raw(),
    );
    let mut signalled = 0;
    for i in 0..6000 {
        let c = random_command(&mut g);
        let args: Vec<&str> = c.iter().map(String::as_str).collect();
        let (a, b) = (ours.run(&args), theirs.run(&args));
        assert_eq!(a, b, "command {i}: {args:?}");
        signalled += !a.0.is_empty() as usize;
    }
    assert!(signalled > 700, "the walk must change keys: {signalled}");
}

/// A writer and the two connections that hear of its writes.
struct Signals<S> {
    writer: redis::Connection,
    tracking: Raw<S>,
    notified: Raw<S>,
}

impl<S: std::io::Read + std::io::Write> Signals<S> {
    fn open(mut writer: redis::Connection, mut tracking: Raw<S>, mut notified: Raw<S>) -> Self {
        run(&mut writer, &["FLUSHALL"]).unwrap();
        run(
            &mut writer,
            &["CONFIG", "SET", "notify-keyspace-events", "KEAn"],
        )
        .unwrap();
        tracking.cmd(&["HELLO", "3"]);
        tracking.read3();
        tracking.cmd(&["CLIENT", "TRACKING", "on", "BCAST"]);
        assert_eq!(tracking.read3(), Frame::Simple("OK".into()));
        notified.cmd(&["PSUBSCRIBE", "__key*__:*"]);
        notified.read2();
        notified.cmd(&["SUBSCRIBE", "end"]);
        notified.read2();
        Signals {
            writer,
            tracking,
            notified,
        }
    }

    /// Runs a command; returns the keys signalled (sorted: the order of
    /// one command's invalidations is not compared) and the notifications,
    /// in order (`new` ones included).
    fn run(&mut self, args: &[&str]) -> (Vec<Vec<u8>>, Vec<String>) {
        let _ = run(&mut self.writer, args);
        let mut keys = Vec::new();
        self.tracking.cmd(&["PING", "end"]);
        loop {
            match self.tracking.read3() {
                Frame::Push(p) => match &p[1] {
                    Frame::Array(ks) => keys.extend(ks.iter().map(|k| match k {
                        Frame::Bulk(k) => k.clone(),
                        other => panic!("{other:?}"),
                    })),
                    other => keys.push(format!("{other:?}").into_bytes()),
                },
                Frame::Bulk(b) if b == b"end" => break,
                other => panic!("{other:?}"),
            }
        }
        run(&mut self.writer, &["PUBLISH", "end", "x"]).unwrap();
        let mut events = Vec::new();
        loop {
            let Frame::Array(m) = self.notified.read2() else {
                panic!("a pub/sub message")
            };
            let text = |f: &Frame| match f {
                Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                other => format!("{other:?}"),
            };
            if text(&m[0]) == "message" {
                break;
            }
            events.push(format!("{} {}", text(&m[2]), text(&m[3])));
        }
        keys.sort();
        (keys, events)
    }
}
