//! Geospatial commands: positions kept in a sorted set, as Redis keeps them.
//!
//! A position is stored as its member's score: a 52-bit geohash (longitude
//! and latitude each cut into 2^26 steps over the Web Mercator bounds,
//! bits interleaved), which is an integer a double holds exactly. So a geo
//! key *is* a sorted set (TYPE says zset, ZRANGE and ZREM work on it), and
//! nearby positions have nearby scores, which is what the searches walk.
//!
//! Everything a client sees is computed as Redis computes it, so replies
//! match to the last digit: positions are the centres of their cells,
//! distances are haversine over Redis's Earth radius, printed `%.4f`;
//! coordinates are printed as Redis prints long doubles (`%.17Lf`, trailing
//! zeros cut). GEOADD is recorded as the ZADD it amounts to, as Redis
//! propagates it.
//!
//! A search (GEOSEARCH, GEORADIUS and their variants) walks Redis's nine
//! boxes: the geohash cell around the centre at a precision fitted to the
//! radius, and its eight neighbours, minus those the shape cannot reach;
//! each box is one score range of the sorted set. Points are kept if
//! within the circle or box, in the order found (box by box, by score)
//! unless sorted by distance, so even an unsorted reply is Redis's. A
//! stored result is recorded as the sorted set it made (DEL, then ZADDs).

use bytes::Bytes;

use super::args::float;
use super::longdouble::LongDouble;
use super::{flags::*, key_flags::*, keys, spec, Ctx, KeySearch, Spec};
use crate::error::{CmdResult, CommandError};
use crate::keyspace::ZSet;
use crate::protocol::reply::format_double;

const G: &str = "geo";
const A: &[&str] = &["geo"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("geoadd", -5, WRITE | DENYOOM, keys(1, 1, 1).flags(RW | UPDATE), A, G, "Adds one or more members to a geospatial index. The key is created if it doesn't exist.", geoadd),
    spec("geopos", -2, READONLY, keys(1, 1, 1).flags(RO | ACCESS), A, G, "Returns the longitude and latitude of members from a geospatial index.", geopos),
    spec("geodist", -4, READONLY, keys(1, 1, 1).flags(RO | ACCESS), A, G, "Returns the distance between two members of a geospatial index.", geodist),
    spec("geohash", -2, READONLY, keys(1, 1, 1).flags(RO | ACCESS), A, G, "Returns members from a geospatial index as geohash strings.", geohash),
    spec("geosearch", -7, READONLY, keys(1, 1, 1).flags(RO | ACCESS), A, G, "Queries a geospatial index for members inside an area of a box or a circle.", geosearch),
    spec("geosearchstore", -8, WRITE | DENYOOM, keys(1, 2, 1).flags(OW | UPDATE).then(RO | ACCESS), A, G, "Queries a geospatial index for members inside an area of a box or a circle, optionally stores the result.", geosearchstore),
    Spec { key_search: &[KeySearch::Keyword { word: "STORE", from: 6, lastkey: 0, step: 1, limit: 0, flags: OW | UPDATE }, KeySearch::Keyword { word: "STOREDIST", from: 6, lastkey: 0, step: 1, limit: 0, flags: OW | UPDATE }], option_keys: Some(radius_store_keys), ..spec("georadius", -6, WRITE | DENYOOM, keys(1, 1, 1).flags(RO | ACCESS).then(OW | UPDATE), A, G, "Queries a geospatial index for members within a distance from a coordinate, optionally stores the result.", georadius) },
    spec("georadius_ro", -6, READONLY, keys(1, 1, 1).flags(RO | ACCESS), A, G, "Returns members from a geospatial index that are within a distance from a coordinate.", georadius_ro),
    Spec { key_search: &[KeySearch::Keyword { word: "STORE", from: 5, lastkey: 0, step: 1, limit: 0, flags: OW | UPDATE }, KeySearch::Keyword { word: "STOREDIST", from: 5, lastkey: 0, step: 1, limit: 0, flags: OW | UPDATE }], option_keys: Some(member_store_keys), ..spec("georadiusbymember", -5, WRITE | DENYOOM, keys(1, 1, 1).flags(RO | ACCESS).then(OW | UPDATE), A, G, "Queries a geospatial index for members within a distance from a member, optionally stores the result.", georadiusbymember) },
    spec("georadiusbymember_ro", -5, READONLY, keys(1, 1, 1).flags(RO | ACCESS), A, G, "Returns members from a geospatial index that are within a distance from a member.", georadiusbymember_ro),
];

