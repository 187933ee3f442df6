//! Reconnect storm: `sessions` persistent sessions, each with `MESSAGES` QoS 1 messages queued
//! while it was away, all reconnecting at once (a site's Wi-Fi comes back).
//!
//! 1. Set-up: every session connects (3.1.1 clean session 0; 5.0 clean start 0 and Session
//!    Expiry Interval 1 h), subscribes to `storm/<n>` at QoS 1 and disconnects, in batches of
//!    `SETUP_BATCH`.
//! 2. One publisher sends `MESSAGES` QoS 1 messages to every session's topic (`WINDOW` in
//!    flight), each payload naming its session and number; all must be PUBACKed.
//! 3. The storm: from one thread and one `mio` loop, every session starts its TCP connect at
//!    once (non-blocking: SYNs the listen queue cannot hold are retried by the kernel, 1 s and
//!    3 s later, exactly as for real devices), sends CONNECT as soon as it is connected and
//!    acknowledges every PUBLISH. A session is complete when it has all its messages (session
//!    present checked). Per session the time from the storm's start to complete gives
//!    `session_p50_ms` / `session_p99_ms`; `storm_s` is when the last one completed;
//!    `missing` counts messages not received within `STORM_LIMIT`, `duplicates` those
//!    received twice (QoS 1 allows them; counted, not an error). Connections stay open to the
//!    end (devices stay online).
//! 4. `peak_rss_kb` is the broker's highest VmRSS sampled every 10 ms during the storm (VmHWM
//!    would include the set-up); `start_rss_kb` before the set-up, `queued_rss_kb` just
//!    before the storm.
//!
//! edgemq runs with its defaults (`sync`, the queue in SQLite); Mosquitto with its shipped
//! limits (1,000 queued per client, more than `MESSAGES`) and persistence off, so its queue is
//! in memory. Needs about 2 x `sessions` file descriptors here and `sessions` in the broker.

use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use edgemq::codec::{
    self, Connect, DecodeContext, Packet, ProtocolVersion, PubAck, Publish, QoS, Role,
};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::{close_all, percentile_us, record_usage, Options};
use crate::broker::{BrokerProcess, Settings};
use crate::client::{Client, ConnectOptions};
use crate::json::Object;
use crate::Error;

/// Messages queued per session.
const MESSAGES: u32 = 10;
const SETUP_BATCH: usize = 50;
/// QoS 1 messages in flight from the publisher.
const WINDOW: usize = 128;
const PUBLISH_LIMIT: Duration = Duration::from_secs(300);
const STORM_LIMIT: Duration = Duration::from_secs(120);
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

pub fn run(options: &Options, sessions: usize, out: &mut Object) -> Result<(), Error> {
    let settings = Settings {
        max_connections: sessions + 100,
        max_inflight: options.broker_inflight,
        durability: options.durability,
        ..Settings::default()
    };
    let mut broker = BrokerProcess::start(&options.launcher, &settings, "storm")?;
    let addr = broker.addr;
    let start = broker.usage()?;
    out.int("sessions", sessions as u64)
        .int("messages_per_session", u64::from(MESSAGES))
        .int("start_rss_kb", start.rss_kb);

    // 1. Persistent sessions, each subscribed to its own topic, then offline.
    create_sessions(addr, options.version, sessions)?;

    // 2. Queue MESSAGES for each.
    let total = sessions as u64 * u64::from(MESSAGES);
    let publish_started = Instant::now();
    publish(addr, options.version, total, MESSAGES)?;
    out.num("queue_s", publish_started.elapsed().as_secs_f64());
    thread::sleep(Duration::from_millis(500));
    let queued = broker.usage()?;
    out.int("queued_rss_kb", queued.rss_kb);

    // 3. The storm, with the broker's RSS sampled meanwhile.
    let stop = AtomicBool::new(false);
    let peak = AtomicU64::new(queued.rss_kb);
    let pid = broker.pid();
    let result = thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                if let Some(kb) = rss_kb(pid) {
                    peak.fetch_max(kb, Ordering::AcqRel);
                }
                thread::sleep(SAMPLE_EVERY);
            }
        });
        let result = storm(addr, options.version, sessions);
        stop.store(true, Ordering::Release);
        result
    });
    let after = broker.usage()?;
    let outcome = result?;
    let mut times_ns: Vec<u64> = outcome.complete_ns.clone();
    times_ns.sort_unstable();
    let complete = times_ns.len() as u64;
    out.int("complete", complete)
        .int("incomplete", sessions as u64 - complete)
        .int("missing", total - outcome.unique)
        .int("duplicates", outcome.duplicates)
        .int("not_present", outcome.not_present)
        .int("connect_errors", outcome.connect_errors)
        .int("tcp_connected", outcome.tcp_connected)
        .int("connacked", outcome.connacked)
        .num("storm_s", times_ns.last().map_or(f64::NAN, |&ns| ns as f64 / 1e9))
        .num("session_p50_ms", percentile_us(&times_ns, 0.50) / 1000.0)
        .num("session_p99_ms", percentile_us(&times_ns, 0.99) / 1000.0)
        .num("first_connack_ms", outcome.first_connack_ns as f64 / 1e6)
        .int("peak_rss_kb", peak.load(Ordering::Acquire).max(after.rss_kb));
    record_usage(out, "storm_", &queued, &after, outcome.unique);
    out.int("broker_log_lines", broker.log_lines());
    broker.check_alive()?;
    if outcome.unique < total {
        return Err(Error::new(format!(
            "{} of {total} messages missing after {STORM_LIMIT:?} ({} sessions incomplete)",
            total - outcome.unique,
            sessions as u64 - complete
        )));
    }
    Ok(())
}

