//! A minimal MQTT server that only receives: the bridge scenarios' cheap upstream.
//!
//! Contract: accepts any CONNECT (CONNACK 0; "session present" once a client id has
//! connected with clean session 0 / clean start 0 during this sink's life, as a broker that
//! kept the session would say), answers every PUBLISH the way a receiver must (QoS 1 PUBACK,
//! QoS 2 PUBREC, then PUBCOMP for the PUBREL), PINGREQ with PINGRESP, SUBSCRIBE with a
//! granted SUBACK, and records every message it receives by the load generator's payload
//! stamp (publisher, sequence number): unique, duplicated and reordered counts per publisher,
//! exactly like an upstream subscriber would. It forwards nothing to anyone and stores
//! nothing, so what it costs per message (decode, one bitmap update, an ack written once per
//! read) is far below what a real broker costs: the bridge in front of it is the bottleneck,
//! not the upstream. Every connection has its own thread with blocking reads bounded by a
//! timeout; [`Sink::kill`] closes the listener and every connection (the bridges see their
//! link drop, as when an upstream is killed) and joins all threads.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use edgemq::codec::{
    self, Connack, DecodeContext, Packet, ProtocolVersion, PubAck, QoS, ReasonCode, Role, Suback,
};

use crate::client::nothing_yet;
use crate::payload::{SeqTracker, Stamp};
use crate::scenario::worker::{SubscriberControl, SubscriberStats};
use crate::Error;

/// How often the accept loop and blocked reads look at the stop flag.
const POLL: Duration = Duration::from_millis(2);
const READ_TIMEOUT: Duration = Duration::from_millis(50);
const READ_BUFFER: usize = 256 * 1024;
/// Larger packets end the connection (the bench's are under 100 bytes).
const MAX_PACKET: u32 = 1024 * 1024;

/// What the connections record, shared with the scenario thread.
struct Received {
    trackers: Vec<SeqTracker>,
    received: u64,
    unknown_payloads: u64,
    first_receive: Option<Instant>,
    last_receive: Option<Instant>,
    max_gap: Duration,
}

struct Shared {
    received: Mutex<Received>,
    /// Messages on the probe topic (not recorded in the trackers).
    probes: AtomicU64,
    /// Connections accepted (the bridge's reconnects show here).
    connections: AtomicU64,
    stop: AtomicBool,
    /// Client ids that asked for a kept session.
    sessions: Mutex<HashSet<String>>,
    /// A clone of every open connection, to shut it down on `kill`.
    streams: Mutex<Vec<TcpStream>>,
    probe_topic: String,
    /// Only messages on topics starting with this are the bench's.
    topic_prefix: String,
    /// Messages on other topics (not the probe's).
    other_topics: AtomicU64,
}

