//! Test fixtures shared by the decode and encode tests: literal wire bytes, commented field by
//! field, next to the packet they stand for. Compiled for tests only.
//!
//! Each [`Vector`] is decoded in `decode.rs` tests; the canonical ones (what our encoder
//! writes: shortest forms, properties in ascending identifier order with user properties
//! last) are also compared against `encode` in `encode.rs` tests, and every one of them is
//! used for round trips and truncation at every byte.

use std::num::NonZeroU16;
use std::rc::Rc;

use super::decode::{DecodeContext, Role};
use super::packet::*;
use super::properties::*;
use super::reason::ReasonCode;

/// A packet and its wire form.
pub struct Vector {
    pub name: &'static str,
    /// The version the bytes are framed for (for CONNECT, the one it names).
    pub version: ProtocolVersion,
    /// The decoding side: who receives this packet.
    pub ctx: DecodeContext,
    pub bytes: Vec<u8>,
    pub packet: Packet,
    /// Whether `encode(packet)` produces exactly `bytes`.
    pub canonical: bool,
}

pub fn pid(n: u16) -> PacketId {
    NonZeroU16::new(n).expect("test packet ids are non-zero")
}

pub fn server(version: ProtocolVersion) -> DecodeContext {
    DecodeContext { version: Some(version), max_packet_size: u32::MAX, role: Role::Server }
}

pub fn client(version: ProtocolVersion) -> DecodeContext {
    DecodeContext { version: Some(version), max_packet_size: u32::MAX, role: Role::Client }
}

/// A server that has not seen CONNECT yet.
pub fn connecting() -> DecodeContext {
    DecodeContext { version: None, max_packet_size: u32::MAX, role: Role::Server }
}

fn kv() -> UserProperties {
    vec![("k".to_owned(), "v".to_owned())]
}

fn publish(topic: &str, qos: QoS, packet_id: Option<u16>, payload: &[u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: Rc::from(topic),
        packet_id: packet_id.map(pid),
        properties: PublishProperties::default(),
        payload: Rc::from(payload),
    }
}

fn v(
    name: &'static str,
    version: ProtocolVersion,
    ctx: DecodeContext,
    bytes: Vec<u8>,
    packet: Packet,
) -> Vector {
    Vector { name, version, ctx, bytes, packet, canonical: true }
}