/// GEORADIUS(BYMEMBER)'s STORE and STOREDIST keys, as Redis 7's key
/// specifications find them: the first of each keyword from the options'
/// start, STORE's first.
fn store_keys(argv: &[&[u8]], from: usize) -> Vec<usize> {
    ["store", "storedist"]
        .iter()
        .filter_map(|word| {
            (from..argv.len())
                .find(|&i| argv[i].eq_ignore_ascii_case(word.as_bytes()))
                .map(|i| i + 1)
                .filter(|&k| k < argv.len())
        })
        .collect()
}

fn radius_store_keys(argv: &[&[u8]]) -> Vec<usize> {
    store_keys(argv, 6)
}

fn member_store_keys(argv: &[&[u8]]) -> Vec<usize> {
    store_keys(argv, 5)
}

// ---- the geohash (Redis's geohash.c and geohash_helper.c) ----

/// Bits per coordinate: 26 each, 52 in all.
const STEP: u32 = 26;
const LONG_MIN: f64 = -180.0;
const LONG_MAX: f64 = 180.0;
/// Web Mercator's latitude bounds: positions beyond cannot be stored.
const LAT_MIN: f64 = -85.05112878;
const LAT_MAX: f64 = 85.05112878;
/// Redis's Earth radius, in metres.
const EARTH_RADIUS: f64 = 6372797.560856;

/// Spreads the 32 bits of `x` over the even bits of a u64.
fn spread(x: u32) -> u64 {
    let mut x = x as u64;
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// The even bits of `x`, packed.
fn squash(x: u64) -> u32 {
    let mut x = x & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    ((x | (x >> 16)) & 0x0000_0000_FFFF_FFFF) as u32
}

/// The `step`-bit geohash of a position within the given ranges, latitude
/// in the even bits; None outside them.
fn encode(
    lon_range: (f64, f64),
    lat_range: (f64, f64),
    lon: f64,
    lat: f64,
    step: u32,
) -> Option<u64> {
    if !(lon_range.0..=lon_range.1).contains(&lon) || !(lat_range.0..=lat_range.1).contains(&lat) {
        return None;
    }
    let scale = (1u64 << step) as f64;
    let lat_offset = (lat - lat_range.0) / (lat_range.1 - lat_range.0) * scale;
    let lon_offset = (lon - lon_range.0) / (lon_range.1 - lon_range.0) * scale;
    Some(spread(lat_offset as u32) | (spread(lon_offset as u32) << 1))
}

/// A position's score: its geohash over the storable bounds.
fn score_of(lon: f64, lat: f64) -> Option<f64> {
    encode((LONG_MIN, LONG_MAX), (LAT_MIN, LAT_MAX), lon, lat, STEP).map(|bits| bits as f64)
}

/// The centre of the cell a score names, clamped to the bounds, as
/// (longitude, latitude).
fn decode(score: f64) -> (f64, f64) {
    // Any sorted set can be asked (ZADD k 1e300 m, then GEOPOS): a score
    // beyond 52 bits decodes, clamped, with C's wrapping arithmetic as
    // Redis's does (see `Cell::area`), never a panic.
    let (lon0, lon1, lat0, lat1) = Cell {
        bits: score as u64,
        step: STEP,
    }
    .area();
    (
        ((lon0 + lon1) / 2.0).clamp(LONG_MIN, LONG_MAX),
        ((lat0 + lat1) / 2.0).clamp(LAT_MIN, LAT_MAX),
    )
}

/// Great-circle distance in metres (haversine), as Redis computes it.
fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let rad = |d: f64| d * (std::f64::consts::PI / 180.0);
    let v = ((rad(lon2) - rad(lon1)) / 2.0).sin();
    if v == 0.0 {
        // Same meridian: the latitude difference alone.
        return EARTH_RADIUS * (rad(lat2) - rad(lat1)).abs();
    }
    let (lat1r, lat2r) = (rad(lat1), rad(lat2));
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS * a.sqrt().asin()
}

/// Metres in one unit of a distance argument.
fn unit(arg: &[u8]) -> Result<f64, CommandError> {
    match arg.to_ascii_lowercase().as_slice() {
        b"m" => Ok(1.0),
        b"km" => Ok(1000.0),
        b"ft" => Ok(0.3048),
        b"mi" => Ok(1609.34),
        _ => Err(CommandError::err(
            "unsupported unit provided. please use M, KM, FT, MI",
        )),
    }
}

/// A distance as Redis replies one.
fn format_distance(d: f64) -> String {
    format!("{d:.4}")
}

/// A coordinate as Redis replies one (its long double, human form).
fn format_coordinate(c: f64) -> String {
    LongDouble::from_f64(c).to_human()
}

// ---- commands ----

