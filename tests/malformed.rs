//! Hostile and malformed input: every case must get the right reaction, and the broker must
//! keep serving other clients afterwards (checked with a fresh publish/subscribe round trip).
//!
//! Reactions (MQTT 3.1.1 §4.8, MQTT 5.0 §4.13):
//! - MQTT 3.x: the connection is closed, nothing is sent.
//! - MQTT 5.0 after CONNECT: DISCONNECT with the reason code, then close. 0x81 malformed,
//!   0x82 protocol error, 0x95 packet too large, 0x90 topic name invalid; an invalid filter
//!   may be answered with SUBACK 0x8F or DISCONNECT 0x8F.
//! - MQTT 5.0 during CONNECT: CONNACK with the reason code, then close.
//! - Before the protocol version is known (first bytes): closed.
//!
//! Reference mode (`EDGEMQ_TEST_REFERENCE=mosquitto`, Mosquitto 2.0.11), skipped tests:
//! - `second_connect_v5_disconnect_0x82`, `remaining_length_of_5_bytes_v5_disconnect_0x81`,
//!   `duplicate_property_v5_disconnect_0x82`: Mosquitto closes without DISCONNECT.
//! - `connect_v5_trailing_bytes_connack_0x81`, `connect_v5_duplicate_property_connack_0x82`,
//!   `connect_v5_property_not_allowed_connack_0x81`: Mosquitto closes without CONNACK.
//! - `wildcard_in_topic_name_v5_disconnect_0x90`: Mosquitto sends 0x82, not 0x90.
//! - `invalid_filters_v5_rejected_with_0x8f`: Mosquitto sends DISCONNECT 0x81, not 0x8F.
//! - `empty_subscribe_v5_disconnect_0x82`: Mosquitto sends 0x81 (MQTT 5.0 §3.8.3 calls a
//!   SUBSCRIBE without filters a Protocol Error).
//! - `pingreq_with_trailing_bytes_v311_closes` and `_v5_disconnect_0x81`: Mosquitto ignores
//!   the extra byte and answers PINGRESP.
//!
//! All other tests pass against Mosquitto.

mod common;

use common::packets::{self, Connack, Connect, Suback};
use common::{assert_broker_serves, skip_in_reference, Broker, BrokerBuilder, TestClient};

/// Connects a 3.1.1 client, sends `bytes`, asserts the connection is closed with no answer,
/// then that the broker still serves.
fn v311_closes(bytes: &[u8]) {
    packets::assert_framed(bytes);
    let broker = Broker::start();
    let mut c = TestClient::v311(&broker, "hostile");
    c.send(bytes);
    c.expect_closed();
    assert_broker_serves(&broker);
}

/// Connects a 5.0 client, sends `bytes`, asserts DISCONNECT with one of `reasons` and the
/// close, then that the broker still serves.
fn v5_disconnects(bytes: &[u8], reasons: &[u8]) {
    packets::assert_framed(bytes);
    let broker = Broker::start();
    let mut c = TestClient::v5(&broker, "hostile");
    c.send(bytes);
    c.expect_disconnect_v5(reasons);
    assert_broker_serves(&broker);
}

/// Sends `bytes` as the very first thing on a connection and asserts a CONNACK with `code`
/// (5.0 format) followed by the close.
fn v5_connect_refused(bytes: &[u8], code: u8) {
    packets::assert_framed(bytes);
    let broker = Broker::start();
    let mut c = TestClient::connect(&broker);
    c.send(bytes);
    let connack = Connack::parse(&c.read_packet(), true);
    assert_eq!(connack.code, code, "{connack:?}");
    assert!(!connack.session_present, "{connack:?}");
    c.expect_closed();
    assert_broker_serves(&broker);
}

// ----- Connection state ------------------------------------------------------------------------

#[test]
fn first_packet_not_connect_closes() {
    // MQTT-3.1.0-1: the first packet must be CONNECT.
    let broker = Broker::start();
    for first in [
        &[0xC0, 0x00][..],                                 // PINGREQ
        &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00], // SUBSCRIBE id 1 "a" QoS 0
        &[0x30, 0x04, 0x00, 0x01, b'a', b'x'],             // PUBLISH QoS 0 "a" payload "x"
    ] {
        let mut c = TestClient::connect(&broker);
        c.send(first);
        c.expect_closed();
    }
    assert_broker_serves(&broker);
}

