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
use super::frame::{check_frame, PacketType};
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
    let flags = first & 0x0F;
    let (packet_type, expect) = check_first_byte(first >> 4, flags, ctx)?;
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
    nibble: u8,
    flags: u8,
    ctx: &DecodeContext,
) -> Result<(PacketType, Expect), DecodeError> {
    use PacketType as T;
    let expect = match (ctx.role, ctx.version) {
        (Role::Server, None) if nibble == T::Connect.nibble() => Expect::Connect,
        (Role::Server, None) => return Err(DecodeError::ExpectedConnect), // MQTT-3.1.0-1
        (Role::Server, Some(version)) => Expect::Body(version),
        (Role::Client, version) => Expect::Body(version.unwrap_or(ProtocolVersion::V311)),
    };
    let Some(packet_type) = PacketType::from_nibble(nibble) else {
        return Err(DecodeError::UnknownPacketType(nibble));
    };
    let (v5, server) = match expect {
        Expect::Connect => (false, true),
        Expect::Body(version) => (version.is_v5(), ctx.role == Role::Server),
    };
    let unexpected = Err(DecodeError::UnexpectedPacket(nibble));
    let required_flags = match packet_type {
        T::Connect if server && expect != Expect::Connect => {
            return Err(DecodeError::SecondConnect); // MQTT-3.1.0-2
        }
        // Only a server receives these ...
        T::Connect | T::Subscribe | T::Unsubscribe | T::Pingreq if !server => return unexpected,
        // ... only a client these ...
        T::Connack | T::Suback | T::Unsuback | T::Pingresp if server => return unexpected,
        // ... and before 5.0 only the client sends DISCONNECT (3.1.1 §3.14).
        T::Disconnect if !server && !v5 => return unexpected,
        T::Auth if !v5 => return Err(DecodeError::UnknownPacketType(nibble)),
        T::Publish => {
            // DUP, QoS and RETAIN are all meaningful; only the QoS rules apply.
            let qos = QoS::from_bits((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS)?; // MQTT-3.3.1-4
            if qos == QoS::AtMostOnce && flags & 0b1000 != 0 {
                return Err(DecodeError::InvalidQoS); // MQTT-3.3.1-2
            }
            return Ok((packet_type, expect));
        }
        // MQTT-3.6.1-1, MQTT-3.8.1-1, MQTT-3.10.1-1
        T::Pubrel | T::Subscribe | T::Unsubscribe => 0b0010,
        T::Connect
        | T::Connack
        | T::Puback
        | T::Pubrec
        | T::Pubcomp
        | T::Suback
        | T::Unsuback
        | T::Pingreq
        | T::Pingresp
        | T::Disconnect
        | T::Auth => 0,
    };
    // MQTT 3.1 gave PUBREL, SUBSCRIBE and UNSUBSCRIBE a DUP flag (bit 3), and 3.1 clients set
    // it on a re-sent one (0x6A, 0x8A, 0xAA). 3.1.1 made these bits reserved (MQTT-2.2.2-2),
    // so only a protocol level 3 connection may set it; it is ignored.
    let v31_dup = expect == Expect::Body(ProtocolVersion::V31)
        && required_flags == 0b0010
        && flags == required_flags | 0b1000;
    if flags != required_flags && !v31_dup {
        return Err(DecodeError::InvalidFixedHeaderFlags { packet_type: nibble, flags });
    }
    Ok((packet_type, expect))
}

/// Packets whose body length is fixed (or has a minimum) are judged from the Remaining
/// Length alone, so a peer cannot make us wait for a body we would reject anyway.
fn check_fixed_size(
    packet_type: PacketType,
    remaining_len: usize,
    expect: Expect,
) -> Result<(), DecodeError> {
    use PacketType as T;
    let v5 = match expect {
        Expect::Connect => return Ok(()),
        Expect::Body(version) => version.is_v5(),
    };
    let (min, max) = match packet_type {
        T::Pingreq | T::Pingresp => (0, Some(0)),
        T::Puback | T::Pubrec | T::Pubrel | T::Pubcomp if v5 => (2, None), // id [reason [props]]
        T::Puback | T::Pubrec | T::Pubrel | T::Pubcomp => (2, Some(2)),    // id
        T::Unsuback if !v5 => (2, Some(2)),                                // id
        T::Connack if v5 => (3, None), // flags, reason, properties
        T::Connack => (2, Some(2)),    // flags, return code
        T::Disconnect if !v5 => (0, Some(0)),
        T::Connect
        | T::Publish
        | T::Subscribe
        | T::Suback
        | T::Unsubscribe
        | T::Unsuback
        | T::Disconnect
        | T::Auth => return Ok(()),
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
    packet_type: PacketType,
    flags: u8,
    body: &[u8],
    version: ProtocolVersion,
    role: Role,
) -> Result<Packet, DecodeError> {
    use PacketType as T;
    Ok(match packet_type {
        T::Connack => Packet::Connack(decode_connack(body, version)?),
        T::Publish => Packet::Publish(decode_publish(flags, body, version, role)?),
        T::Puback => Packet::Puback(decode_puback(body, version, PUBACK_REASONS)?),
        T::Pubrec => Packet::Pubrec(decode_puback(body, version, PUBACK_REASONS)?),
        T::Pubrel => Packet::Pubrel(decode_puback(body, version, PUBREL_REASONS)?),
        T::Pubcomp => Packet::Pubcomp(decode_puback(body, version, PUBREL_REASONS)?),
        T::Subscribe => Packet::Subscribe(decode_subscribe(body, version)?),
        T::Suback => Packet::Suback(decode_suback(body, version)?),
        T::Unsubscribe => Packet::Unsubscribe(decode_unsubscribe(body, version)?),
        T::Unsuback => Packet::Unsuback(decode_unsuback(body, version)?),
        T::Pingreq => {
            Reader::new(body).finish()?;
            Packet::Pingreq
        }
        T::Pingresp => {
            Reader::new(body).finish()?;
            Packet::Pingresp
        }
        T::Disconnect => Packet::Disconnect(decode_disconnect(body, version, role)?),
        T::Auth => Packet::Auth(decode_auth(body)?),
        // CONNECT is decoded through `Expect::Connect` and never gets here; answering as for
        // an unexpected packet keeps this total without a panic.
        T::Connect => return Err(DecodeError::UnexpectedPacket(packet_type.nibble())),
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
const SUBACK_REASONS: &[u8] =
    &[0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2];
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
        // MQTT-3.1.2-2: answered with the 3.1.1 CONNACK 0x01 (also above level 5).
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
    let properties = if v5 { props::decode_connect(&mut r)? } else { Default::default() };

    // MQTT-3.1.3-4: a UTF-8 string. Its length and characters are the broker's call
    // (3.1 said at most 23 characters; like Mosquitto we accept longer ones).
    let client_id = r.utf8()?.to_owned();
    let will = if will_flag {
        let properties = if v5 { props::decode_will(&mut r)? } else { Default::default() };
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
    let password =
        if password_flag && !(lenient && r.is_empty()) { Some(r.binary()?.to_vec()) } else { None };
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
    let properties =
        if version.is_v5() { props::decode_connack(&mut r)? } else { Default::default() };
    r.finish()?;
    Ok(Connack { session_present, reason, properties })
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
    // No wildcards (MQTT-3.3.2-2); an empty name is judged once the properties are known.
    if !topic.is_empty() && !is_valid_topic_name(topic) {
        return Err(DecodeError::InvalidTopicName);
    }
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce | QoS::ExactlyOnce => Some(packet_id(&mut r)?), // MQTT-2.2.1-2
    };
    let properties =
        if version.is_v5() { props::decode_publish(&mut r, role)? } else { Default::default() };
    // An empty topic name is allowed only with a Topic Alias (MQTT 5.0 §3.3.2.3.4); in 5.0
    // its absence is a Protocol Error (§3.3.2.1), before 5.0 the name is invalid.
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(match version {
            ProtocolVersion::V5 => DecodeError::EmptyTopicName,
            ProtocolVersion::V31 | ProtocolVersion::V311 => DecodeError::InvalidTopicName, // MQTT-4.7.3-1
        });
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
    let properties = if r.is_empty() { Default::default() } else { props::decode_puback(&mut r)? };
    r.finish()?;
    Ok(PubAck { packet_id, reason, properties })
}

/// Subscription options byte (3.1.1 §3.8.3.1, 5.0 §3.8.3.1).
fn subscription_options(
    byte: u8,
    version: ProtocolVersion,
) -> Result<SubscriptionOptions, DecodeError> {
    let invalid = DecodeError::InvalidSubscriptionOptions;
    let Some(qos) = QoS::from_bits(byte & 0b11) else {
        return Err(invalid);
    };
    if !version.is_v5() {
        if byte & 0xFC != 0 {
            return Err(invalid); // MQTT-3-8.3-4 (3.1.1): reserved bits
        }
        return Ok(SubscriptionOptions { qos, ..Default::default() });
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
    let properties =
        if version.is_v5() { props::decode_subscribe(&mut r)? } else { Default::default() };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.utf8()?;
        let options = subscription_options(r.u8()?, version)?;
        if filter.is_empty() {
            return Err(DecodeError::EmptyTopicFilter); // MQTT-4.7.3-1
        }
        if !is_valid_topic_filter(filter) {
            return Err(DecodeError::InvalidTopicFilter); // MQTT-4.7.1-1, -2, MQTT-4.7.3-1
        }
        filters.push((filter.to_owned(), options));
    }
    if filters.is_empty() {
        return Err(DecodeError::EmptyTopicList); // MQTT-3.8.3-3
    }
    Ok(Subscribe { packet_id, filters, properties })
}

/// SUBACK (§3.9). Decoded by clients only.
fn decode_suback(body: &[u8], version: ProtocolVersion) -> Result<Suback, DecodeError> {
    let mut r = Reader::new(body);
    let packet_id = packet_id(&mut r)?;
    let properties =
        if version.is_v5() { props::decode_suback(&mut r)? } else { Default::default() };
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
    Ok(Suback { packet_id, reasons, properties })
}

/// UNSUBSCRIBE (§3.10).
fn decode_unsubscribe(body: &[u8], version: ProtocolVersion) -> Result<Unsubscribe, DecodeError> {
    let mut r = Reader::new(body);
    let packet_id = packet_id(&mut r)?;
    let properties =
        if version.is_v5() { props::decode_unsubscribe(&mut r)? } else { Default::default() };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.utf8()?;
        if filter.is_empty() {
            return Err(DecodeError::EmptyTopicFilter); // MQTT-4.7.3-1
        }
        if !is_valid_topic_filter(filter) {
            return Err(DecodeError::InvalidTopicFilter);
        }
        filters.push(filter.to_owned());
    }
    if filters.is_empty() {
        return Err(DecodeError::EmptyTopicList); // MQTT-3.10.3-2
    }
    Ok(Unsubscribe { packet_id, filters, properties })
}

/// UNSUBACK (§3.11). Decoded by clients only; before 5.0 it is just the packet id.
fn decode_unsuback(body: &[u8], version: ProtocolVersion) -> Result<Unsuback, DecodeError> {
    let mut r = Reader::new(body);
    let packet_id = packet_id(&mut r)?;
    if !version.is_v5() {
        r.finish()?;
        return Ok(Unsuback { packet_id, reasons: Vec::new(), properties: Default::default() });
    }
    let properties = props::decode_unsuback(&mut r)?;
    let mut reasons = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        reasons.push(reason(r.u8()?, UNSUBACK_REASONS)?);
    }
    if reasons.is_empty() {
        return Err(DecodeError::EmptyTopicList); // one code per filter, and a filter is required
    }
    Ok(Unsuback { packet_id, reasons, properties })
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
    let properties =
        if r.is_empty() { Default::default() } else { props::decode_disconnect(&mut r, role)? };
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
    let properties = if r.is_empty() { Default::default() } else { props::decode_auth(&mut r)? };
    r.finish()?;
    Ok(Auth { reason, properties })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode::encode;
    use crate::codec::testdata::{all_vectors, client, connecting, server, v3_vectors, v5_vectors};
    use ProtocolVersion::{V31, V311, V5};

    /// Decodes a whole packet that must use every byte of `buf`.
    fn ok(buf: &[u8], ctx: DecodeContext) -> Packet {
        match decode(buf, &ctx) {
            Ok(Some((packet, used))) => {
                assert_eq!(used, buf.len(), "consumed bytes");
                packet
            }
            other => panic!("expected a packet from {buf:02X?}, got {other:?}"),
        }
    }

    fn err(buf: &[u8], ctx: DecodeContext) -> DecodeError {
        match decode(buf, &ctx) {
            Err(e) => e,
            other => panic!("expected an error from {buf:02X?}, got {other:?}"),
        }
    }

    // -- Vectors: every packet type for 3.1, 3.1.1 and 5.0 --------------------------------------

    #[test]
    fn every_vector_decodes_to_its_packet() {
        for vector in all_vectors() {
            match decode(&vector.bytes, &vector.ctx) {
                Ok(Some((packet, used))) => {
                    assert_eq!(packet, vector.packet, "{} ({:?})", vector.name, vector.version);
                    assert_eq!(used, vector.bytes.len(), "{}", vector.name);
                }
                other => panic!("{} ({:?}): {other:?}", vector.name, vector.version),
            }
        }
    }

    #[test]
    fn every_packet_type_is_covered_for_every_version() {
        let names = |vectors: Vec<crate::codec::testdata::Vector>| {
            let mut names: Vec<&str> = vectors.iter().map(|v| v.packet.name()).collect();
            names.sort_unstable();
            names.dedup();
            names
        };
        let v3 = [
            "CONNACK",
            "CONNECT",
            "DISCONNECT",
            "PINGREQ",
            "PINGRESP",
            "PUBACK",
            "PUBCOMP",
            "PUBLISH",
            "PUBREC",
            "PUBREL",
            "SUBACK",
            "SUBSCRIBE",
            "UNSUBACK",
            "UNSUBSCRIBE",
        ];
        assert_eq!(names(v3_vectors(V31)), v3);
        assert_eq!(names(v3_vectors(V311)), v3);
        let mut v5: Vec<&str> = v3.to_vec();
        v5.insert(0, "AUTH");
        assert_eq!(names(v5_vectors()), v5);
    }

    #[test]
    fn every_prefix_of_every_vector_is_incomplete() {
        for vector in all_vectors() {
            for cut in 0..vector.bytes.len() {
                assert_eq!(
                    decode(&vector.bytes[..cut], &vector.ctx),
                    Ok(None),
                    "{} cut at {cut}",
                    vector.name
                );
            }
        }
    }

    #[test]
    fn consumes_one_packet_and_leaves_the_next() {
        let buf = [
            0xC0, 0x00, // PINGREQ
            0x40, 0x02, 0x00, 0x01, // PUBACK id 1
            0x30, // start of a PUBLISH
        ];
        let ctx = server(V311);
        assert_eq!(decode(&buf, &ctx), Ok(Some((Packet::Pingreq, 2))));
        assert_eq!(
            decode(&buf[2..], &ctx),
            Ok(Some((Packet::Puback(crate::codec::PubAck::new(NonZeroU16::MIN)), 4)))
        );
        assert_eq!(decode(&buf[6..], &ctx), Ok(None));
    }

    // -- Frame and first byte ---------------------------------------------------------------

    #[test]
    fn max_packet_size_is_enforced_from_the_header_alone() {
        let ctx = DecodeContext { max_packet_size: 100, ..server(V311) };
        // PUBLISH announcing 16,384 bytes: only the 4 header bytes are present.
        assert_eq!(
            err(&[0x30, 0x80, 0x80, 0x01], ctx),
            DecodeError::PacketTooLarge { size: 16_388, max: 100 }
        );
        // The same before CONNECT: a CONNECT announcing 268,435,455 bytes.
        let ctx = DecodeContext { max_packet_size: 100, ..connecting() };
        assert_eq!(
            err(&[0x10, 0xFF, 0xFF, 0xFF, 0x7F], ctx),
            DecodeError::PacketTooLarge { size: 268_435_460, max: 100 }
        );
        // Exactly at the limit is fine (and incomplete without its body).
        let ctx = DecodeContext { max_packet_size: 100, ..server(V311) };
        assert_eq!(decode(&[0x30, 98], &ctx), Ok(None));
    }

    #[test]
    fn five_byte_remaining_length_is_malformed() {
        assert_eq!(
            err(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], server(V311)),
            DecodeError::MalformedRemainingLength
        );
        assert_eq!(
            err(&[0x10, 0x80, 0x80, 0x80, 0x80], connecting()),
            DecodeError::MalformedRemainingLength
        );
    }

    #[test]
    fn mqtt31_dup_flag_on_pubrel_subscribe_unsubscribe() {
        let cases: &[&[u8]] = &[
            &[0x6A, 0x02, 0x00, 0x07], // PUBREL with DUP (flags 1010), packet id 7
            &[0x8A, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x01], // SUBSCRIBE with DUP, id 1, "a" QoS 1
            &[0xAA, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'],       // UNSUBSCRIBE with DUP, id 1, "a"
        ];
        for bytes in cases {
            // Protocol level 3: the DUP bit of a re-sent packet is accepted and ignored; the
            // packet is the one without it (flags 0010).
            let mut plain = bytes.to_vec();
            plain[0] &= !0x08;
            assert_eq!(ok(bytes, server(V31)), ok(&plain, server(V31)), "{bytes:02X?}");
            // 3.1.1 and 5.0 reserve the bits (MQTT-2.2.2-2).
            for version in [V311, V5] {
                assert_eq!(
                    err(bytes, server(version)),
                    DecodeError::InvalidFixedHeaderFlags {
                        packet_type: bytes[0] >> 4,
                        flags: bytes[0] & 0x0F
                    },
                    "{bytes:02X?} {version:?}"
                );
            }
        }
        // Only DUP on top of the required 0010: other bits stay invalid in 3.1 too.
        for first in [0x6B, 0x68, 0x8E, 0xA0, 0xA3] {
            assert_eq!(
                err(&[first, 0x02, 0x00, 0x07], server(V31)),
                DecodeError::InvalidFixedHeaderFlags {
                    packet_type: first >> 4,
                    flags: first & 0x0F
                },
                "{first:02X}"
            );
        }
        // Other packet types get no DUP in 3.1 either (PUBACK 0x48, PINGREQ 0xC8).
        assert!(matches!(
            err(&[0x48, 0x02, 0x00, 0x07], server(V31)),
            DecodeError::InvalidFixedHeaderFlags { .. }
        ));
    }

    #[test]
    fn empty_topic_name_and_filter_reason_codes() {
        // 5.0 PUBLISH, topic "" and an empty property block: Protocol Error 0x82 (§3.3.2.1).
        let e = err(&[0x30, 0x03, 0x00, 0x00, 0x00], server(V5));
        assert_eq!(e, DecodeError::EmptyTopicName);
        assert_eq!(e.reason_code(), ReasonCode::ProtocolError);
        // SUBSCRIBE id 1, no properties, filter "" with QoS 0: Malformed Packet 0x81.
        let e = err(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00], server(V5));
        assert_eq!(e, DecodeError::EmptyTopicFilter);
        assert_eq!(e.reason_code(), ReasonCode::MalformedPacket);
        // UNSUBSCRIBE id 1, no properties, filter "": Malformed Packet 0x81.
        let e = err(&[0xA2, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00], server(V5));
        assert_eq!(e, DecodeError::EmptyTopicFilter);
        // 3.1.1 UNSUBSCRIBE id 1, filter "".
        assert_eq!(
            err(&[0xA2, 0x04, 0x00, 0x01, 0x00, 0x00], server(V311)),
            DecodeError::EmptyTopicFilter
        );
        // A non-empty invalid filter keeps Topic Filter Invalid 0x8F.
        // SUBSCRIBE id 1, no properties, filter "a+" with QoS 0.
        let e = err(&[0x82, 0x08, 0x00, 0x01, 0x00, 0x00, 0x02, b'a', b'+', 0x00], server(V5));
        assert_eq!(e, DecodeError::InvalidTopicFilter);
        assert_eq!(e.reason_code(), ReasonCode::TopicFilterInvalid);
    }

    #[test]
    fn fixed_header_flags() {
        let cases: &[(&[u8], u8, u8)] = &[
            (&[0x11, 0x00], 1, 0x1),     // CONNECT with flags 0001
            (&[0x41, 0x02, 0, 1], 4, 1), // PUBACK with flags 0001
            (&[0x60, 0x02, 0, 1], 6, 0), // PUBREL must be 0010 (MQTT-3.6.1-1)
            (&[0x80, 0x00], 8, 0),       // SUBSCRIBE must be 0010 (MQTT-3.8.1-1)
            (&[0xA0, 0x00], 10, 0),      // UNSUBSCRIBE must be 0010 (MQTT-3.10.1-1)
            (&[0xC8, 0x00], 12, 8),      // PINGREQ
            (&[0xE2, 0x00], 14, 2),      // DISCONNECT
        ];
        for (bytes, packet_type, flags) in cases {
            let ctx = if *packet_type == 1 { connecting() } else { server(V311) };
            assert_eq!(
                err(bytes, ctx),
                DecodeError::InvalidFixedHeaderFlags { packet_type: *packet_type, flags: *flags },
                "{bytes:02X?}"
            );
        }
        // From the first byte alone, before the length arrives.
        assert_eq!(
            err(&[0x63], server(V5)),
            DecodeError::InvalidFixedHeaderFlags { packet_type: 6, flags: 3 }
        );
    }

    #[test]
    fn qos_3_and_dup_on_qos_0() {
        // PUBLISH flags 0110: QoS 3 (MQTT-3.3.1-4), rejected from the first byte.
        assert_eq!(err(&[0x36], server(V311)), DecodeError::InvalidQoS);
        // PUBLISH flags 1000: DUP with QoS 0 (MQTT-3.3.1-2).
        assert_eq!(err(&[0x38, 0x03, 0x00, 0x01, b't'], server(V5)), DecodeError::InvalidQoS);
    }

    #[test]
    fn packet_type_zero_and_auth_before_5() {
        assert_eq!(err(&[0x00, 0x00], server(V311)), DecodeError::UnknownPacketType(0));
        assert_eq!(err(&[0xF0, 0x00], server(V311)), DecodeError::UnknownPacketType(15));
        assert_eq!(err(&[0xF0, 0x00], client(V31)), DecodeError::UnknownPacketType(15));
    }

    #[test]
    fn connection_state() {
        // Before CONNECT, anything else (MQTT-3.1.0-1), judged from the first byte.
        for first in [0x00, 0x20, 0x30, 0x82, 0xC0, 0xE0, 0xF0] {
            assert_eq!(err(&[first], connecting()), DecodeError::ExpectedConnect);
        }
        // A second CONNECT (MQTT-3.1.0-2).
        assert_eq!(err(&[0x10], server(V311)), DecodeError::SecondConnect);
        assert_eq!(err(&[0x10], server(V5)), DecodeError::SecondConnect);
    }

    #[test]
    fn packets_only_the_other_side_sends() {
        for first in [0x20, 0x90, 0xB0, 0xD0] {
            // CONNACK, SUBACK, UNSUBACK, PINGRESP sent to a server.
            assert_eq!(err(&[first], server(V5)), DecodeError::UnexpectedPacket(first >> 4));
        }
        for first in [0x10, 0x82, 0xA2, 0xC0] {
            // CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ sent to a client.
            assert_eq!(err(&[first], client(V5)), DecodeError::UnexpectedPacket(first >> 4));
        }
        // Before 5.0 a server never sends DISCONNECT.
        assert_eq!(err(&[0xE0, 0x00], client(V311)), DecodeError::UnexpectedPacket(14));
        assert_eq!(ok(&[0xE0, 0x00], client(V5)), Packet::Disconnect(Disconnect::default()));
    }

    #[test]
    fn client_without_version_decodes_as_3_1_1() {
        let ctx = DecodeContext { version: None, ..client(V311) };
        assert_eq!(
            ok(&[0x20, 0x02, 0x01, 0x00], ctx),
            Packet::Connack(Connack { session_present: true, ..Connack::default() })
        );
    }

    #[test]
    fn fixed_size_packets_are_judged_by_their_length() {
        // PINGREQ announcing 200 body bytes: rejected before they arrive.
        assert_eq!(err(&[0xC0, 0xC8, 0x01], server(V311)), DecodeError::TrailingBytes);
        // 3.1.1 PUBACK with length 3 / 1.
        assert_eq!(err(&[0x40, 0x03], server(V311)), DecodeError::TrailingBytes);
        assert_eq!(err(&[0x40, 0x01], server(V311)), DecodeError::Truncated);
        // 5.0 PUBACK shorter than a packet id.
        assert_eq!(err(&[0x40, 0x01], server(V5)), DecodeError::Truncated);
        // 3.1.1 DISCONNECT and UNSUBACK.
        assert_eq!(err(&[0xE0, 0x01], server(V311)), DecodeError::TrailingBytes);
        assert_eq!(err(&[0xB0, 0x03], client(V311)), DecodeError::TrailingBytes);
        // CONNACK: 2 bytes before 5.0, at least 3 in 5.0.
        assert_eq!(err(&[0x20, 0x03], client(V311)), DecodeError::TrailingBytes);
        assert_eq!(err(&[0x20, 0x02], client(V5)), DecodeError::Truncated);
    }

    // -- CONNECT ----------------------------------------------------------------------------

    /// A 3.1.1 CONNECT with the given protocol name, level and flags and client id "c".
    fn connect_bytes(name: &[u8], level: u8, flags: u8, tail: &[u8]) -> Vec<u8> {
        let mut body = vec![0x00, name.len() as u8];
        body.extend_from_slice(name); // protocol name
        body.push(level); // protocol level
        body.push(flags); // connect flags
        body.extend_from_slice(&[0x00, 0x3C]); // keep alive 60
        if level == 5 {
            body.push(0x00); // property length 0
        }
        body.extend_from_slice(&[0x00, 0x01, b'c']); // client id "c"
        body.extend_from_slice(tail);
        let mut out = vec![0x10, body.len() as u8];
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn connect_protocol_name_and_level() {
        let versions: &[(&[u8], u8, ProtocolVersion)] =
            &[(b"MQIsdp", 3, V31), (b"MQTT", 4, V311), (b"MQTT", 5, V5)];
        for (name, level, version) in versions {
            match ok(&connect_bytes(name, *level, 0x02, &[]), connecting()) {
                Packet::Connect(c) => assert_eq!(c.protocol, Some(*version)),
                other => panic!("{other:?}"),
            }
        }
        let refused: &[(&[u8], u8, DecodeError)] = &[
            (b"MQTT", 6, DecodeError::UnsupportedProtocolVersion(6)),
            (b"MQTT", 3, DecodeError::UnsupportedProtocolVersion(3)),
            (b"MQIsdp", 4, DecodeError::UnsupportedProtocolVersion(4)),
            (b"MQTT", 0x84, DecodeError::UnsupportedProtocolVersion(0x84)), // bridge bit
            (b"MQTX", 4, DecodeError::InvalidProtocolName),
            (b"mqtt", 4, DecodeError::InvalidProtocolName),
            (b"", 4, DecodeError::InvalidProtocolName),
        ];
        for (name, level, error) in refused {
            assert_eq!(err(&connect_bytes(name, *level, 0x02, &[]), connecting()), *error);
        }
    }

    #[test]
    fn connect_flags() {
        let invalid = [
            0x03, // reserved bit 0 set (MQTT-3.1.2-3)
            0x08, // will QoS 1 without will flag (MQTT-3.1.2-13)
            0x20, // will retain without will flag (MQTT-3.1.2-15)
            0x1C, // will flag with will QoS 3 (MQTT-3.1.2-14)
            0x40, // password without user name in 3.1.1 (MQTT-3.1.2-22)
        ];
        for flags in invalid {
            let bytes = connect_bytes(b"MQTT", 4, flags, &[0x00, 0x01, b'w', 0x00, 0x00]);
            assert_eq!(err(&bytes, connecting()), DecodeError::InvalidConnectFlags, "{flags:02X}");
        }
        // Password without user name is fine in 5.0 (see the vectors), not in 3.1.
        let bytes = connect_bytes(b"MQIsdp", 3, 0x40, &[0x00, 0x01, b'p']);
        assert_eq!(err(&bytes, connecting()), DecodeError::InvalidConnectFlags);
    }

    #[test]
    fn connect_will_topic_must_be_a_topic_name() {
        // will flag; will topic "a/#"; will payload empty.
        let bytes = connect_bytes(b"MQTT", 4, 0x04, &[0x00, 0x03, b'a', b'/', b'#', 0x00, 0x00]);
        assert_eq!(err(&bytes, connecting()), DecodeError::InvalidTopicName);
        let bytes = connect_bytes(b"MQTT", 4, 0x04, &[0x00, 0x00, 0x00, 0x00]); // empty topic
        assert_eq!(err(&bytes, connecting()), DecodeError::InvalidTopicName);
    }

    #[test]
    fn connect_fields_are_checked() {
        // User name flag but no user name.
        assert_eq!(
            err(&connect_bytes(b"MQTT", 4, 0x80, &[]), connecting()),
            DecodeError::Truncated
        );
        // A byte after the last field.
        assert_eq!(
            err(&connect_bytes(b"MQTT", 4, 0x02, &[0x00]), connecting()),
            DecodeError::TrailingBytes
        );
        // Client id with U+0000: body replaced by hand.
        let bytes = [
            0x10, 0x0F, // CONNECT, remaining length 15
            0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, // header, clean
            0x00, 0x03, b'a', 0x00, b'b', // client id "a\0b"
        ];
        assert_eq!(err(&bytes, connecting()), DecodeError::InvalidUtf8);
    }

    #[test]
    fn connect_3_1_tolerates_missing_credentials() {
        // 3.1: user name and password flags set, neither field present (as Mosquitto allows).
        match ok(&connect_bytes(b"MQIsdp", 3, 0xC2, &[]), connecting()) {
            Packet::Connect(c) => {
                assert_eq!(c.username, None);
                assert_eq!(c.password, None);
            }
            other => panic!("{other:?}"),
        }
        // 3.1: user name present, password missing.
        match ok(&connect_bytes(b"MQIsdp", 3, 0xC2, &[0x00, 0x01, b'u']), connecting()) {
            Packet::Connect(c) => {
                assert_eq!(c.username.as_deref(), Some("u"));
                assert_eq!(c.password, None);
            }
            other => panic!("{other:?}"),
        }
        // 3.1.1 does not tolerate it.
        assert_eq!(
            err(&connect_bytes(b"MQTT", 4, 0xC2, &[0x00, 0x01, b'u']), connecting()),
            DecodeError::Truncated
        );
    }

    #[test]
    fn connect_v5_properties_are_checked() {
        let connect_with_props = |props: &[u8]| {
            let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T']; // "MQTT"
            body.extend_from_slice(&[0x05, 0x02, 0x00, 0x00]); // level 5, clean, keep alive 0
            body.push(props.len() as u8); // property length
            body.extend_from_slice(props);
            body.extend_from_slice(&[0x00, 0x00]); // client id ""
            let mut out = vec![0x10, body.len() as u8];
            out.extend_from_slice(&body);
            out
        };
        let cases: &[(&[u8], DecodeError)] = &[
            (&[0x21, 0x00, 0x00], DecodeError::InvalidPropertyValue(0x21)), // receive max 0
            (&[0x27, 0, 0, 0, 0], DecodeError::InvalidPropertyValue(0x27)), // max packet size 0
            (&[0x17, 0x02], DecodeError::InvalidPropertyValue(0x17)), // request problem info 2
            (&[0x19, 0x02], DecodeError::InvalidPropertyValue(0x19)), // request response info 2
            (&[0x16, 0x00, 0x00], DecodeError::InvalidPropertyValue(0x16)), // auth data, no method
            (&[0x23, 0x00, 0x01], DecodeError::PropertyNotAllowed(0x23)), // topic alias
            (&[0x7F, 0x00], DecodeError::UnknownProperty(0x7F)),
            (&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2], DecodeError::DuplicateProperty(0x11)),
            (&[0x11, 0x00, 0x00], DecodeError::Truncated), // value cut by the block end
        ];
        for (props, error) in cases {
            assert_eq!(err(&connect_with_props(props), connecting()), *error, "{props:02X?}");
        }
        // Property length pointing past the end of the packet.
        let mut bytes = connect_with_props(&[]);
        bytes[12] = 0x09;
        assert_eq!(err(&bytes, connecting()), DecodeError::Truncated);
        // Repeated user properties are fine and keep their order.
        let bytes = connect_with_props(&[
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'2', // k=2
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'1', // k=1
        ]);
        match ok(&bytes, connecting()) {
            Packet::Connect(c) => assert_eq!(
                c.properties.user_properties,
                vec![("k".to_owned(), "2".to_owned()), ("k".to_owned(), "1".to_owned())]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn will_properties_are_checked() {
        let with_will_props = |props: &[u8]| {
            let mut tail = vec![props.len() as u8]; // will property length
            tail.extend_from_slice(props);
            tail.extend_from_slice(&[0x00, 0x01, b'w', 0x00, 0x00]); // will topic "w", no payload
            connect_bytes(b"MQTT", 5, 0x06, &tail)
        };
        let cases: &[(&[u8], DecodeError)] = &[
            (&[0x01, 0x02], DecodeError::InvalidPropertyValue(0x01)), // payload format 2
            (&[0x08, 0x00, 0x01, b'#'], DecodeError::InvalidPropertyValue(0x08)), // wildcard
            (&[0x11, 0, 0, 0, 0], DecodeError::PropertyNotAllowed(0x11)), // session expiry
            (&[0x18, 0, 0, 0, 1, 0x18, 0, 0, 0, 1], DecodeError::DuplicateProperty(0x18)),
        ];
        for (props, error) in cases {
            assert_eq!(err(&with_will_props(props), connecting()), *error, "{props:02X?}");
        }
    }

    // -- CONNACK ----------------------------------------------------------------------------

    #[test]
    fn connack_checks() {
        // 3.1.1 return code 6 does not exist.
        assert_eq!(err(&[0x20, 0x02, 0x00, 0x06], client(V311)), DecodeError::InvalidReasonCode(6));
        // Reserved acknowledge flag bits (MQTT-3.2.2-1).
        assert_eq!(err(&[0x20, 0x02, 0x02, 0x00], client(V311)), DecodeError::InvalidConnectFlags);
        // Session present with a refusal (MQTT-3.2.2-4).
        assert_eq!(err(&[0x20, 0x02, 0x01, 0x05], client(V311)), DecodeError::InvalidConnectFlags);
        // 3.1 ignores the reserved first byte.
        assert_eq!(ok(&[0x20, 0x02, 0xFF, 0x00], client(V31)), Packet::Connack(Connack::default()));
        // 5.0: 0x01 (granted QoS 1) is not a CONNACK reason.
        assert_eq!(
            err(&[0x20, 0x03, 0x00, 0x01, 0x00], client(V5)),
            DecodeError::InvalidReasonCode(1)
        );
        // 5.0: maximum QoS 2 is not allowed (only 0 or 1).
        assert_eq!(
            err(&[0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x02], client(V5)),
            DecodeError::InvalidPropertyValue(0x24)
        );
        // 5.0: retain available 2, wildcard / sub ids / shared available 5.
        for ident in [0x25, 0x28, 0x29, 0x2A] {
            assert_eq!(
                err(&[0x20, 0x05, 0x00, 0x00, 0x02, ident, 0x05], client(V5)),
                DecodeError::InvalidPropertyValue(ident)
            );
        }
        // 5.0: receive maximum 0.
        assert_eq!(
            err(&[0x20, 0x06, 0x00, 0x00, 0x03, 0x21, 0x00, 0x00], client(V5)),
            DecodeError::InvalidPropertyValue(0x21)
        );
        // 5.0: request problem information is a CONNECT property.
        assert_eq!(
            err(&[0x20, 0x05, 0x00, 0x00, 0x02, 0x17, 0x01], client(V5)),
            DecodeError::PropertyNotAllowed(0x17)
        );
        // 5.0: a byte after the properties.
        assert_eq!(
            err(&[0x20, 0x04, 0x00, 0x00, 0x00, 0x00], client(V5)),
            DecodeError::TrailingBytes
        );
    }

    // -- PUBLISH ----------------------------------------------------------------------------

    #[test]
    fn publish_topic_rules() {
        let cases: &[(&[u8], ProtocolVersion, DecodeError)] = &[
            // Empty topic before 5.0.
            (&[0x30, 0x02, 0x00, 0x00], V311, DecodeError::InvalidTopicName),
            // Empty topic in 5.0 without a topic alias.
            (&[0x30, 0x03, 0x00, 0x00, 0x00], V5, DecodeError::EmptyTopicName),
            // Wildcards in a topic name (MQTT-3.3.2-2).
            (&[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'+'], V311, DecodeError::InvalidTopicName),
            (&[0x30, 0x04, 0x00, 0x01, b'#', 0x00], V5, DecodeError::InvalidTopicName),
            // Invalid UTF-8 and U+0000 in the topic.
            (&[0x30, 0x04, 0x00, 0x02, 0xC3, 0x28], V311, DecodeError::InvalidUtf8),
            (&[0x30, 0x03, 0x00, 0x01, 0x00], V311, DecodeError::InvalidUtf8),
            // Topic length past the end.
            (&[0x30, 0x03, 0x00, 0x05, b'a'], V311, DecodeError::Truncated),
        ];
        for (bytes, version, error) in cases {
            assert_eq!(err(bytes, server(*version)), *error, "{bytes:02X?}");
        }
    }

    #[test]
    fn publish_packet_id() {
        // QoS 1 with packet id 0 (MQTT-2.3.1-1).
        assert_eq!(
            err(&[0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x00], server(V311)),
            DecodeError::ZeroPacketId
        );
        // QoS 2 without room for a packet id.
        assert_eq!(
            err(&[0x34, 0x04, 0x00, 0x01, b't', 0x00], server(V311)),
            DecodeError::Truncated
        );
    }

    #[test]
    fn publish_v5_properties() {
        /// PUBLISH QoS 0 topic "t" with the given property block and payload "p".
        fn publish(props: &[u8]) -> Vec<u8> {
            let mut body = vec![0x00, 0x01, b't', props.len() as u8];
            body.extend_from_slice(props);
            body.push(b'p');
            let mut out = vec![0x30, body.len() as u8];
            out.extend_from_slice(&body);
            out
        }
        let cases: &[(&[u8], DecodeError)] = &[
            (&[0x23, 0x00, 0x00], DecodeError::InvalidPropertyValue(0x23)), // topic alias 0
            (&[0x01, 0x02], DecodeError::InvalidPropertyValue(0x01)),       // payload format 2
            (&[0x08, 0x00, 0x01, b'+'], DecodeError::InvalidPropertyValue(0x08)), // response topic
            (&[0x0B, 0x01], DecodeError::PropertyNotAllowed(0x0B)),         // sub id from a client
            (&[0x11, 0, 0, 0, 0], DecodeError::PropertyNotAllowed(0x11)),   // session expiry
            (&[0x00], DecodeError::UnknownProperty(0x00)),
            (&[0x80, 0x01], DecodeError::UnknownProperty(0x80)),
            (&[0x23, 0x00, 0x01, 0x23, 0x00, 0x02], DecodeError::DuplicateProperty(0x23)),
            (&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1], DecodeError::DuplicateProperty(0x02)),
            (&[0x03, 0x00, 0x01, 0xFF], DecodeError::InvalidUtf8), // content type
        ];
        for (props, error) in cases {
            assert_eq!(err(&publish(props), server(V5)), *error, "{props:02X?}");
        }
        // A client accepts subscription identifiers, several of them, but not 0 or 5 bytes.
        match ok(&publish(&[0x0B, 0x01, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F]), client(V5)) {
            Packet::Publish(p) => {
                assert_eq!(p.properties.subscription_identifiers, vec![1, 268_435_455])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err(&publish(&[0x0B, 0x00]), client(V5)),
            DecodeError::InvalidPropertyValue(0x0B)
        );
        assert_eq!(
            err(&publish(&[0x0B, 0x80, 0x80, 0x80, 0x80, 0x01]), client(V5)),
            DecodeError::MalformedRemainingLength
        );
        // Property length as a 5-byte varint.
        let bytes = [0x30, 0x08, 0x00, 0x01, b't', 0x80, 0x80, 0x80, 0x80, 0x00];
        assert_eq!(err(&bytes, server(V5)), DecodeError::MalformedRemainingLength);
        // Property length past the end of the packet.
        assert_eq!(err(&[0x30, 0x04, 0x00, 0x01, b't', 0x05], server(V5)), DecodeError::Truncated);
        // Missing property length entirely.
        assert_eq!(err(&[0x30, 0x03, 0x00, 0x01, b't'], server(V5)), DecodeError::Truncated);
    }

    #[test]
    fn publish_payload_is_the_rest_of_the_packet() {
        // 3.1.1: a byte that would be a property length in 5.0 is payload here.
        match ok(&[0x30, 0x04, 0x00, 0x01, b't', 0x00], server(V311)) {
            Packet::Publish(p) => assert_eq!(&p.payload[..], &[0x00]),
            other => panic!("{other:?}"),
        }
    }

    // -- PUBACK family ----------------------------------------------------------------------

    #[test]
    fn puback_family_checks() {
        // Packet id 0.
        assert_eq!(err(&[0x40, 0x02, 0x00, 0x00], server(V311)), DecodeError::ZeroPacketId);
        assert_eq!(err(&[0x62, 0x02, 0x00, 0x00], server(V5)), DecodeError::ZeroPacketId);
        // Reason codes: 0x92 is not a PUBACK code, 0x10 not a PUBREL/PUBCOMP code.
        assert_eq!(
            err(&[0x40, 0x03, 0x00, 0x01, 0x92], server(V5)),
            DecodeError::InvalidReasonCode(0x92)
        );
        assert_eq!(
            err(&[0x62, 0x03, 0x00, 0x01, 0x10], server(V5)),
            DecodeError::InvalidReasonCode(0x10)
        );
        assert_eq!(
            err(&[0x70, 0x03, 0x00, 0x01, 0x80], client(V5)),
            DecodeError::InvalidReasonCode(0x80)
        );
        assert_eq!(
            err(&[0x50, 0x03, 0x00, 0x01, 0x03], client(V5)),
            DecodeError::InvalidReasonCode(0x03)
        );
        // Properties that are not allowed, and bytes after them.
        assert_eq!(
            err(&[0x40, 0x06, 0x00, 0x01, 0x00, 0x02, 0x23, 0x01], server(V5)),
            DecodeError::PropertyNotAllowed(0x23)
        );
        assert_eq!(
            err(&[0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00], server(V5)),
            DecodeError::TrailingBytes
        );
        // Two reason strings.
        assert_eq!(
            err(
                &[0x50, 0x0B, 0x00, 0x01, 0x80, 0x07, 0x1F, 0x00, 0x00, 0x1F, 0x00, 0x01, b'x'],
                server(V5)
            ),
            DecodeError::DuplicateProperty(0x1F)
        );
    }

    // -- SUBSCRIBE / SUBACK / UNSUBSCRIBE / UNSUBACK ----------------------------------------

    #[test]
    fn subscribe_checks() {
        let v3: &[(&[u8], DecodeError)] = &[
            // No filters (MQTT-3.8.3-3).
            (&[0x82, 0x02, 0x00, 0x01], DecodeError::EmptyTopicList),
            // Packet id 0.
            (&[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00], DecodeError::ZeroPacketId),
            // Options with reserved bits (3.1.1: upper 6 bits must be 0).
            (
                &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x04],
                DecodeError::InvalidSubscriptionOptions,
            ),
            // Requested QoS 3.
            (
                &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03],
                DecodeError::InvalidSubscriptionOptions,
            ),
            // Invalid filters: "a/#/b", "a+", "" .
            (
                &[0x82, 0x0A, 0x00, 0x01, 0x00, 0x05, b'a', b'/', b'#', b'/', b'b', 0x00],
                DecodeError::InvalidTopicFilter,
            ),
            (
                &[0x82, 0x07, 0x00, 0x01, 0x00, 0x02, b'a', b'+', 0x00],
                DecodeError::InvalidTopicFilter,
            ),
            (&[0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00], DecodeError::EmptyTopicFilter),
            // Filter without its options byte.
            (&[0x82, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'], DecodeError::Truncated),
        ];
        for (bytes, error) in v3 {
            assert_eq!(err(bytes, server(V311)), *error, "{bytes:02X?}");
            assert_eq!(err(bytes, server(V31)), *error, "{bytes:02X?}");
        }
        let v5: &[(&[u8], DecodeError)] = &[
            // No filters, only an empty property block.
            (&[0x82, 0x03, 0x00, 0x01, 0x00], DecodeError::EmptyTopicList),
            // Reserved bits 6-7 (MQTT-3.8.3-5).
            (
                &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x40],
                DecodeError::InvalidSubscriptionOptions,
            ),
            // Retain handling 3.
            (
                &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x30],
                DecodeError::InvalidSubscriptionOptions,
            ),
            // QoS 3.
            (
                &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x03],
                DecodeError::InvalidSubscriptionOptions,
            ),
            // Subscription identifier 0, twice, and a PUBLISH-only property.
            (
                &[0x82, 0x09, 0x00, 0x01, 0x02, 0x0B, 0x00, 0x00, 0x01, b'a', 0x00],
                DecodeError::InvalidPropertyValue(0x0B),
            ),
            (
                &[0x82, 0x0B, 0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, b'a', 0x00],
                DecodeError::DuplicateProperty(0x0B),
            ),
            (
                &[0x82, 0x0A, 0x00, 0x01, 0x03, 0x23, 0x00, 0x01, 0x00, 0x01, b'a', 0x00],
                DecodeError::PropertyNotAllowed(0x23),
            ),
        ];
        for (bytes, error) in v5 {
            assert_eq!(err(bytes, server(V5)), *error, "{bytes:02X?}");
        }
        // `$share/...` is not special in the codec.
        let bytes = [
            0x82, 0x0C, 0x00, 0x01, // SUBSCRIBE, length 12, id 1
            0x00, 0x07, b'$', b's', b'h', b'a', b'r', b'e', b'/', // filter "$share/"
            0x00, // QoS 0
        ];
        assert!(matches!(ok(&bytes, server(V311)), Packet::Subscribe(_)));
    }

    #[test]
    fn suback_checks() {
        // 3.1.1 return code 0x03 and 0x87 are not SUBACK codes.
        assert_eq!(
            err(&[0x90, 0x03, 0x00, 0x01, 0x03], client(V311)),
            DecodeError::InvalidReasonCode(3)
        );
        assert_eq!(
            err(&[0x90, 0x03, 0x00, 0x01, 0x87], client(V311)),
            DecodeError::InvalidReasonCode(0x87)
        );
        // 5.0: 0x10 is not a SUBACK code.
        assert_eq!(
            err(&[0x90, 0x04, 0x00, 0x01, 0x00, 0x10], client(V5)),
            DecodeError::InvalidReasonCode(0x10)
        );
        // No codes.
        assert_eq!(err(&[0x90, 0x02, 0x00, 0x01], client(V311)), DecodeError::EmptyTopicList);
        assert_eq!(err(&[0x90, 0x03, 0x00, 0x01, 0x00], client(V5)), DecodeError::EmptyTopicList);
    }

    #[test]
    fn unsubscribe_and_unsuback_checks() {
        assert_eq!(err(&[0xA2, 0x02, 0x00, 0x01], server(V311)), DecodeError::EmptyTopicList);
        assert_eq!(err(&[0xA2, 0x03, 0x00, 0x01, 0x00], server(V5)), DecodeError::EmptyTopicList);
        assert_eq!(
            err(&[0xA2, 0x05, 0x00, 0x01, 0x00, 0x01, b'#',], server(V5)),
            DecodeError::Truncated
        );
        assert_eq!(
            err(&[0xA2, 0x04, 0x00, 0x01, 0x00, 0x01], server(V311)),
            DecodeError::Truncated
        );
        assert_eq!(
            err(&[0xA2, 0x06, 0x00, 0x01, 0x00, 0x02, b'#', b'a'], server(V311)),
            DecodeError::InvalidTopicFilter
        );
        assert_eq!(
            err(&[0xA2, 0x05, 0x00, 0x00, 0x00, 0x01, b'a'], server(V311)),
            DecodeError::ZeroPacketId
        );
        // Subscription identifier is not an UNSUBSCRIBE property.
        assert_eq!(
            err(&[0xA2, 0x08, 0x00, 0x01, 0x02, 0x0B, 0x01, 0x00, 0x01, b'a'], server(V5)),
            DecodeError::PropertyNotAllowed(0x0B)
        );
        // UNSUBACK 5.0: 0x00 codes required, 0x10 not allowed.
        assert_eq!(err(&[0xB0, 0x03, 0x00, 0x01, 0x00], client(V5)), DecodeError::EmptyTopicList);
        assert_eq!(
            err(&[0xB0, 0x04, 0x00, 0x01, 0x00, 0x10], client(V5)),
            DecodeError::InvalidReasonCode(0x10)
        );
        assert_eq!(err(&[0xB0, 0x02, 0x00, 0x00], client(V311)), DecodeError::ZeroPacketId);
    }

    // -- DISCONNECT and AUTH ----------------------------------------------------------------

    #[test]
    fn disconnect_checks() {
        // 0x01 is not a DISCONNECT reason.
        assert_eq!(err(&[0xE0, 0x01, 0x01], server(V5)), DecodeError::InvalidReasonCode(1));
        // Session expiry from a server (MQTT-3.14.2-2), fine from a client.
        let bytes = [0xE0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x0A];
        assert_eq!(err(&bytes, client(V5)), DecodeError::PropertyNotAllowed(0x11));
        assert!(matches!(ok(&bytes, server(V5)), Packet::Disconnect(_)));
        // Trailing byte after the properties.
        assert_eq!(err(&[0xE0, 0x03, 0x00, 0x00, 0x00], server(V5)), DecodeError::TrailingBytes);
        // Success reason without properties (length 1) is Normal disconnection.
        assert_eq!(ok(&[0xE0, 0x01, 0x00], server(V5)), Packet::Disconnect(Disconnect::default()));
    }

    #[test]
    fn auth_checks() {
        assert_eq!(err(&[0xF0, 0x02, 0x01, 0x00], server(V5)), DecodeError::InvalidReasonCode(1));
        assert_eq!(
            err(&[0xF0, 0x02, 0x87, 0x00], client(V5)),
            DecodeError::InvalidReasonCode(0x87)
        );
        assert_eq!(
            err(&[0xF0, 0x04, 0x18, 0x02, 0x11, 0x00], server(V5)),
            DecodeError::PropertyNotAllowed(0x11)
        );
        assert_eq!(err(&[0xF0, 0x03, 0x19, 0x00, 0x00], server(V5)), DecodeError::TrailingBytes);
        assert_eq!(err(&[0xF0, 0x01, 0x00], server(V311)), DecodeError::UnknownPacketType(15));
        // Reason without property length is accepted (like DISCONNECT).
        assert_eq!(
            ok(&[0xF0, 0x01, 0x19], server(V5)),
            Packet::Auth(Auth { reason: ReasonCode::ReAuthenticate, ..Auth::default() })
        );
    }

    // -- Garbage ----------------------------------------------------------------------------

    /// xorshift64: deterministic, dependency-free pseudo-random bytes.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }

    fn contexts() -> Vec<DecodeContext> {
        let mut all = vec![connecting(), DecodeContext { version: None, ..client(V311) }];
        for version in [V31, V311, V5] {
            all.push(server(version));
            all.push(client(version));
        }
        all
    }

    /// Decoding never panics, and whatever decodes re-encodes to something that decodes to
    /// the same packet (rustls-style round trip on arbitrary input). Returns whether `buf`
    /// held a packet.
    fn check_no_panic_and_round_trip(buf: &[u8], ctx: &DecodeContext) -> bool {
        let Ok(Some((packet, used))) = decode(buf, ctx) else {
            return false;
        };
        assert!(used <= buf.len());
        let version = match &packet {
            Packet::Connect(c) => c.version(),
            _ => ctx.version.unwrap_or(V311),
        };
        let mut again = Vec::new();
        encode(&packet, version, &mut again);
        let redecoded = decode(&again, ctx);
        assert_eq!(redecoded, Ok(Some((packet, again.len()))), "from {buf:02X?}");
        true
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let contexts = contexts();
        let mut packets = 0;
        for _ in 0..10_000 {
            let len = (rng.next() % 48) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Bias towards plausible frames: a Remaining Length that fits the buffer.
            if len >= 2 && rng.next() % 2 == 0 {
                buf[1] = (rng.next() % (len as u64 - 1)) as u8;
            }
            for ctx in &contexts {
                packets += usize::from(check_no_panic_and_round_trip(&buf, ctx));
            }
        }
        // The round trip must actually run for some inputs.
        assert!(packets > 20, "only {packets} random buffers decoded");
    }

    #[test]
    fn mutated_vectors_never_panic() {
        let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
        let contexts = contexts();
        let vectors = all_vectors();
        let mut packets = 0;
        for _ in 0..10_000 {
            let index = (rng.next() % vectors.len() as u64) as usize;
            let mut buf = vectors[index].bytes.clone();
            for _ in 0..1 + rng.next() % 3 {
                let at = (rng.next() % buf.len() as u64) as usize;
                buf[at] = rng.next() as u8;
            }
            if rng.next() % 4 == 0 {
                buf.truncate((rng.next() % (buf.len() as u64 + 1)) as usize);
            }
            for ctx in &contexts {
                packets += usize::from(check_no_panic_and_round_trip(&buf, ctx));
            }
        }
        assert!(packets > 1_000, "only {packets} mutated buffers decoded");
    }
}
