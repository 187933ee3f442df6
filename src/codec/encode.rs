//! Encoding packets for MQTT 3.1, 3.1.1 and 5.0: the exact inverse of [`mod@super::decode`].
//!
//! Contract:
//! * `encode` appends exactly [`encoded_len`] bytes; it computes the Remaining Length first,
//!   reserves once and writes in one pass, with no intermediate buffers.
//! * Shortest forms: 5.0 PUBACK/PUBREC/PUBREL/PUBCOMP with Success and no properties are just
//!   the packet id; with another reason and no properties they omit the property length;
//!   DISCONNECT and AUTH with Success and no properties have Remaining Length 0, DISCONNECT
//!   with another reason and no properties has only the reason byte. Everywhere else 5.0
//!   packets carry a property length, 0 when there are no properties.
//! * Fields a version does not have are left out: before 5.0 no properties and no reason
//!   codes are written; CONNACK carries [`ReasonCode::connack_return_code_v3`], SUBACK maps
//!   every code other than Granted QoS 0/1/2 to 0x80, UNSUBACK is only the packet id,
//!   DISCONNECT is empty. 3.1 CONNACK has no session-present flag (its first byte is
//!   reserved), so it is written as 0. AUTH does not exist before 5.0: it encodes to nothing
//!   (0 bytes).
//! * Never panics. The encoder trusts the packet to satisfy the invariants the decoder
//!   guarantees (strings and binary fields at most 65,535 bytes, `packet_id` present exactly
//!   when QoS > 0, Remaining Length at most 268,435,455); when a hand-built packet breaks
//!   them, the output stays framed but is not a valid packet (over-long strings are cut,
//!   a missing packet id is written as 0, see [`super::writer`]). Checking the size against
//!   the peer's Maximum Packet Size (with [`encoded_len`]) is the caller's job.

use super::packet::{
    Connack, Connect, Packet, ProtocolVersion, PubAck, Publish, QoS, RetainHandling, Suback,
    Subscribe, SubscriptionOptions, Unsuback, Unsubscribe,
};
use super::property_codec::{block_len, content_len, put_block};
use super::reason::ReasonCode;
use super::writer::{
    binary_len, put_binary, put_str, put_u16, put_u8, put_varint, str_len, varint_len,
};

/// Appends the wire form of `packet` for `version` to `out`. Fields the version does not have
/// (properties, reason codes before 5.0) are left out.
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut Vec<u8>) {
    let Some(remaining) = remaining_len(packet, version) else {
        return;
    };
    out.reserve(1 + varint_len(remaining) + remaining);
    put_u8(out, first_byte(packet));
    put_varint(out, remaining);
    write_body(packet, version, out);
}

/// The exact number of bytes `encode` would append (fixed header included).
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    match remaining_len(packet, version) {
        Some(remaining) => 1 + varint_len(remaining) + remaining,
        None => 0,
    }
}

/// Packet type and flag bits (MQTT 5.0 §2.1.2, §2.1.3).
fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::Connack(_) => 0x20,
        Packet::Publish(p) => {
            let mut byte = 0x30 | (p.qos.bits() << 1);
            if p.dup {
                byte |= 0x08;
            }
            if p.retain {
                byte |= 0x01;
            }
            byte
        }
        Packet::Puback(_) => 0x40,
        Packet::Pubrec(_) => 0x50,
        Packet::Pubrel(_) => 0x62, // MQTT-3.6.1-1
        Packet::Pubcomp(_) => 0x70,
        Packet::Subscribe(_) => 0x82, // MQTT-3.8.1-1
        Packet::Suback(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2, // MQTT-3.10.1-1
        Packet::Unsuback(_) => 0xB0,
        Packet::Pingreq => 0xC0,
        Packet::Pingresp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    }
}