#[test]
fn second_connect_v311_closes() {
    // MQTT-3.1.0-2: a second CONNECT is a protocol violation.
    v311_closes(&Connect::v311("hostile").build());
}

#[test]
fn second_connect_v5_disconnect_0x82() {
    if skip_in_reference("Mosquitto closes without DISCONNECT") {
        return;
    }
    v5_disconnects(&Connect::v5("hostile").build(), &[0x82]);
}

// ----- Fixed header ----------------------------------------------------------------------------

/// SUBSCRIBE with fixed-header flags 0b0000 instead of the required 0b0010 (MQTT-3.8.1-1).
const SUBSCRIBE_BAD_FLAGS_V311: [u8; 8] = [
    0x80, 0x06, // SUBSCRIBE with flags 0b0000, remaining length 6
    0x00, 0x01, // packet id 1
    0x00, 0x01, b'a', // filter "a"
    0x00, // requested QoS 0
];

#[test]
fn subscribe_with_reserved_flags_wrong_v311_closes() {
    v311_closes(&SUBSCRIBE_BAD_FLAGS_V311);
}

#[test]
fn subscribe_with_reserved_flags_wrong_v5_disconnect_0x81() {
    v5_disconnects(
        &[
            0x80, 0x07, // SUBSCRIBE with flags 0b0000, remaining length 7
            0x00, 0x01, // packet id 1
            0x00, // properties: none
            0x00, 0x01, b'a', // filter "a"
            0x00, // options: QoS 0
        ],
        &[0x81],
    );
}

#[test]
fn publish_qos3_v311_closes() {
    // MQTT-3.3.1-4: both QoS bits set.
    v311_closes(&[
        0x36, 0x06, // PUBLISH with QoS bits 0b11, remaining length 6
        0x00, 0x01, b'a', // topic "a"
        0x00, 0x01, // packet id 1
        b'x', // payload
    ]);
}

#[test]
fn publish_qos3_v5_disconnect_0x81() {
    v5_disconnects(
        &[
            0x36, 0x07, // PUBLISH with QoS bits 0b11, remaining length 7
            0x00, 0x01, b'a', // topic "a"
            0x00, 0x01, // packet id 1
            0x00, // properties: none
            b'x', // payload
        ],
        &[0x81],
    );
}

#[test]
fn remaining_length_of_5_bytes_v311_closes() {
    // MQTT 3.1.1 §2.2.3: at most 4 bytes.
    v311_closes(&[
        0x30, // PUBLISH QoS 0
        0xFF, 0xFF, 0xFF, 0xFF, 0x01, // Remaining Length continued into a fifth byte
    ]);
}

#[test]
fn remaining_length_of_5_bytes_v5_disconnect_0x81() {
    if skip_in_reference("Mosquitto closes without DISCONNECT") {
        return;
    }
    v5_disconnects(
        &[
            0x30, // PUBLISH QoS 0
            0xFF, 0xFF, 0xFF, 0xFF, 0x01, // Remaining Length continued into a fifth byte
        ],
        &[0x81],
    );
}

// ----- Maximum packet size: rejected on the header, before the body is sent ---------------------

/// A PUBLISH fixed header declaring 2048 bytes; the body is never sent, so a broker that
/// waited for it would time out the test.
const PUBLISH_HEADER_2048: [u8; 3] = [
    0x30, // PUBLISH QoS 0
    0x80, 0x10, // Remaining Length 2048 (0x00 + 0x10 * 128)
];

#[test]
fn packet_beyond_max_packet_size_v311_closes_before_body() {
    let broker = BrokerBuilder::new().mqtt("max_packet_size", 1024).start();
    let mut c = TestClient::v311(&broker, "big");
    c.send(&PUBLISH_HEADER_2048);
    c.expect_closed();
    assert_broker_serves(&broker);
}

#[test]
fn packet_beyond_max_packet_size_v5_disconnect_0x95_before_body() {
    let broker = BrokerBuilder::new().mqtt("max_packet_size", 1024).start();
    let mut c = TestClient::v5(&broker, "big");
    c.send(&PUBLISH_HEADER_2048);
    c.expect_disconnect_v5(&[0x95]); // Packet too large
    assert_broker_serves(&broker);
}