fn geoadd(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut i = 2;
    let (mut nx, mut xx) = (false, false);
    let mut zadd: Vec<Bytes> = vec![Bytes::from_static(b"ZADD"), argv[1].clone()];
    while let Some(w) = argv.get(i) {
        match w.to_ascii_lowercase().as_slice() {
            b"nx" => nx = true,
            b"xx" => xx = true,
            b"ch" => {}
            _ => break,
        }
        zadd.push(w.clone());
        i += 1;
    }
    let triples = &argv[i..];
    if triples.is_empty() || !triples.len().is_multiple_of(3) || (nx && xx) {
        return Err(CommandError::Syntax);
    }
    for t in triples.chunks(3) {
        let (lon, lat) = position_arg(&t[..2])?;
        let score = score_of(lon, lat).expect("position_arg checked the bounds");
        zadd.push(Bytes::from((score as u64).to_string()));
        zadd.push(t[2].clone());
    }
    // The sorted set write it amounts to, replied and recorded as ZADD.
    super::zsets::zadd(ctx, &zadd)
}

fn geopos(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    let z = ctx.read::<ZSet>(&mut t, &argv[1])?;
    ctx.out.array(argv.len() - 2);
    for m in &argv[2..] {
        match z.as_ref().and_then(|z| z.score(m)) {
            Some(score) => {
                let (lon, lat) = decode(score);
                ctx.out.array(2);
                ctx.out.double_text(&format_coordinate(lon));
                ctx.out.double_text(&format_coordinate(lat));
            }
            None => ctx.out.null_array(),
        }
    }
    Ok(())
}

fn geodist(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let factor = match argv.len() {
        4 => 1.0,
        5 => unit(&argv[4])?,
        _ => return Err(CommandError::Syntax),
    };
    let mut t = ctx.lock_key(&argv[1]);
    let z = ctx.read::<ZSet>(&mut t, &argv[1])?;
    let scores = z.map(|z| (z.score(&argv[2]), z.score(&argv[3])));
    match scores {
        Some((Some(a), Some(b))) => {
            let ((lon1, lat1), (lon2, lat2)) = (decode(a), decode(b));
            let d = distance(lon1, lat1, lon2, lat2) / factor;
            ctx.out.bulk(format_distance(d).as_bytes());
        }
        _ => ctx.out.null(),
    }
    Ok(())
}

/// Redis's geohash alphabet (base 32 without a, i, l, o).
const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";

fn geohash(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    let z = ctx.read::<ZSet>(&mut t, &argv[1])?;
    ctx.out.array(argv.len() - 2);
    for m in &argv[2..] {
        let Some(score) = z.as_ref().and_then(|z| z.score(m)) else {
            ctx.out.null();
            continue;
        };
        // The standard geohash spans latitudes -90..90, not Mercator's
        // bounds: decode, then encode again over those.
        let (lon, lat) = decode(score);
        let bits = encode((-180.0, 180.0), (-90.0, 90.0), lon, lat, STEP).unwrap_or(0);
        let mut s = [0u8; 11];
        for (i, c) in s.iter_mut().enumerate() {
            // 52 bits make ten characters and two bits; the eleventh is
            // taken as zero, as Redis does.
            let idx = if i == 10 {
                0
            } else {
                (bits >> (52 - (i + 1) * 5)) & 0x1f
            };
            *c = ALPHABET[idx as usize];
        }
        ctx.out.bulk(&s);
    }
    Ok(())
}

// ---- searches (Redis's geohash_helper.c and georadiusGeneric) ----

/// A geohash of `step` bits per coordinate; the zero one (no bits, no
/// step) is a box left out of a search.
#[derive(Clone, Copy, PartialEq)]
struct Cell {
    bits: u64,
    step: u32,
}

const NO_CELL: Cell = Cell { bits: 0, step: 0 };

impl Cell {
    fn at(lon: f64, lat: f64, step: u32) -> Cell {
        let bits = encode((LONG_MIN, LONG_MAX), (LAT_MIN, LAT_MAX), lon, lat, step).unwrap_or(0);
        Cell { bits, step }
    }

    /// (lon min, lon max, lat min, lat max).
    fn area(self) -> (f64, f64, f64, f64) {
        let scale = (1u64 << self.step) as f64;
        let (ilat, ilon) = (squash(self.bits), squash(self.bits >> 1));
        let edge = |i: u32, min: f64, max: f64| min + (i as f64 / scale) * (max - min);
        (
            edge(ilon, LONG_MIN, LONG_MAX),
            edge(ilon.wrapping_add(1), LONG_MIN, LONG_MAX),
            edge(ilat, LAT_MIN, LAT_MAX),
            edge(ilat.wrapping_add(1), LAT_MIN, LAT_MAX),
        )
    }