/// The Remaining Length, or `None` when the packet does not exist in `version` (AUTH < 5.0).
fn remaining_len(packet: &Packet, version: ProtocolVersion) -> Option<usize> {
    let v5 = version.is_v5();
    Some(match packet {
        Packet::Connect(c) => connect_len(c),
        Packet::Connack(c) => 2 + if v5 { block_len(&c.properties) } else { 0 },
        Packet::Publish(p) => publish_len(p, v5),
        Packet::Puback(a) | Packet::Pubrec(a) | Packet::Pubrel(a) | Packet::Pubcomp(a) => {
            2 + match ack_form(a, v5) {
                AckForm::IdOnly => 0,
                AckForm::Reason => 1,
                AckForm::Full => 1 + block_len(&a.properties),
            }
        }
        Packet::Subscribe(s) => {
            let filters: usize = s.filters.iter().map(|(f, _)| str_len(f) + 1).sum();
            2 + if v5 { block_len(&s.properties) } else { 0 } + filters
        }
        Packet::Suback(s) => 2 + if v5 { block_len(&s.properties) } else { 0 } + s.reasons.len(),
        Packet::Unsubscribe(u) => {
            let filters: usize = u.filters.iter().map(|f| str_len(f)).sum();
            2 + if v5 { block_len(&u.properties) } else { 0 } + filters
        }
        Packet::Unsuback(u) => {
            if v5 {
                2 + block_len(&u.properties) + u.reasons.len()
            } else {
                2
            }
        }
        Packet::Pingreq | Packet::Pingresp => 0,
        Packet::Disconnect(d) => {
            if !v5 {
                0
            } else if content_len(&d.properties) > 0 {
                1 + block_len(&d.properties)
            } else if d.reason != ReasonCode::Success {
                1
            } else {
                0
            }
        }
        Packet::Auth(a) => {
            if !v5 {
                return None;
            }
            if a.reason == ReasonCode::Success && content_len(&a.properties) == 0 {
                0
            } else {
                1 + block_len(&a.properties)
            }
        }
    })
}

/// Which of the three 5.0 PUBACK-family forms to write (§3.4.2.1).
enum AckForm {
    /// Packet id only: Success, no properties (always the form before 5.0).
    IdOnly,
    /// Packet id and reason code, no property length.
    Reason,
    /// Packet id, reason code, properties.
    Full,
}

fn ack_form(ack: &PubAck, v5: bool) -> AckForm {
    if !v5 {
        AckForm::IdOnly
    } else if content_len(&ack.properties) > 0 {
        AckForm::Full
    } else if ack.reason != ReasonCode::Success {
        AckForm::Reason
    } else {
        AckForm::IdOnly
    }
}

/// Protocol name with its length prefix: `MQIsdp` for 3.1, `MQTT` otherwise.
fn protocol_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V31 => "MQIsdp",
        ProtocolVersion::V311 | ProtocolVersion::V5 => "MQTT",
    }
}

fn connect_len(c: &Connect) -> usize {
    let version = c.version();
    let v5 = version.is_v5();
    let mut len = str_len(protocol_name(version)) + 1 + 1 + 2; // name, level, flags, keep-alive
    if v5 {
        len += block_len(&c.properties);
    }
    len += str_len(&c.client_id);
    if let Some(will) = &c.will {
        if v5 {
            len += block_len(&will.properties);
        }
        len += str_len(&will.topic) + binary_len(&will.payload);
    }
    if let Some(username) = &c.username {
        len += str_len(username);
    }
    if let Some(password) = &c.password {
        len += binary_len(password);
    }
    len
}

fn publish_len(p: &Publish, v5: bool) -> usize {
    let packet_id = match p.qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce | QoS::ExactlyOnce => 2,
    };
    str_len(&p.topic) + packet_id + if v5 { block_len(&p.properties) } else { 0 } + p.payload.len()
}

