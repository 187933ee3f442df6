//! Every way a byte stream can fail to be a valid MQTT packet, and what the client is told.

use super::reason::ReasonCode;

/// Why bytes were rejected. Each variant maps to exactly one reason code through the
/// exhaustive match in [`DecodeError::reason_code`], so a new variant cannot compile until
/// someone decides what goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A Variable Byte Integer longer than 4 bytes: the Remaining Length (MQTT 5.0 §1.5.5,
    /// 3.1.1 §2.2.3), a Property Length or a Subscription Identifier.
    MalformedRemainingLength,
    /// The whole packet would exceed the negotiated maximum packet size.
    PacketTooLarge { size: u64, max: u32 },
    /// Packet type 0 (reserved) or 15 (AUTH) outside MQTT 5.0.
    UnknownPacketType(u8),
    /// Fixed-header flag bits not as the spec requires for this type (MQTT-2.2.2-2).
    InvalidFixedHeaderFlags { packet_type: u8, flags: u8 },
    /// QoS bits set to 3 (MQTT-3.3.1-4) or QoS 0 with DUP set (MQTT-3.3.1-2).
    InvalidQoS,
    /// A packet identifier of zero (MQTT-2.3.1-1).
    ZeroPacketId,
    /// A length inside the body points past the end of the packet.
    Truncated,
    /// The body has bytes left after the last field.
    TrailingBytes,
    /// A UTF-8 string is not valid UTF-8 or contains U+0000 (MQTT-1.5.3-1, MQTT-1.5.3-2).
    InvalidUtf8,
    /// CONNECT protocol name is neither `MQTT` nor `MQIsdp`, or does not match the level.
    InvalidProtocolName,
    /// CONNECT protocol level we do not speak (answered with the 3.1.1 CONNACK 0x01).
    UnsupportedProtocolVersion(u8),
    /// CONNECT flags: reserved bit set, will QoS/retain without will flag, will QoS 3,
    /// or password without user name in 3.1/3.1.1 (MQTT-3.1.2-3, -11, -13, -14, -22).
    /// Also CONNACK acknowledge flags: reserved bits set (MQTT-3.2.2-1), or session present
    /// with a non-zero return code (MQTT-3.2.2-4 / 5.0 MQTT-3.2.2-6).
    InvalidConnectFlags,
    /// A topic name that has wildcards or is too long, or an empty will topic.
    InvalidTopicName,
    /// A 5.0 PUBLISH with an empty topic name and no Topic Alias: a Protocol Error (MQTT 5.0
    /// §3.3.2.1); before 5.0 an empty topic name is simply invalid (MQTT-4.7.3-1).
    EmptyTopicName,
    /// A topic filter that breaks the wildcard rules (MQTT-4.7.1-2, -3).
    InvalidTopicFilter,
    /// An empty topic filter in SUBSCRIBE or UNSUBSCRIBE (MQTT-4.7.3-1): not a filter at all,
    /// so the packet is malformed (what Mosquitto answers too).
    EmptyTopicFilter,
    /// SUBSCRIBE or UNSUBSCRIBE with no topic filters (MQTT-3.8.3-3, MQTT-3.10.3-2), or a
    /// SUBACK / 5.0 UNSUBACK with no reason codes (one is owed per filter).
    EmptyTopicList,
    /// Reserved bits in subscription options, QoS 3, or retain handling 3 (MQTT-3.8.3-5).
    InvalidSubscriptionOptions,
    /// A property identifier that does not exist.
    UnknownProperty(u8),
    /// A property that is not allowed on this packet type.
    PropertyNotAllowed(u8),
    /// A property other than User Property appearing twice (and not a multi-valued one).
    DuplicateProperty(u8),
    /// A property value outside its allowed range (e.g. Receive Maximum 0, Topic Alias 0).
    InvalidPropertyValue(u8),
    /// A reason code byte not allowed on this packet.
    InvalidReasonCode(u8),
    /// A packet that only a server may send arriving at a server, or only a client at a
    /// client (including DISCONNECT at a 3.1/3.1.1 client). AUTH before 5.0 is
    /// `UnknownPacketType(15)`.
    UnexpectedPacket(u8),
    /// The first packet on a connection was not CONNECT (MQTT-3.1.0-1).
    ExpectedConnect,
    /// A second CONNECT on an established connection (MQTT-3.1.0-2).
    SecondConnect,
}

impl DecodeError {
    /// What an MQTT 5.0 client is told (in CONNACK during CONNECT, else in DISCONNECT).
    /// MQTT 3.1/3.1.1 clients just lose the connection, except for the CONNACK return codes
    /// derived through [`ReasonCode::connack_return_code_v3`].
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::MalformedRemainingLength => ReasonCode::MalformedPacket,
            DecodeError::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            DecodeError::UnknownPacketType(_) => ReasonCode::MalformedPacket,
            DecodeError::InvalidFixedHeaderFlags { .. } => ReasonCode::MalformedPacket,
            DecodeError::InvalidQoS => ReasonCode::MalformedPacket,
            DecodeError::ZeroPacketId => ReasonCode::MalformedPacket,
            DecodeError::Truncated => ReasonCode::MalformedPacket,
            DecodeError::TrailingBytes => ReasonCode::MalformedPacket,
            DecodeError::InvalidUtf8 => ReasonCode::MalformedPacket,
            DecodeError::InvalidProtocolName => ReasonCode::UnsupportedProtocolVersion,
            DecodeError::UnsupportedProtocolVersion(_) => ReasonCode::UnsupportedProtocolVersion,
            DecodeError::InvalidConnectFlags => ReasonCode::MalformedPacket,
            DecodeError::InvalidTopicName => ReasonCode::TopicNameInvalid,
            DecodeError::EmptyTopicName => ReasonCode::ProtocolError,
            DecodeError::InvalidTopicFilter => ReasonCode::TopicFilterInvalid,
            DecodeError::EmptyTopicFilter => ReasonCode::MalformedPacket,
            DecodeError::EmptyTopicList => ReasonCode::ProtocolError,
            DecodeError::InvalidSubscriptionOptions => ReasonCode::MalformedPacket,
            DecodeError::UnknownProperty(_) => ReasonCode::MalformedPacket,
            DecodeError::PropertyNotAllowed(_) => ReasonCode::MalformedPacket,
            DecodeError::DuplicateProperty(_) => ReasonCode::ProtocolError,
            DecodeError::InvalidPropertyValue(_) => ReasonCode::ProtocolError,
            DecodeError::InvalidReasonCode(_) => ReasonCode::MalformedPacket,
            DecodeError::UnexpectedPacket(_) => ReasonCode::ProtocolError,
            DecodeError::ExpectedConnect => ReasonCode::ProtocolError,
            DecodeError::SecondConnect => ReasonCode::ProtocolError,
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::PacketTooLarge { size, max } => {
                write!(f, "packet of {size} bytes exceeds maximum packet size {max}")
            }
            other => write!(f, "{other:?}"),
        }
    }
}

impl std::error::Error for DecodeError {}