    /// The neighbour `dx` cells east and `dy` north (each -1, 0 or 1),
    /// wrapping around as Redis's bit arithmetic does.
    fn moved(self, dx: i8, dy: i8) -> Cell {
        let shift = 64 - self.step * 2;
        let step_bits = |d: i8, v: u64, mask: u64| -> u64 {
            let zz = mask >> shift;
            let moved = match d {
                0 => return v,
                1 => v.wrapping_add(zz + 1),
                _ => (v | zz).wrapping_sub(zz + 1),
            };
            moved & ((!mask) >> shift)
        };
        let odd = 0xaaaa_aaaa_aaaa_aaaa_u64;
        let even = 0x5555_5555_5555_5555_u64;
        let x = step_bits(dx, self.bits & odd, even);
        let y = step_bits(dy, self.bits & even, odd);
        Cell {
            bits: x | y,
            step: self.step,
        }
    }

    /// The sorted set scores `[min, max)` of the points inside.
    fn scores(self) -> (f64, f64) {
        let align = |b: u64| (b << (52 - self.step * 2)) as f64;
        (align(self.bits), align(self.bits + 1))
    }
}

#[derive(Clone, Copy)]
enum Shape {
    Circle { radius: f64 },
    Rect { width: f64, height: f64 },
}

/// A search area: its centre, its shape (in `unit`s) and metres per unit.
struct Area {
    lon: f64,
    lat: f64,
    shape: Shape,
    unit: f64,
}

impl Area {
    /// (lon min, lat min, lon max, lat max) of the shape's bounding box.
    fn bounds(&self) -> (f64, f64, f64, f64) {
        let (h, w) = match self.shape {
            Shape::Circle { radius } => (radius, radius),
            Shape::Rect { width, height } => (height / 2.0, width / 2.0),
        };
        let (h, w) = (h * self.unit, w * self.unit);
        let rad = |d: f64| d * (std::f64::consts::PI / 180.0);
        let deg = |r: f64| r / (std::f64::consts::PI / 180.0);
        let lat_delta = deg(h / EARTH_RADIUS);
        let top = deg(w / EARTH_RADIUS / rad(self.lat + lat_delta).cos());
        let bottom = deg(w / EARTH_RADIUS / rad(self.lat - lat_delta).cos());
        // The box is widest on the side nearer the equator.
        let lon_delta = if self.lat < 0.0 { bottom } else { top };
        (
            self.lon - lon_delta,
            self.lat - lat_delta,
            self.lon + lon_delta,
            self.lat + lat_delta,
        )
    }

    /// The nine boxes to search, centre first, then N, S, E, W, NE, NW,
    /// SE, SW; [`NO_CELL`] for those the shape cannot reach.
    fn boxes(&self) -> [Cell; 9] {
        let (min_lon, min_lat, max_lon, max_lat) = self.bounds();
        let radius = match self.shape {
            Shape::Circle { radius } => radius,
            Shape::Rect { width, height } => {
                ((width / 2.0).powi(2) + (height / 2.0).powi(2)).sqrt()
            }
        } * self.unit;
        let mut step = steps_for(radius, self.lat);
        let around = |step| {
            let c = Cell::at(self.lon, self.lat, step);
            let n = [
                (0, 1),
                (0, -1),
                (1, 0),
                (-1, 0),
                (1, 1),
                (-1, 1),
                (1, -1),
                (-1, -1),
            ];
            let mut b = [c; 9];
            for (i, (dx, dy)) in n.into_iter().enumerate() {
                b[i + 1] = c.moved(dx, dy);
            }
            b
        };
        let mut b = around(step);
        // A neighbour that does not reach the bounding box's edge means
        // the cells are too small: one step coarser.
        let too_small = b[1].area().3 < max_lat
            || b[2].area().2 > min_lat
            || b[3].area().1 < max_lon
            || b[4].area().0 > min_lon;
        if step > 1 && too_small {
            step -= 1;
            b = around(step);
        }
        if step >= 2 {
            let (lon0, lon1, lat0, lat1) = b[0].area();
            let mut drop = |cells: [usize; 3]| cells.into_iter().for_each(|i| b[i] = NO_CELL);
            if lat0 < min_lat {
                drop([2, 8, 7]);
            }
            if lat1 > max_lat {
                drop([1, 5, 6]);
            }
            if lon0 < min_lon {
                drop([4, 8, 6]);
            }
            if lon1 > max_lon {
                drop([3, 7, 5]);
            }
        }
        b
    }

