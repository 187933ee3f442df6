//! A small MQTT packet builder and parser for the end-to-end tests.
//!
//! Contract: written from the specifications (MQTT 3.1, 3.1.1, 5.0), independently of the
//! `edgemq` codec, so a bug in the code under test cannot hide behind the same bug here. It
//! builds exactly the bytes it is told to (including invalid ones when a test asks) and parses
//! what the broker sends strictly: anything unexpected panics with the packet in hex, because
//! in a test a broker sending garbage is a failure to report, not an input to tolerate.

use std::fmt;

/// Protocol level byte of CONNECT for MQTT 3.1 (protocol name "MQIsdp").
pub const V31: u8 = 3;
/// Protocol level byte of CONNECT for MQTT 3.1.1 (protocol name "MQTT").
pub const V311: u8 = 4;
/// Protocol level byte of CONNECT for MQTT 5.0 (protocol name "MQTT").
pub const V5: u8 = 5;

/// Control packet types (upper nibble of the first byte).
pub mod kind {
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

    pub fn name(kind: u8) -> &'static str {
        match kind {
            CONNECT => "CONNECT",
            CONNACK => "CONNACK",
            PUBLISH => "PUBLISH",
            PUBACK => "PUBACK",
            PUBREC => "PUBREC",
            PUBREL => "PUBREL",
            PUBCOMP => "PUBCOMP",
            SUBSCRIBE => "SUBSCRIBE",
            SUBACK => "SUBACK",
            UNSUBSCRIBE => "UNSUBSCRIBE",
            UNSUBACK => "UNSUBACK",
            PINGREQ => "PINGREQ",
            PINGRESP => "PINGRESP",
            DISCONNECT => "DISCONNECT",
            AUTH => "AUTH",
            _ => "RESERVED",
        }
    }
}

/// MQTT 5.0 property identifiers (§2.2.2.2).
pub mod prop {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// The wire type of a property value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PropValue {
    Byte(u8),
    U16(u16),
    U32(u32),
    VarInt(u32),
    Str(String),
    Bin(Vec<u8>),
    Pair(String, String),
}

/// One MQTT 5.0 property: identifier and value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    pub id: u8,
    pub value: PropValue,
}

impl Property {
    pub fn byte(id: u8, v: u8) -> Property {
        Property {
            id,
            value: PropValue::Byte(v),
        }
    }
    pub fn u16(id: u8, v: u16) -> Property {
        Property {
            id,
            value: PropValue::U16(v),
        }
    }
    pub fn u32(id: u8, v: u32) -> Property {
        Property {
            id,
            value: PropValue::U32(v),
        }
    }
    pub fn varint(id: u8, v: u32) -> Property {
        Property {
            id,
            value: PropValue::VarInt(v),
        }
    }
    pub fn string(id: u8, v: &str) -> Property {
        Property {
            id,
            value: PropValue::Str(v.to_string()),
        }
    }
    pub fn user(k: &str, v: &str) -> Property {
        Property {
            id: prop::USER_PROPERTY,
            value: PropValue::Pair(k.to_string(), v.to_string()),
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.id);
        match &self.value {
            PropValue::Byte(v) => out.push(*v),
            PropValue::U16(v) => out.extend_from_slice(&v.to_be_bytes()),
            PropValue::U32(v) => out.extend_from_slice(&v.to_be_bytes()),
            PropValue::VarInt(v) => out.extend(varint(*v as usize)),
            PropValue::Str(s) => out.extend(string(s)),
            PropValue::Bin(b) => out.extend(binary(b)),
            PropValue::Pair(k, v) => {
                out.extend(string(k));
                out.extend(string(v));
            }
        }
    }
}

