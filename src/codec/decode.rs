//! Decoding whole packets of MQTT 3.1, 3.1.1 and 5.0 from the front of a byte buffer.
//!
//! Contract:
//! * Pure and allocation-conscious: bytes in, `Ok(None)` ("need more bytes", nothing consumed),
//!   `Ok(Some((packet, consumed)))` or a typed [`DecodeError`] after which the connection must
//!   be closed. No state is kept between calls; the caller keeps the [`DecodeContext`].
//! * Frame first: the first byte (packet type, flag bits, role and connection state) is
//!   judged as soon as it arrives, and the Remaining Length, the 4-byte limit and
//!   `max_packet_size` as soon as the length bytes are in ([`check_frame`]); packets with a
//!   fixed size (PINGREQ, 3.1.1 PUBACK, ...) are checked against it too. Only then does the
//!   decoder wait for the body. A hostile peer therefore cannot make us buffer more than
//!   `max_packet_size` bytes, not even before CONNECT.
//! * Full recognition: every rule of the specifications that can be checked on one packet
//!   is checked here (flags, QoS 3, DUP on QoS 0, packet id 0, UTF-8 and U+0000, topic name
//!   and filter syntax, subscription option bits, properties, reason codes per packet type,
//!   trailing bytes), so the broker only ever sees well-formed packets. Rules that need
//!   connection or session state (topic alias ranges, Receive Maximum, AUTH method matching,
//!   shared subscription syntax, ...) are the broker's.
//! * Never panics, for any input: every read goes through [`Reader`], which checks lengths;
//!   there is no `unwrap`, `expect`, unchecked indexing or `unreachable!` on these paths.
//! * PUBLISH costs exactly two allocations (topic `Rc<str>`, payload `Rc<[u8]>`, both built
//!   straight from the input slice) when it has no properties. PINGREQ, PINGRESP and v3
//!   PUBACK-family packets allocate nothing.

use std::num::NonZeroU16;
use std::rc::Rc;

use super::error::DecodeError;
use super::frame::check_frame;
use super::packet::{
    Auth, Connack, Connect, Disconnect, Packet, PacketId, ProtocolVersion, PubAck, Publish, QoS,
    RetainHandling, Suback, Subscribe, SubscriptionOptions, Unsuback, Unsubscribe, Will,
};
use super::property_codec as props;
use super::reader::Reader;
use super::reason::ReasonCode;
use super::topic::{is_valid_topic_filter, is_valid_topic_name};

/// Which end of the connection is decoding: a server rejects packets only a server may send
/// (CONNACK, SUBACK, UNSUBACK, PINGRESP) and vice versa.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// What the decoder must know about the connection.
///
/// * Server role: `version` is `None` until CONNECT has been decoded; then only CONNECT is
///   accepted (anything else is `ExpectedConnect`, MQTT-3.1.0-1). With `Some`, a CONNECT is
///   `SecondConnect` (MQTT-3.1.0-2) and every other packet is decoded for that version.
/// * Client role: the client knows which version its own CONNECT asked for, so `version`
///   must always be `Some` — CONNACK is decoded with it. A `None` here is a caller bug; it is
///   decoded as MQTT 3.1.1 (no panic, but a 5.0 CONNACK would then fail to decode).
#[derive(Debug, Clone, Copy)]
pub struct DecodeContext {
    /// `None` until CONNECT (server) / CONNACK (client) fixed the version. A server with `None`
    /// accepts only CONNECT (else `ExpectedConnect`); with `Some`, a CONNECT is `SecondConnect`.
    pub version: Option<ProtocolVersion>,
    /// Largest whole packet (fixed header included) accepted, checked before the body is read.
    pub max_packet_size: u32,
    pub role: Role,
}

/// Packet type numbers (upper nibble of the first byte, MQTT 5.0 §2.1.2).
mod kind {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;
}

/// How the body will be decoded, decided from the first byte and the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// CONNECT: the body names its own version.
    Connect,
    /// Any other packet, in the connection's version.
    Body(ProtocolVersion),
}

