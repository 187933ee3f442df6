//! Target `decode`: arbitrary bytes into `codec::decode` for every role and protocol version.
//!
//! Input: byte 0 picks the [`DecodeContext`] ([`context`]), the rest is the byte stream. The
//! stream is decoded packet after packet, as `net` does; a server that decodes a CONNECT
//! switches to that CONNECT's version for the following packets, as the broker does.
//!
//! Checked, for every input:
//! * `decode` and `sniff_connect_version` never panic (nor overflow: debug assertions are on);
//! * a packet consumes at least the 2-byte fixed header and at most what was there;
//! * every strict prefix of a decoded packet is "need more bytes" (`Ok(None)`): the decoder
//!   never judges a packet before it has it whole, nor differently once more bytes arrive;
//!   likewise a prefix of an incomplete packet is incomplete, and an error stays the same
//!   error when a byte is appended;
//! * round trip: `encode(packet)` is exactly `encoded_len(packet)` bytes, and decoding those
//!   bytes in the same context gives the same packet, consuming all of them;
//! * a CONNECT decoded by a server is what `sniff_connect_version` reads off its bytes.

use edgemq::codec::{
    self, encode, encoded_len, sniff_connect_version, DecodeContext, Packet, ProtocolVersion, Role,
};

/// How many packets of one input are decoded at most (inputs are short anyway).
const MAX_PACKETS: usize = 64;

/// The decoding context named by the first input byte: bits 0-2 role and version, bits 3-4
/// the maximum packet size.
pub fn context(byte: u8) -> DecodeContext {
    use ProtocolVersion::{V31, V311, V5};
    let (role, version) = match byte & 0b111 {
        0 => (Role::Server, None), // before CONNECT
        1 => (Role::Server, Some(V31)),
        2 => (Role::Server, Some(V311)),
        3 => (Role::Server, Some(V5)),
        4 => (Role::Client, Some(V31)),
        5 => (Role::Client, Some(V311)),
        6 => (Role::Client, Some(V5)),
        _ => (Role::Client, None), // a caller bug the decoder must survive (decoded as 3.1.1)
    };
    let max_packet_size = match (byte >> 3) & 0b11 {
        0 => u32::MAX,
        1 => 268_435_460, // the largest packet MQTT can frame
        2 => 1024,
        _ => 16,
    };
    DecodeContext { version, max_packet_size, role }
}

/// The context byte for a role and version (the inverse of [`context`], largest packet size).
pub fn context_byte(role: Role, version: Option<ProtocolVersion>) -> u8 {
    use ProtocolVersion::{V31, V311, V5};
    match (role, version) {
        (Role::Server, None) => 0,
        (Role::Server, Some(V31)) => 1,
        (Role::Server, Some(V311)) => 2,
        (Role::Server, Some(V5)) => 3,
        (Role::Client, Some(V31)) => 4,
        (Role::Client, Some(V311)) => 5,
        (Role::Client, Some(V5)) => 6,
        (Role::Client, None) => 7,
    }
}

pub fn run(data: &[u8]) {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let mut ctx = context(first);
    for _ in 0..MAX_PACKETS {
        let _ = sniff_connect_version(rest);
        let (packet, used) = match codec::decode(rest, &ctx) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => {
                // Incomplete stays incomplete for fewer bytes.
                let half = &rest[..rest.len() / 2];
                assert_eq!(codec::decode(half, &ctx), Ok(None), "a prefix of an incomplete packet");
                return;
            }
            Err(error) => {
                // An error is judged on bytes that are there: more bytes do not change it.
                let mut more = rest.to_vec();
                more.push(0);
                assert_eq!(codec::decode(&more, &ctx), Err(error), "the same bytes and one more");
                return;
            }
        };
        assert!(used >= 2 && used <= rest.len(), "consumed {used} of {} bytes", rest.len());
        let bytes = &rest[..used];
        check_prefixes(bytes, &ctx);
        let version = match (&packet, ctx.version) {
            (Packet::Connect(connect), _) => connect.version(),
            (_, Some(version)) => version,
            (_, None) => ProtocolVersion::V311, // Role::Client without a version
        };
        if let Packet::Connect(connect) = &packet {
            assert_eq!(sniff_connect_version(bytes), Some(connect.version()), "sniffed version");
        }
        round_trip(&packet, version, &ctx);
        // The broker decodes what follows a CONNECT in that CONNECT's version.
        if ctx.role == Role::Server && ctx.version.is_none() {
            ctx.version = Some(version);
        }
        rest = &rest[used..];
    }
}

/// Every strict prefix of a whole packet is incomplete; checking them all would be quadratic,
/// so the ones that cut the fixed header, the body's first bytes and its last byte.
fn check_prefixes(bytes: &[u8], ctx: &DecodeContext) {
    let n = bytes.len();
    let cuts = [0, 1, 2, 3, 4, 5, 6, n / 2, n.saturating_sub(2), n - 1];
    for cut in cuts.into_iter().filter(|&c| c < n) {
        assert_eq!(codec::decode(&bytes[..cut], ctx), Ok(None), "prefix of {cut} of {n} bytes");
    }
}

/// `encode` is the inverse of `decode`: same packet back, every encoded byte used.
fn round_trip(packet: &Packet, version: ProtocolVersion, ctx: &DecodeContext) {
    let mut out = Vec::new();
    encode(packet, version, &mut out);
    assert_eq!(out.len(), encoded_len(packet, version), "encoded_len of {packet:?}");
    // Re-decoded without a size limit: the canonical form of a non-canonical input (e.g. a 5.0
    // PUBACK with an empty property block) has another length; the limit is not under test.
    let again = DecodeContext { max_packet_size: u32::MAX, ..*ctx };
    match codec::decode(&out, &again) {
        Ok(Some((decoded, used))) => {
            assert_eq!(&decoded, packet, "round trip changed the packet; encoded {out:02X?}");
            assert_eq!(used, out.len(), "round trip consumed {used} of {} bytes", out.len());
        }
        other => panic!("re-decoding {packet:?} from {out:02X?} gave {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_byte_is_the_inverse_of_context() {
        for byte in 0..8 {
            let ctx = context(byte);
            assert_eq!(context_byte(ctx.role, ctx.version), byte);
        }
    }

    #[test]
    fn every_seed_runs() {
        let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/decode");
        let mut ran = 0;
        for entry in std::fs::read_dir(seeds).expect("seeds/decode") {
            run(&std::fs::read(entry.expect("a seed").path()).expect("a seed file"));
            ran += 1;
        }
        assert!(ran > 60, "{ran} seeds");
    }
}