/// The wire type of each property identifier (MQTT 5.0 table 2-4); `None` for unknown ids.
fn prop_type(id: u8) -> Option<fn(&mut Cursor) -> PropValue> {
    use prop::*;
    let byte: fn(&mut Cursor) -> PropValue = |c| PropValue::Byte(c.u8());
    let u16_: fn(&mut Cursor) -> PropValue = |c| PropValue::U16(c.u16());
    let u32_: fn(&mut Cursor) -> PropValue = |c| PropValue::U32(c.u32());
    let var: fn(&mut Cursor) -> PropValue = |c| PropValue::VarInt(c.varint());
    let str_: fn(&mut Cursor) -> PropValue = |c| PropValue::Str(c.string());
    let bin: fn(&mut Cursor) -> PropValue = |c| PropValue::Bin(c.binary());
    let pair: fn(&mut Cursor) -> PropValue = |c| {
        let k = c.string();
        PropValue::Pair(k, c.string())
    };
    Some(match id {
        PAYLOAD_FORMAT_INDICATOR
        | REQUEST_PROBLEM_INFORMATION
        | REQUEST_RESPONSE_INFORMATION
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => byte,
        SERVER_KEEP_ALIVE | RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | TOPIC_ALIAS => u16_,
        MESSAGE_EXPIRY_INTERVAL
        | SESSION_EXPIRY_INTERVAL
        | WILL_DELAY_INTERVAL
        | MAXIMUM_PACKET_SIZE => u32_,
        SUBSCRIPTION_IDENTIFIER => var,
        CONTENT_TYPE
        | RESPONSE_TOPIC
        | ASSIGNED_CLIENT_IDENTIFIER
        | AUTHENTICATION_METHOD
        | RESPONSE_INFORMATION
        | SERVER_REFERENCE
        | REASON_STRING => str_,
        CORRELATION_DATA | AUTHENTICATION_DATA => bin,
        USER_PROPERTY => pair,
        _ => return None,
    })
}

/// A decoded property list with lookups by identifier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Props(pub Vec<Property>);

impl Props {
    pub fn get(&self, id: u8) -> Option<&PropValue> {
        self.0.iter().find(|p| p.id == id).map(|p| &p.value)
    }
    pub fn all(&self, id: u8) -> Vec<&PropValue> {
        self.0
            .iter()
            .filter(|p| p.id == id)
            .map(|p| &p.value)
            .collect()
    }
    pub fn has(&self, id: u8) -> bool {
        self.get(id).is_some()
    }
    /// The numeric value of a Byte/U16/U32/VarInt property.
    pub fn num(&self, id: u8) -> Option<u32> {
        match self.get(id)? {
            PropValue::Byte(v) => Some(u32::from(*v)),
            PropValue::U16(v) => Some(u32::from(*v)),
            PropValue::U32(v) | PropValue::VarInt(v) => Some(*v),
            other => panic!("property 0x{id:02x} is not numeric: {other:?}"),
        }
    }
    pub fn str(&self, id: u8) -> Option<&str> {
        match self.get(id)? {
            PropValue::Str(s) => Some(s),
            other => panic!("property 0x{id:02x} is not a string: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Primitive encoders
// ---------------------------------------------------------------------------------------------

/// Variable Byte Integer (§1.5.5 / 2.2.3): 7 bits per byte, high bit = more bytes follow.
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return out;
        }
    }
}

/// UTF-8 string: two-byte big-endian length, then the bytes.
pub fn string(s: &str) -> Vec<u8> {
    binary(s.as_bytes())
}

/// Binary data / raw string: two-byte big-endian length, then the bytes.
pub fn binary(b: &[u8]) -> Vec<u8> {
    let len = u16::try_from(b.len()).expect("string longer than 65535 bytes");
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(b);
    out
}

/// Property list: Variable Byte Integer length, then the properties in the given order.
pub fn props(list: &[Property]) -> Vec<u8> {
    let mut body = Vec::new();
    for p in list {
        p.encode_into(&mut body);
    }
    let mut out = varint(body.len());
    out.extend(body);
    out
}

/// A whole packet: first byte, Remaining Length, body.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

// ---------------------------------------------------------------------------------------------
// Client -> server packets
// ---------------------------------------------------------------------------------------------

/// The will message carried in CONNECT.
#[derive(Clone, Debug)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    /// Will properties (MQTT 5.0 only).
    pub props: Vec<Property>,
}