/// Decodes one packet from the front of `buf`.
///
/// `Ok(None)`: not enough bytes yet (nothing consumed). `Ok(Some((packet, n)))`: the packet
/// and the number of bytes it used. `Err`: the stream is invalid and must be closed.
pub fn decode(buf: &[u8], ctx: &DecodeContext) -> Result<Option<(Packet, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let packet_type = first >> 4;
    let flags = first & 0x0F;
    let expect = check_first_byte(packet_type, flags, ctx)?;
    let Some(header) = check_frame(buf, ctx.max_packet_size)? else {
        return Ok(None);
    };
    check_fixed_size(packet_type, header.remaining_len, expect)?;
    let total = header.total_len();
    let Some(body) = buf.get(header.header_len..total) else {
        return Ok(None);
    };
    let packet = match expect {
        Expect::Connect => Packet::Connect(Box::new(decode_connect(body)?)),
        Expect::Body(version) => decode_body(packet_type, flags, body, version, ctx.role)?,
    };
    Ok(Some((packet, total)))
}

/// Everything the first byte alone can tell: known type, allowed for this role and
/// connection state, reserved flag bits as required (MQTT-2.2.2-1, MQTT-2.2.2-2).
fn check_first_byte(
    packet_type: u8,
    flags: u8,
    ctx: &DecodeContext,
) -> Result<Expect, DecodeError> {
    let expect = match ctx.role {
        Role::Server => match (packet_type, ctx.version) {
            (kind::CONNECT, None) => Expect::Connect,
            (kind::CONNECT, Some(_)) => return Err(DecodeError::SecondConnect), // MQTT-3.1.0-2
            (_, None) => return Err(DecodeError::ExpectedConnect),              // MQTT-3.1.0-1
            (kind::CONNACK | kind::SUBACK | kind::UNSUBACK | kind::PINGRESP, Some(_)) => {
                return Err(DecodeError::UnexpectedPacket(packet_type));
            }
            (_, Some(version)) => Expect::Body(version),
        },
        Role::Client => {
            let version = ctx.version.unwrap_or(ProtocolVersion::V311);
            match packet_type {
                kind::CONNECT | kind::SUBSCRIBE | kind::UNSUBSCRIBE | kind::PINGREQ => {
                    return Err(DecodeError::UnexpectedPacket(packet_type));
                }
                // Before 5.0 only the client sends DISCONNECT (3.1.1 §3.14).
                kind::DISCONNECT if !version.is_v5() => {
                    return Err(DecodeError::UnexpectedPacket(packet_type));
                }
                _ => Expect::Body(version),
            }
        }
    };
    let required_flags = match packet_type {
        0 => return Err(DecodeError::UnknownPacketType(packet_type)),
        kind::AUTH => match expect {
            Expect::Body(ProtocolVersion::V5) => 0,
            Expect::Body(ProtocolVersion::V31 | ProtocolVersion::V311) | Expect::Connect => {
                return Err(DecodeError::UnknownPacketType(packet_type));
            }
        },
        kind::PUBLISH => {
            // DUP, QoS and RETAIN are all meaningful; only the QoS rules apply.
            let qos = QoS::from_bits((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS)?; // MQTT-3.3.1-4
            if qos == QoS::AtMostOnce && flags & 0b1000 != 0 {
                return Err(DecodeError::InvalidQoS); // MQTT-3.3.1-2
            }
            return Ok(expect);
        }
        // MQTT-3.6.1-1, MQTT-3.8.1-1, MQTT-3.10.1-1
        kind::PUBREL | kind::SUBSCRIBE | kind::UNSUBSCRIBE => 0b0010,
        _ => 0,
    };
    if flags != required_flags {
        return Err(DecodeError::InvalidFixedHeaderFlags { packet_type, flags });
    }
    Ok(expect)
}

/// Packets whose body length is fixed (or has a minimum) are judged from the Remaining
/// Length alone, so a peer cannot make us wait for a body we would reject anyway.
fn check_fixed_size(
    packet_type: u8,
    remaining_len: usize,
    expect: Expect,
) -> Result<(), DecodeError> {
    let v5 = match expect {
        Expect::Connect => return Ok(()),
        Expect::Body(version) => version.is_v5(),
    };
    let (min, max) = match packet_type {
        kind::PINGREQ | kind::PINGRESP => (0, Some(0)),
        kind::PUBACK | kind::PUBREC | kind::PUBREL | kind::PUBCOMP if v5 => (2, None),
        kind::PUBACK | kind::PUBREC | kind::PUBREL | kind::PUBCOMP => (2, Some(2)),
        kind::UNSUBACK if !v5 => (2, Some(2)),
        kind::CONNACK if v5 => (3, None),
        kind::CONNACK => (2, Some(2)),
        kind::DISCONNECT if !v5 => (0, Some(0)),
        _ => return Ok(()),
    };
    if remaining_len < min {
        return Err(DecodeError::Truncated);
    }
    match max {
        Some(max) if remaining_len > max => Err(DecodeError::TrailingBytes),
        _ => Ok(()),
    }
}

fn decode_body(
    packet_type: u8,
    flags: u8,
    body: &[u8],
    version: ProtocolVersion,
    role: Role,
) -> Result<Packet, DecodeError> {
    Ok(match packet_type {
        kind::CONNACK => Packet::Connack(decode_connack(body, version)?),
        kind::PUBLISH => Packet::Publish(decode_publish(flags, body, version, role)?),
        kind::PUBACK => Packet::Puback(decode_puback(body, version, PUBACK_REASONS)?),
        kind::PUBREC => Packet::Pubrec(decode_puback(body, version, PUBACK_REASONS)?),
        kind::PUBREL => Packet::Pubrel(decode_puback(body, version, PUBREL_REASONS)?),
        kind::PUBCOMP => Packet::Pubcomp(decode_puback(body, version, PUBREL_REASONS)?),
        kind::SUBSCRIBE => Packet::Subscribe(decode_subscribe(body, version)?),
        kind::SUBACK => Packet::Suback(decode_suback(body, version)?),
        kind::UNSUBSCRIBE => Packet::Unsubscribe(decode_unsubscribe(body, version)?),
        kind::UNSUBACK => Packet::Unsuback(decode_unsuback(body, version)?),
        kind::PINGREQ => {
            Reader::new(body).finish()?;
            Packet::Pingreq
        }
        kind::PINGRESP => {
            Reader::new(body).finish()?;
            Packet::Pingresp
        }
        kind::DISCONNECT => Packet::Disconnect(decode_disconnect(body, version, role)?),
        kind::AUTH => Packet::Auth(decode_auth(body)?),
        // CONNECT never gets here (see `check_first_byte`); answering as for an unexpected
        // packet keeps this total without a panic.
        other => return Err(DecodeError::UnexpectedPacket(other)),
    })
}

// ---------------------------------------------------------------------------------------------
// Shared fields
// ---------------------------------------------------------------------------------------------

/// A packet identifier; zero is invalid (MQTT-2.3.1-1).
fn packet_id(r: &mut Reader<'_>) -> Result<PacketId, DecodeError> {
    NonZeroU16::new(r.u16()?).ok_or(DecodeError::ZeroPacketId)
}

/// Reason codes allowed per packet (MQTT 5.0 §3.x.2.1 tables).
const CONNACK_REASONS: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
/// PUBACK and PUBREC.
const PUBACK_REASONS: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
/// PUBREL and PUBCOMP.
const PUBREL_REASONS: &[u8] = &[0x00, 0x92];
const SUBACK_REASONS: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const UNSUBACK_REASONS: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT_REASONS: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH_REASONS: &[u8] = &[0x00, 0x18, 0x19];

/// A reason code byte that must be in `allowed` for this packet type.
fn reason(byte: u8, allowed: &[u8]) -> Result<ReasonCode, DecodeError> {
    if !allowed.contains(&byte) {
        return Err(DecodeError::InvalidReasonCode(byte));
    }
    ReasonCode::from_byte(byte).ok_or(DecodeError::InvalidReasonCode(byte))
}

// ---------------------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------------------

/// CONNECT (MQTT 5.0 §3.1, 3.1.1 §3.1, 3.1 §3.1). The version comes from the packet itself.
fn decode_connect(body: &[u8]) -> Result<Connect, DecodeError> {
    let mut r = Reader::new(body);
    let name = r.binary()?;
    let level = r.u8()?;
    let version = match (name, level) {
        (b"MQIsdp", 3) => ProtocolVersion::V31,
        (b"MQTT", 4) => ProtocolVersion::V311,
        (b"MQTT", 5) => ProtocolVersion::V5,
        // MQTT-3.1.2-2: answered with CONNACK 0x01 / 0x84.
        (b"MQIsdp" | b"MQTT", other) => return Err(DecodeError::UnsupportedProtocolVersion(other)),
        _ => return Err(DecodeError::InvalidProtocolName), // MQTT-3.1.2-1
    };
    let v5 = version.is_v5();

    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::InvalidConnectFlags); // MQTT-3.1.2-3
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos_bits = (flags >> 3) & 0b11;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if !will_flag && (will_qos_bits != 0 || will_retain) {
        return Err(DecodeError::InvalidConnectFlags); // MQTT-3.1.2-11, -13, -15
    }
    let will_qos = QoS::from_bits(will_qos_bits).ok_or(DecodeError::InvalidConnectFlags)?; // MQTT-3.1.2-14
    if password_flag && !username_flag && !v5 {
        return Err(DecodeError::InvalidConnectFlags); // MQTT-3.1.2-22 (allowed in 5.0)
    }
    let keep_alive = r.u16()?;
    let properties = if v5 {
        props::decode_connect(&mut r)?
    } else {
        Default::default()
    };

    // MQTT-3.1.3-4: a UTF-8 string. Its length and characters are the broker's call
    // (3.1 said at most 23 characters; like Mosquitto we accept longer ones).
    let client_id = r.utf8()?.to_owned();
    let will = if will_flag {
        let properties = if v5 {
            props::decode_will(&mut r)?
        } else {
            Default::default()
        };
        let topic = r.utf8()?;
        if !is_valid_topic_name(topic) {
            return Err(DecodeError::InvalidTopicName); // MQTT-3.1.3-11 with MQTT-4.7.3-1
        }
        let payload = r.binary()?;
        Some(Will {
            topic: Rc::from(topic),
            payload: Rc::from(payload),
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    // MQTT 3.1 clients in the wild set the user name / password flags and then leave the
    // field out; Mosquitto tolerates that, and so do we, for 3.1 only.
    let lenient = version == ProtocolVersion::V31;
    let username = if username_flag && !(lenient && r.is_empty()) {
        Some(r.utf8()?.to_owned()) // MQTT-3.1.3-11
    } else {
        None
    };
    let password = if password_flag && !(lenient && r.is_empty()) {
        Some(r.binary()?.to_vec())
    } else {
        None
    };
    r.finish()?;
    Ok(Connect {
        protocol: Some(version),
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

/// CONNACK (§3.2). Decoded by clients only.
fn decode_connack(body: &[u8], version: ProtocolVersion) -> Result<Connack, DecodeError> {
    let mut r = Reader::new(body);
    let ack_flags = r.u8()?;
    let code = r.u8()?;
    let (session_present, reason) = match version {
        // 3.1: the first byte is reserved and unused; there is no session-present flag.
        ProtocolVersion::V31 => (false, connack_return_code(code)?),
        ProtocolVersion::V311 => {
            if ack_flags & 0xFE != 0 {
                return Err(DecodeError::InvalidConnectFlags); // MQTT-3.2.2-1
            }
            (ack_flags & 0x01 != 0, connack_return_code(code)?)
        }
        ProtocolVersion::V5 => {
            if ack_flags & 0xFE != 0 {
                return Err(DecodeError::InvalidConnectFlags); // MQTT-3.2.2-1
            }
            (ack_flags & 0x01 != 0, reason(code, CONNACK_REASONS)?)
        }
    };
    if session_present && reason != ReasonCode::Success {
        return Err(DecodeError::InvalidConnectFlags); // MQTT-3.2.2-4 (3.1.1), MQTT-3.2.2-6 (5.0)
    }
    let properties = if version.is_v5() {
        props::decode_connack(&mut r)?
    } else {
        Default::default()
    };
    r.finish()?;
    Ok(Connack {
        session_present,
        reason,
        properties,
    })
}

/// 3.1/3.1.1 CONNACK return codes (3.1.1 §3.2.2.3) as reason codes; the encoder maps them
/// back through [`ReasonCode::connack_return_code_v3`].
fn connack_return_code(code: u8) -> Result<ReasonCode, DecodeError> {
    match code {
        0x00 => Ok(ReasonCode::Success),
        0x01 => Ok(ReasonCode::UnsupportedProtocolVersion),
        0x02 => Ok(ReasonCode::ClientIdentifierNotValid),
        0x03 => Ok(ReasonCode::ServerUnavailable),
        0x04 => Ok(ReasonCode::BadUserNameOrPassword),
        0x05 => Ok(ReasonCode::NotAuthorized),
        other => Err(DecodeError::InvalidReasonCode(other)),
    }
}

/// PUBLISH (§3.3). Flags were checked in `check_first_byte`.
fn decode_publish(
    flags: u8,
    body: &[u8],
    version: ProtocolVersion,
    role: Role,
) -> Result<Publish, DecodeError> {
    let dup = flags & 0b1000 != 0;
    let qos = QoS::from_bits((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS)?;
    let retain = flags & 0b0001 != 0;
    let mut r = Reader::new(body);
    let topic = r.utf8()?;
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(DecodeError::InvalidTopicName); // MQTT-3.3.2-2
    }
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce | QoS::ExactlyOnce => Some(packet_id(&mut r)?), // MQTT-2.2.1-2
    };
    let properties = if version.is_v5() {
        props::decode_publish(&mut r, role)?
    } else {
        Default::default()
    };
    // An empty topic name is allowed only with a Topic Alias (MQTT 5.0 §3.3.2.3.4).
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(DecodeError::InvalidTopicName); // MQTT-4.7.3-1
    }
    Ok(Publish {
        dup,
        qos,
        retain,
        topic: Rc::from(topic),
        packet_id,
        properties,
        payload: Rc::from(r.rest()),
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP (§3.4-§3.7). In 5.0 the reason code and the property
/// length may be left out (Remaining Length 2: Success, no properties; 3: no properties).
fn decode_puback(
    body: &[u8],
    version: ProtocolVersion,
    allowed: &[u8],
) -> Result<PubAck, DecodeError> {
    let mut r = Reader::new(body);
    let packet_id = packet_id(&mut r)?;
    if !version.is_v5() || r.is_empty() {
        r.finish()?;
        return Ok(PubAck::new(packet_id));
    }
    let reason = reason(r.u8()?, allowed)?;
    let properties = if r.is_empty() {
        Default::default()
    } else {
        props::decode_puback(&mut r)?
    };
    r.finish()?;
    Ok(PubAck {
        packet_id,
        reason,
        properties,
    })
}

/// Subscription options byte (3.1.1 §3.8.3.1, 5.0 §3.8.3.1).
fn subscription_options(
    byte: u8,
    version: ProtocolVersion,
) -> Result<SubscriptionOptions, DecodeError> {
    let invalid = DecodeError::InvalidSubscriptionOptions;
    let qos = QoS::from_bits(byte & 0b11).ok_or(invalid.clone())?;
    if !version.is_v5() {
        if byte & 0xFC != 0 {
            return Err(invalid); // MQTT-3-8.3-4 (3.1.1): reserved bits
        }
        return Ok(SubscriptionOptions {
            qos,
            ..Default::default()
        });
    }
    if byte & 0xC0 != 0 {
        return Err(invalid); // MQTT-3.8.3-5
    }
    let retain_handling = match (byte >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendAtNewSubscribe,
        2 => RetainHandling::DoNotSend,
        _ => return Err(invalid), // Retain Handling 3 is a Protocol Error (§3.8.3.1)
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0x04 != 0,
        retain_as_published: byte & 0x08 != 0,
        retain_handling,
    })
}

/// SUBSCRIBE (§3.8).
fn decode_subscribe(body: &[u8], version: ProtocolVersion) -> Result<Subscribe, DecodeError> {
    let mut r = Reader::new(body);
    let packet_id = packet_id(&mut r)?;
    let properties = if version.is_v5() {
        props::decode_subscribe(&mut r)?
    } else {
        Default::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.utf8()?;
        let options = subscription_options(r.u8()?, version)?;
        if !is_valid_topic_filter(filter) {
            return Err(DecodeError::InvalidTopicFilter); // MQTT-4.7.1-1, -2, MQTT-4.7.3-1
        }
        filters.push((filter.to_owned(), options));
    }
    if filters.is_empty() {
        return Err(DecodeError::EmptyTopicList); // MQTT-3.8.3-3
    }
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

/// SUBACK (§3.9). Decoded by clients only.
fn decode_suback(body: &[u8], version: ProtocolVersion) -> Result<Suback, DecodeError> {
    let mut r = Reader::new(body);
    let packet_id = packet_id(&mut r)?;
    let properties = if version.is_v5() {
        props::decode_suback(&mut r)?
    } else {
        Default::default()
    };
    let mut reasons = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        let byte = r.u8()?;
        let code = if version.is_v5() {
            reason(byte, SUBACK_REASONS)?
        } else {
            // 3.1.1 §3.9.3: 0x00, 0x01, 0x02, 0x80 only (MQTT-3.9.3-2).
            reason(byte, &[0x00, 0x01, 0x02, 0x80])?
        };
        reasons.push(code);
    }
    if reasons.is_empty() {
        return Err(DecodeError::EmptyTopicList); // one code per filter, and a filter is required
    }
    Ok(Suback {
        packet_id,
        reasons,
        properties,
    })
}

/// UNSUBSCRIBE (§3.10).
fn decode_unsubscribe(body: &[u8], version: ProtocolVersion) -> Result<Unsubscribe, DecodeError> {
    let mut r = Reader::new(body);
    let packet_id = packet_id(&mut r)?;
    let properties = if version.is_v5() {
        props::decode_unsubscribe(&mut r)?
    } else {
        Default::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.utf8()?;
        if !is_valid_topic_filter(filter) {
            return Err(DecodeError::InvalidTopicFilter);
        }
        filters.push(filter.to_owned());
    }
    if filters.is_empty() {
        return Err(DecodeError::EmptyTopicList); // MQTT-3.10.3-2
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

/// UNSUBACK (§3.11). Decoded by clients only; before 5.0 it is just the packet id.
fn decode_unsuback(body: &[u8], version: ProtocolVersion) -> Result<Unsuback, DecodeError> {
    let mut r = Reader::new(body);
    let packet_id = packet_id(&mut r)?;
    if !version.is_v5() {
        r.finish()?;
        return Ok(Unsuback {
            packet_id,
            reasons: Vec::new(),
            properties: Default::default(),
        });
    }
    let properties = props::decode_unsuback(&mut r)?;
    let mut reasons = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        reasons.push(reason(r.u8()?, UNSUBACK_REASONS)?);
    }
    if reasons.is_empty() {
        return Err(DecodeError::EmptyTopicList); // one code per filter, and a filter is required
    }
    Ok(Unsuback {
        packet_id,
        reasons,
        properties,
    })
}

/// DISCONNECT (§3.14). Before 5.0 it has no body (checked in `check_fixed_size`). In 5.0 a
/// Remaining Length of 0 means Normal disconnection, and of 1 a reason without properties.
fn decode_disconnect(
    body: &[u8],
    version: ProtocolVersion,
    role: Role,
) -> Result<Disconnect, DecodeError> {
    let mut r = Reader::new(body);
    if !version.is_v5() || r.is_empty() {
        r.finish()?;
        return Ok(Disconnect::default());
    }
    let reason = reason(r.u8()?, DISCONNECT_REASONS)?;
    let properties = if r.is_empty() {
        Default::default()
    } else {
        props::decode_disconnect(&mut r, role)?
    };
    r.finish()?;
    Ok(Disconnect { reason, properties })
}

/// AUTH (MQTT 5.0 §3.15). A Remaining Length of 0 means Success without properties; a
/// reason code without a property length (length 1) is accepted too, like DISCONNECT.
fn decode_auth(body: &[u8]) -> Result<Auth, DecodeError> {
    let mut r = Reader::new(body);
    if r.is_empty() {
        return Ok(Auth::default());
    }
    let reason = reason(r.u8()?, AUTH_REASONS)?;
    let properties = if r.is_empty() {
        Default::default()
    } else {
        props::decode_auth(&mut r)?
    };
    r.finish()?;
    Ok(Auth { reason, properties })
}
