//! Geospatial commands, reply by reply against redis-server: positions are
//! sorted set scores, so every digit of a coordinate or distance comes
//! from the same geohash arithmetic.

use crate::support::{same_as_redis_owned, Frame};

/// A deterministic spread of positions over the storable bounds, with
/// the bounds themselves.
fn positions(n: usize) -> Vec<(String, String)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut v: Vec<(String, String)> = (0..n)
        .map(|_| {
            let lon = next() * 360.0 - 180.0;
            let lat = next() * 170.1 - 85.05;
            (format!("{lon:.6}"), format!("{lat:.6}"))
        })
        .collect();
    for (lon, lat) in [
        ("180", "85.05112878"),
        ("-180", "-85.05112878"),
        ("0", "0"),
        ("-0.000001", "0.000001"),
        ("13.361389", "38.115556"),
    ] {
        v.push((lon.into(), lat.into()));
    }
    v
}

#[test]
fn geo_commands_match_redis() {
    let mut s: Vec<Vec<String>> = Vec::new();
    let mut c = |args: &[&str]| s.push(args.iter().map(|a| a.to_string()).collect());
    c(&[
        "GEOADD",
        "Sicily",
        "13.361389",
        "38.115556",
        "Palermo",
        "15.087269",
        "37.502669",
        "Catania",
    ]);
    c(&["GEOPOS", "Sicily", "Palermo", "Catania", "nowhere"]);
    c(&["GEOPOS", "missing", "a"]);
    for unit in [None, Some("m"), Some("KM"), Some("ft"), Some("mi")] {
        let mut a = vec!["GEODIST", "Sicily", "Palermo", "Catania"];
        a.extend(unit);
        c(&a);
    }
    c(&["GEODIST", "Sicily", "Palermo", "nowhere"]);
    c(&["GEODIST", "Sicily", "Palermo", "Catania", "yards"]);
    c(&["GEODIST", "Sicily", "Palermo", "Catania", "km", "extra"]);
    c(&["GEOHASH", "Sicily", "Palermo", "Catania", "nowhere"]);
    // Options and their replies (added, or changed with CH).
    c(&[
        "GEOADD", "Sicily", "NX", "13.5", "38.2", "Palermo", "14", "37", "Enna",
    ]);
    c(&[
        "GEOADD", "Sicily", "XX", "CH", "13.5", "38.2", "Palermo", "12", "37", "Marsala",
    ]);
    c(&["GEOADD", "Sicily", "CH", "13.5", "38.2", "Palermo"]);
    c(&["ZRANGE", "Sicily", "0", "-1", "WITHSCORES"]);
    c(&["TYPE", "Sicily"]);
    // Errors, word for word.
    c(&["GEOADD", "Sicily", "181", "10", "x"]);
    c(&["GEOADD", "Sicily", "10", "85.06", "x"]);
    c(&["GEOADD", "Sicily", "abc", "10", "x"]);
    c(&["GEOADD", "Sicily", "1", "2", "x", "3"]);
    c(&["GEOADD", "Sicily", "NX", "XX", "1", "2", "x"]);
    c(&["GEOADD", "Sicily", "GT", "1", "2", "x"]);
    c(&["SET", "str", "v"]);
    c(&["GEOADD", "str", "1", "2", "x"]);
    c(&["GEOPOS", "str", "x"]);
    c(&["GEODIST", "str", "x", "y"]);
    c(&["GEOHASH", "str", "x"]);
    // Many positions, the bounds included: scores, positions, hashes,
    // distances.
    let pos = positions(300);
    let mut add = vec!["GEOADD".to_string(), "world".to_string()];
    for (i, (lon, lat)) in pos.iter().enumerate() {
        add.extend([lon.clone(), lat.clone(), format!("p{i}")]);
    }
    s.push(add);
    s.push(vec![
        "ZRANGE".into(),
        "world".into(),
        "0".into(),
        "-1".into(),
        "WITHSCORES".into(),
    ]);
    let names: Vec<String> = (0..pos.len()).map(|i| format!("p{i}")).collect();
    let mut geopos = vec!["GEOPOS".to_string(), "world".to_string()];
    geopos.extend(names.iter().cloned());
    s.push(geopos);
    let mut geohash = vec!["GEOHASH".to_string(), "world".to_string()];
    geohash.extend(names.iter().cloned());
    s.push(geohash);
    for i in 0..pos.len() {
        let j = (i * 7 + 3) % pos.len();
        s.push(vec![
            "GEODIST".into(),
            "world".into(),
            names[i].clone(),
            names[j].clone(),
            "km".into(),
        ]);
        s.push(vec![
            "GEODIST".into(),
            "world".into(),
            names[i].clone(),
            names[i].clone(),
        ]);
    }
    let (node, reference) = same_as_redis_owned(&s);

    // RESP3: coordinates are doubles, distances stay strings.
    let (mut a, mut b) = (node.raw(), reference.raw());
    for cmd in [
        &["HELLO", "3"][..],
        &["GEOPOS", "world", "p1", "p2", "none"],
        &["GEODIST", "world", "p1", "p2", "mi"],
        &["GEOHASH", "world", "p1", "none"],
    ] {
        a.cmd(cmd);
        b.cmd(cmd);
        let (x, y) = (a.read3(), b.read3());
        if cmd[0] != "HELLO" {
            assert!(!matches!(x, Frame::Error(_)), "{cmd:?}: {x:?}");
            assert_eq!(x, y, "{cmd:?}");
        }
    }
}

