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

use bytes::Bytes;

use super::args::float;
use super::longdouble::LongDouble;
use super::{flags::*, keys, spec, Ctx, Spec};
use crate::error::{CmdResult, CommandError};
use crate::keyspace::ZSet;

const G: &str = "geo";
const A: &[&str] = &["geo"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("geoadd", -5, WRITE | DENYOOM, keys(1, 1, 1), A, G, "Adds one or more members to a geospatial index. The key is created if it doesn't exist.", geoadd),
    spec("geopos", -2, READONLY, keys(1, 1, 1), A, G, "Returns the longitude and latitude of members from a geospatial index.", geopos),
    spec("geodist", -4, READONLY, keys(1, 1, 1), A, G, "Returns the distance between two members of a geospatial index.", geodist),
    spec("geohash", -2, READONLY, keys(1, 1, 1), A, G, "Returns members from a geospatial index as geohash strings.", geohash),
];

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
    let bits = score as u64;
    let (ilat, ilon) = (squash(bits), squash(bits >> 1));
    let scale = (1u64 << STEP) as f64;
    let edge = |i: u32, min: f64, max: f64| min + (i as f64 / scale) * (max - min);
    let lat = (edge(ilat, LAT_MIN, LAT_MAX) + edge(ilat + 1, LAT_MIN, LAT_MAX)) / 2.0;
    let lon = (edge(ilon, LONG_MIN, LONG_MAX) + edge(ilon + 1, LONG_MIN, LONG_MAX)) / 2.0;
    (lon.clamp(LONG_MIN, LONG_MAX), lat.clamp(LAT_MIN, LAT_MAX))
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
        let (lon, lat) = (float(&t[0])?, float(&t[1])?);
        let Some(score) = score_of(lon, lat) else {
            return Err(CommandError::err(format!(
                "invalid longitude,latitude pair {lon:.6},{lat:.6}"
            )));
        };
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

#[cfg(test)]
mod tests {
    use super::*;

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