fn write_body(packet: &Packet, version: ProtocolVersion, out: &mut Vec<u8>) {
    let v5 = version.is_v5();
    match packet {
        Packet::Connect(c) => write_connect(c, out),
        Packet::Connack(c) => write_connack(c, version, out),
        Packet::Publish(p) => write_publish(p, v5, out),
        Packet::Puback(a) | Packet::Pubrec(a) | Packet::Pubrel(a) | Packet::Pubcomp(a) => {
            write_ack(a, v5, out)
        }
        Packet::Subscribe(s) => write_subscribe(s, v5, out),
        Packet::Suback(s) => write_suback(s, v5, out),
        Packet::Unsubscribe(u) => write_unsubscribe(u, v5, out),
        Packet::Unsuback(u) => write_unsuback(u, v5, out),
        Packet::Pingreq | Packet::Pingresp => {}
        Packet::Disconnect(d) => {
            if v5 {
                if content_len(&d.properties) > 0 {
                    put_u8(out, d.reason.to_byte());
                    put_block(out, &d.properties);
                } else if d.reason != ReasonCode::Success {
                    put_u8(out, d.reason.to_byte());
                }
            }
        }
        Packet::Auth(a) => {
            if v5 && (a.reason != ReasonCode::Success || content_len(&a.properties) > 0) {
                put_u8(out, a.reason.to_byte());
                put_block(out, &a.properties);
            }
        }
    }
}

