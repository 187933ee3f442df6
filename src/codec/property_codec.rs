//! MQTT 5.0 property blocks (§2.2.2): decoding into the per-packet structs of
//! [`super::properties`] and encoding them back.
//!
//! Contract: a decoded block has passed every rule of §2.2.2.2 and of the packet's property
//! section: unknown identifiers are `UnknownProperty`, known ones that the packet does not
//! carry are `PropertyNotAllowed`, a second copy of a single-valued property is
//! `DuplicateProperty`, and out-of-range values are `InvalidPropertyValue`. Only User Property
//! may repeat everywhere (order kept), and Subscription Identifier may repeat only in a PUBLISH
//! sent to a client. Nothing here panics; all reads go through [`Reader`].
//!
//! Encoding walks each struct once through a [`Sink`]: the same walk counts bytes
//! ([`block_len`]) and writes them ([`put_block`]), so the two can never disagree. Properties
//! are written in a fixed order (ascending identifier, user properties last); the
//! specification allows any order.

use super::decode::Role;
use super::error::DecodeError;
use super::properties::{
    AuthProperties, ConnackProperties, ConnectProperties, DisconnectProperties, PubackProperties,
    PublishProperties, SubackProperties, SubscribeProperties, UnsubackProperties,
    UnsubscribeProperties, UserProperties, WillProperties,
};
use super::reader::{Reader, VARINT_MAX};
use super::topic::is_valid_topic_name;
use super::writer::{put_binary, put_str, put_u16, put_u32, put_varint, str_len, varint_len};

/// Property identifiers (MQTT 5.0 §2.2.2.2, table 2-4).
pub mod id {
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

use id::*;

/// Whether `ident` names a property defined by MQTT 5.0.
pub fn is_known(ident: u8) -> bool {
    matches!(
        ident,
        PAYLOAD_FORMAT_INDICATOR
            | MESSAGE_EXPIRY_INTERVAL
            | CONTENT_TYPE
            | RESPONSE_TOPIC
            | CORRELATION_DATA
            | SUBSCRIPTION_IDENTIFIER
            | SESSION_EXPIRY_INTERVAL
            | ASSIGNED_CLIENT_IDENTIFIER
            | SERVER_KEEP_ALIVE
            | AUTHENTICATION_METHOD
            | AUTHENTICATION_DATA
            | REQUEST_PROBLEM_INFORMATION
            | WILL_DELAY_INTERVAL
            | REQUEST_RESPONSE_INFORMATION
            | RESPONSE_INFORMATION
            | SERVER_REFERENCE
            | REASON_STRING
            | RECEIVE_MAXIMUM
            | TOPIC_ALIAS_MAXIMUM
            | TOPIC_ALIAS
            | MAXIMUM_QOS
            | RETAIN_AVAILABLE
            | USER_PROPERTY
            | MAXIMUM_PACKET_SIZE
            | WILDCARD_SUBSCRIPTION_AVAILABLE
            | SUBSCRIPTION_IDENTIFIER_AVAILABLE
            | SHARED_SUBSCRIPTION_AVAILABLE
    )
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// The error for an identifier the packet being decoded does not carry.
fn not_allowed(ident: u8) -> DecodeError {
    if is_known(ident) {
        DecodeError::PropertyNotAllowed(ident)
    } else {
        DecodeError::UnknownProperty(ident)
    }
}

/// Stores a single-valued property; a second copy is a Protocol Error (§2.2.2.2).
fn set_once<T>(slot: &mut Option<T>, value: T, ident: u8) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(ident));
    }
    *slot = Some(value);
    Ok(())
}

/// Reads the Property Length and returns a reader over exactly the property block.
/// A length past the end of the packet is `Truncated`.
fn block<'a>(r: &mut Reader<'a>) -> Result<Reader<'a>, DecodeError> {
    let len = r.varint()?;
    r.sub(len as usize)
}

/// A Byte property whose only values are 0 and 1.
fn flag(r: &mut Reader<'_>, ident: u8) -> Result<u8, DecodeError> {
    match r.u8()? {
        v @ (0 | 1) => Ok(v),
        _ => Err(DecodeError::InvalidPropertyValue(ident)),
    }
}

