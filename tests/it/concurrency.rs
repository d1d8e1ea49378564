use crate::support::{Frame, Raw, TestNode};
use crate::{bulk, int};

#[test]
fn many_clients_incr_one_key_exactly() {
    let node = TestNode::start();
    let port = node.port;
    let threads: Vec<_> = (0..16)
        .map(|_| {
            std::thread::spawn(move || {
                let mut r = Raw::connect(port);
                // Pipelined bursts so the clients really overlap.
                for _ in 0..25 {
                    let mut batch = Vec::new();
                    for _ in 0..100 {
                        batch.extend_from_slice(&crate::support::encode(&[b"INCR", b"hits"]));
                    }
                    r.send(&batch);
                    for _ in 0..100 {
                        assert!(matches!(r.read2(), Frame::Int(_)));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut r = node.raw();
    assert_eq!(bulk(&mut r, &["GET", "hits"]).as_deref(), Some("40000"));
}

#[test]
fn multi_key_commands_are_atomic() {
    // One client keeps swapping two keys' values with MSET while others
    // read both with MGET: a reader must never see a half-applied MSET.
    let node = TestNode::start();
    let port = node.port;
    let mut w = node.raw();
    w.call(&["MSET", "{a}x", "1", "{b}y", "1"]);
    let writer = std::thread::spawn(move || {
        let mut w = Raw::connect(port);
        for i in 2..2000 {
            let v = i.to_string();
            assert_eq!(
                w.call(&["MSET", "{a}x", &v, "{b}y", &v]),
                Frame::Simple("OK".into())
            );
        }
    });
    let readers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut r = Raw::connect(port);
                for _ in 0..1000 {
                    let Frame::Array(v) = r.call(&["MGET", "{a}x", "{b}y"]) else {
                        panic!()
                    };
                    assert_eq!(v[0], v[1], "MGET saw a partial MSET");
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(int(&mut w, &["EXISTS", "{a}x", "{b}y"]), 2);
}

#[test]
fn async_redis_clients_share_the_server() {
    let node = TestNode::start();
    let client = node.client();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for t in 0..8 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut con = client.get_multiplexed_async_connection().await.unwrap();
                for i in 0..200 {
                    let key = format!("t{t}:{i}");
                    let _: () = redis::cmd("SET")
                        .arg(&key)
                        .arg(i)
                        .query_async(&mut con)
                        .await
                        .unwrap();
                    let v: i64 = redis::cmd("GET")
                        .arg(&key)
                        .query_async(&mut con)
                        .await
                        .unwrap();
                    assert_eq!(v, i);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let n: i64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
        assert_eq!(n, 1600);
    });
}
