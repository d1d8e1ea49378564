//! Persistence formats.
//!
//! For now this holds the value serialisation that `DUMP` and `RESTORE` use
//! ([`rdb`]): Redis's RDB encoding of one value, so payloads move between
//! Redis and Shoal in both directions, and the dataset digest ([`digest`])
//! that DEBUG DIGEST reports. The append-only log will live here too.

pub mod aof;
pub mod digest;
pub mod load;
pub mod log;
pub mod rdb;
pub mod rewrite;
pub mod save;