fn nonzero_u16(r: &mut Reader<'_>, ident: u8) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::InvalidPropertyValue(ident)),
        v => Ok(v),
    }
}

fn nonzero_u32(r: &mut Reader<'_>, ident: u8) -> Result<u32, DecodeError> {
    match r.u32()? {
        0 => Err(DecodeError::InvalidPropertyValue(ident)),
        v => Ok(v),
    }
}

/// Subscription Identifier: 1..=268,435,455 (§3.8.2.1.2); the varint cannot exceed the top.
fn subscription_id(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    match r.varint()? {
        0 => Err(DecodeError::InvalidPropertyValue(SUBSCRIPTION_IDENTIFIER)),
        v => Ok(v),
    }
}

fn string(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    r.utf8().map(str::to_owned)
}

fn binary(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    r.binary().map(<[u8]>::to_vec)
}

/// Response Topic: a UTF-8 string that is a valid topic name (MQTT-3.3.2-14).
fn response_topic(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let topic = r.utf8()?;
    if !is_valid_topic_name(topic) {
        return Err(DecodeError::InvalidPropertyValue(RESPONSE_TOPIC));
    }
    Ok(topic.to_owned())
}

fn user_property(r: &mut Reader<'_>, list: &mut UserProperties) -> Result<(), DecodeError> {
    let name = string(r)?;
    let value = string(r)?;
    list.push((name, value));
    Ok(())
}

/// Reads properties until the block ends, handing each identifier to `field`, which reads
/// the value or rejects the identifier.
fn each<'a>(
    r: &mut Reader<'a>,
    mut field: impl FnMut(u8, &mut Reader<'a>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut props = block(r)?;
    while !props.is_empty() {
        // The identifier is a Variable Byte Integer, but every defined one fits in one byte
        // below 0x80; a first byte with the top bit set can only start an unknown identifier.
        let ident = props.u8()?;
        field(ident, &mut props)?;
    }
    Ok(())
}

pub fn decode_connect(r: &mut Reader<'_>) -> Result<ConnectProperties, DecodeError> {
    let mut p = ConnectProperties::default();
    each(r, |ident, r| match ident {
        SESSION_EXPIRY_INTERVAL => set_once(&mut p.session_expiry_interval, r.u32()?, ident),
        RECEIVE_MAXIMUM => set_once(&mut p.receive_maximum, nonzero_u16(r, ident)?, ident),
        MAXIMUM_PACKET_SIZE => set_once(&mut p.maximum_packet_size, nonzero_u32(r, ident)?, ident),
        TOPIC_ALIAS_MAXIMUM => set_once(&mut p.topic_alias_maximum, r.u16()?, ident),
        REQUEST_RESPONSE_INFORMATION => {
            set_once(&mut p.request_response_information, flag(r, ident)?, ident)
        }
        REQUEST_PROBLEM_INFORMATION => {
            set_once(&mut p.request_problem_information, flag(r, ident)?, ident)
        }
        USER_PROPERTY => user_property(r, &mut p.user_properties),
        AUTHENTICATION_METHOD => set_once(&mut p.authentication_method, string(r)?, ident),
        AUTHENTICATION_DATA => set_once(&mut p.authentication_data, binary(r)?, ident),
        other => Err(not_allowed(other)),
    })?;
    // "It is a Protocol Error to include Authentication Data if there is no Authentication
    // Method" (§3.1.2.11.10).
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(DecodeError::InvalidPropertyValue(AUTHENTICATION_DATA));
    }
    Ok(p)
}