impl Will {
    pub fn new(topic: &str, payload: &[u8]) -> Will {
        Will {
            topic: topic.to_string(),
            payload: payload.to_vec(),
            qos: 0,
            retain: false,
            props: Vec::new(),
        }
    }
    pub fn qos(mut self, qos: u8) -> Will {
        self.qos = qos;
        self
    }
    pub fn retain(mut self) -> Will {
        self.retain = true;
        self
    }
    pub fn prop(mut self, p: Property) -> Will {
        self.props.push(p);
        self
    }
}

/// CONNECT (§3.1). Defaults: clean session / clean start set, keep alive 60 s, no will.
#[derive(Clone, Debug)]
pub struct Connect {
    pub level: u8,
    pub client_id: String,
    pub clean: bool,
    pub keep_alive: u16,
    pub props: Vec<Property>,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

impl Connect {
    pub fn new(level: u8, client_id: &str) -> Connect {
        Connect {
            level,
            client_id: client_id.to_string(),
            clean: true,
            keep_alive: 60,
            props: Vec::new(),
            will: None,
            username: None,
            password: None,
        }
    }
    pub fn v31(client_id: &str) -> Connect {
        Connect::new(V31, client_id)
    }
    pub fn v311(client_id: &str) -> Connect {
        Connect::new(V311, client_id)
    }
    pub fn v5(client_id: &str) -> Connect {
        Connect::new(V5, client_id)
    }
    pub fn clean(mut self, clean: bool) -> Connect {
        self.clean = clean;
        self
    }
    pub fn keep_alive(mut self, secs: u16) -> Connect {
        self.keep_alive = secs;
        self
    }
    pub fn will(mut self, will: Will) -> Connect {
        self.will = Some(will);
        self
    }
    pub fn prop(mut self, p: Property) -> Connect {
        self.props.push(p);
        self
    }
    pub fn username(mut self, name: &str) -> Connect {
        self.username = Some(name.to_string());
        self
    }
    pub fn password(mut self, pw: &[u8]) -> Connect {
        self.password = Some(pw.to_vec());
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let name = if self.level == V31 { "MQIsdp" } else { "MQTT" };
        let mut flags = 0u8;
        if self.clean {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos << 3);
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        let mut body = string(name);
        body.push(self.level);
        body.push(flags);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        if self.level == V5 {
            body.extend(props(&self.props));
        }
        body.extend(string(&self.client_id));
        if let Some(w) = &self.will {
            if self.level == V5 {
                body.extend(props(&w.props));
            }
            body.extend(string(&w.topic));
            body.extend(binary(&w.payload));
        }
        if let Some(u) = &self.username {
            body.extend(string(u));
        }
        if let Some(p) = &self.password {
            body.extend(binary(p));
        }
        frame(0x10, &body)
    }
}

/// PUBLISH (§3.3), both for building and for what [`Publish::parse`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub packet_id: Option<u16>,
    /// `Some` for MQTT 5.0 (a property list is on the wire, maybe empty), `None` for 3.x.
    pub props: Option<Props>,
}

impl Publish {
    /// A QoS 0 MQTT 3.x PUBLISH; chain `.qos()`, `.v5()`, ... to change it.
    pub fn new(topic: &str, payload: &[u8]) -> Publish {
        Publish {
            topic: topic.to_string(),
            payload: payload.to_vec(),
            qos: 0,
            retain: false,
            dup: false,
            packet_id: None,
            props: None,
        }
    }
    /// Sets QoS and, for QoS > 0, the packet identifier.
    pub fn qos(mut self, qos: u8, packet_id: u16) -> Publish {
        self.qos = qos;
        self.packet_id = if qos > 0 { Some(packet_id) } else { None };
        self
    }
    pub fn retain(mut self, retain: bool) -> Publish {
        self.retain = retain;
        self
    }
    pub fn dup(mut self) -> Publish {
        self.dup = true;
        self
    }
    /// Encode as MQTT 5.0 (with a property list).
    pub fn v5(mut self) -> Publish {
        if self.props.is_none() {
            self.props = Some(Props::default());
        }
        self
    }
    pub fn prop(mut self, p: Property) -> Publish {
        self.props.get_or_insert_with(Props::default).0.push(p);
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let first = 0x30 | (u8::from(self.dup) << 3) | (self.qos << 1) | u8::from(self.retain);
        let mut body = string(&self.topic);
        if let Some(id) = self.packet_id {
            body.extend_from_slice(&id.to_be_bytes());
        }
        if let Some(p) = &self.props {
            body.extend(props(&p.0));
        }
        body.extend_from_slice(&self.payload);
        frame(first, &body)
    }