/// Vectors for 3.1 and 3.1.1, which share every packet except CONNECT and CONNACK.
pub fn v3_vectors(version: ProtocolVersion) -> Vec<Vector> {
    let to_server = server(version);
    let to_client = client(version);
    let mut out = Vec::new();

    match version {
        ProtocolVersion::V31 => {
            out.push(v(
                "CONNECT 3.1, 30-character client id",
                version,
                connecting(),
                vec![
                    0x10, 0x2C, // CONNECT, remaining length 44
                    0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', // protocol name "MQIsdp"
                    0x03, // level 3
                    0x02, // flags: clean session
                    0x00, 0x0A, // keep alive 10 s
                    0x00, 0x1E, // client id length 30 (more than 3.1's 23: accepted)
                    b'a', b'b', b'c', b'd', b'e', b'f', b'g', b'h', b'i', b'j', b'k', b'l', b'm',
                    b'n', b'o', b'p', b'q', b'r', b's', b't', b'u', b'v', b'w', b'x', b'y', b'z',
                    b'0', b'1', b'2', b'3',
                ],
                Packet::Connect(Box::new(Connect {
                    protocol: Some(version),
                    clean_start: true,
                    keep_alive: 10,
                    client_id: "abcdefghijklmnopqrstuvwxyz0123".to_owned(),
                    ..Connect::default()
                })),
            ));
            out.push(v(
                "CONNACK 3.1",
                version,
                to_client,
                vec![
                    0x20, 0x02, // CONNACK, remaining length 2
                    0x00, // reserved (3.1 has no session present flag)
                    0x00, // return code: accepted
                ],
                Packet::Connack(Connack::default()),
            ));
        }
        ProtocolVersion::V311 | ProtocolVersion::V5 => {
            out.push(v(
                "CONNECT 3.1.1 with will, user name, password",
                version,
                connecting(),
                vec![
                    0x10, 0x1D, // CONNECT, remaining length 29
                    0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
                    0x04, // level 4
                    0xEE, // flags: user name, password, will retain, will QoS 1, will, clean
                    0x00, 0x3C, // keep alive 60 s
                    0x00, 0x02, b'c', b'1', // client id "c1"
                    0x00, 0x03, b'w', b'/', b't', // will topic "w/t"
                    0x00, 0x02, 0xFF, 0x00, // will payload [FF 00]
                    0x00, 0x01, b'u', // user name "u"
                    0x00, 0x01, 0x70, // password [70]
                ],
                Packet::Connect(Box::new(Connect {
                    protocol: Some(version),
                    clean_start: true,
                    keep_alive: 60,
                    client_id: "c1".to_owned(),
                    will: Some(Will {
                        topic: Rc::from("w/t"),
                        payload: Rc::from(&[0xFF, 0x00][..]),
                        qos: QoS::AtLeastOnce,
                        retain: true,
                        properties: WillProperties::default(),
                    }),
                    username: Some("u".to_owned()),
                    password: Some(vec![0x70]),
                    properties: ConnectProperties::default(),
                })),
            ));
            out.push(v(
                "CONNACK 3.1.1 session present",
                version,
                to_client,
                vec![
                    0x20, 0x02, // CONNACK, remaining length 2
                    0x01, // session present
                    0x00, // return code: accepted
                ],
                Packet::Connack(Connack { session_present: true, ..Connack::default() }),
            ));
        }
    }
    out.push(v(
        "CONNACK refused: not authorized",
        version,
        to_client,
        vec![
            0x20, 0x02, // CONNACK, remaining length 2
            0x00, // no session
            0x05, // return code 5: not authorized
        ],
        Packet::Connack(Connack { reason: ReasonCode::NotAuthorized, ..Connack::default() }),
    ));
    out.push(v(
        "PUBLISH QoS 0",
        version,
        to_server,
        vec![
            0x30, 0x07, // PUBLISH QoS 0, remaining length 7
            0x00, 0x03, b'a', b'/', b'b', // topic "a/b"
            b'h', b'i', // payload "hi"
        ],
        Packet::Publish(publish("a/b", QoS::AtMostOnce, None, b"hi")),
    ));
    out.push(v(
        "PUBLISH QoS 1 DUP RETAIN",
        version,
        to_server,
        vec![
            0x3B, 0x06, // PUBLISH DUP, QoS 1, RETAIN; remaining length 6
            0x00, 0x01, b't', // topic "t"
            0x12, 0x34, // packet id 0x1234
            0x01, // payload [01]
        ],
        Packet::Publish(Publish {
            dup: true,
            retain: true,
            ..publish("t", QoS::AtLeastOnce, Some(0x1234), &[0x01])
        }),
    ));
    out.push(v(
        "PUBLISH QoS 2 empty payload, to a client",
        version,
        to_client,
        vec![
            0x34, 0x05, // PUBLISH QoS 2, remaining length 5
            0x00, 0x01, b't', // topic "t"
            0x00, 0x02, // packet id 2
        ],
        Packet::Publish(publish("t", QoS::ExactlyOnce, Some(2), b"")),
    ));
    out.push(v(
        "PUBACK",
        version,
        to_server,
        vec![0x40, 0x02, 0x00, 0x01], // PUBACK, length 2, packet id 1
        Packet::Puback(PubAck::new(pid(1))),
    ));
    out.push(v(
        "PUBREC",
        version,
        to_client,
        vec![0x50, 0x02, 0x00, 0x02], // PUBREC, length 2, packet id 2
        Packet::Pubrec(PubAck::new(pid(2))),
    ));
    out.push(v(
        "PUBREL",
        version,
        to_server,
        vec![0x62, 0x02, 0x00, 0x03], // PUBREL (flags 0010), length 2, packet id 3
        Packet::Pubrel(PubAck::new(pid(3))),
    ));
    out.push(v(
        "PUBCOMP",
        version,
        to_client,
        vec![0x70, 0x02, 0x00, 0x04], // PUBCOMP, length 2, packet id 4
        Packet::Pubcomp(PubAck::new(pid(4))),
    ));
    out.push(v(
        "SUBSCRIBE two filters",
        version,
        to_server,
        vec![
            0x82, 0x0C, // SUBSCRIBE (flags 0010), remaining length 12
            0x00, 0x0A, // packet id 10
            0x00, 0x03, b'a', b'/', b'#', // filter "a/#"
            0x01, // requested QoS 1
            0x00, 0x01, b'+', // filter "+"
            0x02, // requested QoS 2
        ],
        Packet::Subscribe(Subscribe {
            packet_id: pid(10),
            filters: vec![
                (
                    "a/#".to_owned(),
                    SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() },
                ),
                (
                    "+".to_owned(),
                    SubscriptionOptions { qos: QoS::ExactlyOnce, ..Default::default() },
                ),
            ],
            properties: SubscribeProperties::default(),
        }),
    ));
    out.push(v(
        "SUBACK every return code",
        version,
        to_client,
        vec![
            0x90, 0x06, // SUBACK, remaining length 6
            0x00, 0x0A, // packet id 10
            0x00, 0x01, 0x02, 0x80, // granted QoS 0, 1, 2, failure
        ],
        Packet::Suback(Suback {
            packet_id: pid(10),
            reasons: vec![
                ReasonCode::Success,
                ReasonCode::GrantedQoS1,
                ReasonCode::GrantedQoS2,
                ReasonCode::UnspecifiedError,
            ],
            properties: SubackProperties::default(),
        }),
    ));
    out.push(v(
        "UNSUBSCRIBE two filters",
        version,
        to_server,
        vec![
            0xA2, 0x0A, // UNSUBSCRIBE (flags 0010), remaining length 10
            0x00, 0x0B, // packet id 11
            0x00, 0x03, b'a', b'/', b'#', // filter "a/#"
            0x00, 0x01, b'+', // filter "+"
        ],
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(11),
            filters: vec!["a/#".to_owned(), "+".to_owned()],
            properties: UnsubscribeProperties::default(),
        }),
    ));
    out.push(v(
        "UNSUBACK",
        version,
        to_client,
        vec![0xB0, 0x02, 0x00, 0x0B], // UNSUBACK, length 2, packet id 11
        Packet::Unsuback(Unsuback {
            packet_id: pid(11),
            reasons: Vec::new(),
            properties: UnsubackProperties::default(),
        }),
    ));
    out.push(v("PINGREQ", version, to_server, vec![0xC0, 0x00], Packet::Pingreq));
    out.push(v("PINGRESP", version, to_client, vec![0xD0, 0x00], Packet::Pingresp));
    out.push(v(
        "DISCONNECT",
        version,
        to_server,
        vec![0xE0, 0x00], // DISCONNECT, length 0
        Packet::Disconnect(Disconnect::default()),
    ));
    out
}