/// Searches: every form, shape and option, reply by reply against
/// redis-server, unsorted replies included (their order is the order of
/// Redis's search boxes), with stored results compared by content.
#[test]
fn geo_searches_match_redis() {
    let mut s: Vec<Vec<String>> = Vec::new();
    let mut c = |args: &[&str]| s.push(args.iter().map(|a| a.to_string()).collect());
    // Scattered positions, and a dense city.
    let mut add = vec!["GEOADD".to_string(), "w".to_string()];
    for (i, (lon, lat)) in positions(300).iter().enumerate() {
        add.extend([lon.clone(), lat.clone(), format!("p{i}")]);
    }
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let dlon = (x % 100_000) as f64 / 100_000.0 - 0.5;
        let dlat = ((x >> 20) % 100_000) as f64 / 100_000.0 - 0.5;
        add.extend([
            format!("{:.6}", 2.35 + dlon),
            format!("{:.6}", 48.85 + dlat / 2.0),
            format!("c{i}"),
        ]);
    }
    let add_refs: Vec<&str> = add.iter().map(String::as_str).collect();
    c(&add_refs);
    let centres = [
        ("2.35", "48.85"),
        ("-70", "-33"),
        ("10", "79"),
        ("-120", "-84"),
        ("179.9", "0"),
        ("0", "0"),
    ];
    let radii = [
        ("0", "m"),
        ("800", "m"),
        ("30", "km"),
        ("1000", "km"),
        ("3000", "mi"),
        ("20000", "km"),
    ];
    for (lon, lat) in centres {
        for (r, u) in radii {
            for q in [
                format!("GEOSEARCH w FROMLONLAT {lon} {lat} BYRADIUS {r} {u}"),
                format!("GEOSEARCH w FROMLONLAT {lon} {lat} BYRADIUS {r} {u} WITHDIST WITHCOORD WITHHASH ASC"),
                format!("GEOSEARCH w FROMLONLAT {lon} {lat} BYBOX {r} {r} {u} DESC WITHDIST"),
                format!("GEOSEARCH w FROMLONLAT {lon} {lat} BYBOX {r} 10 {u}"),
                format!("GEORADIUS w {lon} {lat} {r} {u} COUNT 5 WITHDIST"),
                format!("GEORADIUS_RO w {lon} {lat} {r} {u} COUNT 3 ANY"),
            ] {
                c(&q.split(' ').collect::<Vec<_>>());
            }
        }
    }
    for m in ["c0", "c7", "p3", "p299"] {
        for q in [
            format!("GEOSEARCH w FROMMEMBER {m} BYRADIUS 50 km WITHDIST"),
            format!("GEORADIUSBYMEMBER w {m} 2000 km COUNT 10 DESC"),
            format!("GEORADIUSBYMEMBER_RO w {m} 100 km WITHCOORD"),
        ] {
            c(&q.split(' ').collect::<Vec<_>>());
        }
    }
    // Stored results, as geohashes and as distances; a missing key.
    for q in [
        "GEOSEARCHSTORE dst w FROMLONLAT 2.35 48.85 BYRADIUS 20 km",
        "ZRANGE dst 0 -1 WITHSCORES",
        "GEOSEARCHSTORE dst w FROMMEMBER c1 BYBOX 40 40 km STOREDIST COUNT 7",
        "ZRANGE dst 0 -1 WITHSCORES",
        "GEORADIUS w 2.35 48.85 10 km STORE r1",
        "GEORADIUSBYMEMBER w c2 10 km STOREDIST r2",
        "ZRANGE r1 0 -1 WITHSCORES",
        "ZRANGE r2 0 -1 WITHSCORES",
        "GEOSEARCHSTORE dst w FROMLONLAT 0 0 BYRADIUS 1 m",
        "EXISTS dst",
        "GEOSEARCHSTORE r1 nokey FROMLONLAT 0 0 BYRADIUS 1 m",
        "EXISTS r1",
        "GEOSEARCH nokey FROMMEMBER x BYRADIUS 1 km",
        "GEORADIUSBYMEMBER nokey x -1 km",
        "GEORADIUS nokey 0 0 1 km",
    ] {
        c(&q.split(' ').collect::<Vec<_>>());
    }
    // Every error, word for word.
    for bad in [
        "GEOSEARCH w FROMMEMBER nosuch BYRADIUS 1 km",
        "GEOSEARCH w FROMLONLAT 0 0",
        "GEOSEARCH w BYRADIUS 1 km",
        "GEOSEARCH w FROMLONLAT 0 0 BYRADIUS 1 km BYBOX 1 1 km",
        "GEOSEARCH w FROMLONLAT 0 0 FROMMEMBER c1 BYRADIUS 1 km",
        "GEOSEARCH w FROMLONLAT 0 0 BYRADIUS x km",
        "GEOSEARCH w FROMLONLAT 0 0 BYRADIUS -1 km",
        "GEOSEARCH w FROMLONLAT 0 0 BYRADIUS 1 yd",
        "GEOSEARCH w FROMLONLAT 0 0 BYBOX x 1 km",
        "GEOSEARCH w FROMLONLAT 0 0 BYBOX 1 x km",
        "GEOSEARCH w FROMLONLAT 0 0 BYBOX 1 -1 km",
        "GEOSEARCH w FROMLONLAT 200 0 BYRADIUS 1 km",
        "GEOSEARCH w FROMLONLAT 0 0 BYRADIUS 1 km COUNT 0",
        "GEOSEARCH w FROMLONLAT 0 0 BYRADIUS 1 km COUNT x",
        "GEOSEARCH w FROMLONLAT 0 0 BYRADIUS 1 km ANY",
        "GEOSEARCH w FROMLONLAT 0 0 BYRADIUS 1 km STORE x",
        "GEOSEARCH w FROMLONLAT 0 0 BYRADIUS 1 km STOREDIST",
        "GEOSEARCHSTORE d w FROMLONLAT 0 0 BYRADIUS 1 km WITHDIST",
        "GEORADIUS w 0 0 1 km STORE d WITHHASH",
        "GEORADIUS_RO w 0 0 1 km STORE d",
        "GEORADIUS w 0 0 1 km FROMLONLAT 0 0",
        "GEORADIUS w 0 91 1 km",
        "GEORADIUSBYMEMBER w nosuch 1 km",
        "GEORADIUSBYMEMBER w c1 x km",
        "geosearch w BYRADIUS 1 km ASC",
    ] {
        c(&bad.split(' ').collect::<Vec<_>>());
    }
    c(&["SET", "str", "v"]);
    c(&[
        "GEOSEARCH",
        "str",
        "FROMLONLAT",
        "0",
        "0",
        "BYRADIUS",
        "-1",
        "km",
    ]);
    c(&["GEORADIUS", "str", "0", "0", "1", "km"]);
    let _ = same_as_redis_owned(&s);
}
