//! Persistence: the append-only log ([`aof`]'s files and manifest, [`log`]'s
//! writer, [`rewrite`]'s compaction, [`load`] at start-up, [`toggle`] for
//! CONFIG SET appendonly), snapshots ([`save`]), Redis's RDB encoding of
//! values for DUMP/RESTORE and imports ([`rdb`]), and the dataset digest
//! DEBUG DIGEST reports ([`digest`]).

pub mod aof;
pub mod digest;
pub mod load;
pub mod log;
pub mod rdb;
pub mod rewrite;
pub mod save;
pub mod toggle;
