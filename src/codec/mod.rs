//! Pure MQTT 3.1 / 3.1.1 / 5.0 codec: bytes in, validated packets or typed errors out, and
//! packets to bytes.
//!
//! Contract: no sockets, no clock, no SQL, no global state; nothing here panics on any input
//! (every index is behind a length check, every length is checked before allocation). "Need
//! more bytes" is `Ok(None)`, never an error. Everything the specifications forbid is rejected
//! here, so the broker only ever sees well-formed packets.

pub mod decode;
pub mod encode;
pub mod error;
pub mod frame;
pub mod packet;
pub mod properties;
pub mod property_codec;
pub mod reader;
pub mod reason;
pub mod topic;
pub mod writer;

pub use decode::{decode, DecodeContext, Role};
pub use encode::{encode, encoded_len};
pub use error::DecodeError;
pub use frame::{check_frame, FrameHeader};
pub use packet::*;
pub use properties::*;
pub use reason::ReasonCode;
#[cfg(test)]
mod testdata;
