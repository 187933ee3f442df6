//! Writes the committed seed corpus (`fuzz/seeds/<target>/`) from the codec's own test vectors
//! (`src/codec/testdata.rs`, compiled in here as it is) and a few scripted broker sessions.
//! Run from `fuzz/`: `cargo run --example seed_corpus` (`make fuzz-seeds` at the top).
//! Existing files are replaced; names are stable, so `git status` shows what changed.

use std::fs;
use std::path::Path;

use edgemq::codec::{decode, packet, properties, reason, Packet, ProtocolVersion, Role};
use edgemq_fuzz::broker_sequence::op;
use edgemq_fuzz::decode::context_byte;

/// The test vectors, unchanged: `super::decode`, `super::packet`, ... resolve to the imports
/// above.
#[allow(dead_code)]
#[path = "../../src/codec/testdata.rs"]
mod testdata;

fn main() -> std::io::Result<()> {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = seeds.join(target);
        fs::create_dir_all(&dir)?;
        let name: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        fs::write(dir.join(name), bytes)
    };

    // decode: the context byte, then the vector's bytes.
    let vectors = testdata::all_vectors();
    for (i, v) in vectors.iter().enumerate() {
        let mut bytes = vec![context_byte(v.ctx.role, v.ctx.version)];
        bytes.extend_from_slice(&v.bytes);
        write("decode", &format!("{i:03}-{:?}-{}", v.version, v.name), &bytes)?;
    }
    // ... and streams: a CONNECT followed by every packet a server receives in its version.
    for version in [ProtocolVersion::V31, ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut bytes = vec![context_byte(Role::Server, None)];
        let mine = vectors.iter().filter(|v| v.version == version && v.ctx.role == Role::Server);
        let (connects, rest): (Vec<_>, Vec<_>) =
            mine.partition(|v| matches!(v.packet, Packet::Connect(_)));
        for v in connects.iter().take(1).chain(rest.iter()) {
            bytes.extend_from_slice(&v.bytes);
        }
        write("decode", &format!("stream-{version:?}"), &bytes)?;
    }

    // topic: mode, filter, 0xFF, topic.
    let pairs: [(u8, &str, &str); 12] = [
        (0, "sport/tennis/player1/#", "sport/tennis/player1"),
        (0, "sport/+", "sport/"),
        (0, "+/+", "/finance"),
        (0, "#", "$SYS/uptime"),
        (0, "$SYS/monitor/+", "$SYS/monitor/Clients"),
        (0, "a/+/c", "a//c"),
        (0, "a/#/b", "a/x/b"),
        (0, "$share/g/a/#", "a/b"),
        (0x0D, "+/", "a/"),
        (0x0E, "#", "a/"),
        (0x0F, "a/", "a/"),
        (0x07, "/", "/"),
    ];
    for (i, (mode, filter, topic)) in pairs.iter().enumerate() {
        let mut bytes = vec![*mode];
        bytes.extend_from_slice(filter.as_bytes());
        bytes.push(0xFF);
        bytes.extend_from_slice(topic.as_bytes());
        write("topic", &format!("{i:02}"), &bytes)?;
    }

    // broker_sequence: scripted sessions (see the opcodes in src/broker_sequence.rs).
    let slot = |n: u8, opcode: u8| (n << 4) | opcode;
    #[rustfmt::skip]
    let sessions: [(&str, Vec<u8>); 6] = [
        (
            // 3.1.1 subscriber and publisher, QoS 1 both ways, acks, keep-alive expiry.
            "qos1-v311",
            vec![
                0x02,
                slot(0, op::CONNECT), 0x10, 0x04, 0x00, 0x00,
                slot(0, op::SUBSCRIBE), 0x10, 0x00,
                slot(1, op::CONNECT), 0x14, 0x04, 0x00, 0x00,
                slot(1, op::PUBLISH), 0x08, 0x20, 0x00,
                op::PASS,
                slot(0, op::PUBACK), 0x00,
                slot(1, op::PINGREQ),
                op::ADVANCE, 0x05,
            ],
        ),
        (
            // 5.0 persistent session, QoS 2, offline queueing, reconnect, session expiry.
            "qos2-v5-persistent",
            vec![
                0x02,
                slot(0, op::CONNECT), 0x01, 0x04, 0x03, 0x01,
                slot(0, op::SUBSCRIBE), 0x22, 0x00,
                slot(0, op::CLOSE),
                op::PASS,
                slot(1, op::CONNECT), 0x15, 0x04, 0x00, 0x00,
                slot(1, op::PUBLISH), 0x10, 0x21, 0x00,
                slot(1, op::PUBREL), 0x00,
                op::PASS,
                slot(0, op::CONNECT), 0x01, 0x04, 0x03, 0x01,
                slot(0, op::PUBREC), 0x00,
                slot(0, op::PUBCOMP), 0x00,
                slot(0, op::DISCONNECT), 0x00,
                op::ADVANCE, 0x06,
            ],
        ),
        (
            // Wills: 3.1.1 will on a lost connection, 5.0 will with a delay, takeover.
            "wills-takeover",
            vec![
                0x01,
                slot(2, op::CONNECT), 0x18, 0x04, 0x00, 0x00,
                slot(2, op::SUBSCRIBE), 0x00, 0x00,
                slot(0, op::CONNECT), 0x30, 0x24, 0x00, 0x00,
                slot(1, op::CONNECT), 0x31, 0x24, 0x03, 0x40,
                slot(0, op::CLOSE),
                slot(3, op::CONNECT), 0x35, 0x04, 0x00, 0x00,
                op::ADVANCE, 0x04,
                op::ADVANCE, 0x05,
            ],
        ),
        (
            // Retained messages, a slow reader, back-pressure and big payloads.
            "retained-slow",
            vec![
                0x42,
                slot(0, op::CONNECT), 0x10, 0x04, 0x00, 0x00,
                slot(0, op::READER), 0x01,
                slot(0, op::SUBSCRIBE), 0x10, 0x00,
                slot(1, op::CONNECT), 0x15, 0x04, 0x00, 0x00,
                slot(1, op::PUBLISH), 0x88, 0xA0, 0x00,
                slot(1, op::PUBLISH), 0x89, 0xA1, 0x00,
                slot(1, op::PUBLISH), 0x0A, 0xA2, 0x00,
                slot(1, op::PUBLISH), 0x0B, 0xA3, 0x00,
                op::PASS,
                op::ADVANCE, 0x02,
                slot(0, op::READER), 0x00,
                op::PASS,
                slot(2, op::CONNECT), 0x18, 0x04, 0x00, 0x00,
                slot(2, op::SUBSCRIBE), 0x02, 0x00,
            ],
        ),
        (
            // 5.0 topic aliases, message expiry, subscription identifiers, small Maximum
            // Packet Size and Receive Maximum.
            "v5-properties",
            vec![
                0x02,
                slot(0, op::CONNECT), 0x11, 0x04, 0x2A, 0x01,
                slot(0, op::SUBSCRIBE), 0x10, 0x0C,
                slot(1, op::CONNECT), 0x15, 0x04, 0x00, 0x01,
                slot(1, op::PUBLISH), 0x08, 0x40, 0x09,
                slot(1, op::PUBLISH), 0x08, 0x41, 0x05,
                slot(1, op::PUBLISH), 0x09, 0x42, 0x11,
                op::ADVANCE, 0x02,
                slot(0, op::PUBACK), 0x00,
                slot(0, op::PUBACK), 0x01,
            ],
        ),
        (
            // Raw bytes: a 3.1.1 CONNECT and PINGREQ by hand, then a malformed packet.
            "raw",
            vec![
                0x02,
                slot(0, op::RAW), 16,
                0x10, 0x0E, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00,
                0x02, b'i', b'd',
                slot(0, op::RAW), 2, 0xC0, 0x00,
                op::PASS,
                slot(0, op::RAW), 2, 0x30, 0x00,
            ],
        ),
    ];
    for (name, bytes) in sessions {
        write("broker_sequence", name, &bytes)?;
    }
    Ok(())
}
