//! Messages and wills are stored as MQTT 5.0 PUBLISH packets: the codec already encodes every
//! property exactly, and decoding a stored row goes through the same validation as network
//! input, so a damaged row is an error, never a panic.

use std::num::NonZeroU16;

use crate::codec::{
    decode, encode, DecodeContext, Packet, ProtocolVersion, Publish, PublishProperties, QoS, Role,
    Will, WillProperties,
};

/// Packet id written into stored QoS 1/2 packets (the real one is derived from the row).
const PLACEHOLDER_ID: NonZeroU16 = NonZeroU16::MIN;

/// Takes the packet by value: callers build it for the store, so no copy is made here.
pub fn encode_publish(mut stored: Publish) -> Vec<u8> {
    stored.dup = false;
    stored.packet_id = (stored.qos != QoS::AtMostOnce).then_some(PLACEHOLDER_ID);
    let packet = Packet::Publish(stored);
    let mut out = Vec::with_capacity(crate::codec::encoded_len(&packet, ProtocolVersion::V5));
    encode(&packet, ProtocolVersion::V5, &mut out);
    out
}

pub fn decode_publish(bytes: &[u8]) -> Option<Publish> {
    let context = DecodeContext {
        version: Some(ProtocolVersion::V5),
        max_packet_size: u32::MAX,
        role: Role::Client,
    };
    match decode(bytes, &context) {
        Ok(Some((Packet::Publish(publish), used))) if used == bytes.len() => Some(publish),
        _ => None,
    }
}

pub fn encode_will(will: &Will) -> Vec<u8> {
    let p = &will.properties;
    encode_publish(Publish {
        dup: false,
        qos: will.qos,
        retain: will.retain,
        topic: will.topic.clone(),
        packet_id: None,
        properties: PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            topic_alias: None,
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.clone(),
            user_properties: p.user_properties.clone(),
            subscription_identifiers: Vec::new(),
            content_type: p.content_type.clone(),
        },
        payload: will.payload.clone(),
    })
}

pub fn decode_will(bytes: &[u8], will_delay_secs: u32) -> Option<Will> {
    let publish = decode_publish(bytes)?;
    let p = publish.properties;
    Some(Will {
        topic: publish.topic,
        payload: publish.payload,
        qos: publish.qos,
        retain: publish.retain,
        properties: WillProperties {
            will_delay_interval: (will_delay_secs > 0).then_some(will_delay_secs),
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
        },
    })
}
