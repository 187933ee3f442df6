//! Validated MQTT packet representations shared by all protocol versions.
//!
//! These types are what the decoder produces and the encoder consumes. A value of these types
//! has already passed every check in the codec (flags, lengths, UTF-8, topic rules, property
//! rules), so the broker never re-validates wire details. Fields that exist only in MQTT 5.0
//! (properties, reason codes) are ignored by the 3.1/3.1.1 encoder and left at their defaults
//! by the 3.1/3.1.1 decoder.

use std::num::NonZeroU16;
use std::rc::Rc;

use super::properties::{
    AuthProperties, ConnackProperties, ConnectProperties, DisconnectProperties, PubackProperties,
    PublishProperties, SubackProperties, SubscribeProperties, UnsubackProperties,
    UnsubscribeProperties, WillProperties,
};
use super::reason::ReasonCode;

/// The protocol level negotiated by CONNECT; it decides how every later packet is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V31,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V311,
    /// MQTT 5.0: protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V31 => 3,
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

/// Quality of service. QoS 3 is unrepresentable: the decoder rejects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn from_bits(bits: u8) -> Option<QoS> {
        match bits {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    pub fn bits(self) -> u8 {
        self as u8
    }
}

/// A packet identifier; zero is invalid on the wire (MQTT-2.3.1-1), so it cannot be built.
pub type PacketId = NonZeroU16;

/// A whole MQTT control packet.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    Connect(Box<Connect>),
    Connack(Connack),
    Publish(Publish),
    Puback(PubAck),
    Pubrec(PubAck),
    Pubrel(PubAck),
    Pubcomp(PubAck),
    Subscribe(Subscribe),
    Suback(Suback),
    Unsubscribe(Unsubscribe),
    Unsuback(Unsuback),
    Pingreq,
    Pingresp,
    Disconnect(Disconnect),
    /// MQTT 5.0 only.
    Auth(Auth),
}

impl Packet {
    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::Connack(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::Puback(_) => "PUBACK",
            Packet::Pubrec(_) => "PUBREC",
            Packet::Pubrel(_) => "PUBREL",
            Packet::Pubcomp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::Suback(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::Unsuback(_) => "UNSUBACK",
            Packet::Pingreq => "PINGREQ",
            Packet::Pingresp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Connect {
    pub protocol: Option<ProtocolVersion>,
    pub clean_start: bool,
    /// Seconds; 0 disables keep-alive.
    pub keep_alive: u16,
    /// May be empty: the broker decides whether to assign one.
    pub client_id: String,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub properties: ConnectProperties,
}

impl Connect {
    /// The protocol version; `Connect` values from the decoder always carry one.
    pub fn version(&self) -> ProtocolVersion {
        self.protocol.unwrap_or(ProtocolVersion::V311)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Will {
    pub topic: Rc<str>,
    pub payload: Rc<[u8]>,
    pub qos: QoS,
    pub retain: bool,
    pub properties: WillProperties,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Connack {
    pub session_present: bool,
    /// For 3.1/3.1.1 the encoder maps this to the 3.1.1 return code
    /// (see `ReasonCode::connack_return_code_v3`).
    pub reason: ReasonCode,
    pub properties: ConnackProperties,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty only in MQTT 5.0 when a topic alias is present (MQTT-3.3.2-8 area).
    pub topic: Rc<str>,
    /// Present exactly when `qos > 0`.
    pub packet_id: Option<PacketId>,
    pub properties: PublishProperties,
    pub payload: Rc<[u8]>,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Debug, Clone, PartialEq)]
pub struct PubAck {
    pub packet_id: PacketId,
    pub reason: ReasonCode,
    pub properties: PubackProperties,
}

impl PubAck {
    pub fn new(packet_id: PacketId) -> PubAck {
        PubAck { packet_id, reason: ReasonCode::Success, properties: PubackProperties::default() }
    }

    pub fn with_reason(packet_id: PacketId, reason: ReasonCode) -> PubAck {
        PubAck { packet_id, reason, properties: PubackProperties::default() }
    }
}

/// Retain Handling subscription option (MQTT 5.0 §3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    #[default]
    SendAtSubscribe = 0,
    SendAtNewSubscribe = 1,
    DoNotSend = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS requested.
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    pub packet_id: PacketId,
    /// Never empty (MQTT-3.8.3-3); every filter is a valid topic filter.
    pub filters: Vec<(String, SubscriptionOptions)>,
    pub properties: SubscribeProperties,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Suback {
    pub packet_id: PacketId,
    /// One per requested filter: `GrantedQoS0..2` or a failure code. The 3.1.1 encoder maps
    /// every failure to 0x80.
    pub reasons: Vec<ReasonCode>,
    pub properties: SubackProperties,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unsubscribe {
    pub packet_id: PacketId,
    /// Never empty (MQTT-3.10.3-2).
    pub filters: Vec<String>,
    pub properties: UnsubscribeProperties,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unsuback {
    pub packet_id: PacketId,
    /// MQTT 5.0 only; the 3.1.1 encoder writes just the packet id.
    pub reasons: Vec<ReasonCode>,
    pub properties: UnsubackProperties,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Disconnect {
    /// MQTT 5.0 only; 3.1/3.1.1 DISCONNECT has no body.
    pub reason: ReasonCode,
    pub properties: DisconnectProperties,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Auth {
    pub reason: ReasonCode,
    pub properties: AuthProperties,
}
