//! A raw MQTT client over one blocking `TcpStream`, built on edgemq's codec; optionally MQTT
//! over WebSockets (`ConnectOptions::websocket`, framing in `websocket.rs`).
//!
//! Contract: no protocol logic beyond framing — callers send packets and decide what to do
//! with each packet received, so the load generator sees exactly what the broker sends
//! (duplicates, order, reason codes). Nothing here blocks without a bound: connect, every
//! read and every write carry a timeout, and `read_packet` returns `Ok(None)` at its
//! deadline. Output is queued with `queue` and written by `flush`, so a burst of packets is
//! one `write` system call.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroU16;
use std::rc::Rc;
use std::time::{Duration, Instant};

use edgemq::codec::{
    self, Connack, Connect, DecodeContext, Disconnect, Packet, PacketId, ProtocolVersion, PubAck,
    Publish, PublishProperties, QoS, ReasonCode, Role, Subscribe, SubscribeProperties,
    SubscriptionOptions,
};

use crate::websocket::{self, Framing};
use crate::Error;

/// The receive buffer starts small (an idle connection costs little) and doubles up to
/// `RX_BUFFER_MAX`, far above any packet the scenarios use.
const RX_BUFFER_START: usize = 4 * 1024;
const RX_BUFFER_MAX: usize = 256 * 1024;
/// Longest a single blocking read waits before the caller's deadline is checked again.
const READ_SLICE: Duration = Duration::from_millis(50);
/// A write that cannot make progress for this long means the broker stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP connect and CONNACK wait.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a CONNECT asks for.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub client_id: String,
    pub version: ProtocolVersion,
    pub clean_start: bool,
    pub keep_alive: u16,
    /// MQTT 5.0 Session Expiry Interval in seconds; ignored before 5.0.
    pub session_expiry: Option<u32>,
    /// MQTT 5.0 Topic Alias Maximum announced to the broker; ignored before 5.0.
    pub topic_alias_maximum: Option<u16>,
    /// Speak MQTT over WebSockets (the address is a WebSocket listener, path `/mqtt`).
    pub websocket: bool,
}

impl ConnectOptions {
    pub fn new(client_id: impl Into<String>, version: ProtocolVersion) -> ConnectOptions {
        ConnectOptions {
            client_id: client_id.into(),
            version,
            clean_start: true,
            keep_alive: 60,
            session_expiry: None,
            topic_alias_maximum: None,
            websocket: false,
        }
    }
}

pub struct Client {
    stream: TcpStream,
    version: ProtocolVersion,
    context: DecodeContext,
    rx: Vec<u8>,
    rx_start: usize,
    rx_end: usize,
    tx: Vec<u8>,
    read_timeout: Duration,
    next_packet_id: u16,
    /// Bytes read from the socket so far (what the broker sent).
    bytes_read: u64,
    /// MQTT over WebSockets: the framing, and the raw bytes read before unframing.
    ws: Option<(Framing, Vec<u8>)>,
}