pub fn decode_will(r: &mut Reader<'_>) -> Result<WillProperties, DecodeError> {
    let mut p = WillProperties::default();
    each(r, |ident, r| match ident {
        WILL_DELAY_INTERVAL => set_once(&mut p.will_delay_interval, r.u32()?, ident),
        PAYLOAD_FORMAT_INDICATOR => {
            set_once(&mut p.payload_format_indicator, flag(r, ident)?, ident)
        }
        MESSAGE_EXPIRY_INTERVAL => set_once(&mut p.message_expiry_interval, r.u32()?, ident),
        CONTENT_TYPE => set_once(&mut p.content_type, string(r)?, ident),
        RESPONSE_TOPIC => set_once(&mut p.response_topic, response_topic(r)?, ident),
        CORRELATION_DATA => set_once(&mut p.correlation_data, binary(r)?, ident),
        USER_PROPERTY => user_property(r, &mut p.user_properties),
        other => Err(not_allowed(other)),
    })?;
    Ok(p)
}

pub fn decode_connack(r: &mut Reader<'_>) -> Result<ConnackProperties, DecodeError> {
    let mut p = ConnackProperties::default();
    each(r, |ident, r| match ident {
        SESSION_EXPIRY_INTERVAL => set_once(&mut p.session_expiry_interval, r.u32()?, ident),
        RECEIVE_MAXIMUM => set_once(&mut p.receive_maximum, nonzero_u16(r, ident)?, ident),
        MAXIMUM_QOS => set_once(&mut p.maximum_qos, flag(r, ident)?, ident),
        RETAIN_AVAILABLE => set_once(&mut p.retain_available, flag(r, ident)?, ident),
        MAXIMUM_PACKET_SIZE => set_once(&mut p.maximum_packet_size, nonzero_u32(r, ident)?, ident),
        ASSIGNED_CLIENT_IDENTIFIER => {
            set_once(&mut p.assigned_client_identifier, string(r)?, ident)
        }
        TOPIC_ALIAS_MAXIMUM => set_once(&mut p.topic_alias_maximum, r.u16()?, ident),
        REASON_STRING => set_once(&mut p.reason_string, string(r)?, ident),
        USER_PROPERTY => user_property(r, &mut p.user_properties),
        WILDCARD_SUBSCRIPTION_AVAILABLE => {
            set_once(&mut p.wildcard_subscription_available, flag(r, ident)?, ident)
        }
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
            set_once(&mut p.subscription_identifiers_available, flag(r, ident)?, ident)
        }
        SHARED_SUBSCRIPTION_AVAILABLE => {
            set_once(&mut p.shared_subscription_available, flag(r, ident)?, ident)
        }
        SERVER_KEEP_ALIVE => set_once(&mut p.server_keep_alive, r.u16()?, ident),
        RESPONSE_INFORMATION => set_once(&mut p.response_information, string(r)?, ident),
        SERVER_REFERENCE => set_once(&mut p.server_reference, string(r)?, ident),
        AUTHENTICATION_METHOD => set_once(&mut p.authentication_method, string(r)?, ident),
        AUTHENTICATION_DATA => set_once(&mut p.authentication_data, binary(r)?, ident),
        other => Err(not_allowed(other)),
    })?;
    Ok(p)
}

/// PUBLISH properties. `role` is the decoding side: a server refuses Subscription Identifier
/// (a client must not send it, MQTT-3.3.4-6); a client accepts any number of them (one per
/// matching subscription, §3.3.4).
pub fn decode_publish(r: &mut Reader<'_>, role: Role) -> Result<PublishProperties, DecodeError> {
    let mut p = PublishProperties::default();
    each(r, |ident, r| match ident {
        PAYLOAD_FORMAT_INDICATOR => {
            set_once(&mut p.payload_format_indicator, flag(r, ident)?, ident)
        }
        MESSAGE_EXPIRY_INTERVAL => set_once(&mut p.message_expiry_interval, r.u32()?, ident),
        // Topic Alias 0 is a Protocol Error (MQTT-3.3.2-8); the upper bound is the broker's.
        TOPIC_ALIAS => set_once(&mut p.topic_alias, nonzero_u16(r, ident)?, ident),
        RESPONSE_TOPIC => set_once(&mut p.response_topic, response_topic(r)?, ident),
        CORRELATION_DATA => set_once(&mut p.correlation_data, binary(r)?, ident),
        USER_PROPERTY => user_property(r, &mut p.user_properties),
        SUBSCRIPTION_IDENTIFIER => match role {
            Role::Server => Err(DecodeError::PropertyNotAllowed(ident)),
            Role::Client => {
                p.subscription_identifiers.push(subscription_id(r)?);
                Ok(())
            }
        },
        CONTENT_TYPE => set_once(&mut p.content_type, string(r)?, ident),
        other => Err(not_allowed(other)),
    })?;
    Ok(p)
}