/// The CONNECT of persistent session `n` (`storm-<n>`).
pub(super) fn session_options(version: ProtocolVersion, n: usize) -> ConnectOptions {
    let mut connect = ConnectOptions::new(format!("storm-{n}"), version);
    connect.clean_start = false;
    connect.session_expiry = Some(3600);
    connect
}

/// `count` persistent sessions `storm-<n>`, each subscribed to `storm/<n>` at QoS 1, then
/// offline.
pub(super) fn create_sessions(
    addr: std::net::SocketAddr,
    version: ProtocolVersion,
    count: usize,
) -> Result<(), Error> {
    let mut made = 0;
    while made < count {
        let n = SETUP_BATCH.min(count - made);
        let mut batch = Vec::with_capacity(n);
        for i in made..made + n {
            let mut client = Client::start_connect(addr, &session_options(version, i))?;
            let filter = format!("storm/{i}");
            let packet_id = client.queue_subscribe(&filter, QoS::AtLeastOnce);
            client.flush()?;
            batch.push((client, filter, packet_id));
        }
        let mut done = Vec::with_capacity(n);
        for (mut client, filter, packet_id) in batch {
            client.finish_connect()?;
            client.finish_subscribe(&filter, packet_id)?;
            done.push(client);
        }
        close_all(done);
        made += n;
    }
    // Let the broker see every disconnect before messages are queued for them.
    thread::sleep(Duration::from_secs(1));
    Ok(())
}

/// VmRSS of `pid` in KiB.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Publishes `per_session` QoS 1 messages to each session's topic (`total` in all) and waits
/// for every PUBACK.
pub(super) fn publish(
    addr: std::net::SocketAddr,
    version: ProtocolVersion,
    total: u64,
    per_session: u32,
) -> Result<(), Error> {
    let (mut client, _) = Client::connect(addr, &ConnectOptions::new("storm-pub", version))?;
    let deadline = Instant::now() + PUBLISH_LIMIT;
    let (mut sent, mut acked, mut in_flight) = (0u64, 0u64, 0usize);
    let mut topic: Option<(usize, Rc<str>)> = None;
    while acked < total {
        while in_flight < WINDOW && sent < total {
            let session = (sent / u64::from(per_session)) as usize;
            let number = (sent % u64::from(per_session)) as u32;
            let name = match &topic {
                Some((s, name)) if *s == session => name.clone(),
                _ => {
                    let name: Rc<str> = Rc::from(format!("storm/{session}"));
                    topic = Some((session, name.clone()));
                    name
                }
            };
            let mut payload = [0u8; 8];
            payload[..4].copy_from_slice(&(session as u32).to_be_bytes());
            payload[4..].copy_from_slice(&number.to_be_bytes());
            client.queue_publish(&name, QoS::AtLeastOnce, &payload);
            sent += 1;
            in_flight += 1;
        }
        client.flush()?;
        if Instant::now() > deadline {
            return Err(Error::new(format!(
                "only {acked} of {total} PUBACKs in {PUBLISH_LIMIT:?}"
            )));
        }
        match client.read_packet(deadline)? {
            Some(Packet::Puback(_)) => {
                acked += 1;
                in_flight -= 1;
            }
            Some(other) => return Err(Error::new(format!("publisher got {}", other.name()))),
            None => {}
        }
        // More PUBACKs already read: take them without a system call each.
        while let Some(packet) = client.buffered_packet()? {
            if matches!(packet, Packet::Puback(_)) {
                acked += 1;
                in_flight -= 1;
            }
        }
    }
    client.close();
    Ok(())
}

/// What the storm measured.
struct Outcome {
    /// Per complete session: nanoseconds from the storm's start to its last message.
    complete_ns: Vec<u64>,
    unique: u64,
    duplicates: u64,
    not_present: u64,
    connect_errors: u64,
    first_connack_ns: u64,
    /// Sessions whose TCP connect completed, and those that got their CONNACK: an
    /// incomplete session is told apart as never connected (SYNs still dropped) or never
    /// answered.
    tcp_connected: u64,
    connacked: u64,
}