fn write_connect(c: &Connect, out: &mut Vec<u8>) {
    let version = c.version();
    let v5 = version.is_v5();
    put_str(out, protocol_name(version));
    put_u8(out, version.level());
    let mut flags = 0u8;
    if c.clean_start {
        flags |= 0x02;
    }
    if let Some(will) = &c.will {
        flags |= 0x04 | (will.qos.bits() << 3);
        if will.retain {
            flags |= 0x20;
        }
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    put_u8(out, flags);
    put_u16(out, c.keep_alive);
    if v5 {
        put_block(out, &c.properties);
    }
    put_str(out, &c.client_id);
    if let Some(will) = &c.will {
        if v5 {
            put_block(out, &will.properties);
        }
        put_str(out, &will.topic);
        put_binary(out, &will.payload);
    }
    if let Some(username) = &c.username {
        put_str(out, username);
    }
    if let Some(password) = &c.password {
        put_binary(out, password);
    }
}

fn write_connack(c: &Connack, version: ProtocolVersion, out: &mut Vec<u8>) {
    match version {
        ProtocolVersion::V31 => {
            put_u8(out, 0);
            put_u8(out, c.reason.connack_return_code_v3());
        }
        ProtocolVersion::V311 => {
            put_u8(out, u8::from(c.session_present));
            put_u8(out, c.reason.connack_return_code_v3());
        }
        ProtocolVersion::V5 => {
            put_u8(out, u8::from(c.session_present));
            put_u8(out, c.reason.to_byte());
            put_block(out, &c.properties);
        }
    }
}

fn write_publish(p: &Publish, v5: bool, out: &mut Vec<u8>) {
    put_str(out, &p.topic);
    match p.qos {
        QoS::AtMostOnce => {}
        QoS::AtLeastOnce | QoS::ExactlyOnce => put_u16(out, p.packet_id.map_or(0, |id| id.get())),
    }
    if v5 {
        put_block(out, &p.properties);
    }
    out.extend_from_slice(&p.payload);
}

fn write_ack(a: &PubAck, v5: bool, out: &mut Vec<u8>) {
    put_u16(out, a.packet_id.get());
    match ack_form(a, v5) {
        AckForm::IdOnly => {}
        AckForm::Reason => put_u8(out, a.reason.to_byte()),
        AckForm::Full => {
            put_u8(out, a.reason.to_byte());
            put_block(out, &a.properties);
        }
    }
}

/// Subscription options byte (3.1.1 §3.8.3.1: QoS only; 5.0 §3.8.3.1: all options).
fn options_byte(o: &SubscriptionOptions, v5: bool) -> u8 {
    let mut byte = o.qos.bits();
    if v5 {
        if o.no_local {
            byte |= 0x04;
        }
        if o.retain_as_published {
            byte |= 0x08;
        }
        let retain_handling = match o.retain_handling {
            RetainHandling::SendAtSubscribe => 0,
            RetainHandling::SendAtNewSubscribe => 1,
            RetainHandling::DoNotSend => 2,
        };
        byte |= retain_handling << 4;
    }
    byte
}

fn write_subscribe(s: &Subscribe, v5: bool, out: &mut Vec<u8>) {
    put_u16(out, s.packet_id.get());
    if v5 {
        put_block(out, &s.properties);
    }
    for (filter, options) in &s.filters {
        put_str(out, filter);
        put_u8(out, options_byte(options, v5));
    }
}

/// The 3.1.1 SUBACK return code for a reason (3.1.1 §3.9.3).
fn suback_return_code_v3(reason: ReasonCode) -> u8 {
    match reason {
        ReasonCode::Success => 0x00,
        ReasonCode::GrantedQoS1 => 0x01,
        ReasonCode::GrantedQoS2 => 0x02,
        _ => 0x80,
    }
}

fn write_suback(s: &Suback, v5: bool, out: &mut Vec<u8>) {
    put_u16(out, s.packet_id.get());
    if v5 {
        put_block(out, &s.properties);
        out.extend(s.reasons.iter().map(|r| r.to_byte()));
    } else {
        out.extend(s.reasons.iter().map(|r| suback_return_code_v3(*r)));
    }
}

fn write_unsubscribe(u: &Unsubscribe, v5: bool, out: &mut Vec<u8>) {
    put_u16(out, u.packet_id.get());
    if v5 {
        put_block(out, &u.properties);
    }
    for filter in &u.filters {
        put_str(out, filter);
    }
}

fn write_unsuback(u: &Unsuback, v5: bool, out: &mut Vec<u8>) {
    put_u16(out, u.packet_id.get());
    if v5 {
        put_block(out, &u.properties);
        out.extend(u.reasons.iter().map(|r| r.to_byte()));
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::codec::decode::decode;
    use crate::codec::packet::{Auth, Disconnect, Will};
    use crate::codec::properties::*;
    use crate::codec::testdata::{all_vectors, client, connecting, pid, server};
    use ProtocolVersion::{V31, V311, V5};

    fn bytes(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
        let mut out = Vec::new();
        encode(packet, version, &mut out);
        assert_eq!(out.len(), encoded_len(packet, version), "encoded_len of {packet:?}");
        out
    }

    #[test]
    fn canonical_vectors_encode_to_their_bytes() {
        let mut checked = 0;
        for vector in all_vectors().into_iter().filter(|v| v.canonical) {
            assert_eq!(
                bytes(&vector.packet, vector.version),
                vector.bytes,
                "{} ({:?})",
                vector.name,
                vector.version
            );
            checked += 1;
        }
        assert!(checked > 50, "only {checked} canonical vectors");
    }

    #[test]
    fn every_vector_round_trips() {
        for vector in all_vectors() {
            let out = bytes(&vector.packet, vector.version);
            assert_eq!(
                decode(&out, &vector.ctx),
                Ok(Some((vector.packet.clone(), out.len()))),
                "{} ({:?})",
                vector.name,
                vector.version
            );
        }
    }

    #[test]
    fn encode_appends() {
        let mut out = vec![0xAA];
        encode(&Packet::Pingreq, V311, &mut out);
        assert_eq!(out, [0xAA, 0xC0, 0x00]);
    }

    #[test]
    fn large_publish_uses_multi_byte_remaining_length() {
        for size in [120usize, 121, 16_380, 16_381, 2_097_200] {
            let packet = Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: Rc::from("t"),
                packet_id: Some(pid(9)),
                properties: PublishProperties::default(),
                payload: Rc::from(vec![0x5A; size]),
            });
            for version in [V311, V5] {
                let out = bytes(&packet, version);
                assert_eq!(decode(&out, &server(version)), Ok(Some((packet.clone(), out.len()))));
            }
        }
    }

    #[test]
    fn v3_leaves_out_properties_and_reason_codes() {
        // PUBLISH properties are not written before 5.0.
        let publish = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: Rc::from("a"),
            packet_id: None,
            properties: PublishProperties { topic_alias: Some(4), ..Default::default() },
            payload: Rc::from(&b"x"[..]),
        });
        assert_eq!(
            bytes(&publish, V311),
            [
                0x31, 0x04, // PUBLISH retain, remaining length 4
                0x00, 0x01, b'a', // topic "a"
                b'x', // payload
            ]
        );
        // PUBACK reason is dropped.
        let puback = Packet::Puback(PubAck::with_reason(pid(1), ReasonCode::QuotaExceeded));
        assert_eq!(bytes(&puback, V31), [0x40, 0x02, 0x00, 0x01]);
        // UNSUBACK is only the packet id.
        let unsuback = Packet::Unsuback(Unsuback {
            packet_id: pid(2),
            reasons: vec![ReasonCode::NoSubscriptionExisted],
            properties: UnsubackProperties {
                reason_string: Some("r".into()),
                ..Default::default()
            },
        });
        assert_eq!(bytes(&unsuback, V311), [0xB0, 0x02, 0x00, 0x02]);
        // DISCONNECT is empty.
        let disconnect = Packet::Disconnect(Disconnect {
            reason: ReasonCode::ServerShuttingDown,
            properties: DisconnectProperties::default(),
        });
        assert_eq!(bytes(&disconnect, V311), [0xE0, 0x00]);
        // AUTH does not exist: nothing at all.
        assert_eq!(bytes(&Packet::Auth(Auth::default()), V311), Vec::<u8>::new());
        assert_eq!(encoded_len(&Packet::Auth(Auth::default()), V31), 0);
        // SUBSCRIBE options: only the QoS bits.
        let subscribe = Packet::Subscribe(Subscribe {
            packet_id: pid(3),
            filters: vec![(
                "a".into(),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            )],
            properties: SubscribeProperties {
                subscription_identifier: Some(5),
                ..Default::default()
            },
        });
        assert_eq!(
            bytes(&subscribe, V311),
            [
                0x82, 0x06, // SUBSCRIBE, remaining length 6
                0x00, 0x03, // packet id 3
                0x00, 0x01, b'a', // filter "a"
                0x01, // QoS 1, nothing else
            ]
        );
    }

    #[test]
    fn v3_suback_maps_failures_to_0x80() {
        let suback = Packet::Suback(Suback {
            packet_id: pid(1),
            reasons: vec![
                ReasonCode::GrantedQoS2,
                ReasonCode::NotAuthorized,
                ReasonCode::TopicFilterInvalid,
                ReasonCode::Success,
                ReasonCode::WildcardSubscriptionsNotSupported,
            ],
            properties: SubackProperties::default(),
        });
        assert_eq!(
            bytes(&suback, V311),
            [
                0x90, 0x07, // SUBACK, remaining length 7
                0x00, 0x01, // packet id 1
                0x02, 0x80, 0x80, 0x00, 0x80, // QoS 2, failure, failure, QoS 0, failure
            ]
        );
    }

    #[test]
    fn v3_connack_return_codes() {
        let cases = [
            (ReasonCode::Success, 0x00),
            (ReasonCode::UnsupportedProtocolVersion, 0x01),
            (ReasonCode::ClientIdentifierNotValid, 0x02),
            (ReasonCode::ServerBusy, 0x03),
            (ReasonCode::BadUserNameOrPassword, 0x04),
            (ReasonCode::Banned, 0x05),
        ];
        for (reason, code) in cases {
            let connack = Packet::Connack(Connack { reason, ..Connack::default() });
            assert_eq!(bytes(&connack, V311), [0x20, 0x02, 0x00, code], "{reason:?}");
        }
        // 3.1 has no session-present flag: the first byte is written as 0.
        let connack = Packet::Connack(Connack { session_present: true, ..Connack::default() });
        assert_eq!(bytes(&connack, V31), [0x20, 0x02, 0x00, 0x00]);
        assert_eq!(bytes(&connack, V311), [0x20, 0x02, 0x01, 0x00]);
        assert_eq!(bytes(&connack, V5), [0x20, 0x03, 0x01, 0x00, 0x00]);
    }

    #[test]
    fn v5_shortest_forms() {
        // DISCONNECT: success without properties is empty, a reason alone is one byte.
        assert_eq!(bytes(&Packet::Disconnect(Disconnect::default()), V5), [0xE0, 0x00]);
        let disconnect = Packet::Disconnect(Disconnect {
            reason: ReasonCode::KeepAliveTimeout,
            properties: DisconnectProperties::default(),
        });
        assert_eq!(bytes(&disconnect, V5), [0xE0, 0x01, 0x8D]);
        // Success with properties still writes the reason byte.
        let disconnect = Packet::Disconnect(Disconnect {
            reason: ReasonCode::Success,
            properties: DisconnectProperties {
                session_expiry_interval: Some(1),
                ..Default::default()
            },
        });
        assert_eq!(
            bytes(&disconnect, V5),
            [
                0xE0, 0x07, // DISCONNECT, remaining length 7
                0x00, // normal disconnection
                0x05, // property length 5
                0x11, 0x00, 0x00, 0x00, 0x01, // session expiry interval 1
            ]
        );
        // AUTH: a reason without properties keeps its property length (no shorter form).
        let auth = Packet::Auth(Auth { reason: ReasonCode::ReAuthenticate, ..Auth::default() });
        assert_eq!(bytes(&auth, V5), [0xF0, 0x02, 0x19, 0x00]);
        // PUBREL with success and a reason string: full form.
        let pubrel = Packet::Pubrel(PubAck {
            packet_id: pid(1),
            reason: ReasonCode::Success,
            properties: PubackProperties { reason_string: Some("a".into()), ..Default::default() },
        });
        assert_eq!(
            bytes(&pubrel, V5),
            [
                0x62, 0x08, // PUBREL, remaining length 8
                0x00, 0x01, // packet id 1
                0x00, // success
                0x04, // property length 4
                0x1F, 0x00, 0x01, b'a', // reason string "a"
            ]
        );
    }

    #[test]
    fn connect_names_its_version() {
        let connect = |version| {
            Packet::Connect(Box::new(Connect {
                protocol: Some(version),
                client_id: "c".into(),
                ..Connect::default()
            }))
        };
        assert_eq!(
            bytes(&connect(V31), V311), // the packet's own version wins
            [
                0x10, 0x0F, // CONNECT, remaining length 15
                0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, // "MQIsdp" level 3
                0x00, 0x00, 0x00, // flags, keep alive 0
                0x00, 0x01, b'c', // client id "c"
            ]
        );
        let out = bytes(&connect(V5), V5);
        assert_eq!(&out[2..9], &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05]);
        // No protocol: 3.1.1.
        let default = Packet::Connect(Box::default());
        assert_eq!(&bytes(&default, V5)[2..9], &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04]);
    }

    #[test]
    fn full_v5_round_trips_both_ways() {
        // A QoS 2 will and every PUBLISH property a server sends, decoded by a client.
        let connect = Packet::Connect(Box::new(Connect {
            protocol: Some(V5),
            clean_start: false,
            keep_alive: 65535,
            client_id: "ü-client".into(),
            will: Some(Will {
                topic: Rc::from("last/will"),
                payload: Rc::from(vec![0u8; 300]),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: WillProperties::default(),
            }),
            username: Some(String::new()),
            password: Some(Vec::new()),
            properties: ConnectProperties {
                user_properties: vec![("a".into(), String::new()), ("a".into(), "b".into())],
                ..Default::default()
            },
        }));
        let out = bytes(&connect, V5);
        assert_eq!(decode(&out, &connecting()), Ok(Some((connect, out.len()))));

        let publish = Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: Rc::from("$SYS/x"),
            packet_id: Some(pid(65535)),
            properties: PublishProperties {
                payload_format_indicator: Some(0),
                message_expiry_interval: Some(u32::MAX),
                topic_alias: Some(u16::MAX),
                response_topic: Some("reply/to".into()),
                correlation_data: Some(vec![0; 10]),
                user_properties: vec![("k".into(), "v".into())],
                subscription_identifiers: vec![1, 127, 128, 16_384, 268_435_455],
                content_type: Some("application/json".into()),
            },
            payload: Rc::from(vec![1u8; 200]),
        });
        let out = bytes(&publish, V5);
        assert_eq!(decode(&out, &client(V5)), Ok(Some((publish, out.len()))));
    }
}