#[test]
fn connect_beyond_max_packet_size_closes_before_body() {
    // Before CONNECT there is no protocol version to answer in: just close.
    let broker = BrokerBuilder::new().mqtt("max_packet_size", 1024).start();
    let mut c = TestClient::connect(&broker);
    c.send(&[
        0x10, // CONNECT
        0x80, 0x10, // Remaining Length 2048
    ]);
    c.expect_closed();
    assert_broker_serves(&broker);
}

/// A CONNECT over 100 KB is closed from its header even though max_packet_size (1 MB by
/// default) would allow it: before CONNECT the limit is `mqtt.max_connect_packet_size`
/// (Mosquitto: a fixed 100000-byte remaining length). Only 8 body bytes are sent, so a
/// broker that waited for the body would keep the connection until its connect timeout, which
/// is set to an hour here.
#[test]
fn connect_over_100_kb_closes_before_body_under_the_default_max_packet_size() {
    let builder = BrokerBuilder::new();
    // Mosquitto has no connect timeout setting (and no need for it: it closes at once too).
    let builder =
        if common::is_reference() { builder } else { builder.mqtt("connect_timeout", "1h") };
    let broker = builder.start();
    let mut c = TestClient::connect(&broker);
    let mut bytes = vec![0x10]; // CONNECT
    bytes.extend(packets::varint(150_000)); // Remaining Length 150,000
    bytes.extend([0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02]);
    c.send(&bytes);
    c.expect_closed();
    assert_broker_serves(&broker);
}

// ----- Packet identifiers -----------------------------------------------------------------------

#[test]
fn packet_id_0_v311_closes() {
    // MQTT-2.3.1-1: QoS > 0 PUBLISH, SUBSCRIBE and UNSUBSCRIBE need a non-zero packet id.
    v311_closes(&[
        0x32, 0x06, // PUBLISH QoS 1, remaining length 6
        0x00, 0x01, b'a', // topic "a"
        0x00, 0x00, // packet id 0
        b'x', // payload
    ]);
    v311_closes(&[
        0x82, 0x06, // SUBSCRIBE, remaining length 6
        0x00, 0x00, // packet id 0
        0x00, 0x01, b'a', // filter "a"
        0x00, // requested QoS 0
    ]);
}

#[test]
fn packet_id_0_v5_disconnects() {
    // The spec names no code for this; edgemq sends 0x81, Mosquitto 0x82 (PUBLISH) and
    // 0x81 (SUBSCRIBE). Both are accepted.
    v5_disconnects(
        &[
            0x32, 0x07, // PUBLISH QoS 1, remaining length 7
            0x00, 0x01, b'a', // topic "a"
            0x00, 0x00, // packet id 0
            0x00, // properties: none
            b'x', // payload
        ],
        &[0x81, 0x82],
    );
    v5_disconnects(
        &[
            0x82, 0x07, // SUBSCRIBE, remaining length 7
            0x00, 0x00, // packet id 0
            0x00, // properties: none
            0x00, 0x01, b'a', // filter "a"
            0x00, // options: QoS 0
        ],
        &[0x81, 0x82],
    );
}

// ----- Topic names -----------------------------------------------------------------------------

#[test]
fn invalid_utf8_in_topic_v311_closes() {
    // MQTT-1.5.3-1.
    v311_closes(&[
        0x30, 0x05, // PUBLISH QoS 0, remaining length 5
        0x00, 0x02, b'a', 0xFF, // topic "a" + 0xFF (never valid in UTF-8)
        b'x', // payload
    ]);
    v311_closes(&[
        0x30, 0x06, // PUBLISH QoS 0, remaining length 6
        0x00, 0x03, 0xED, 0xA0, 0x80, // topic: U+D800 encoded, a surrogate (MQTT-1.5.3-1)
        b'x', // payload
    ]);
}

#[test]
fn invalid_utf8_in_topic_v5_disconnect_0x81() {
    v5_disconnects(
        &[
            0x30, 0x06, // PUBLISH QoS 0, remaining length 6
            0x00, 0x02, b'a', 0xFF, // topic "a" + 0xFF
            0x00, // properties: none
            b'x', // payload
        ],
        &[0x81],
    );
}