    /// Parses a PUBLISH the broker sent. `v5` says whether a property list is on the wire.
    pub fn parse(packet: &Packet, v5: bool) -> Publish {
        packet.assert_kind(kind::PUBLISH);
        let qos = (packet.first >> 1) & 0x03;
        assert!(qos < 3, "broker sent PUBLISH with QoS 3: {packet}");
        let mut c = Cursor::new(packet);
        let topic = c.string();
        let packet_id = if qos > 0 {
            let id = c.u16();
            assert_ne!(id, 0, "broker sent PUBLISH with packet id 0: {packet}");
            Some(id)
        } else {
            None
        };
        let props = if v5 { Some(c.props()) } else { None };
        Publish {
            topic,
            payload: c.rest().to_vec(),
            qos,
            retain: packet.first & 0x01 != 0,
            dup: packet.first & 0x08 != 0,
            packet_id,
            props,
        }
    }

    /// The properties of a parsed MQTT 5.0 PUBLISH (panics for 3.x).
    pub fn props(&self) -> &Props {
        self.props
            .as_ref()
            .expect("PUBLISH was parsed as MQTT 3.x: no properties")
    }

    pub fn payload_str(&self) -> &str {
        std::str::from_utf8(&self.payload).expect("payload is not UTF-8")
    }
}

/// Subscription options byte of MQTT 5.0 (§3.8.3.1); in 3.x only the QoS bits exist.
pub fn sub_opts(qos: u8, no_local: bool, retain_as_published: bool, retain_handling: u8) -> u8 {
    qos | (u8::from(no_local) << 2) | (u8::from(retain_as_published) << 3) | (retain_handling << 4)
}

/// SUBSCRIBE for MQTT 3.x: packet id, then (filter, requested QoS) pairs.
pub fn subscribe(packet_id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    for (f, opts) in filters {
        body.extend(string(f));
        body.push(*opts);
    }
    frame(0x82, &body)
}

/// SUBSCRIBE for MQTT 5.0: packet id, properties, then (filter, options) pairs.
pub fn subscribe_v5(packet_id: u16, properties: &[Property], filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend(props(properties));
    for (f, opts) in filters {
        body.extend(string(f));
        body.push(*opts);
    }
    frame(0x82, &body)
}

/// UNSUBSCRIBE; `v5` adds the (empty) property list.
pub fn unsubscribe(packet_id: u16, filters: &[&str], v5: bool) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    if v5 {
        body.push(0x00);
    }
    for f in filters {
        body.extend(string(f));
    }
    frame(0xA2, &body)
}

/// PUBACK / PUBREC / PUBREL / PUBCOMP with just a packet id (3.x, or 5.0 with reason Success).
pub fn ack(kind: u8, packet_id: u16) -> Vec<u8> {
    let flags = if kind == kind::PUBREL { 0x02 } else { 0x00 };
    frame((kind << 4) | flags, &packet_id.to_be_bytes())
}
pub fn puback(packet_id: u16) -> Vec<u8> {
    ack(kind::PUBACK, packet_id)
}
pub fn pubrec(packet_id: u16) -> Vec<u8> {
    ack(kind::PUBREC, packet_id)
}
pub fn pubrel(packet_id: u16) -> Vec<u8> {
    ack(kind::PUBREL, packet_id)
}
pub fn pubcomp(packet_id: u16) -> Vec<u8> {
    ack(kind::PUBCOMP, packet_id)
}

