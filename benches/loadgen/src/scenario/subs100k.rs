//! 100,000 distinct subscriptions: `CLIENTS` devices, each with `FILTERS` exact topics of its
//! own (`dev/<n>/<k>`, k = 0..9), and publishers that send to a topic drawn uniformly from
//! all 100,000 (a backend talking to one device at a time).
//!
//! 1. Every device connects as a persistent session (3.1.1 clean session 0; 5.0 clean start 0
//!    and Session Expiry Interval 1 h) in batches of `BATCH`, keep-alive 60 s: a gateway's
//!    devices keep their sessions so commands wait for them while they are away, and
//!    persistent QoS 1 subscriptions are what edgemq stores. `rss_connected_kb` is VmRSS
//!    `SETTLE` after the last CONNACK.
//! 2. Every device sends one SUBSCRIBE with its 10 filters at QoS 1 (batches of `BATCH`), and
//!    every SUBACK must grant all 10. `rss_subscribed_kb` is VmRSS `SETTLE` after the last
//!    SUBACK; `bytes_per_sub` = (subscribed - connected) / 100,000 and `bytes_per_conn` =
//!    (connected - start) / `CLIENTS`: the connection and its session apart from the
//!    subscriptions (for edgemq that includes SQLite's page cache holding the stored ones).
//! 3. Two phases, QoS 0 then QoS 1: `PUBLISHERS` publishers (fresh clean connections) each
//!    publish for `duration` to random topics (worker.rs, `RandomTopics`; QoS 0 in batches of
//!    32, QoS 1 with `window` in flight), the topic's index in the payload. One thread serves
//!    all 10,000 device sockets from one `mio` loop (a thread each would cost the load
//!    generator more than the broker); it acknowledges every QoS 1 delivery and checks each
//!    PUBLISH: its topic must be one of the receiving device's own and the one in the payload
//!    (`misrouted` otherwise). Per publisher every sequence number is counted once, so lost
//!    (QoS 0, allowed under overload), missing (QoS 1, must be 0) and duplicates are exact.
//!    `qN_msg_per_s` = unique deliveries / (last delivery - start of publishing); broker CPU
//!    per delivery, and the load generator's own CPU time over the phase
//!    (`qN_loadgen_cpu_s`), to see which one was the limit; VmRSS and VmHWM at the end of
//!    each phase (`qN_rss_after_kb`, `qN_peak_rss_kb`: which phase made the peak).
//!
//! edgemq runs with its defaults (`sync`); Mosquitto with its shipped limits, persistence off.
//! Needs about `CLIENTS` + 100 file descriptors here and in the broker.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use edgemq::codec::{
    self, DecodeContext, Packet, PubAck, QoS, Role, Subscribe, SubscribeProperties,
    SubscriptionOptions,
};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::worker::{self, PublisherPlan, RandomTopics, SubscriberControl};
use super::{close_all, join, record_usage, FirstError, Options};
use crate::broker::{own_cpu_s, BrokerProcess, Settings};
use crate::client::{Client, ConnectOptions};
use crate::json::Object;
use crate::payload::{read_topic_index, SeqTracker, Stamp};
use crate::Error;

/// Devices, and filters per device: 100,000 distinct subscriptions.
const CLIENTS: usize = 10_000;
const FILTERS: usize = 10;
const PUBLISHERS: usize = 4;
const BATCH: usize = 50;
const SETTLE: Duration = Duration::from_secs(1);
/// Once the publishers are done, a receiver that hears nothing for this long gives up.
const QUIET: Duration = Duration::from_secs(2);
/// The receiver stops at `end + DRAIN_LIMIT` whatever happens.
const DRAIN_LIMIT: Duration = Duration::from_secs(20);
/// Bounds each publisher's messages whatever the duration.
const MAX_PER_PUBLISHER: u64 = 5_000_000;

/// Topic `index` of the 100,000: device `index / FILTERS`, its filter `index % FILTERS`.
fn topic_name(index: u32) -> String {
    format!("dev/{}/{}", index as usize / FILTERS, index as usize % FILTERS)
}