#[test]
fn nul_character_in_topic_v311_closes() {
    // MQTT-1.5.3-2: U+0000 is not allowed in UTF-8 strings.
    v311_closes(&[
        0x30, 0x06, // PUBLISH QoS 0, remaining length 6
        0x00, 0x03, b'a', 0x00, b'b', // topic "a\0b"
        b'x', // payload
    ]);
}

#[test]
fn nul_character_in_topic_v5_disconnect_0x81() {
    v5_disconnects(
        &[
            0x30, 0x07, // PUBLISH QoS 0, remaining length 7
            0x00, 0x03, b'a', 0x00, b'b', // topic "a\0b"
            0x00, // properties: none
            b'x', // payload
        ],
        &[0x81],
    );
}

#[test]
fn wildcard_in_topic_name_v311_closes() {
    // MQTT-3.3.2-2.
    v311_closes(&[
        0x30, 0x06, // PUBLISH QoS 0, remaining length 6
        0x00, 0x03, b'a', b'/', b'+', // topic "a/+"
        b'x', // payload
    ]);
    v311_closes(&[
        0x30, 0x06, // PUBLISH QoS 0, remaining length 6
        0x00, 0x03, b'a', b'/', b'#', // topic "a/#"
        b'x', // payload
    ]);
}

#[test]
fn wildcard_in_topic_name_v5_disconnect_0x90() {
    if skip_in_reference("Mosquitto sends 0x82 instead of 0x90") {
        return;
    }
    v5_disconnects(
        &[
            0x30, 0x07, // PUBLISH QoS 0, remaining length 7
            0x00, 0x03, b'a', b'/', b'+', // topic "a/+"
            0x00, // properties: none
            b'x', // payload
        ],
        &[0x90], // Topic Name invalid
    );
}

// ----- Topic filters and SUBSCRIBE payload -------------------------------------------------------

#[test]
fn invalid_filters_v311_close() {
    // MQTT-4.7.1-2 ("#" only last) and MQTT-4.7.1-3 ("+" alone in its level).
    for filter in ["a/#/b", "a+"] {
        let mut body = vec![0x00, 0x01]; // packet id 1
        body.extend(packets::string(filter)); // the filter
        body.push(0x00); // requested QoS 0
        v311_closes(&packets::frame(0x82, &body));
    }
}

#[test]
fn invalid_filters_v5_rejected_with_0x8f() {
    if skip_in_reference("Mosquitto sends DISCONNECT 0x81 instead of 0x8F") {
        return;
    }
    for filter in ["a/#/b", "a+"] {
        let broker = Broker::start();
        let mut c = TestClient::v5(&broker, "hostile");
        let mut body = vec![0x00, 0x01, 0x00]; // packet id 1, properties: none
        body.extend(packets::string(filter)); // the filter
        body.push(0x00); // options: QoS 0
        c.send(&packets::frame(0x82, &body));
        // Either SUBACK with 0x8F for the filter, or DISCONNECT 0x8F and close.
        let packet = c.read_packet();
        if packet.kind() == packets::kind::SUBACK {
            let suback = Suback::parse(&packet, true);
            assert_eq!(suback.codes, [0x8F], "filter {filter:?}: {suback:?}");
            c.ping(); // the connection stays usable
        } else {
            let d = packets::Disconnect::parse(&packet);
            assert_eq!(d.reason, 0x8F, "filter {filter:?}: {packet}");
            c.expect_closed();
        }
        assert_broker_serves(&broker);
    }
}

#[test]
fn empty_subscribe_v311_closes() {
    // MQTT-3.8.3-3: at least one filter.
    v311_closes(&[
        0x82, 0x02, // SUBSCRIBE, remaining length 2
        0x00, 0x01, // packet id 1, and no filters
    ]);
}

#[test]
fn empty_subscribe_v5_disconnect_0x82() {
    if skip_in_reference("Mosquitto sends 0x81; MQTT 5.0 §3.8.3 says Protocol Error") {
        return;
    }
    v5_disconnects(
        &[
            0x82, 0x03, // SUBSCRIBE, remaining length 3
            0x00, 0x01, // packet id 1
            0x00, // properties: none, and no filters
        ],
        &[0x82],
    );
}

// ----- Trailing bytes ----------------------------------------------------------------------------