pub const PINGREQ: [u8; 2] = [0xC0, 0x00];
pub const PINGRESP: [u8; 2] = [0xD0, 0x00];
/// DISCONNECT with no body: 3.x, or 5.0 "normal disconnection" in its shortest form.
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// MQTT 5.0 DISCONNECT with a reason code and properties.
pub fn disconnect_v5(reason: u8, properties: &[Property]) -> Vec<u8> {
    let mut body = vec![reason];
    body.extend(props(properties));
    frame(0xE0, &body)
}

// ---------------------------------------------------------------------------------------------
// Server -> client packets
// ---------------------------------------------------------------------------------------------

/// One packet as read off the wire: first byte and body (the Remaining Length bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Packet {
    pub first: u8,
    pub body: Vec<u8>,
}

impl Packet {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }
    pub fn flags(&self) -> u8 {
        self.first & 0x0F
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        frame(self.first, &self.body)
    }
    pub fn assert_kind(&self, kind: u8) {
        assert_eq!(
            self.kind(),
            kind,
            "expected {} but got {self}",
            kind::name(kind)
        );
    }
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", kind::name(self.kind()), hex(&self.to_bytes()))
    }
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// CONNACK (§3.2): session present, return/reason code, properties (5.0).
#[derive(Clone, Debug)]
pub struct Connack {
    pub session_present: bool,
    pub code: u8,
    pub props: Props,
}

impl Connack {
    pub fn parse(packet: &Packet, v5: bool) -> Connack {
        packet.assert_kind(kind::CONNACK);
        assert_eq!(packet.flags(), 0, "CONNACK flags must be 0: {packet}");
        let mut c = Cursor::new(packet);
        let ack_flags = c.u8();
        assert_eq!(ack_flags & 0xFE, 0, "CONNACK reserved bits set: {packet}");
        let code = c.u8();
        let props = if v5 { c.props() } else { Props::default() };
        c.finish();
        Connack {
            session_present: ack_flags & 0x01 != 0,
            code,
            props,
        }
    }
}

/// SUBACK (§3.9): packet id and one return/reason code per filter.
#[derive(Clone, Debug)]
pub struct Suback {
    pub packet_id: u16,
    pub codes: Vec<u8>,
    pub props: Props,
}

impl Suback {
    pub fn parse(packet: &Packet, v5: bool) -> Suback {
        Suback::parse_kind(packet, v5, kind::SUBACK)
    }

    /// SUBACK and UNSUBACK (5.0) share a layout.
    pub fn parse_kind(packet: &Packet, v5: bool, kind: u8) -> Suback {
        packet.assert_kind(kind);
        let mut c = Cursor::new(packet);
        let packet_id = c.u16();
        let props = if v5 { c.props() } else { Props::default() };
        Suback {
            packet_id,
            codes: c.rest().to_vec(),
            props,
        }
    }
}

/// An acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK in 3.x): packet id, and for
/// 5.0 the reason code (absent on the wire = 0x00 Success).
#[derive(Clone, Debug)]
pub struct Ack {
    pub packet_id: u16,
    pub reason: u8,
}

impl Ack {
    pub fn parse(packet: &Packet, kind: u8) -> Ack {
        packet.assert_kind(kind);
        let expected_flags = if kind == kind::PUBREL { 0x02 } else { 0x00 };
        assert_eq!(packet.flags(), expected_flags, "bad flags: {packet}");
        let mut c = Cursor::new(packet);
        let packet_id = c.u16();
        let reason = if c.remaining() > 0 { c.u8() } else { 0x00 };
        if c.remaining() > 0 {
            c.props();
        }
        c.finish();
        Ack { packet_id, reason }
    }
}

