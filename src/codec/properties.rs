//! MQTT 5.0 properties, one struct per packet type so that a property not allowed on a packet
//! cannot be represented there (the decoder rejects it as a protocol error, MQTT 5.0 §2.2.2.2).
//!
//! Every property may appear at most once except User Property (any number, order kept) and
//! Subscription Identifier (several only on PUBLISH sent to a client).

/// Ordered name/value pairs (MQTT 5.0 §3.1.2.11.8); order must be preserved when forwarded.
pub type UserProperties = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectProperties {
    pub session_expiry_interval: Option<u32>,
    /// Never 0 (a 0 is a protocol error).
    pub receive_maximum: Option<u16>,
    /// Never 0 (a 0 is a protocol error).
    pub maximum_packet_size: Option<u32>,
    pub topic_alias_maximum: Option<u16>,
    /// 0 or 1.
    pub request_response_information: Option<u8>,
    /// 0 or 1.
    pub request_problem_information: Option<u8>,
    pub user_properties: UserProperties,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct WillProperties {
    pub will_delay_interval: Option<u32>,
    /// 0 or 1.
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Vec<u8>>,
    pub user_properties: UserProperties,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnackProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    pub maximum_packet_size: Option<u32>,
    pub assigned_client_identifier: Option<String>,
    pub topic_alias_maximum: Option<u16>,
    pub reason_string: Option<String>,
    pub user_properties: UserProperties,
    pub wildcard_subscription_available: Option<u8>,
    pub subscription_identifiers_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
    pub server_keep_alive: Option<u16>,
    pub response_information: Option<String>,
    pub server_reference: Option<String>,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PublishProperties {
    /// 0 or 1.
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    /// Never 0 (a 0 is a protocol error, MQTT-3.3.2-8).
    pub topic_alias: Option<u16>,
    /// A topic name (no wildcards).
    pub response_topic: Option<String>,
    pub correlation_data: Option<Vec<u8>>,
    pub user_properties: UserProperties,
    /// From a client: always empty (a client must not send it, MQTT-3.3.4-6; a `Role::Server`
    /// decode rejects it). To a client: one per matching subscription that had one.
    /// Values 1..=268435455.
    pub subscription_identifiers: Vec<u32>,
    pub content_type: Option<String>,
}

/// Properties of PUBACK, PUBREC, PUBREL and PUBCOMP.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PubackProperties {
    pub reason_string: Option<String>,
    pub user_properties: UserProperties,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubscribeProperties {
    /// 1..=268435455 (0 is a protocol error).
    pub subscription_identifier: Option<u32>,
    pub user_properties: UserProperties,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubackProperties {
    pub reason_string: Option<String>,
    pub user_properties: UserProperties,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnsubscribeProperties {
    pub user_properties: UserProperties,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnsubackProperties {
    pub reason_string: Option<String>,
    pub user_properties: UserProperties,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DisconnectProperties {
    pub session_expiry_interval: Option<u32>,
    pub reason_string: Option<String>,
    pub user_properties: UserProperties,
    pub server_reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuthProperties {
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Vec<u8>>,
    pub reason_string: Option<String>,
    pub user_properties: UserProperties,
}