impl Client {
    /// Opens the TCP connection and sends CONNECT, without waiting for CONNACK (so many
    /// connections can be opened before any answer is read).
    pub fn start_connect(addr: SocketAddr, options: &ConnectOptions) -> Result<Client, Error> {
        let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|e| Error::new(format!("connect {addr}: {e}")))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(READ_SLICE))?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let mut leftover = Vec::new();
        let ws = if options.websocket {
            leftover = websocket::upgrade(&mut stream, &addr.to_string(), CONNECT_TIMEOUT)?;
            Some((Framing::default(), Vec::new()))
        } else {
            None
        };
        let mut client = Client {
            stream,
            version: options.version,
            context: DecodeContext {
                version: Some(options.version),
                max_packet_size: RX_BUFFER_MAX as u32,
                role: Role::Client,
            },
            rx: vec![0u8; RX_BUFFER_START],
            rx_start: 0,
            rx_end: 0,
            tx: Vec::with_capacity(16 * 1024),
            read_timeout: READ_SLICE,
            next_packet_id: 0,
            bytes_read: 0,
            ws,
        };
        if let Some((framing, _)) = &mut client.ws {
            let room = leftover.len().min(client.rx.len());
            client.rx_end = framing.unframe(&leftover[..room], &mut client.rx)?;
        }
        let mut connect = Connect {
            protocol: Some(options.version),
            clean_start: options.clean_start,
            keep_alive: options.keep_alive,
            client_id: options.client_id.clone(),
            ..Connect::default()
        };
        if options.version.is_v5() {
            connect.properties.session_expiry_interval = options.session_expiry;
            connect.properties.topic_alias_maximum = options.topic_alias_maximum;
        }
        client.queue(&Packet::Connect(Box::new(connect)));
        client.flush()?;
        Ok(client)
    }

    /// Waits for the CONNACK of `start_connect`; a refusal is an error.
    pub fn finish_connect(&mut self) -> Result<Connack, Error> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        match self.read_packet(deadline)? {
            Some(Packet::Connack(connack)) if !connack.reason.is_error() => Ok(connack),
            Some(Packet::Connack(connack)) => {
                Err(Error::new(format!("CONNACK refused: {:?}", connack.reason)))
            }
            Some(other) => Err(Error::new(format!("expected CONNACK, got {}", other.name()))),
            None => Err(Error::new("no CONNACK within the connect timeout")),
        }
    }

    /// Connects and waits for a successful CONNACK.
    pub fn connect(addr: SocketAddr, options: &ConnectOptions) -> Result<(Client, Connack), Error> {
        let mut client = Client::start_connect(addr, options)?;
        let connack = client.finish_connect()?;
        Ok((client, connack))
    }

    /// Subscribes to one filter and waits for the SUBACK; a failure code is an error.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<(), Error> {
        let packet_id = self.queue_subscribe(filter, qos);
        self.flush()?;
        self.finish_subscribe(filter, packet_id)
    }

    /// Queues a SUBSCRIBE to one filter (sent by the next `flush`); returns its packet id for
    /// `finish_subscribe`.
    pub fn queue_subscribe(&mut self, filter: &str, qos: QoS) -> PacketId {
        let packet_id = self.packet_id();
        let options = SubscriptionOptions { qos, ..SubscriptionOptions::default() };
        self.queue(&Packet::Subscribe(Subscribe {
            packet_id,
            filters: vec![(filter.to_string(), options)],
            properties: SubscribeProperties::default(),
        }));
        packet_id
    }

    /// Waits for the SUBACK of `queue_subscribe`; a failure code is an error.
    pub fn finish_subscribe(&mut self, filter: &str, packet_id: PacketId) -> Result<(), Error> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        match self.read_packet(deadline)? {
            Some(Packet::Suback(suback)) if suback.packet_id == packet_id => {
                match suback.reasons.first() {
                    Some(reason) if !reason.is_error() => Ok(()),
                    other => Err(Error::new(format!("SUBACK refused {filter}: {other:?}"))),
                }
            }
            Some(other) => Err(Error::new(format!("expected SUBACK, got {}", other.name()))),
            None => Err(Error::new("no SUBACK within the timeout")),
        }
    }

    /// A fresh non-zero packet id (wraps at 65535; callers keep fewer than that in flight).
    pub fn packet_id(&mut self) -> PacketId {
        self.next_packet_id = self.next_packet_id.wrapping_add(1);
        if self.next_packet_id == 0 {
            self.next_packet_id = 1;
        }
        NonZeroU16::new(self.next_packet_id).unwrap_or(NonZeroU16::MIN)
    }

    /// Queues a PUBLISH; returns its packet id (None for QoS 0).
    pub fn queue_publish(&mut self, topic: &Rc<str>, qos: QoS, payload: &[u8]) -> Option<PacketId> {
        let packet_id = (qos != QoS::AtMostOnce).then(|| self.packet_id());
        self.queue(&Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: Rc::clone(topic),
            packet_id,
            properties: PublishProperties::default(),
            payload: Rc::from(payload),
        }));
        packet_id
    }

    /// Queues the acknowledgement a receiver owes for `publish` (PUBACK or PUBREC).
    pub fn queue_ack_for(&mut self, publish: &Publish) {
        match (publish.qos, publish.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.queue(&Packet::Puback(PubAck::new(id))),
            (QoS::ExactlyOnce, Some(id)) => self.queue(&Packet::Pubrec(PubAck::new(id))),
            _ => {}
        }
    }

    pub fn queue(&mut self, packet: &Packet) {
        codec::encode(packet, self.version, &mut self.tx);
    }

    pub fn has_output(&self) -> bool {
        !self.tx.is_empty()
    }

    /// Writes everything queued (bounded by the write timeout).
    pub fn flush(&mut self) -> Result<(), Error> {
        if self.tx.is_empty() {
            return Ok(());
        }
        let result = match &mut self.ws {
            Some((framing, _)) => self.stream.write_all(framing.frame(&self.tx)),
            None => self.stream.write_all(&self.tx),
        };
        self.tx.clear();
        result.map_err(|e| Error::new(format!("write: {e}")))
    }

    /// Sends DISCONNECT and closes the write side.
    pub fn disconnect(mut self) -> Result<(), Error> {
        self.queue(&Packet::Disconnect(Disconnect {
            reason: ReasonCode::Success,
            ..Disconnect::default()
        }));
        self.flush()?;
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        // Wait briefly for the broker to close its side, so the session is detached when we
        // return (a persistent session must be offline before the publishers start).
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match self.read_packet(deadline) {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        Ok(())
    }

    /// Sends DISCONNECT (best effort) and closes, without waiting for the broker.
    pub fn close(mut self) {
        self.queue(&Packet::Disconnect(Disconnect {
            reason: ReasonCode::Success,
            ..Disconnect::default()
        }));
        let _ = self.flush();
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// Bytes the broker sent this client so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// A packet already in the receive buffer, without any system call.
    pub fn buffered_packet(&mut self) -> Result<Option<Packet>, Error> {
        if self.rx_start == self.rx_end {
            return Ok(None);
        }
        match codec::decode(&self.rx[self.rx_start..self.rx_end], &self.context) {
            Ok(Some((packet, used))) => {
                self.rx_start += used;
                if self.rx_start == self.rx_end {
                    self.rx_start = 0;
                    self.rx_end = 0;
                }
                Ok(Some(packet))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(Error::new(format!("decode: {e}"))),
        }
    }

    /// The next packet, reading from the socket as needed until `deadline`; `Ok(None)` when
    /// the deadline passed first. A closed connection is an error.
    pub fn read_packet(&mut self, deadline: Instant) -> Result<Option<Packet>, Error> {
        loop {
            if let Some(packet) = self.buffered_packet()? {
                return Ok(Some(packet));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.fill((deadline - now).min(READ_SLICE))?;
        }
    }

    /// One `read` of at most `wait`; returns the number of bytes added (0 on timeout).
    fn fill(&mut self, wait: Duration) -> Result<usize, Error> {
        if self.rx_end == self.rx.len() {
            if self.rx_start > 0 {
                self.rx.copy_within(self.rx_start..self.rx_end, 0);
                self.rx_end -= self.rx_start;
                self.rx_start = 0;
            } else if self.rx.len() < RX_BUFFER_MAX {
                self.rx.resize(self.rx.len() * 2, 0);
            } else {
                return Err(Error::new("receive buffer full: packet larger than the buffer"));
            }
        }
        let wait = wait.max(Duration::from_micros(100));
        // Changing the timeout costs a system call: only do it when it really changes.
        let change = if wait > self.read_timeout {
            wait - self.read_timeout
        } else {
            self.read_timeout - wait
        };
        if change > Duration::from_micros(500) {
            self.stream.set_read_timeout(Some(wait))?;
            self.read_timeout = wait;
        }
        let space = self.rx.len() - self.rx_end;
        let read = match &mut self.ws {
            // Raw bytes into the scratch buffer, their payload into `rx` (never longer).
            Some((framing, raw)) => {
                raw.resize(space, 0);
                match self.stream.read(raw) {
                    Ok(0) => Ok(0),
                    Ok(n) => {
                        let got = framing.unframe(&raw[..n], &mut self.rx[self.rx_end..])?;
                        self.rx_end += got;
                        if n == space && self.rx.len() < RX_BUFFER_MAX {
                            self.rx.resize(self.rx.len() * 2, 0);
                        }
                        return Ok(got);
                    }
                    Err(e) => Err(e),
                }
            }
            None => self.stream.read(&mut self.rx[self.rx_end..]),
        };
        match read {
            Ok(0) => Err(Error::new("connection closed by the broker")),
            Ok(n) => {
                self.rx_end += n;
                self.bytes_read += n as u64;
                if n == space && self.rx.len() < RX_BUFFER_MAX {
                    // The socket had at least this much: read more per call from now on.
                    self.rx.resize(self.rx.len() * 2, 0);
                }
                Ok(n)
            }
            Err(e) if nothing_yet(&e) => Ok(0),
            Err(e) => Err(Error::new(format!("read: {e}"))),
        }
    }

    /// The socket, non-blocking, and the bytes already read but not yet decoded, for a caller
    /// that serves many connections from one `mio` loop (`subs100k`). Not for WebSockets.
    pub fn into_stream(self) -> Result<(TcpStream, Vec<u8>), Error> {
        if self.ws.is_some() {
            return Err(Error::new("into_stream: a WebSocket client has framing state"));
        }
        self.stream.set_nonblocking(true)?;
        let leftover = self.rx.get(self.rx_start..self.rx_end).unwrap_or_default().to_vec();
        Ok((self.stream, leftover))
    }

    /// Whether the broker still holds the connection open: a non-blocking peek that finds
    /// neither data-less EOF nor an error.
    pub fn is_open(&mut self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let open = match self.stream.peek(&mut byte) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        };
        let _ = self.stream.set_nonblocking(false);
        open
    }
}

/// A read that found nothing yet (a non-blocking socket, or one with a read timeout) or was
/// interrupted: try again.
pub fn nothing_yet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
