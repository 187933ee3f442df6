//! MQTT 5.0 reason codes (§2.4) and their mapping to MQTT 3.1/3.1.1 return codes.

/// Every reason code the broker may send or receive. Several codes share a byte value with
/// different meanings per packet (0x00 is Success, Normal disconnection and Granted QoS 0);
/// the variant names the meaning, `to_byte` gives the wire value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReasonCode {
    /// 0x00: Success / Normal disconnection / Granted QoS 0.
    #[default]
    Success,
    /// 0x01
    GrantedQoS1,
    /// 0x02
    GrantedQoS2,
    /// 0x04: DISCONNECT by the client asking for its will to be published.
    DisconnectWithWillMessage,
    /// 0x10
    NoMatchingSubscribers,
    /// 0x11
    NoSubscriptionExisted,
    /// 0x18
    ContinueAuthentication,
    /// 0x19
    ReAuthenticate,
    /// 0x80
    UnspecifiedError,
    /// 0x81
    MalformedPacket,
    /// 0x82
    ProtocolError,
    /// 0x83
    ImplementationSpecificError,
    /// 0x84
    UnsupportedProtocolVersion,
    /// 0x85
    ClientIdentifierNotValid,
    /// 0x86
    BadUserNameOrPassword,
    /// 0x87
    NotAuthorized,
    /// 0x88
    ServerUnavailable,
    /// 0x89
    ServerBusy,
    /// 0x8A
    Banned,
    /// 0x8B
    ServerShuttingDown,
    /// 0x8C
    BadAuthenticationMethod,
    /// 0x8D
    KeepAliveTimeout,
    /// 0x8E
    SessionTakenOver,
    /// 0x8F
    TopicFilterInvalid,
    /// 0x90
    TopicNameInvalid,
    /// 0x91
    PacketIdentifierInUse,
    /// 0x92
    PacketIdentifierNotFound,
    /// 0x93
    ReceiveMaximumExceeded,
    /// 0x94
    TopicAliasInvalid,
    /// 0x95
    PacketTooLarge,
    /// 0x96
    MessageRateTooHigh,
    /// 0x97
    QuotaExceeded,
    /// 0x98
    AdministrativeAction,
    /// 0x99
    PayloadFormatInvalid,
    /// 0x9A
    RetainNotSupported,
    /// 0x9B
    QoSNotSupported,
    /// 0x9C
    UseAnotherServer,
    /// 0x9D
    ServerMoved,
    /// 0x9E
    SharedSubscriptionsNotSupported,
    /// 0x9F
    ConnectionRateExceeded,
    /// 0xA0
    MaximumConnectTime,
    /// 0xA1
    SubscriptionIdentifiersNotSupported,
    /// 0xA2
    WildcardSubscriptionsNotSupported,
}

impl ReasonCode {
    pub fn to_byte(self) -> u8 {
        match self {
            ReasonCode::Success => 0x00,
            ReasonCode::GrantedQoS1 => 0x01,
            ReasonCode::GrantedQoS2 => 0x02,
            ReasonCode::DisconnectWithWillMessage => 0x04,
            ReasonCode::NoMatchingSubscribers => 0x10,
            ReasonCode::NoSubscriptionExisted => 0x11,
            ReasonCode::ContinueAuthentication => 0x18,
            ReasonCode::ReAuthenticate => 0x19,
            ReasonCode::UnspecifiedError => 0x80,
            ReasonCode::MalformedPacket => 0x81,
            ReasonCode::ProtocolError => 0x82,
            ReasonCode::ImplementationSpecificError => 0x83,
            ReasonCode::UnsupportedProtocolVersion => 0x84,
            ReasonCode::ClientIdentifierNotValid => 0x85,
            ReasonCode::BadUserNameOrPassword => 0x86,
            ReasonCode::NotAuthorized => 0x87,
            ReasonCode::ServerUnavailable => 0x88,
            ReasonCode::ServerBusy => 0x89,
            ReasonCode::Banned => 0x8A,
            ReasonCode::ServerShuttingDown => 0x8B,
            ReasonCode::BadAuthenticationMethod => 0x8C,
            ReasonCode::KeepAliveTimeout => 0x8D,
            ReasonCode::SessionTakenOver => 0x8E,
            ReasonCode::TopicFilterInvalid => 0x8F,
            ReasonCode::TopicNameInvalid => 0x90,
            ReasonCode::PacketIdentifierInUse => 0x91,
            ReasonCode::PacketIdentifierNotFound => 0x92,
            ReasonCode::ReceiveMaximumExceeded => 0x93,
            ReasonCode::TopicAliasInvalid => 0x94,
            ReasonCode::PacketTooLarge => 0x95,
            ReasonCode::MessageRateTooHigh => 0x96,
            ReasonCode::QuotaExceeded => 0x97,
            ReasonCode::AdministrativeAction => 0x98,
            ReasonCode::PayloadFormatInvalid => 0x99,
            ReasonCode::RetainNotSupported => 0x9A,
            ReasonCode::QoSNotSupported => 0x9B,
            ReasonCode::UseAnotherServer => 0x9C,
            ReasonCode::ServerMoved => 0x9D,
            ReasonCode::SharedSubscriptionsNotSupported => 0x9E,
            ReasonCode::ConnectionRateExceeded => 0x9F,
            ReasonCode::MaximumConnectTime => 0xA0,
            ReasonCode::SubscriptionIdentifiersNotSupported => 0xA1,
            ReasonCode::WildcardSubscriptionsNotSupported => 0xA2,
        }
    }