#[test]
fn connect_v311_trailing_bytes_closes() {
    let broker = Broker::start();
    let mut c = TestClient::connect(&broker);
    c.send(&[
        0x10, 0x0F, // CONNECT, remaining length 15 (one more than the fields)
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
        0x04, // protocol level 4
        0x02, // connect flags: clean session
        0x00, 0x3C, // keep alive 60 s
        0x00, 0x02, b'c', b'1', // client id "c1"
        0x00, // trailing byte
    ]);
    c.expect_closed();
    assert_broker_serves(&broker);
}

#[test]
fn connect_v5_trailing_bytes_connack_0x81() {
    if skip_in_reference("Mosquitto closes without CONNACK") {
        return;
    }
    v5_connect_refused(
        &[
            0x10, 0x10, // CONNECT, remaining length 16 (one more than the fields)
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x05, // protocol level 5
            0x02, // connect flags: clean start
            0x00, 0x3C, // keep alive 60 s
            0x00, // properties: none
            0x00, 0x02, b'c', b'1', // client id "c1"
            0x00, // trailing byte
        ],
        0x81,
    );
}

#[test]
fn pingreq_with_trailing_bytes_v311_closes() {
    if skip_in_reference("Mosquitto ignores the extra byte and answers PINGRESP") {
        return;
    }
    v311_closes(&[
        0xC0, 0x01, // PINGREQ, remaining length 1 (must be 0)
        0x00, // trailing byte
    ]);
}

#[test]
fn pingreq_with_trailing_bytes_v5_disconnect_0x81() {
    if skip_in_reference("Mosquitto ignores the extra byte and answers PINGRESP") {
        return;
    }
    v5_disconnects(
        &[
            0xC0, 0x01, // PINGREQ, remaining length 1 (must be 0)
            0x00, // trailing byte
        ],
        &[0x81],
    );
}

// ----- MQTT 5.0 properties -----------------------------------------------------------------------

#[test]
fn duplicate_property_v5_disconnect_0x82() {
    // MQTT 5.0 §3.3.2.3.2: Payload Format Indicator more than once is a Protocol Error.
    if skip_in_reference("Mosquitto closes without DISCONNECT") {
        return;
    }
    v5_disconnects(
        &[
            0x30, 0x09, // PUBLISH QoS 0, remaining length 9
            0x00, 0x01, b'a', // topic "a"
            0x04, // properties: 4 bytes
            0x01, 0x00, // Payload Format Indicator 0
            0x01, 0x00, // Payload Format Indicator 0, again
            b'x', // payload
        ],
        &[0x82],
    );
}

#[test]
fn property_not_allowed_on_publish_v5_disconnect_0x81() {
    // MQTT 5.0 §2.2.2.2: an identifier not valid for the packet type is a Malformed Packet.
    v5_disconnects(
        &[
            0x30, 0x0A, // PUBLISH QoS 0, remaining length 10
            0x00, 0x01, b'a', // topic "a"
            0x05, // properties: 5 bytes
            0x11, 0x00, 0x00, 0x00,
            0x0A, // Session Expiry Interval 10: CONNECT/CONNACK/DISCONNECT only
            b'x', // payload
        ],
        &[0x81],
    );
}

#[test]
fn connect_v5_duplicate_property_connack_0x82() {
    if skip_in_reference("Mosquitto closes without CONNACK") {
        return;
    }
    v5_connect_refused(
        &[
            0x10, 0x19, // CONNECT, remaining length 25
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x05, // protocol level 5
            0x02, // connect flags: clean start
            0x00, 0x3C, // keep alive 60 s
            0x0A, // properties: 10 bytes
            0x11, 0x00, 0x00, 0x00, 0x0A, // Session Expiry Interval 10
            0x11, 0x00, 0x00, 0x00, 0x0A, // Session Expiry Interval 10, again
            0x00, 0x02, b'c', b'1', // client id "c1"
        ],
        0x82,
    );
}

#[test]
fn connect_v5_property_not_allowed_connack_0x81() {
    if skip_in_reference("Mosquitto closes without CONNACK") {
        return;
    }
    v5_connect_refused(
        &[
            0x10, 0x12, // CONNECT, remaining length 18
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x05, // protocol level 5
            0x02, // connect flags: clean start
            0x00, 0x3C, // keep alive 60 s
            0x03, // properties: 3 bytes
            0x23, 0x00, 0x01, // Topic Alias 1: PUBLISH only
            0x00, 0x02, b'c', b'1', // client id "c1"
        ],
        0x81,
    );
}