/// Properties of PUBACK, PUBREC, PUBREL and PUBCOMP.
pub fn decode_puback(r: &mut Reader<'_>) -> Result<PubackProperties, DecodeError> {
    let mut p = PubackProperties::default();
    each(r, |ident, r| match ident {
        REASON_STRING => set_once(&mut p.reason_string, string(r)?, ident),
        USER_PROPERTY => user_property(r, &mut p.user_properties),
        other => Err(not_allowed(other)),
    })?;
    Ok(p)
}

pub fn decode_subscribe(r: &mut Reader<'_>) -> Result<SubscribeProperties, DecodeError> {
    let mut p = SubscribeProperties::default();
    each(r, |ident, r| match ident {
        SUBSCRIPTION_IDENTIFIER => {
            set_once(&mut p.subscription_identifier, subscription_id(r)?, ident)
        }
        USER_PROPERTY => user_property(r, &mut p.user_properties),
        other => Err(not_allowed(other)),
    })?;
    Ok(p)
}

pub fn decode_suback(r: &mut Reader<'_>) -> Result<SubackProperties, DecodeError> {
    let mut p = SubackProperties::default();
    each(r, |ident, r| match ident {
        REASON_STRING => set_once(&mut p.reason_string, string(r)?, ident),
        USER_PROPERTY => user_property(r, &mut p.user_properties),
        other => Err(not_allowed(other)),
    })?;
    Ok(p)
}

pub fn decode_unsubscribe(r: &mut Reader<'_>) -> Result<UnsubscribeProperties, DecodeError> {
    let mut p = UnsubscribeProperties::default();
    each(r, |ident, r| match ident {
        USER_PROPERTY => user_property(r, &mut p.user_properties),
        other => Err(not_allowed(other)),
    })?;
    Ok(p)
}

pub fn decode_unsuback(r: &mut Reader<'_>) -> Result<UnsubackProperties, DecodeError> {
    let mut p = UnsubackProperties::default();
    each(r, |ident, r| match ident {
        REASON_STRING => set_once(&mut p.reason_string, string(r)?, ident),
        USER_PROPERTY => user_property(r, &mut p.user_properties),
        other => Err(not_allowed(other)),
    })?;
    Ok(p)
}

/// DISCONNECT properties. `role` is the decoding side: a client refuses Session Expiry
/// Interval, which a server must not send (MQTT-3.14.2-2).
pub fn decode_disconnect(
    r: &mut Reader<'_>,
    role: Role,
) -> Result<DisconnectProperties, DecodeError> {
    let mut p = DisconnectProperties::default();
    each(r, |ident, r| match ident {
        SESSION_EXPIRY_INTERVAL => match role {
            Role::Server => set_once(&mut p.session_expiry_interval, r.u32()?, ident),
            Role::Client => Err(DecodeError::PropertyNotAllowed(ident)),
        },
        REASON_STRING => set_once(&mut p.reason_string, string(r)?, ident),
        USER_PROPERTY => user_property(r, &mut p.user_properties),
        SERVER_REFERENCE => set_once(&mut p.server_reference, string(r)?, ident),
        other => Err(not_allowed(other)),
    })?;
    Ok(p)
}

