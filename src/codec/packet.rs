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

    /// This packet without its Reason String and User Properties, or `None` if it carries
    /// neither. A sender leaves them out when they would make the packet exceed the
    /// receiver's Maximum Packet Size (MQTT-3.2.2-19, -20, MQTT-3.4.2-2, -3, MQTT-3.5.2-2, -3,
    /// MQTT-3.6.2-2, -3, MQTT-3.7.2-2, -3, MQTT-3.9.2-1, -2, MQTT-3.11.2-1, -2, MQTT-3.14.2-3,
    /// -4, MQTT-3.15.2-2, -3). The User Properties of a PUBLISH are application data and are
    /// never dropped (MQTT-3.3.2-17); a client's packets have nothing to drop here either.
    pub fn without_diagnostics(&self) -> Option<Packet> {
        fn strip(reason_string: &mut Option<String>, user: &mut Vec<(String, String)>) -> bool {
            let had = reason_string.is_some() || !user.is_empty();
            *reason_string = None;
            user.clear();
            had
        }
        let mut packet = self.clone();
        let stripped = match &mut packet {
            Packet::Connack(p) => {
                strip(&mut p.properties.reason_string, &mut p.properties.user_properties)
            }
            Packet::Puback(p) | Packet::Pubrec(p) | Packet::Pubrel(p) | Packet::Pubcomp(p) => {
                strip(&mut p.properties.reason_string, &mut p.properties.user_properties)
            }
            Packet::Suback(p) => {
                strip(&mut p.properties.reason_string, &mut p.properties.user_properties)
            }
            Packet::Unsuback(p) => {
                strip(&mut p.properties.reason_string, &mut p.properties.user_properties)
            }
            Packet::Disconnect(p) => {
                strip(&mut p.properties.reason_string, &mut p.properties.user_properties)
            }
            Packet::Auth(p) => {
                strip(&mut p.properties.reason_string, &mut p.properties.user_properties)
            }
            Packet::Connect(_)
            | Packet::Publish(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::Pingreq
            | Packet::Pingresp => false,
        };
        stripped.then_some(packet)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encoded_len, DisconnectProperties, PubackProperties, SubackProperties};

    #[test]
    fn without_diagnostics_drops_reason_string_and_user_properties_only() {
        let id = PacketId::MIN;
        let puback = Packet::Puback(PubAck {
            packet_id: id,
            reason: ReasonCode::NoMatchingSubscribers,
            properties: PubackProperties {
                reason_string: Some("no one listens".into()),
                user_properties: vec![("k".into(), "v".into())],
            },
        });
        let bare = puback.without_diagnostics();
        // 0x40 PUBACK, remaining length 3: packet id 0x0001, reason 0x10 (property length 0
        // may be left out, MQTT 5.0 §3.4.2.2).
        assert_eq!(
            bare,
            Some(Packet::Puback(PubAck::with_reason(id, ReasonCode::NoMatchingSubscribers)))
        );
        assert_eq!(encoded_len(&puback, ProtocolVersion::V5), 30);
        assert_eq!(encoded_len(&bare.unwrap_or(Packet::Pingresp), ProtocolVersion::V5), 5);

        let suback = Packet::Suback(Suback {
            packet_id: id,
            reasons: vec![ReasonCode::Success],
            properties: SubackProperties { reason_string: Some("x".into()), ..Default::default() },
        });
        let Some(Packet::Suback(bare)) = suback.without_diagnostics() else {
            panic!("SUBACK reason string is optional")
        };
        assert_eq!(bare.properties, SubackProperties::default());
        assert_eq!(bare.reasons, vec![ReasonCode::Success]);

        let disconnect = Packet::Disconnect(Disconnect {
            reason: ReasonCode::ServerShuttingDown,
            properties: DisconnectProperties {
                server_reference: Some("other".into()),
                user_properties: vec![("k".into(), "v".into())],
                ..Default::default()
            },
        });
        let Some(Packet::Disconnect(bare)) = disconnect.without_diagnostics() else {
            panic!("DISCONNECT user properties are optional")
        };
        // Server Reference is not a diagnostic: it stays.
        assert_eq!(bare.properties.server_reference.as_deref(), Some("other"));
        assert!(bare.properties.user_properties.is_empty());

        // Nothing to drop: None.
        assert_eq!(Packet::Pingresp.without_diagnostics(), None);
        assert_eq!(Packet::Puback(PubAck::new(id)).without_diagnostics(), None);
    }

    #[test]
    fn publish_user_properties_are_never_dropped() {
        let publish = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "t".into(),
            packet_id: None,
            properties: PublishProperties {
                user_properties: vec![("k".into(), "v".into())],
                ..Default::default()
            },
            payload: b"x".as_slice().into(),
        });
        assert_eq!(publish.without_diagnostics(), None);
    }
}