/// MQTT 5.0 DISCONNECT (§3.14): reason code (absent = 0x00) and properties.
#[derive(Clone, Debug)]
pub struct Disconnect {
    pub reason: u8,
    pub props: Props,
}

impl Disconnect {
    pub fn parse(packet: &Packet) -> Disconnect {
        packet.assert_kind(kind::DISCONNECT);
        assert_eq!(packet.flags(), 0, "DISCONNECT flags must be 0: {packet}");
        let mut c = Cursor::new(packet);
        let reason = if c.remaining() > 0 { c.u8() } else { 0x00 };
        let props = if c.remaining() > 0 {
            c.props()
        } else {
            Props::default()
        };
        c.finish();
        Disconnect { reason, props }
    }
}

/// A strict reader over a received packet body; every shortfall panics with the packet.
pub struct Cursor<'a> {
    packet: &'a Packet,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(packet: &'a Packet) -> Cursor<'a> {
        Cursor { packet, pos: 0 }
    }
    pub fn remaining(&self) -> usize {
        self.packet.body.len() - self.pos
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(
            self.remaining() >= n,
            "broker sent a truncated packet (wanted {n} more bytes at offset {}): {}",
            self.pos,
            self.packet
        );
        let out = &self.packet.body[self.pos..self.pos + n];
        self.pos += n;
        out
    }
    pub fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    pub fn u16(&mut self) -> u16 {
        let b = self.take(2);
        u16::from_be_bytes([b[0], b[1]])
    }
    pub fn u32(&mut self) -> u32 {
        let b = self.take(4);
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    pub fn varint(&mut self) -> u32 {
        let mut value = 0u32;
        for i in 0..4 {
            let b = self.u8();
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return value;
            }
        }
        panic!(
            "broker sent a variable byte integer longer than 4 bytes: {}",
            self.packet
        )
    }
    pub fn binary(&mut self) -> Vec<u8> {
        let len = usize::from(self.u16());
        self.take(len).to_vec()
    }
    pub fn string(&mut self) -> String {
        let bytes = self.binary();
        let s = String::from_utf8(bytes)
            .unwrap_or_else(|e| panic!("broker sent invalid UTF-8 ({e}): {}", self.packet));
        assert!(
            !s.contains('\0'),
            "broker sent U+0000 in a string: {}",
            self.packet
        );
        s
    }
    /// A property list; panics on unknown identifiers or a length that does not add up.
    pub fn props(&mut self) -> Props {
        let len = self.varint() as usize;
        let end = self.pos + len;
        assert!(
            end <= self.packet.body.len(),
            "property length past the end: {}",
            self.packet
        );
        let mut out = Vec::new();
        while self.pos < end {
            let id = self.u8();
            let read = prop_type(id).unwrap_or_else(|| {
                panic!("broker sent unknown property 0x{id:02x}: {}", self.packet)
            });
            out.push(Property {
                id,
                value: read(self),
            });
        }
        assert_eq!(
            self.pos, end,
            "property list overran its length: {}",
            self.packet
        );
        Props(out)
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let n = self.remaining();
        self.take(n)
    }
    /// Asserts nothing is left over.
    pub fn finish(&self) {
        assert_eq!(self.remaining(), 0, "trailing bytes in {}", self.packet);
    }
}

/// Guards hand-counted test packets: when `bytes` starts with a valid fixed header, its
/// Remaining Length must cover exactly the rest. (A packet whose header is itself the
/// malformation, like a 5-byte Remaining Length, is left alone.) Without this, a miscounted
/// literal would silently test a truncated packet instead of the intended defect.
pub fn assert_framed(bytes: &[u8]) {
    let mut len = 0usize;
    for (i, b) in bytes.iter().skip(1).take(4).enumerate() {
        len |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            let header = i + 2;
            assert_eq!(
                header + len,
                bytes.len(),
                "test bug: remaining length {len} does not match the {} body bytes of [{}]",
                bytes.len().saturating_sub(header),
                hex(bytes)
            );
            return;
        }
    }
}

/// Bytes as space-separated hex, for failure messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