pub fn decode_auth(r: &mut Reader<'_>) -> Result<AuthProperties, DecodeError> {
    let mut p = AuthProperties::default();
    each(r, |ident, r| match ident {
        AUTHENTICATION_METHOD => set_once(&mut p.authentication_method, string(r)?, ident),
        AUTHENTICATION_DATA => set_once(&mut p.authentication_data, binary(r)?, ident),
        REASON_STRING => set_once(&mut p.reason_string, string(r)?, ident),
        USER_PROPERTY => user_property(r, &mut p.user_properties),
        other => Err(not_allowed(other)),
    })?;
    Ok(p)
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Receives each property of a block in order; implemented by a byte counter and a writer.
pub trait Sink {
    fn byte(&mut self, ident: u8, value: u8);
    fn u16(&mut self, ident: u8, value: u16);
    fn u32(&mut self, ident: u8, value: u32);
    fn varint(&mut self, ident: u8, value: u32);
    fn string(&mut self, ident: u8, value: &str);
    fn binary(&mut self, ident: u8, value: &[u8]);
    fn pair(&mut self, ident: u8, name: &str, value: &str);
}

/// Counts the bytes a block's content takes.
struct Counter(usize);

impl Sink for Counter {
    fn byte(&mut self, _: u8, _: u8) {
        self.0 += 2;
    }
    fn u16(&mut self, _: u8, _: u16) {
        self.0 += 3;
    }
    fn u32(&mut self, _: u8, _: u32) {
        self.0 += 5;
    }
    fn varint(&mut self, _: u8, value: u32) {
        self.0 += 1 + varint_len(value as usize);
    }
    fn string(&mut self, _: u8, value: &str) {
        self.0 += 1 + str_len(value);
    }
    fn binary(&mut self, _: u8, value: &[u8]) {
        self.0 += 1 + super::writer::binary_len(value);
    }
    fn pair(&mut self, _: u8, name: &str, value: &str) {
        self.0 += 1 + str_len(name) + str_len(value);
    }
}

/// Appends a block's content.
struct Out<'a>(&'a mut Vec<u8>);

impl Sink for Out<'_> {
    fn byte(&mut self, ident: u8, value: u8) {
        self.0.extend_from_slice(&[ident, value]);
    }
    fn u16(&mut self, ident: u8, value: u16) {
        self.0.push(ident);
        put_u16(self.0, value);
    }
    fn u32(&mut self, ident: u8, value: u32) {
        self.0.push(ident);
        put_u32(self.0, value);
    }
    fn varint(&mut self, ident: u8, value: u32) {
        self.0.push(ident);
        put_varint(self.0, value as usize);
    }
    fn string(&mut self, ident: u8, value: &str) {
        self.0.push(ident);
        put_str(self.0, value);
    }
    fn binary(&mut self, ident: u8, value: &[u8]) {
        self.0.push(ident);
        put_binary(self.0, value);
    }
    fn pair(&mut self, ident: u8, name: &str, value: &str) {
        self.0.push(ident);
        put_str(self.0, name);
        put_str(self.0, value);
    }
}

/// A property struct that can be walked for encoding.
pub trait PropertyBlock {
    fn visit<S: Sink>(&self, sink: &mut S);
}

/// Bytes of the block content (without the Property Length).
pub fn content_len<P: PropertyBlock>(props: &P) -> usize {
    let mut counter = Counter(0);
    props.visit(&mut counter);
    counter.0
}

/// Bytes of the whole block: Property Length plus content.
pub fn block_len<P: PropertyBlock>(props: &P) -> usize {
    let len = content_len(props);
    varint_len(len) + len
}

/// Writes Property Length and content.
pub fn put_block<P: PropertyBlock>(out: &mut Vec<u8>, props: &P) {
    put_varint(out, content_len(props));
    props.visit(&mut Out(out));
}

fn opt_byte<S: Sink>(s: &mut S, ident: u8, value: Option<u8>) {
    if let Some(v) = value {
        s.byte(ident, v);
    }
}
fn opt_u16<S: Sink>(s: &mut S, ident: u8, value: Option<u16>) {
    if let Some(v) = value {
        s.u16(ident, v);
    }
}
fn opt_u32<S: Sink>(s: &mut S, ident: u8, value: Option<u32>) {
    if let Some(v) = value {
        s.u32(ident, v);
    }
}
fn opt_string<S: Sink>(s: &mut S, ident: u8, value: &Option<String>) {
    if let Some(v) = value {
        s.string(ident, v);
    }
}
fn opt_binary<S: Sink>(s: &mut S, ident: u8, value: &Option<Vec<u8>>) {
    if let Some(v) = value {
        s.binary(ident, v);
    }
}
fn users<S: Sink>(s: &mut S, list: &UserProperties) {
    for (name, value) in list {
        s.pair(USER_PROPERTY, name, value);
    }
}

