use crate::support::{eventually, Frame, TestNode};
use crate::{bulk, info_field, int, ok};

fn info_expired(r: &mut crate::support::Raw) -> u64 {
    info_field(&bulk(r, &["INFO", "stats"]).unwrap(), "expired_keys")
        .parse()
        .unwrap()
}

#[test]
fn lazy_expiry_on_access() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    ok(&mut r, &["SET", "k", "v", "PX", "50"]);
    eventually("key expired on access", || {
        r.call(&["GET", "k"]) == Frame::Null
    });
    assert_eq!(info_expired(&mut r), 1);
    assert_eq!(int(&mut r, &["TTL", "k"]), -2);
}

#[test]
fn active_expiry_removes_unread_keys() {
    let node = TestNode::start();
    let mut con = node.conn();
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("SET")
            .arg(format!("tmp:{i}"))
            .arg("v")
            .arg("PX")
            .arg(100)
            .ignore();
    }
    for i in 0..100 {
        pipe.cmd("SET").arg(format!("keep:{i}")).arg("v").ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    // Nobody reads the tmp keys; the cycle must remove them by itself.
    let mut r = node.raw();
    eventually("expired keys collected", || info_expired(&mut r) == 5000);
    assert_eq!(int(&mut r, &["DBSIZE"]), 100);
    let info = bulk(&mut r, &["INFO", "keyspace"]).unwrap();
    assert!(info.contains("db0:keys=100,expires=0"), "{info}");
}

#[test]
fn expired_keys_are_invisible_everywhere() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    ok(&mut r, &["SET", "gone", "v", "PX", "1"]);
    ok(&mut r, &["SET", "here", "v"]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(int(&mut r, &["EXISTS", "gone"]), 0);
    assert_eq!(
        r.call(&["KEYS", "*"]),
        Frame::Array(vec![Frame::bulk("here")])
    );
    assert_eq!(r.call(&["MGET", "gone"]), Frame::Array(vec![Frame::Null]));
    assert_eq!(
        r.call(&["SET", "gone", "new", "NX"]),
        Frame::Simple("OK".into())
    );
}