/// Vectors for MQTT 5.0: every packet type, every property, and the short forms.
// One `push` per vector reads better than a 500-line `vec![]`.
#[allow(clippy::vec_init_then_push)]
pub fn v5_vectors() -> Vec<Vector> {
    use ProtocolVersion::V5;
    let to_server = server(V5);
    let to_client = client(V5);
    let mut out = Vec::new();

    out.push(v(
        "CONNECT 5.0 with every CONNECT and will property",
        V5,
        connecting(),
        vec![
            0x10, 0x6B, // CONNECT, remaining length 107
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x05, // level 5
            0xD6, // flags: user name, password, will QoS 2, will, clean start
            0x00, 0x1E, // keep alive 30 s
            0x25, // property length 37
            0x11, 0x00, 0x00, 0x0E, 0x10, // session expiry interval 3600
            0x15, 0x00, 0x02, b'g', b's', // authentication method "gs"
            0x16, 0x00, 0x02, 0x01, 0x02, // authentication data [01 02]
            0x17, 0x00, // request problem information 0
            0x19, 0x01, // request response information 1
            0x21, 0x00, 0x14, // receive maximum 20
            0x22, 0x00, 0x0A, // topic alias maximum 10
            0x27, 0x00, 0x00, 0x10, 0x00, // maximum packet size 4096
            0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b', // user property a=b
            0x00, 0x00, // client id "" (server assigns one)
            0x25, // will property length 37
            0x01, 0x01, // payload format indicator 1 (UTF-8)
            0x02, 0x00, 0x00, 0x00, 0x3C, // message expiry interval 60
            0x03, 0x00, 0x04, b't', b'e', b'x', b't', // content type "text"
            0x08, 0x00, 0x03, b'r', b'/', b't', // response topic "r/t"
            0x09, 0x00, 0x02, 0xAB, 0xCD, // correlation data [AB CD]
            0x18, 0x00, 0x00, 0x00, 0x05, // will delay interval 5
            0x26, 0x00, 0x01, b'x', 0x00, 0x01, b'y', // user property x=y
            0x00, 0x01, b'w', // will topic "w"
            0x00, 0x03, b'b', b'y', b'e', // will payload "bye"
            0x00, 0x04, b'u', b's', b'e', b'r', // user name "user"
            0x00, 0x03, 0x01, 0x02, 0x03, // password [01 02 03]
        ],
        Packet::Connect(Box::new(Connect {
            protocol: Some(V5),
            clean_start: true,
            keep_alive: 30,
            client_id: String::new(),
            will: Some(Will {
                topic: Rc::from("w"),
                payload: Rc::from(&b"bye"[..]),
                qos: QoS::ExactlyOnce,
                retain: false,
                properties: WillProperties {
                    will_delay_interval: Some(5),
                    payload_format_indicator: Some(1),
                    message_expiry_interval: Some(60),
                    content_type: Some("text".to_owned()),
                    response_topic: Some("r/t".to_owned()),
                    correlation_data: Some(vec![0xAB, 0xCD]),
                    user_properties: vec![("x".to_owned(), "y".to_owned())],
                },
            }),
            username: Some("user".to_owned()),
            password: Some(vec![1, 2, 3]),
            properties: ConnectProperties {
                session_expiry_interval: Some(3600),
                receive_maximum: Some(20),
                maximum_packet_size: Some(4096),
                topic_alias_maximum: Some(10),
                request_response_information: Some(1),
                request_problem_information: Some(0),
                user_properties: vec![("a".to_owned(), "b".to_owned())],
                authentication_method: Some("gs".to_owned()),
                authentication_data: Some(vec![1, 2]),
            },
        })),
    ));
    out.push(v(
        "CONNECT 5.0 password without user name (allowed in 5.0)",
        V5,
        connecting(),
        vec![
            0x10, 0x11, // CONNECT, remaining length 17
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x05, // level 5
            0x40, // flags: password only
            0x00, 0x00, // keep alive off
            0x00, // property length 0
            0x00, 0x01, b'a', // client id "a"
            0x00, 0x01, b'p', // password "p"
        ],
        Packet::Connect(Box::new(Connect {
            protocol: Some(V5),
            client_id: "a".to_owned(),
            password: Some(b"p".to_vec()),
            ..Connect::default()
        })),
    ));
    out.push(v(
        "CONNACK 5.0 with every CONNACK property",
        V5,
        to_client,
        vec![
            0x20, 0x41, // CONNACK, remaining length 65
            0x01, // session present
            0x00, // reason: success
            0x3E, // property length 62
            0x11, 0x00, 0x00, 0x00, 0x78, // session expiry interval 120
            0x12, 0x00, 0x02, b'i', b'd', // assigned client identifier "id"
            0x13, 0x00, 0x3C, // server keep alive 60
            0x15, 0x00, 0x01, b'm', // authentication method "m"
            0x16, 0x00, 0x01, 0x07, // authentication data [07]
            0x1A, 0x00, 0x01, b'r', // response information "r"
            0x1C, 0x00, 0x01, b's', // server reference "s"
            0x1F, 0x00, 0x02, b'o', b'k', // reason string "ok"
            0x21, 0x00, 0x0A, // receive maximum 10
            0x22, 0x00, 0x05, // topic alias maximum 5
            0x24, 0x01, // maximum QoS 1
            0x25, 0x00, // retain available 0
            0x27, 0x00, 0x01, 0x00, 0x00, // maximum packet size 65536
            0x28, 0x01, // wildcard subscription available 1
            0x29, 0x01, // subscription identifiers available 1
            0x2A, 0x00, // shared subscription available 0
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
        ],
        Packet::Connack(Connack {
            session_present: true,
            reason: ReasonCode::Success,
            properties: ConnackProperties {
                session_expiry_interval: Some(120),
                receive_maximum: Some(10),
                maximum_qos: Some(1),
                retain_available: Some(0),
                maximum_packet_size: Some(65536),
                assigned_client_identifier: Some("id".to_owned()),
                topic_alias_maximum: Some(5),
                reason_string: Some("ok".to_owned()),
                user_properties: kv(),
                wildcard_subscription_available: Some(1),
                subscription_identifiers_available: Some(1),
                shared_subscription_available: Some(0),
                server_keep_alive: Some(60),
                response_information: Some("r".to_owned()),
                server_reference: Some("s".to_owned()),
                authentication_method: Some("m".to_owned()),
                authentication_data: Some(vec![7]),
            },
        }),
    ));
    out.push(v(
        "CONNACK 5.0 refused, no properties",
        V5,
        to_client,
        vec![
            0x20, 0x03, // CONNACK, remaining length 3
            0x00, // no session
            0x87, // reason: not authorized
            0x00, // property length 0
        ],
        Packet::Connack(Connack { reason: ReasonCode::NotAuthorized, ..Connack::default() }),
    ));
    out.push(v(
        "PUBLISH 5.0 QoS 1 with every client PUBLISH property",
        V5,
        to_server,
        vec![
            0x32, 0x28, // PUBLISH QoS 1, remaining length 40
            0x00, 0x03, b'a', b'/', b'b', // topic "a/b"
            0x00, 0x07, // packet id 7
            0x1D, // property length 29
            0x01, 0x01, // payload format indicator 1
            0x02, 0x00, 0x00, 0x00, 0x0A, // message expiry interval 10
            0x03, 0x00, 0x01, b'j', // content type "j"
            0x08, 0x00, 0x01, b'r', // response topic "r"
            0x09, 0x00, 0x01, 0x2A, // correlation data [2A]
            0x23, 0x00, 0x03, // topic alias 3
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
            b'x', b'y', b'z', // payload "xyz"
        ],
        Packet::Publish(Publish {
            properties: PublishProperties {
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(10),
                topic_alias: Some(3),
                response_topic: Some("r".to_owned()),
                correlation_data: Some(vec![0x2A]),
                user_properties: kv(),
                subscription_identifiers: Vec::new(),
                content_type: Some("j".to_owned()),
            },
            ..publish("a/b", QoS::AtLeastOnce, Some(7), b"xyz")
        }),
    ));
    out.push(v(
        "PUBLISH 5.0 to a client with two subscription identifiers",
        V5,
        to_client,
        vec![
            0x30, 0x09, // PUBLISH QoS 0, remaining length 9
            0x00, 0x01, b't', // topic "t"
            0x05, // property length 5
            0x0B, 0x01, // subscription identifier 1
            0x0B, 0x80, 0x01, // subscription identifier 128 (two bytes); empty payload
        ],
        Packet::Publish(Publish {
            properties: PublishProperties {
                subscription_identifiers: vec![1, 128],
                ..PublishProperties::default()
            },
            ..publish("t", QoS::AtMostOnce, None, b"")
        }),
    ));
    out.push(v(
        "PUBLISH 5.0 empty topic with topic alias",
        V5,
        to_server,
        vec![
            0x30, 0x07, // PUBLISH QoS 0, remaining length 7
            0x00, 0x00, // topic "" (replaced by the alias)
            0x03, // property length 3
            0x23, 0x00, 0x01, // topic alias 1
            b'p', // payload "p"
        ],
        Packet::Publish(Publish {
            properties: PublishProperties { topic_alias: Some(1), ..PublishProperties::default() },
            ..publish("", QoS::AtMostOnce, None, b"p")
        }),
    ));
    out.push(v(
        "PUBACK 5.0 short form: success, no properties",
        V5,
        to_server,
        vec![0x40, 0x02, 0x00, 0x05], // PUBACK, length 2, packet id 5
        Packet::Puback(PubAck::new(pid(5))),
    ));
    out.push(v(
        "PUBACK 5.0 reason without properties",
        V5,
        to_client,
        vec![
            0x40, 0x03, // PUBACK, remaining length 3
            0x00, 0x05, // packet id 5
            0x10, // reason: no matching subscribers
        ],
        Packet::Puback(PubAck::with_reason(pid(5), ReasonCode::NoMatchingSubscribers)),
    ));
    out.push(v(
        "PUBACK 5.0 reason and properties",
        V5,
        to_server,
        vec![
            0x40, 0x11, // PUBACK, remaining length 17
            0x00, 0x05, // packet id 5
            0x80, // reason: unspecified error
            0x0D, // property length 13
            0x1F, 0x00, 0x03, b'b', b'a', b'd', // reason string "bad"
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
        ],
        Packet::Puback(PubAck {
            packet_id: pid(5),
            reason: ReasonCode::UnspecifiedError,
            properties: PubackProperties {
                reason_string: Some("bad".to_owned()),
                user_properties: kv(),
            },
        }),
    ));
    out.push(Vector {
        canonical: false,
        ..v(
            "PUBACK 5.0 long form of success (reason 0, property length 0)",
            V5,
            to_server,
            vec![
                0x40, 0x04, // PUBACK, remaining length 4
                0x00, 0x05, // packet id 5
                0x00, // reason: success
                0x00, // property length 0
            ],
            Packet::Puback(PubAck::new(pid(5))),
        )
    });
    out.push(Vector {
        canonical: false,
        ..v(
            "PUBACK 5.0 success reason without property length",
            V5,
            to_server,
            vec![0x40, 0x03, 0x00, 0x05, 0x00], // PUBACK, length 3, id 5, success
            Packet::Puback(PubAck::new(pid(5))),
        )
    });
    out.push(v(
        "PUBREC 5.0 packet identifier in use",
        V5,
        to_client,
        vec![0x50, 0x03, 0x00, 0x06, 0x91], // PUBREC, length 3, id 6, reason 0x91
        Packet::Pubrec(PubAck::with_reason(pid(6), ReasonCode::PacketIdentifierInUse)),
    ));
    out.push(v(
        "PUBREL 5.0 packet identifier not found",
        V5,
        to_server,
        vec![0x62, 0x03, 0x00, 0x07, 0x92], // PUBREL, length 3, id 7, reason 0x92
        Packet::Pubrel(PubAck::with_reason(pid(7), ReasonCode::PacketIdentifierNotFound)),
    ));
    out.push(v(
        "PUBCOMP 5.0 short form",
        V5,
        to_client,
        vec![0x70, 0x02, 0x00, 0x08], // PUBCOMP, length 2, packet id 8
        Packet::Pubcomp(PubAck::new(pid(8))),
    ));
    out.push(v(
        "SUBSCRIBE 5.0 with options and properties",
        V5,
        to_server,
        vec![
            0x82, 0x16, // SUBSCRIBE (flags 0010), remaining length 22
            0x00, 0x0C, // packet id 12
            0x09, // property length 9
            0x0B, 0x2A, // subscription identifier 42
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
            0x00, 0x03, b'a', b'/', b'+', // filter "a/+"
            0x2E, // retain handling 2, retain as published, no local, QoS 2
            0x00, 0x01, b'#', // filter "#"
            0x15, // retain handling 1, no local, QoS 1
        ],
        Packet::Subscribe(Subscribe {
            packet_id: pid(12),
            filters: vec![
                (
                    "a/+".to_owned(),
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::DoNotSend,
                    },
                ),
                (
                    "#".to_owned(),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: true,
                        retain_as_published: false,
                        retain_handling: RetainHandling::SendAtNewSubscribe,
                    },
                ),
            ],
            properties: SubscribeProperties {
                subscription_identifier: Some(42),
                user_properties: kv(),
            },
        }),
    ));
    out.push(v(
        "SUBACK 5.0 every SUBACK reason code",
        V5,
        to_client,
        vec![
            0x90, 0x13, // SUBACK, remaining length 19
            0x00, 0x0C, // packet id 12
            0x04, // property length 4
            0x1F, 0x00, 0x01, b'r', // reason string "r"
            // granted QoS 2, 1, 0; unspecified error; implementation specific; not authorized
            0x02, 0x01, 0x00, 0x80, 0x83, 0x87,
            // filter invalid; id in use; quota; no shared / sub ids / wildcard subscriptions
            0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
        ],
        Packet::Suback(Suback {
            packet_id: pid(12),
            reasons: vec![
                ReasonCode::GrantedQoS2,
                ReasonCode::GrantedQoS1,
                ReasonCode::Success,
                ReasonCode::UnspecifiedError,
                ReasonCode::ImplementationSpecificError,
                ReasonCode::NotAuthorized,
                ReasonCode::TopicFilterInvalid,
                ReasonCode::PacketIdentifierInUse,
                ReasonCode::QuotaExceeded,
                ReasonCode::SharedSubscriptionsNotSupported,
                ReasonCode::SubscriptionIdentifiersNotSupported,
                ReasonCode::WildcardSubscriptionsNotSupported,
            ],
            properties: SubackProperties {
                reason_string: Some("r".to_owned()),
                user_properties: Vec::new(),
            },
        }),
    ));
    out.push(v(
        "UNSUBSCRIBE 5.0 with user property",
        V5,
        to_server,
        vec![
            0xA2, 0x12, // UNSUBSCRIBE (flags 0010), remaining length 18
            0x00, 0x0D, // packet id 13
            0x07, // property length 7
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
            0x00, 0x03, b'a', b'/', b'#', // filter "a/#"
            0x00, 0x01, b'b', // filter "b"
        ],
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(13),
            filters: vec!["a/#".to_owned(), "b".to_owned()],
            properties: UnsubscribeProperties { user_properties: kv() },
        }),
    ));
    out.push(v(
        "UNSUBACK 5.0 every UNSUBACK reason code",
        V5,
        to_client,
        vec![
            0xB0, 0x0A, // UNSUBACK, remaining length 10
            0x00, 0x0D, // packet id 13
            0x00, // property length 0
            0x00, 0x11, 0x80, 0x83, // success, no subscription existed, unspecified, impl.
            0x87, 0x8F, 0x91, // not authorized, filter invalid, packet id in use
        ],
        Packet::Unsuback(Unsuback {
            packet_id: pid(13),
            reasons: vec![
                ReasonCode::Success,
                ReasonCode::NoSubscriptionExisted,
                ReasonCode::UnspecifiedError,
                ReasonCode::ImplementationSpecificError,
                ReasonCode::NotAuthorized,
                ReasonCode::TopicFilterInvalid,
                ReasonCode::PacketIdentifierInUse,
            ],
            properties: UnsubackProperties::default(),
        }),
    ));
    out.push(v(
        "UNSUBACK 5.0 with properties",
        V5,
        to_client,
        vec![
            0xB0, 0x0F, // UNSUBACK, remaining length 15
            0x00, 0x0D, // packet id 13
            0x0B, // property length 11
            0x1F, 0x00, 0x01, b'x', // reason string "x"
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
            0x00, // success
        ],
        Packet::Unsuback(Unsuback {
            packet_id: pid(13),
            reasons: vec![ReasonCode::Success],
            properties: UnsubackProperties {
                reason_string: Some("x".to_owned()),
                user_properties: kv(),
            },
        }),
    ));
    out.push(v("PINGREQ 5.0", V5, to_server, vec![0xC0, 0x00], Packet::Pingreq));
    out.push(v("PINGRESP 5.0", V5, to_client, vec![0xD0, 0x00], Packet::Pingresp));
    out.push(v(
        "DISCONNECT 5.0 short form: normal disconnection",
        V5,
        to_server,
        vec![0xE0, 0x00], // DISCONNECT, length 0
        Packet::Disconnect(Disconnect::default()),
    ));
    out.push(v(
        "DISCONNECT 5.0 reason without properties",
        V5,
        to_server,
        vec![0xE0, 0x01, 0x04], // DISCONNECT, length 1, disconnect with will message
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::DisconnectWithWillMessage,
            properties: DisconnectProperties::default(),
        }),
    ));
    out.push(v(
        "DISCONNECT 5.0 from a client with properties",
        V5,
        to_server,
        vec![
            0xE0, 0x12, // DISCONNECT, remaining length 18
            0x04, // reason: disconnect with will message
            0x10, // property length 16
            0x11, 0x00, 0x00, 0x00, 0x00, // session expiry interval 0
            0x1F, 0x00, 0x01, b'x', // reason string "x"
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
        ],
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::DisconnectWithWillMessage,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                reason_string: Some("x".to_owned()),
                user_properties: kv(),
                server_reference: None,
            },
        }),
    ));
    out.push(v(
        "DISCONNECT 5.0 from a server with properties",
        V5,
        to_client,
        vec![
            0xE0, 0x0A, // DISCONNECT, remaining length 10
            0x9C, // reason: use another server
            0x08, // property length 8
            0x1C, 0x00, 0x01, b'h', // server reference "h"
            0x1F, 0x00, 0x01, b'x', // reason string "x"
        ],
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::UseAnotherServer,
            properties: DisconnectProperties {
                server_reference: Some("h".to_owned()),
                reason_string: Some("x".to_owned()),
                ..DisconnectProperties::default()
            },
        }),
    ));
    for ctx in [to_server, to_client] {
        out.push(v(
            "AUTH 5.0 short form: success",
            V5,
            ctx,
            vec![0xF0, 0x00], // AUTH, length 0
            Packet::Auth(Auth::default()),
        ));
        out.push(v(
            "AUTH 5.0 continue with every AUTH property",
            V5,
            ctx,
            vec![
                0xF0, 0x16, // AUTH, remaining length 22
                0x18, // reason: continue authentication
                0x14, // property length 20
                0x15, 0x00, 0x02, b'g', b's', // authentication method "gs"
                0x16, 0x00, 0x01, 0x09, // authentication data [09]
                0x1F, 0x00, 0x01, b'c', // reason string "c"
                0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
            ],
            Packet::Auth(Auth {
                reason: ReasonCode::ContinueAuthentication,
                properties: AuthProperties {
                    authentication_method: Some("gs".to_owned()),
                    authentication_data: Some(vec![9]),
                    reason_string: Some("c".to_owned()),
                    user_properties: kv(),
                },
            }),
        ));
    }
    out
}

/// Every vector of every version.
pub fn all_vectors() -> Vec<Vector> {
    let mut all = v3_vectors(ProtocolVersion::V31);
    all.extend(v3_vectors(ProtocolVersion::V311));
    all.extend(v5_vectors());
    all
}
