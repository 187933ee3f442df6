//! Pure MQTT 3.1 / 3.1.1 / 5.0 codec: bytes in, validated packets or typed errors out, and
//! packets to bytes.
//!
//! Contract: no sockets, no clock, no SQL, no global state; nothing here panics on any input
//! (every index is behind a length check, every length is checked before allocation). "Need
//! more bytes" is `Ok(None)`, never an error. Everything the specifications forbid is rejected
//! here, so the broker only ever sees well-formed packets.
//!
//! What is NOT checked here, because it needs connection or session state, belongs to the
//! broker: topic alias ranges and mappings, Receive Maximum / inflight limits, the peer's
//! Maximum Packet Size for outgoing packets (use [`encoded_len`]), AUTH method consistency,
//! `$share/` syntax and No Local on shared subscriptions, client identifier policy, payload
//! format validation, and the 5.0 DISCONNECT session-expiry rule (0 at CONNECT, non-zero at
//! DISCONNECT).
//!
//! Map: [`frame`] (fixed header, size limit) -> [`mod@decode`] (packets, using [`reader`],
//! [`property_codec`], [`topic`]) and [`mod@encode`] (using [`writer`], [`property_codec`]).
//! [`error`] maps every failure to a reason code. `testdata` (tests only) holds the shared
//! byte vectors.

pub mod decode;
pub mod encode;
pub mod error;
pub mod frame;
pub mod packet;
pub mod properties;
pub mod property_codec;
pub mod reader;
pub mod reason;
pub mod sniff;
pub mod topic;
pub mod writer;

pub use decode::{decode, DecodeContext, Role};
pub use encode::{encode, encoded_len};
pub use error::DecodeError;
pub use frame::{check_frame, FrameHeader, PacketType};
pub use packet::*;
pub use properties::*;
pub use reason::ReasonCode;
pub use sniff::sniff_connect_version;

#[cfg(test)]
mod testdata;