struct Session {
    stream: TcpStream,
    connected: bool,
    rx: Vec<u8>,
    tx: Vec<u8>,
    /// Bit k: message k received.
    got: u32,
    done: bool,
}

fn storm(
    addr: std::net::SocketAddr,
    version: ProtocolVersion,
    count: usize,
) -> Result<Outcome, Error> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let context =
        DecodeContext { version: Some(version), max_packet_size: 1 << 20, role: Role::Client };
    let mut outcome = Outcome {
        complete_ns: Vec::with_capacity(count),
        unique: 0,
        duplicates: 0,
        not_present: 0,
        connect_errors: 0,
        first_connack_ns: 0,
        tcp_connected: 0,
        connacked: 0,
    };
    let started = Instant::now();
    let mut sessions = Vec::with_capacity(count);
    for i in 0..count {
        let mut stream = TcpStream::connect(addr)?;
        poll.registry().register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        sessions.push(Session {
            stream,
            connected: false,
            rx: Vec::new(),
            tx: Vec::new(),
            got: 0,
            done: false,
        });
    }
    let deadline = started + STORM_LIMIT;
    let mut read_buf = vec![0u8; 64 * 1024];
    let mut first_connack: Option<Instant> = None;
    let mut complete = 0;
    while complete < count && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for event in events.iter() {
            let i = event.token().0;
            let Some(session) = sessions.get_mut(i) else { continue };
            if !session.connected && (event.is_writable() || event.is_error()) {
                if let Ok(Some(_)) | Err(_) = session.stream.take_error() {
                    // The kernel gave up on this connect (not expected on loopback).
                    outcome.connect_errors += 1;
                    continue;
                }
                match session.stream.peer_addr() {
                    Ok(_) => {
                        session.connected = true;
                        outcome.tcp_connected += 1;
                        let mut connect = Connect {
                            protocol: Some(version),
                            clean_start: false,
                            keep_alive: 60,
                            client_id: format!("storm-{i}"),
                            ..Connect::default()
                        };
                        if version.is_v5() {
                            connect.properties.session_expiry_interval = Some(3600);
                        }
                        codec::encode(
                            &Packet::Connect(Box::new(connect)),
                            version,
                            &mut session.tx,
                        );
                    }
                    // Still connecting: a spurious event.
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
                    Err(_) => {
                        outcome.connect_errors += 1;
                        continue;
                    }
                }
            }
            if !session.connected {
                continue;
            }
            // Read what arrived, answer it, write what is pending.
            loop {
                match session.stream.read(&mut read_buf) {
                    Ok(0) => break,
                    Ok(n) => session.rx.extend_from_slice(read_buf.get(..n).unwrap_or_default()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let mut used = 0;
            loop {
                let rest = session.rx.get(used..).unwrap_or_default();
                let packet = match codec::decode(rest, &context) {
                    Ok(Some((packet, n))) => {
                        used += n;
                        packet
                    }
                    Ok(None) => break,
                    Err(e) => return Err(Error::new(format!("storm-{i}: decode: {e}"))),
                };
                match packet {
                    Packet::Connack(connack) => {
                        first_connack.get_or_insert_with(Instant::now);
                        outcome.connacked += 1;
                        if !connack.session_present {
                            outcome.not_present += 1;
                        }
                    }
                    Packet::Publish(publish) => {
                        if let Some(id) = publish.packet_id {
                            codec::encode(
                                &Packet::Puback(PubAck::new(id)),
                                version,
                                &mut session.tx,
                            );
                        }
                        let number = message_number(&publish, i);
                        match number {
                            Some(k) if session.got & (1 << k) == 0 => {
                                session.got |= 1 << k;
                                outcome.unique += 1;
                            }
                            Some(_) => outcome.duplicates += 1,
                            None => {
                                return Err(Error::new(format!(
                                    "storm-{i} got a message not queued for it on {}",
                                    publish.topic
                                )))
                            }
                        }
                        if !session.done && session.got.count_ones() == MESSAGES {
                            session.done = true;
                            complete += 1;
                            outcome.complete_ns.push(started.elapsed().as_nanos() as u64);
                        }
                    }
                    other => return Err(Error::new(format!("storm-{i} got {}", other.name()))),
                }
            }
            session.rx.drain(..used);
            while !session.tx.is_empty() {
                match session.stream.write(&session.tx) {
                    Ok(n) => {
                        session.tx.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
    }
    outcome.first_connack_ns =
        first_connack.map_or(0, |t| t.duration_since(started).as_nanos() as u64);
    Ok(outcome)
}

/// Message number k of session `i` from its payload, if it was queued for `i` (topic and
/// payload agree).
fn message_number(publish: &Publish, i: usize) -> Option<u32> {
    let session: usize = publish.topic.strip_prefix("storm/")?.parse().ok()?;
    let payload: &[u8] = &publish.payload;
    let owner = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    let number = u32::from_be_bytes(payload.get(4..8)?.try_into().ok()?);
    (session == i && owner == i && number < MESSAGES).then_some(number)
}
