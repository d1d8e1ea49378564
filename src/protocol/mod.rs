//! RESP on the wire: requests in, replies out.
//!
//! This layer knows bytes and frames and nothing of the keyspace or the
//! command table. A request is always an array of bulk strings (or an inline
//! line that splits into one); replies are written straight into the
//! connection's output buffer in the encoding the client negotiated with
//! `HELLO` (RESP2 by default), so a command never builds a reply tree only to
//! serialise it again.
//!
//! Layout:
//! - [`request`]: the incremental request parser, with Redis's limits and its
//!   exact `Protocol error: ...` messages. A protocol error closes the
//!   connection, as in Redis; a command error never does.
//! - [`reply`]: [`ReplyBuf`], the RESP2/RESP3 reply encoder.

pub mod reply;
pub mod request;

pub use reply::{Protocol, ReplyBuf};
pub use request::{parse_request, Parser, ProtocolError, RequestLimits};