pub struct Sink {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<Vec<JoinHandle<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Sink {
    /// Listens on `addr` (port 0: a free one) for `publishers` stamped publishers on topics
    /// starting with `topic_prefix`; messages on `probe_topic` or any other topic are only
    /// counted.
    pub fn start(
        addr: SocketAddr,
        publishers: usize,
        topic_prefix: &str,
        probe_topic: &str,
    ) -> Result<Sink, Error> {
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            received: Mutex::new(Received {
                trackers: vec![SeqTracker::default(); publishers],
                received: 0,
                unknown_payloads: 0,
                first_receive: None,
                last_receive: None,
                max_gap: Duration::ZERO,
            }),
            probes: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            sessions: Mutex::new(HashSet::new()),
            streams: Mutex::new(Vec::new()),
            probe_topic: probe_topic.to_string(),
            topic_prefix: topic_prefix.to_string(),
            other_topics: AtomicU64::new(0),
        });
        let for_thread = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("sink-accept".to_string())
            .spawn(move || accept_loop(listener, for_thread))?;
        Ok(Sink { addr, shared, acceptor: Some(acceptor) })
    }

    pub fn probes(&self) -> u64 {
        self.shared.probes.load(Ordering::Acquire)
    }

    /// Messages on topics that are neither the bench's nor the probe's.
    pub fn other_topics(&self) -> u64 {
        self.shared.other_topics.load(Ordering::Acquire)
    }

    /// Connections accepted by this sink (since its last start).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Acquire)
    }

    /// Waits like an upstream subscriber (`worker::subscribe`): until `expected` unique
    /// messages arrived, `quiet` without one once the expected count is known, the hard
    /// deadline, or `stop`; then what was received.
    pub fn wait(&self, control: &SubscriberControl) -> SubscriberStats {
        let mut ended_by = "complete";
        let mut last_seen = (0u64, Instant::now());
        loop {
            let now = Instant::now();
            let (unique, received) = {
                let r = lock(&self.shared.received);
                (r.trackers.iter().map(|t| t.unique).sum::<u64>(), r.received)
            };
            let expected = control.expected.load(Ordering::Acquire);
            if unique >= expected {
                break;
            }
            if received != last_seen.0 {
                last_seen = (received, now);
            }
            if now >= control.hard_deadline {
                ended_by = "hard deadline";
                break;
            }
            if control.stop.load(Ordering::Relaxed) {
                ended_by = "stopped";
                break;
            }
            if expected != u64::MAX && now.duration_since(last_seen.1) >= control.quiet {
                ended_by = "quiet";
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        let r = lock(&self.shared.received);
        SubscriberStats {
            trackers: r.trackers.clone(),
            received: r.received,
            unknown_payloads: r.unknown_payloads,
            first_receive: r.first_receive,
            last_receive: r.last_receive,
            max_gap: r.max_gap,
            latencies_ns: Vec::new(),
            // Only the alias scenario reads it; the sink does not count bytes.
            bytes: 0,
            ended_by,
        }
    }

    /// Closes the listener and every connection, and joins every thread: to the bridges, the
    /// upstream is gone (and with it the sessions it kept).
    pub fn kill(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for stream in lock(&self.shared.streams).drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if let Some(acceptor) = self.acceptor.take() {
            if let Ok(workers) = acceptor.join() {
                for worker in workers {
                    let _ = worker.join();
                }
            }
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Binds `addr`, retrying briefly: a restarted sink takes its old port back, which the
/// kernel may still hold for a moment.
fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(Error::new(format!("sink: bind {addr}: {e}"))),
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) -> Vec<JoinHandle<()>> {
    let mut workers = Vec::new();
    while !shared.stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                shared.connections.fetch_add(1, Ordering::AcqRel);
                let Ok(clone) = stream.try_clone() else { continue };
                lock(&shared.streams).push(clone);
                let for_thread = Arc::clone(&shared);
                if let Ok(worker) = thread::Builder::new()
                    .name("sink-conn".to_string())
                    .spawn(move || serve(stream, &for_thread))
                {
                    workers.push(worker);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => thread::sleep(POLL),
        }
    }
    workers
}

/// One connection until it closes, fails, sends something a receiver cannot take, or the
/// sink is killed.
fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let mut context =
        DecodeContext { version: None, max_packet_size: MAX_PACKET, role: Role::Server };
    let mut rx = vec![0u8; READ_BUFFER];
    let (mut start, mut end) = (0usize, 0usize);
    let mut tx = Vec::with_capacity(64 * 1024);
    let mut version = ProtocolVersion::V311;
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        if end == rx.len() {
            rx.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        match stream.read(&mut rx[end..]) {
            Ok(0) => return,
            Ok(n) => end += n,
            Err(e) if nothing_yet(&e) => continue,
            Err(_) => return,
        }
        if context.version.is_none() {
            accept_bridge_connect(&mut rx[start..end]);
        }
        // Every packet read so far: recorded under one lock, answered with one write.
        let mut received = lock(&shared.received);
        let at = Instant::now();
        loop {
            let packet = match codec::decode(&rx[start..end], &context) {
                Ok(Some((packet, used))) => {
                    start += used;
                    packet
                }
                Ok(None) => break,
                Err(_) => return,
            };
            match packet {
                Packet::Connect(connect) => {
                    version = connect.protocol.unwrap_or(ProtocolVersion::V311);
                    context.version = Some(version);
                    let mut sessions = lock(&shared.sessions);
                    let present = !connect.clean_start && sessions.contains(&connect.client_id);
                    if connect.clean_start {
                        sessions.remove(&connect.client_id);
                    } else {
                        sessions.insert(connect.client_id.clone());
                    }
                    let connack = Connack {
                        session_present: present,
                        reason: ReasonCode::Success,
                        properties: Default::default(),
                    };
                    codec::encode(&Packet::Connack(connack), version, &mut tx);
                }
                Packet::Publish(publish) => {
                    match (publish.qos, publish.packet_id) {
                        (QoS::AtLeastOnce, Some(id)) => {
                            codec::encode(&Packet::Puback(PubAck::new(id)), version, &mut tx)
                        }
                        (QoS::ExactlyOnce, Some(id)) => {
                            codec::encode(&Packet::Pubrec(PubAck::new(id)), version, &mut tx)
                        }
                        _ => {}
                    }
                    if *publish.topic == *shared.probe_topic {
                        shared.probes.fetch_add(1, Ordering::AcqRel);
                    } else if publish.topic.starts_with(shared.topic_prefix.as_str()) {
                        record(&mut received, &publish.payload, at);
                    } else {
                        // Not the bench's (Mosquitto's bridge announces its state on
                        // `$SYS/broker/connection/...`): acknowledged, not counted.
                        shared.other_topics.fetch_add(1, Ordering::AcqRel);
                    }
                }
                Packet::Pubrel(ack) => {
                    codec::encode(&Packet::Pubcomp(PubAck::new(ack.packet_id)), version, &mut tx)
                }
                Packet::Pingreq => codec::encode(&Packet::Pingresp, version, &mut tx),
                Packet::Subscribe(subscribe) => {
                    let suback = Suback {
                        packet_id: subscribe.packet_id,
                        reasons: subscribe
                            .filters
                            .iter()
                            .map(|(_, o)| match o.qos {
                                QoS::AtMostOnce => ReasonCode::Success,
                                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
                            })
                            .collect(),
                        properties: Default::default(),
                    };
                    codec::encode(&Packet::Suback(suback), version, &mut tx);
                }
                Packet::Disconnect(_) => return,
                // Acks of messages the sink never sends, and anything else: ignored.
                _ => {}
            }
        }
        drop(received);
        if start == end {
            start = 0;
            end = 0;
        }
        if !tx.is_empty() {
            if stream.write_all(&tx).is_err() {
                return;
            }
            tx.clear();
        }
    }
}

/// Mosquitto's bridges (`try_private true`, its default) announce themselves with bit 0x80 set
/// in the CONNECT's protocol level (0x84 for 3.1.1); brokers that know it treat the client as
/// a bridge, others refuse it. The sink has nothing to treat differently: it clears the bit so
/// the codec reads an ordinary CONNECT, and both bridges run with their usual settings.
fn accept_bridge_connect(input: &mut [u8]) {
    // Fixed header byte, remaining length (1-4 bytes), protocol name (2 + 4 or 6), level.
    if input.first().map(|b| b >> 4) != Some(1) {
        return;
    }
    let mut at = 1;
    while at < input.len().min(5) && input[at] & 0x80 != 0 {
        at += 1;
    }
    let name_at = at + 1;
    let Some(len) = input.get(name_at..name_at + 2) else { return };
    let level_at = name_at + 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
    if let Some(level) = input.get_mut(level_at) {
        *level &= 0x7f;
    }
}

fn record(received: &mut Received, payload: &[u8], at: Instant) {
    if let Some(last) = received.last_receive {
        received.max_gap = received.max_gap.max(at.duration_since(last));
    }
    received.received += 1;
    received.first_receive.get_or_insert(at);
    received.last_receive = Some(at);
    let tracker = Stamp::read(payload)
        .and_then(|s| Some((received.trackers.get_mut(s.publisher as usize)?, s.seq)));
    match tracker {
        Some((tracker, seq)) => tracker.record(seq),
        None => received.unknown_payloads += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bridge_connect_reads_as_an_ordinary_one() {
        // CONNECT, remaining length 16, "MQTT", level 0x84 (3.1.1 + bridge bit), flags 0x00
        // (clean session 0), keep-alive 60, client id "b".
        let mut connect =
            [0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 0x84, 0x00, 0, 60, 0, 1, b'b', 0, 0, 0];
        accept_bridge_connect(&mut connect[..15]);
        assert_eq!(connect[8], 0x04);
        // An ordinary one is left alone; a PUBLISH is never touched.
        accept_bridge_connect(&mut connect[..15]);
        assert_eq!(connect[8], 0x04);
        let mut publish = [0x30, 5, 0, 1, b'a', 0x84, 0x84];
        accept_bridge_connect(&mut publish);
        assert_eq!(publish, [0x30, 5, 0, 1, b'a', 0x84, 0x84]);
    }
}