    /// Decodes a wire byte. The meaning of 0x00 depends on the packet; this returns `Success`.
    pub fn from_byte(byte: u8) -> Option<ReasonCode> {
        Some(match byte {
            0x00 => ReasonCode::Success,
            0x01 => ReasonCode::GrantedQoS1,
            0x02 => ReasonCode::GrantedQoS2,
            0x04 => ReasonCode::DisconnectWithWillMessage,
            0x10 => ReasonCode::NoMatchingSubscribers,
            0x11 => ReasonCode::NoSubscriptionExisted,
            0x18 => ReasonCode::ContinueAuthentication,
            0x19 => ReasonCode::ReAuthenticate,
            0x80 => ReasonCode::UnspecifiedError,
            0x81 => ReasonCode::MalformedPacket,
            0x82 => ReasonCode::ProtocolError,
            0x83 => ReasonCode::ImplementationSpecificError,
            0x84 => ReasonCode::UnsupportedProtocolVersion,
            0x85 => ReasonCode::ClientIdentifierNotValid,
            0x86 => ReasonCode::BadUserNameOrPassword,
            0x87 => ReasonCode::NotAuthorized,
            0x88 => ReasonCode::ServerUnavailable,
            0x89 => ReasonCode::ServerBusy,
            0x8A => ReasonCode::Banned,
            0x8B => ReasonCode::ServerShuttingDown,
            0x8C => ReasonCode::BadAuthenticationMethod,
            0x8D => ReasonCode::KeepAliveTimeout,
            0x8E => ReasonCode::SessionTakenOver,
            0x8F => ReasonCode::TopicFilterInvalid,
            0x90 => ReasonCode::TopicNameInvalid,
            0x91 => ReasonCode::PacketIdentifierInUse,
            0x92 => ReasonCode::PacketIdentifierNotFound,
            0x93 => ReasonCode::ReceiveMaximumExceeded,
            0x94 => ReasonCode::TopicAliasInvalid,
            0x95 => ReasonCode::PacketTooLarge,
            0x96 => ReasonCode::MessageRateTooHigh,
            0x97 => ReasonCode::QuotaExceeded,
            0x98 => ReasonCode::AdministrativeAction,
            0x99 => ReasonCode::PayloadFormatInvalid,
            0x9A => ReasonCode::RetainNotSupported,
            0x9B => ReasonCode::QoSNotSupported,
            0x9C => ReasonCode::UseAnotherServer,
            0x9D => ReasonCode::ServerMoved,
            0x9E => ReasonCode::SharedSubscriptionsNotSupported,
            0x9F => ReasonCode::ConnectionRateExceeded,
            0xA0 => ReasonCode::MaximumConnectTime,
            0xA1 => ReasonCode::SubscriptionIdentifiersNotSupported,
            0xA2 => ReasonCode::WildcardSubscriptionsNotSupported,
            _ => return None,
        })
    }

    pub fn is_error(self) -> bool {
        self.to_byte() >= 0x80
    }

    /// The MQTT 3.1/3.1.1 CONNACK return code for a CONNACK reason (§3.2.2.3 of 3.1.1).
    pub fn connack_return_code_v3(self) -> u8 {
        match self {
            ReasonCode::Success => 0x00,
            ReasonCode::UnsupportedProtocolVersion => 0x01,
            ReasonCode::ClientIdentifierNotValid => 0x02,
            ReasonCode::BadUserNameOrPassword | ReasonCode::BadAuthenticationMethod => 0x04,
            ReasonCode::NotAuthorized | ReasonCode::Banned => 0x05,
            _ => 0x03, // Server unavailable: the only remaining 3.1.1 answer.
        }
    }
}