    /// The distance of a point from the centre if it lies in the shape.
    fn contains(&self, lon: f64, lat: f64) -> Option<f64> {
        match self.shape {
            Shape::Circle { radius } => {
                let d = distance(self.lon, self.lat, lon, lat);
                (d <= radius * self.unit).then_some(d)
            }
            Shape::Rect { width, height } => {
                let across = distance(lon, lat, self.lon, lat);
                let along = distance(lon, lat, lon, self.lat);
                let inside = across <= width * self.unit / 2.0 && along <= height * self.unit / 2.0;
                inside.then(|| distance(self.lon, self.lat, lon, lat))
            }
        }
    }
}

/// Cell precision (bits per coordinate) for a search of this radius at
/// this latitude.
fn steps_for(mut range: f64, lat: f64) -> u32 {
    const MERCATOR_MAX: f64 = 20037726.37;
    if range == 0.0 {
        return 26;
    }
    let mut step: i32 = 1;
    while range < MERCATOR_MAX {
        range *= 2.0;
        step += 1;
    }
    step -= 2;
    // Cells narrow towards the poles.
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, 26) as u32
}

/// A point found: member, score, position, distance in metres.
struct Found {
    member: Vec<u8>,
    score: f64,
    lon: f64,
    lat: f64,
    dist: f64,
}

/// The points of `z` inside `area`, box by box in score order, stopping
/// at `limit` (ANY).
fn find(z: &ZSet, area: &Area, limit: usize) -> Vec<Found> {
    let mut out = Vec::new();
    let boxes = area.boxes();
    // The last box searched, by index; as in Redis, the centre's (0) is
    // never compared with.
    let mut last = 0;
    for (i, &cell) in boxes.iter().enumerate() {
        if cell == NO_CELL || (last > 0 && boxes[last] == cell) {
            // A huge radius makes neighbours coincide: each box once.
            continue;
        }
        if limit > 0 && out.len() >= limit {
            break;
        }
        last = i;
        let (min, max) = cell.scores();
        let lo = z.count_below(|s, _| s < min);
        let hi = z.count_below(|s, _| s < max);
        for e in z.range(lo, hi, false) {
            let (lon, lat) = decode(e.score);
            if let Some(dist) = area.contains(lon, lat) {
                out.push(Found {
                    member: e.member.as_bytes().to_vec(),
                    score: e.score,
                    lon,
                    lat,
                    dist,
                });
                if limit > 0 && out.len() >= limit {
                    break;
                }
            }
        }
    }
    out
}

/// Which command, for its argument layout.
#[derive(Clone, Copy, PartialEq)]
enum Form {
    /// GEORADIUS key lon lat radius unit ...
    Radius { store: bool },
    /// GEORADIUSBYMEMBER key member radius unit ...
    ByMember { store: bool },
    /// GEOSEARCH key ... / GEOSEARCHSTORE dst key ...
    Search { store: bool },
}

/// A parsed `radius unit` pair.
fn radius_arg(args: &[Bytes]) -> Result<(f64, f64), CommandError> {
    let r = float(&args[0]).map_err(|_| CommandError::err("need numeric radius"))?;
    if r < 0.0 {
        return Err(CommandError::err("radius cannot be negative"));
    }
    Ok((r, unit(&args[1])?))
}

fn position_arg(args: &[Bytes]) -> Result<(f64, f64), CommandError> {
    let (lon, lat) = (float(&args[0])?, float(&args[1])?);
    if !(LONG_MIN..=LONG_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return Err(CommandError::err(format!(
            "invalid longitude,latitude pair {lon:.6},{lat:.6}"
        )));
    }
    Ok((lon, lat))
}

fn member_position(z: &ZSet, m: &[u8]) -> Result<(f64, f64), CommandError> {
    z.score(m)
        .map(decode)
        .ok_or_else(|| CommandError::err("could not decode requested zset member"))
}

#[derive(Clone, Copy, PartialEq)]
enum Sort {
    None,
    Asc,
    Desc,
}