/// The index of `topic` if it is one of device `device`'s own topics.
fn own_topic(topic: &str, device: usize) -> Option<u32> {
    let (n, k) = topic.strip_prefix("dev/")?.split_once('/')?;
    let (n, k): (usize, usize) = (n.parse().ok()?, k.parse().ok()?);
    (n == device && k < FILTERS && topic == topic_name((n * FILTERS + k) as u32))
        .then_some((n * FILTERS + k) as u32)
}

pub fn run(options: &Options, out: &mut Object) -> Result<(), Error> {
    let settings = Settings {
        max_connections: CLIENTS + 2 * PUBLISHERS + 100,
        max_inflight: options.broker_inflight,
        durability: options.durability,
        ..Settings::default()
    };
    let mut broker = BrokerProcess::start(&options.launcher, &settings, "subs100k")?;
    let addr = broker.addr;
    let version = options.version;
    out.int("clients", CLIENTS as u64)
        .int("subscriptions", (CLIENTS * FILTERS) as u64)
        .int("publishers", PUBLISHERS as u64);
    // Let the readiness probe's connection go away before the baseline.
    thread::sleep(Duration::from_millis(200));
    let start = broker.usage()?;
    out.int("start_rss_kb", start.rss_kb);

    // 1. Connect every device.
    let mut clients = Vec::with_capacity(CLIENTS);
    let started = Instant::now();
    while clients.len() < CLIENTS {
        let n = BATCH.min(CLIENTS - clients.len());
        let mut batch = Vec::with_capacity(n);
        for i in clients.len()..clients.len() + n {
            let mut connect = ConnectOptions::new(format!("dev-{i}"), version);
            connect.clean_start = false;
            connect.session_expiry = Some(3600);
            batch.push(
                Client::start_connect(addr, &connect)
                    .map_err(|e| Error::new(format!("dev-{i}: {e}")))?,
            );
        }
        for mut client in batch {
            client.finish_connect()?;
            clients.push(client);
        }
    }
    out.num("connect_per_s", CLIENTS as f64 / started.elapsed().as_secs_f64());
    thread::sleep(SETTLE);
    let connected = broker.usage()?;

    // 2. Ten filters each, in one SUBSCRIBE.
    let started = Instant::now();
    for (first, batch) in clients.chunks_mut(BATCH).enumerate().map(|(b, c)| (b * BATCH, c)) {
        let mut ids = Vec::with_capacity(batch.len());
        for (i, client) in batch.iter_mut().enumerate() {
            let device = first + i;
            let packet_id = client.packet_id();
            let qos = SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() };
            let filters =
                (0..FILTERS).map(|k| (topic_name((device * FILTERS + k) as u32), qos)).collect();
            client.queue(&Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties: SubscribeProperties::default(),
            }));
            client.flush()?;
            ids.push(packet_id);
        }
        for (i, (client, packet_id)) in batch.iter_mut().zip(ids).enumerate() {
            let deadline = Instant::now() + crate::client::CONNECT_TIMEOUT;
            match client.read_packet(deadline)? {
                Some(Packet::Suback(suback))
                    if suback.packet_id == packet_id
                        && suback.reasons.len() == FILTERS
                        && suback.reasons.iter().all(|r| !r.is_error()) => {}
                other => {
                    return Err(Error::new(format!(
                        "dev-{}: SUBSCRIBE of {FILTERS} filters answered {other:?}",
                        first + i
                    )))
                }
            }
        }
    }
    let subscribe_s = started.elapsed().as_secs_f64();
    thread::sleep(SETTLE);
    let subscribed = broker.usage()?;
    let kib = |a: u64, b: u64| (a as f64 - b as f64) * 1024.0;
    out.num("subscribe_per_s", (CLIENTS * FILTERS) as f64 / subscribe_s)
        .int("rss_connected_kb", connected.rss_kb)
        .int("rss_subscribed_kb", subscribed.rss_kb)
        .num("bytes_per_conn", kib(connected.rss_kb, start.rss_kb) / CLIENTS as f64)
        .num(
            "bytes_per_sub",
            kib(subscribed.rss_kb, connected.rss_kb) / (CLIENTS * FILTERS) as f64,
        );

    // 3. One mio loop for every device from here on.
    let mut devices = Devices::new(clients, version)?;
    let mut errors = FirstError::default();
    for (qos, prefix) in [(QoS::AtMostOnce, "q0_"), (QoS::AtLeastOnce, "q1_")] {
        let result = phase(options, &broker, &mut devices, qos, prefix, out);
        errors.take(result);
        if errors.0.is_some() {
            break;
        }
    }
    let last = broker.usage()?;
    out.int("peak_rss_kb", last.hwm_kb).int("rss_end_kb", last.rss_kb);
    out.int("broker_log_lines", broker.log_lines());
    broker.check_alive()?;
    devices.close();
    errors.into_result()
}

