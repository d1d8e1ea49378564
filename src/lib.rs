//! Shoal: a Redis-protocol in-memory store that shards, replicates and fails
//! over by itself.
//!
//! Layout (see ARCHITECTURE.md for the map and its boundaries):
//! - [`protocol`]: RESP bytes ⇄ requests and replies; knows nothing else.
//! - [`command`]: the command table (one [`command::Spec`] row per command)
//!   and the handlers, one file per family.
//! - [`keyspace`]: databases of 16384 per-slot tables; never awaits, no I/O.
//! - [`effects`]: the ordered stream of write effects (replication offset,
//!   backlog) that the append-only log and replicas consume.
//! - [`persistence`]: on-disk and DUMP formats.
//! - [`replication`]: PSYNC on both sides, replicas, sidecars.
//! - [`server`]: listeners, connections, the cron, clients, INFO.
//! - [`config`]: the directive table, config file and command line.

pub mod command;
pub mod config;
pub mod effects;
pub mod error;
pub mod glob;
pub mod keyspace;
pub mod logging;
pub mod persistence;
pub mod protocol;
pub mod replication;
pub mod server;