/// Redis's georadiusGeneric: every search command, its checks in Redis's
/// order (the key's type first, then the arguments as they come) and its
/// replies.
fn search(ctx: &mut Ctx, argv: &[Bytes], form: Form) -> CmdResult {
    let src = match form {
        Form::Search { store: true } => &argv[2],
        _ => &argv[1],
    };
    let base = match form {
        Form::Radius { .. } => 6,
        Form::ByMember { .. } => 5,
        Form::Search { store } => 2 + store as usize,
    };
    let opts = &argv[base.min(argv.len())..];
    let searching = matches!(form, Form::Search { .. });
    let may_store = matches!(
        form,
        Form::Radius { store: true } | Form::ByMember { store: true }
    );
    // Every key a STORE option could name is locked with the source, so
    // the whole command runs under one set of locks.
    let mut keys: Vec<&Bytes> = vec![src];
    match form {
        Form::Search { store: true } => keys.push(&argv[1]),
        _ if may_store => keys.extend(opts.windows(2).filter_map(|w| {
            let word = w[0].to_ascii_lowercase();
            (word == b"store" || word == b"storedist").then_some(&w[1])
        })),
        _ => {}
    }
    let mut locked = ctx.lock_keys(keys.iter().copied());
    let db = ctx.db();
    let z: Option<&ZSet> = ctx
        .read::<ZSet>(locked.table_for(db, src), src)?
        .map(|z| &*z);

    let mut dst = match form {
        Form::Search { store: true } => Some(&argv[1]),
        _ => None,
    };
    let mut storedist = false;
    let mut from: Option<(f64, f64)> = None;
    let mut from_member = false;
    let mut shape: Option<(Shape, f64)> = None;
    match form {
        Form::Radius { .. } => {
            from = Some(position_arg(&argv[2..4])?);
            let (r, u) = radius_arg(&argv[4..6])?;
            shape = Some((Shape::Circle { radius: r }, u));
        }
        // Without the key there is nothing to read the member from, nor
        // anything to find: the arguments are only parsed, as in Redis.
        Form::ByMember { .. } => {
            if let Some(z) = z {
                from = Some(member_position(z, &argv[2])?);
                let (r, u) = radius_arg(&argv[3..5])?;
                shape = Some((Shape::Circle { radius: r }, u));
            }
        }
        Form::Search { .. } => {}
    }
    let (mut with_dist, mut with_hash, mut with_coord, mut any) = (false, false, false, false);
    let mut sort = Sort::None;
    let mut count: i64 = 0;
    let (mut by_radius, mut by_box) = (false, false);
    let mut i = 0;
    while i < opts.len() {
        let left = opts.len() - i - 1;
        match opts[i].to_ascii_lowercase().as_slice() {
            b"withdist" => with_dist = true,
            b"withhash" => with_hash = true,
            b"withcoord" => with_coord = true,
            b"any" => any = true,
            b"asc" => sort = Sort::Asc,
            b"desc" => sort = Sort::Desc,
            b"count" if left >= 1 => {
                count = super::args::int(&opts[i + 1])?;
                if count <= 0 {
                    return Err(CommandError::err("COUNT must be > 0"));
                }
                i += 1;
            }
            w @ (b"store" | b"storedist") if left >= 1 && may_store => {
                dst = Some(&opts[i + 1]);
                storedist = w == b"storedist";
                i += 1;
            }
            b"storedist" if matches!(form, Form::Search { store: true }) => storedist = true,
            b"frommember" if left >= 1 && searching && from.is_none() => {
                if let Some(z) = z {
                    from = Some(member_position(z, &opts[i + 1])?);
                }
                from_member = true;
                i += 1;
            }
            b"fromlonlat" if left >= 2 && searching && !from_member => {
                from = Some(position_arg(&opts[i + 1..i + 3])?);
                i += 2;
            }
            b"byradius" if left >= 2 && searching && !by_box => {
                let (r, u) = radius_arg(&opts[i + 1..i + 3])?;
                shape = Some((Shape::Circle { radius: r }, u));
                by_radius = true;
                i += 2;
            }
            b"bybox" if left >= 3 && searching && !by_radius => {
                let w = float(&opts[i + 1]).map_err(|_| CommandError::err("need numeric width"))?;
                let h =
                    float(&opts[i + 2]).map_err(|_| CommandError::err("need numeric height"))?;
                if w < 0.0 || h < 0.0 {
                    return Err(CommandError::err("height or width cannot be negative"));
                }
                shape = Some((
                    Shape::Rect {
                        width: w,
                        height: h,
                    },
                    unit(&opts[i + 3])?,
                ));
                by_box = true;
                i += 3;
            }
            _ => return Err(CommandError::Syntax),
        }
        i += 1;
    }
    let name = String::from_utf8_lossy(&argv[0]);
    if dst.is_some() && (with_dist || with_hash || with_coord) {
        return Err(CommandError::err(format!(
            "{} is not compatible with WITHDIST, WITHHASH and WITHCOORD options",
            if searching {
                "GEOSEARCHSTORE"
            } else {
                "STORE option in GEORADIUS"
            }
        )));
    }
    if searching && !(from_member || from.is_some()) {
        return Err(CommandError::err(format!(
            "exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        )));
    }
    if searching && !(by_radius || by_box) {
        return Err(CommandError::err(format!(
            "exactly one of BYRADIUS and BYBOX can be specified for {name}"
        )));
    }
    if any && count == 0 {
        return Err(CommandError::err(
            "the ANY argument requires COUNT argument",
        ));
    }
    let unit = shape.map_or(1.0, |(_, u)| u);
    let mut found = match (z, from, shape) {
        (Some(z), Some((lon, lat)), Some((shape, unit))) => {
            let area = Area {
                lon,
                lat,
                shape,
                unit,
            };
            find(z, &area, if any { count as usize } else { 0 })
        }
        // No source key: nothing found (and a STORE destination goes).
        _ => Vec::new(),
    };
    if count != 0 && sort == Sort::None && !any {
        sort = Sort::Asc;
    }
    let keep = if count > 0 {
        found.len().min(count as usize)
    } else {
        found.len()
    };
    if sort != Sort::None {
        let order = |a: &Found, b: &Found| match sort {
            Sort::Desc => b.dist.total_cmp(&a.dist),
            _ => a.dist.total_cmp(&b.dist),
        };
        // As Redis: the whole reply sorted stably (the C library's qsort,
        // a merge sort), or, when COUNT keeps fewer, its own partial
        // quicksort, whose order of equal distances is part of the reply.
        if keep == found.len() {
            found.sort_by(order);
        } else if keep > 0 {
            partial_sort(&mut found, keep - 1, &order);
        }
    }
    found.truncate(keep);
    let Some(dst) = dst else {
        let options = with_dist as usize + with_hash as usize + with_coord as usize;
        ctx.out.array(found.len());
        for f in &found {
            if options > 0 {
                ctx.out.array(options + 1);
            }
            ctx.out.bulk(&f.member);
            if with_dist {
                ctx.out.bulk(format_distance(f.dist / unit).as_bytes());
            }
            if with_hash {
                ctx.out.int(f.score as i64);
            }
            if with_coord {
                ctx.out.array(2);
                ctx.out.double_text(&format_coordinate(f.lon));
                ctx.out.double_text(&format_coordinate(f.lat));
            }
        }
        return Ok(());
    };
    let entries: Vec<(Vec<u8>, f64)> = found
        .into_iter()
        .map(|f| (f.member, if storedist { f.dist / unit } else { f.score }))
        .collect();
    let effects: Vec<(String, Bytes)> = entries
        .iter()
        .map(|(m, s)| (format_double(*s), Bytes::copy_from_slice(m)))
        .collect();
    let t = locked.table_for(db, dst);
    let existed = ctx.lookup(t, dst).is_some();
    super::zsets::store(ctx, t, dst, entries);
    // Recorded as the sorted set it made; told as Redis tells it.
    if existed {
        ctx.emit_as(if effects.is_empty() { "del" } else { "" }, &[b"DEL", dst]);
    }
    let event = if searching {
        "geosearchstore"
    } else {
        "georadiusstore"
    };
    for (i, chunk) in effects.chunks(64).enumerate() {
        let mut effect: Vec<&[u8]> = vec![b"ZADD", dst];
        for (s, m) in chunk {
            effect.extend([s.as_bytes(), &m[..]]);
        }
        ctx.emit_as(if i == 0 { event } else { "" }, &effect);
    }
    ctx.out.int(effects.len() as i64);
    Ok(())
}

/// Redis's pqsort (Bentley and McIlroy's quicksort, NetBSD's, made to
/// sort only as far as needed): afterwards `v[..=last]` holds the smallest
/// elements in order. Ported step for step, since which of two equal
/// elements comes first is decided by its partitioning.
fn partial_sort<T>(v: &mut [T], last: usize, cmp: &impl Fn(&T, &T) -> std::cmp::Ordering) {
    let c = |v: &[T], i: isize, j: isize| cmp(&v[i as usize], &v[j as usize]) as i32;
    let swap = |v: &mut [T], i: isize, j: isize| v.swap(i as usize, j as usize);
    let vecswap = |v: &mut [T], i: isize, j: isize, n: isize| {
        for k in 0..n {
            v.swap((i + k) as usize, (j + k) as usize);
        }
    };
    let med3 = |v: &[T], a: isize, b: isize, d: isize| {
        if c(v, a, b) < 0 {
            if c(v, b, d) < 0 {
                b
            } else if c(v, a, d) < 0 {
                d
            } else {
                a
            }
        } else if c(v, b, d) > 0 {
            b
        } else if c(v, a, d) < 0 {
            a
        } else {
            d
        }
    };
    // Whether elements [a, a + n) hold any position 0..=last.
    let wanted = |a: isize, n: isize| a <= last as isize && n > 0;
    let mut stack = vec![(0isize, v.len() as isize)];
    while let Some((mut a, mut n)) = stack.pop() {
        loop {
            if n < 7 {
                for pm in a + 1..a + n {
                    let mut pl = pm;
                    while pl > a && c(v, pl - 1, pl) > 0 {
                        swap(v, pl, pl - 1);
                        pl -= 1;
                    }
                }
                break;
            }
            let mut pm = a + n / 2;
            if n > 7 {
                let (mut pl, mut pn) = (a, a + n - 1);
                if n > 40 {
                    let d = n / 8;
                    pl = med3(v, pl, pl + d, pl + 2 * d);
                    pm = med3(v, pm - d, pm, pm + d);
                    pn = med3(v, pn - 2 * d, pn - d, pn);
                }
                pm = med3(v, pl, pm, pn);
            }
            swap(v, a, pm);
            let (mut pa, mut pb) = (a + 1, a + 1);
            let (mut pc, mut pd) = (a + n - 1, a + n - 1);
            loop {
                while pb <= pc {
                    let r = c(v, pb, a);
                    if r > 0 {
                        break;
                    }
                    if r == 0 {
                        swap(v, pa, pb);
                        pa += 1;
                    }
                    pb += 1;
                }
                while pb <= pc {
                    let r = c(v, pc, a);
                    if r < 0 {
                        break;
                    }
                    if r == 0 {
                        swap(v, pc, pd);
                        pd -= 1;
                    }
                    pc -= 1;
                }
                if pb > pc {
                    break;
                }
                swap(v, pb, pc);
                pb += 1;
                pc -= 1;
            }
            let pn = a + n;
            let r = (pa - a).min(pb - pa);
            vecswap(v, a, pb - r, r);
            let r = (pd - pc).min(pn - pd - 1);
            vecswap(v, pb, pn - r, r);
            let left = pb - pa;
            let right = pd - pc;
            if left > 1 && wanted(a, left) {
                stack.push((a, left));
            }
            if right > 1 && wanted(pn - right, right) {
                a = pn - right;
                n = right;
                continue;
            }
            break;
        }
    }
}

fn geosearch(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    search(ctx, argv, Form::Search { store: false })
}

fn geosearchstore(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    search(ctx, argv, Form::Search { store: true })
}

fn georadius(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    search(ctx, argv, Form::Radius { store: true })
}

fn georadius_ro(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    search(ctx, argv, Form::Radius { store: false })
}

fn georadiusbymember(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    search(ctx, argv, Form::ByMember { store: true })
}

fn georadiusbymember_ro(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    search(ctx, argv, Form::ByMember { store: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The partial sort leaves the smallest elements, in order, in front.
    #[test]
    fn partial_sort_orders_the_front() {
        let mut x: u64 = 7;
        for n in [0usize, 1, 5, 7, 8, 40, 41, 300] {
            for last in [0usize, 3, 10, 299] {
                if n == 0 || last >= n {
                    continue;
                }
                let mut v: Vec<(u64, usize)> = (0..n)
                    .map(|i| {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((x >> 60) % 9, i)
                    })
                    .collect();
                let mut want: Vec<u64> = v.iter().map(|e| e.0).collect();
                want.sort();
                partial_sort(&mut v, last, &|a, b| a.0.cmp(&b.0));
                let got: Vec<u64> = v[..=last].iter().map(|e| e.0).collect();
                assert_eq!(got, want[..=last], "n {n} last {last}");
            }
        }
    }

    /// Scores no GEOADD wrote still decode to a position on the map.
    #[test]
    fn any_score_decodes_within_bounds() {
        for score in [
            0.0,
            -1.0,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            (1u64 << 52) as f64,
            u64::MAX as f64,
        ] {
            let (lon, lat) = decode(score);
            assert!(
                (LONG_MIN..=LONG_MAX).contains(&lon) && (LAT_MIN..=LAT_MAX).contains(&lat),
                "{score}"
            );
            assert!(!format_coordinate(lon).is_empty());
        }
    }

    #[test]
    fn interleaving_round_trips() {
        for x in [0u32, 1, 0x1234_5678, u32::MAX, 0x3ff_ffff] {
            assert_eq!(squash(spread(x)), x);
            assert_eq!(squash(spread(x) << 1 >> 1), x);
        }
    }

    /// Palermo, as in Redis's documentation: its score and where GEOPOS
    /// puts it.
    #[test]
    fn a_known_position_encodes_as_redis_does() {
        let score = score_of(13.361389, 38.115556).unwrap();
        assert_eq!(score, 3479099956230698.0);
        let (lon, lat) = decode(score);
        assert_eq!(format_coordinate(lon), "13.36138933897018433");
        assert_eq!(format_coordinate(lat), "38.11555639549629859");
        assert!(score_of(0.0, 85.1).is_none());
    }
}