/// One publishing phase at `qos`; metrics are written with `prefix`.
fn phase(
    options: &Options,
    broker: &BrokerProcess,
    devices: &mut Devices,
    qos: QoS,
    prefix: &str,
    out: &mut Object,
) -> Result<(), Error> {
    let mut pub_clients = Vec::with_capacity(PUBLISHERS);
    for i in 0..PUBLISHERS {
        let id = format!("subs-pub-q{}-{i}", qos.bits());
        let (client, _) = Client::connect(broker.addr, &ConnectOptions::new(id, options.version))?;
        pub_clients.push(client);
    }
    let epoch = Instant::now();
    // Room for each publisher to name its 100,000 topics before it starts.
    let start = epoch + Duration::from_millis(300);
    let end = start + options.duration;
    let control = SubscriberControl::new(QUIET, end + DRAIN_LIMIT);
    let stop = AtomicBool::new(false);
    let before = broker.usage()?;
    let loadgen_before = own_cpu_s();
    let mut clients = Vec::with_capacity(PUBLISHERS);
    let (pub_results, received) = thread::scope(|s| {
        let control = &control;
        let stop = &stop;
        let clients = &mut clients;
        let receiver = s.spawn(move || devices.receive(PUBLISHERS, control));
        let handles: Vec<_> = pub_clients
            .into_iter()
            .enumerate()
            .map(|(i, client)| {
                let plan = PublisherPlan {
                    id: i as u32,
                    topic: String::new(),
                    qos,
                    window: options.window,
                    max_messages: MAX_PER_PUBLISHER,
                    start,
                    end,
                    interval: None,
                    epoch,
                    record_ack_latency: false,
                    random_topics: Some(RandomTopics {
                        count: (CLIENTS * FILTERS) as u32,
                        name: topic_name,
                        seed: u64::from(options.run) << 32
                            | (i as u64) << 8
                            | u64::from(qos.bits()),
                    }),
                };
                s.spawn(move || worker::publish(client, &plan, stop))
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| join(h, "publisher", clients)).collect();
        let sent: u64 = results.iter().filter_map(|r| r.as_ref().ok()).map(|p| p.sent).sum();
        control.expected.store(sent, Ordering::Release);
        let received = match receiver.join() {
            Ok(result) => result,
            Err(_) => Err(Error::new("receiver thread panicked")),
        };
        (results, received)
    });
    let after = broker.usage()?;
    let loadgen_cpu = own_cpu_s() - loadgen_before;
    close_all(clients);

    let mut errors = FirstError::default();
    let pubs: Vec<_> = pub_results.into_iter().filter_map(|r| errors.take(r)).collect();
    let Some(got) = errors.take(received) else { return errors.into_result() };
    let sent_by: Vec<u64> = pubs.iter().map(|p| p.sent).collect();
    let published: u64 = sent_by.iter().sum();
    let delivered: u64 = got.trackers.iter().map(|t| t.unique).sum();
    let lost: u64 = got.trackers.iter().zip(&sent_by).map(|(t, &sent)| t.missing(sent)).sum();
    let last_send = pubs.iter().filter_map(|p| p.last_send).max();
    let elapsed = got.last_receive.map_or(f64::NAN, |t| t.duration_since(start).as_secs_f64());
    let publish_s = last_send.map_or(f64::NAN, |t| t.duration_since(start).as_secs_f64());
    let p = |k: &str| format!("{prefix}{k}");
    out.int(&p("published"), published)
        .int(&p("delivered"), delivered)
        .int(&p(if qos == QoS::AtMostOnce { "lost" } else { "missing" }), lost)
        .int(&p("duplicates"), got.trackers.iter().map(|t| t.duplicates).sum())
        .int(&p("misrouted"), got.misrouted)
        .int(&p("foreign_payloads"), got.foreign)
        .int(&p("refused"), pubs.iter().map(|p| p.refused).sum())
        .int(&p("devices_reached"), got.devices_reached)
        .num(&p("publish_s"), publish_s)
        .num(&p("elapsed_s"), elapsed)
        .num(&p("offered_per_s"), published as f64 / publish_s)
        .num(&p("msg_per_s"), delivered as f64 / elapsed)
        .num(&p("loadgen_cpu_s"), loadgen_cpu)
        .int(&p("rss_after_kb"), after.rss_kb)
        .int(&p("peak_rss_kb"), after.hwm_kb)
        .str(&p("ended_by"), got.ended_by);
    record_usage(out, prefix, &before, &after, delivered);
    if got.misrouted > 0 {
        errors.take::<()>(Err(Error::new(format!(
            "{prefix}: {} deliveries to a device that did not subscribe the topic",
            got.misrouted
        ))));
    }
    if qos == QoS::AtLeastOnce && lost > 0 {
        errors.take::<()>(Err(Error::new(format!(
            "{prefix}: {lost} of {published} QoS 1 messages missing"
        ))));
    }
    errors.into_result()
}

/// One device socket in the receiver's loop.
struct Device {
    stream: TcpStream,
    /// Bytes read and not yet decoded.
    rx: Vec<u8>,
    /// Acknowledgements not yet written (the socket was full).
    tx: Vec<u8>,
    /// Whether WRITABLE interest is registered (only while `tx` holds something).
    writable: bool,
    /// Whether any message reached this device (in the current phase).
    reached: bool,
}

/// What the receiver counted in one phase.
struct Received {
    trackers: Vec<SeqTracker>,
    misrouted: u64,
    foreign: u64,
    devices_reached: u64,
    last_receive: Option<Instant>,
    ended_by: &'static str,
}

struct Devices {
    poll: Poll,
    devices: Vec<Device>,
    context: DecodeContext,
    version: codec::ProtocolVersion,
}

impl Devices {
    fn new(clients: Vec<Client>, version: codec::ProtocolVersion) -> Result<Devices, Error> {
        let poll = Poll::new()?;
        let mut devices = Vec::with_capacity(clients.len());
        for (i, client) in clients.into_iter().enumerate() {
            let (stream, rx) = client.into_stream()?;
            let mut stream = TcpStream::from_std(stream);
            poll.registry().register(&mut stream, Token(i), Interest::READABLE)?;
            devices.push(Device { stream, rx, tx: Vec::new(), writable: false, reached: false });
        }
        let context =
            DecodeContext { version: Some(version), max_packet_size: 1 << 20, role: Role::Client };
        Ok(Devices { poll, devices, context, version })
    }

    /// Serves every device until it has `control.expected` unique messages from `publishers`,
    /// or is quiet for `control.quiet` once that count is known, or the hard deadline.
    fn receive(
        &mut self,
        publishers: usize,
        control: &SubscriberControl,
    ) -> Result<Received, Error> {
        let mut got = Received {
            trackers: vec![SeqTracker::default(); publishers],
            misrouted: 0,
            foreign: 0,
            devices_reached: 0,
            last_receive: None,
            ended_by: "complete",
        };
        for device in &mut self.devices {
            device.reached = false;
        }
        let mut events = Events::with_capacity(1024);
        let mut read_buf = vec![0u8; 64 * 1024];
        let mut last_activity = Instant::now();
        loop {
            let now = Instant::now();
            let expected = control.expected.load(Ordering::Acquire);
            let unique: u64 = got.trackers.iter().map(|t| t.unique).sum();
            if unique >= expected {
                break;
            }
            if now >= control.hard_deadline {
                got.ended_by = "hard deadline";
                break;
            }
            if control.stop.load(Ordering::Relaxed) {
                got.ended_by = "stopped";
                break;
            }
            if expected != u64::MAX && now.duration_since(last_activity) >= control.quiet {
                got.ended_by = "quiet";
                break;
            }
            self.poll.poll(&mut events, Some(Duration::from_millis(100)))?;
            for event in events.iter() {
                let i = event.token().0;
                let Some(device) = self.devices.get_mut(i) else { continue };
                if event.is_readable() || event.is_read_closed() {
                    read_all(device, &mut read_buf)
                        .map_err(|e| Error::new(format!("dev-{i}: {e}")))?;
                    let at = Instant::now();
                    last_activity = at;
                    let mut used = 0;
                    while let Some((packet, n)) =
                        codec::decode(&device.rx[used..], &self.context)
                            .map_err(|e| Error::new(format!("dev-{i}: decode: {e}")))?
                    {
                        used += n;
                        match packet {
                            Packet::Publish(publish) => {
                                got.last_receive = Some(at);
                                if let Some(id) = publish.packet_id {
                                    codec::encode(
                                        &Packet::Puback(PubAck::new(id)),
                                        self.version,
                                        &mut device.tx,
                                    );
                                }
                                let stamp = Stamp::read(&publish.payload);
                                let tracker =
                                    stamp.and_then(|s| got.trackers.get_mut(s.publisher as usize));
                                let (Some(stamp), Some(tracker)) = (stamp, tracker) else {
                                    got.foreign += 1;
                                    continue;
                                };
                                let routed = own_topic(&publish.topic, i);
                                if routed.is_none() || routed != read_topic_index(&publish.payload)
                                {
                                    got.misrouted += 1;
                                    continue;
                                }
                                tracker.record(stamp.seq);
                                if !device.reached {
                                    device.reached = true;
                                    got.devices_reached += 1;
                                }
                            }
                            Packet::Pingresp => {}
                            other => {
                                return Err(Error::new(format!(
                                    "dev-{i}: unexpected {}",
                                    other.name()
                                )))
                            }
                        }
                    }
                    device.rx.drain(..used);
                }
                flush(device, self.poll.registry(), Token(i))
                    .map_err(|e| Error::new(format!("dev-{i}: write: {e}")))?;
            }
        }
        Ok(got)
    }

    /// DISCONNECT on every device, without waiting.
    fn close(self) {
        for mut device in self.devices {
            codec::encode(&Packet::Disconnect(Default::default()), self.version, &mut device.tx);
            let _ = device.stream.write(&device.tx);
            let _ = device.stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Reads everything the socket has into `device.rx`; a closed connection is an error.
fn read_all(device: &mut Device, buf: &mut [u8]) -> io::Result<()> {
    loop {
        match device.stream.read(buf) {
            Ok(0) => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed by the broker"))
            }
            Ok(n) => device.rx.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes pending acknowledgements; WRITABLE interest only while some are left.
fn flush(device: &mut Device, registry: &mio::Registry, token: Token) -> io::Result<()> {
    while !device.tx.is_empty() {
        match device.stream.write(&device.tx) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote nothing")),
            Ok(n) => {
                device.tx.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let want = !device.tx.is_empty();
    if want != device.writable {
        let interest =
            if want { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        registry.reregister(&mut device.stream, token, interest)?;
        device.writable = want;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_name_their_device() {
        assert_eq!(topic_name(0), "dev/0/0");
        assert_eq!(topic_name(99_999), "dev/9999/9");
        assert_eq!(own_topic("dev/9999/9", 9999), Some(99_999));
        assert_eq!(own_topic("dev/12/3", 12), Some(123));
        // Another device's topic, or a name that is not one of ours.
        assert_eq!(own_topic("dev/12/3", 13), None);
        assert_eq!(own_topic("dev/12/10", 12), None);
        assert_eq!(own_topic("dev/012/3", 12), None);
        assert_eq!(own_topic("dev/12/3/x", 12), None);
        assert_eq!(own_topic("x/12/3", 12), None);
    }
}