impl PropertyBlock for ConnectProperties {
    fn visit<S: Sink>(&self, s: &mut S) {
        opt_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        opt_string(s, AUTHENTICATION_METHOD, &self.authentication_method);
        opt_binary(s, AUTHENTICATION_DATA, &self.authentication_data);
        opt_byte(s, REQUEST_PROBLEM_INFORMATION, self.request_problem_information);
        opt_byte(s, REQUEST_RESPONSE_INFORMATION, self.request_response_information);
        opt_u16(s, RECEIVE_MAXIMUM, self.receive_maximum);
        opt_u16(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        opt_u32(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        users(s, &self.user_properties);
    }
}

impl PropertyBlock for WillProperties {
    fn visit<S: Sink>(&self, s: &mut S) {
        opt_byte(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        opt_u32(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        opt_string(s, CONTENT_TYPE, &self.content_type);
        opt_string(s, RESPONSE_TOPIC, &self.response_topic);
        opt_binary(s, CORRELATION_DATA, &self.correlation_data);
        opt_u32(s, WILL_DELAY_INTERVAL, self.will_delay_interval);
        users(s, &self.user_properties);
    }
}

impl PropertyBlock for ConnackProperties {
    fn visit<S: Sink>(&self, s: &mut S) {
        opt_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        opt_string(s, ASSIGNED_CLIENT_IDENTIFIER, &self.assigned_client_identifier);
        opt_u16(s, SERVER_KEEP_ALIVE, self.server_keep_alive);
        opt_string(s, AUTHENTICATION_METHOD, &self.authentication_method);
        opt_binary(s, AUTHENTICATION_DATA, &self.authentication_data);
        opt_string(s, RESPONSE_INFORMATION, &self.response_information);
        opt_string(s, SERVER_REFERENCE, &self.server_reference);
        opt_string(s, REASON_STRING, &self.reason_string);
        opt_u16(s, RECEIVE_MAXIMUM, self.receive_maximum);
        opt_u16(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        opt_byte(s, MAXIMUM_QOS, self.maximum_qos);
        opt_byte(s, RETAIN_AVAILABLE, self.retain_available);
        opt_u32(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        opt_byte(s, WILDCARD_SUBSCRIPTION_AVAILABLE, self.wildcard_subscription_available);
        opt_byte(s, SUBSCRIPTION_IDENTIFIER_AVAILABLE, self.subscription_identifiers_available);
        opt_byte(s, SHARED_SUBSCRIPTION_AVAILABLE, self.shared_subscription_available);
        users(s, &self.user_properties);
    }
}

impl PropertyBlock for PublishProperties {
    fn visit<S: Sink>(&self, s: &mut S) {
        opt_byte(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        opt_u32(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        opt_string(s, CONTENT_TYPE, &self.content_type);
        opt_string(s, RESPONSE_TOPIC, &self.response_topic);
        opt_binary(s, CORRELATION_DATA, &self.correlation_data);
        for &sub_id in &self.subscription_identifiers {
            s.varint(SUBSCRIPTION_IDENTIFIER, sub_id.min(VARINT_MAX));
        }
        opt_u16(s, TOPIC_ALIAS, self.topic_alias);
        users(s, &self.user_properties);
    }
}

impl PropertyBlock for PubackProperties {
    fn visit<S: Sink>(&self, s: &mut S) {
        opt_string(s, REASON_STRING, &self.reason_string);
        users(s, &self.user_properties);
    }
}

impl PropertyBlock for SubscribeProperties {
    fn visit<S: Sink>(&self, s: &mut S) {
        if let Some(sub_id) = self.subscription_identifier {
            s.varint(SUBSCRIPTION_IDENTIFIER, sub_id.min(VARINT_MAX));
        }
        users(s, &self.user_properties);
    }
}

impl PropertyBlock for SubackProperties {
    fn visit<S: Sink>(&self, s: &mut S) {
        opt_string(s, REASON_STRING, &self.reason_string);
        users(s, &self.user_properties);
    }
}

impl PropertyBlock for UnsubscribeProperties {
    fn visit<S: Sink>(&self, s: &mut S) {
        users(s, &self.user_properties);
    }
}

impl PropertyBlock for UnsubackProperties {
    fn visit<S: Sink>(&self, s: &mut S) {
        opt_string(s, REASON_STRING, &self.reason_string);
        users(s, &self.user_properties);
    }
}

impl PropertyBlock for DisconnectProperties {
    fn visit<S: Sink>(&self, s: &mut S) {
        opt_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        opt_string(s, SERVER_REFERENCE, &self.server_reference);
        opt_string(s, REASON_STRING, &self.reason_string);
        users(s, &self.user_properties);
    }
}

impl PropertyBlock for AuthProperties {
    fn visit<S: Sink>(&self, s: &mut S) {
        opt_string(s, AUTHENTICATION_METHOD, &self.authentication_method);
        opt_binary(s, AUTHENTICATION_DATA, &self.authentication_data);
        opt_string(s, REASON_STRING, &self.reason_string);
        users(s, &self.user_properties);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Decoder = fn(&mut Reader<'_>) -> Result<(), DecodeError>;

    /// Every packet's decoder with the identifiers it allows (MQTT 5.0 §2.2.2.2, table 2-4).
    fn decoders() -> Vec<(&'static str, Decoder, &'static [u8])> {
        vec![
            (
                "CONNECT",
                |r| decode_connect(r).map(drop),
                &[0x11, 0x15, 0x16, 0x17, 0x19, 0x21, 0x22, 0x26, 0x27],
            ),
            ("will", |r| decode_will(r).map(drop), &[0x01, 0x02, 0x03, 0x08, 0x09, 0x18, 0x26]),
            (
                "CONNACK",
                |r| decode_connack(r).map(drop),
                &[
                    0x11, 0x12, 0x13, 0x15, 0x16, 0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x24, 0x25, 0x26,
                    0x27, 0x28, 0x29, 0x2A,
                ],
            ),
            (
                "PUBLISH to a client",
                |r| decode_publish(r, Role::Client).map(drop),
                &[0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26],
            ),
            (
                "PUBLISH to a server",
                |r| decode_publish(r, Role::Server).map(drop),
                &[0x01, 0x02, 0x03, 0x08, 0x09, 0x23, 0x26],
            ),
            ("PUBACK", |r| decode_puback(r).map(drop), &[0x1F, 0x26]),
            ("SUBSCRIBE", |r| decode_subscribe(r).map(drop), &[0x0B, 0x26]),
            ("SUBACK", |r| decode_suback(r).map(drop), &[0x1F, 0x26]),
            ("UNSUBSCRIBE", |r| decode_unsubscribe(r).map(drop), &[0x26]),
            ("UNSUBACK", |r| decode_unsuback(r).map(drop), &[0x1F, 0x26]),
            (
                "DISCONNECT to a server",
                |r| decode_disconnect(r, Role::Server).map(drop),
                &[0x11, 0x1C, 0x1F, 0x26],
            ),
            (
                "DISCONNECT to a client",
                |r| decode_disconnect(r, Role::Client).map(drop),
                &[0x1C, 0x1F, 0x26],
            ),
            ("AUTH", |r| decode_auth(r).map(drop), &[0x15, 0x16, 0x1F, 0x26]),
        ]
    }

    #[test]
    fn identifiers_allowed_per_packet() {
        for (name, decoder, allowed) in decoders() {
            for ident in 0..=u8::MAX {
                // Property length 9: the identifier, then eight bytes that read as a valid
                // value of any type ([00 01 31 00 01 31 ..]: a string "1", a pair, 0x0001...).
                let block = [0x09, ident, 0x00, 0x01, 0x31, 0x00, 0x01, 0x31, 0x00, 0x00];
                let result = decoder(&mut Reader::new(&block));
                if allowed.contains(&ident) {
                    // Later bytes may be read as further properties; only this one matters.
                    assert!(
                        result != Err(DecodeError::PropertyNotAllowed(ident))
                            && result != Err(DecodeError::UnknownProperty(ident)),
                        "{name}: {ident:#04X} should be allowed, got {result:?}"
                    );
                } else if is_known(ident) {
                    assert_eq!(result, Err(DecodeError::PropertyNotAllowed(ident)), "{name}");
                } else {
                    assert_eq!(result, Err(DecodeError::UnknownProperty(ident)), "{name}");
                }
            }
        }
    }

    #[test]
    fn known_identifiers() {
        let known: Vec<u8> = (0..=u8::MAX).filter(|&i| is_known(i)).collect();
        assert_eq!(
            known,
            [
                0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19,
                0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A
            ]
        );
    }

    #[test]
    fn empty_block_is_one_byte() {
        let mut out = Vec::new();
        put_block(&mut out, &PublishProperties::default());
        assert_eq!(out, [0x00]);
        assert_eq!(block_len(&PublishProperties::default()), 1);
        assert_eq!(decode_publish(&mut Reader::new(&[0x00]), Role::Server), Ok(Default::default()));
    }

    #[test]
    fn any_order_is_accepted() {
        let block = [
            0x09, // property length 9
            0x26, 0x00, 0x01, b'k', 0x00, 0x00, // user property k=""
            0x1F, 0x00, 0x00, // reason string ""
        ];
        let props = decode_puback(&mut Reader::new(&block)).expect("valid block");
        assert_eq!(props.reason_string.as_deref(), Some(""));
        assert_eq!(props.user_properties, vec![("k".to_owned(), String::new())]);
        // Re-encoded in canonical order: reason string first, user properties last.
        let mut out = Vec::new();
        put_block(&mut out, &props);
        assert_eq!(out, [0x09, 0x1F, 0x00, 0x00, 0x26, 0x00, 0x01, b'k', 0x00, 0x00]);
    }

    #[test]
    fn block_len_matches_put_block_for_long_blocks() {
        // More than 127 bytes of properties: a two-byte property length.
        let props = UnsubscribeProperties {
            user_properties: (0..40).map(|i| (format!("key{i}"), "value".to_owned())).collect(),
        };
        let mut out = Vec::new();
        put_block(&mut out, &props);
        assert_eq!(out.len(), block_len(&props));
        assert!(out.len() > 130);
        assert_eq!(out[1] & 0x80, 0, "two-byte varint: second byte has no continuation bit");
        let decoded = decode_unsubscribe(&mut Reader::new(&out)).expect("valid block");
        assert_eq!(decoded, props);
    }

    #[test]
    fn value_errors() {
        let cases: &[(&[u8], DecodeError)] = &[
            // Subscription identifier 0.
            (&[0x02, 0x0B, 0x00], DecodeError::InvalidPropertyValue(0x0B)),
            // Maximum packet size 0, receive maximum 0.
            (&[0x05, 0x27, 0, 0, 0, 0], DecodeError::InvalidPropertyValue(0x27)),
            (&[0x03, 0x21, 0, 0], DecodeError::InvalidPropertyValue(0x21)),
            // A value cut short by the end of the block.
            (&[0x02, 0x11, 0x00], DecodeError::Truncated),
            // User property missing its value.
            (&[0x04, 0x26, 0x00, 0x01, b'k'], DecodeError::Truncated),
        ];
        for (block, error) in cases {
            let result = match block.get(1) {
                Some(&0x0B) => decode_subscribe(&mut Reader::new(block)).map(drop),
                Some(&0x26) => decode_puback(&mut Reader::new(block)).map(drop),
                _ => decode_connect(&mut Reader::new(block)).map(drop),
            };
            assert_eq!(result, Err(error.clone()), "{block:02X?}");
        }
    }
}
