//! The two roles every scenario is made of: a publisher thread and a subscriber thread.
//!
//! Contract: both end by themselves — a publisher at its end time or message cap, then once
//! its window is acknowledged; a subscriber once it has every expected message, or after
//! `quiet` without traffic once the expected count is known, or at its hard deadline. A
//! broker that stops acknowledging for `STALL` is an error, not a hang. Any error sets the
//! shared `stop` flag so the other threads finish early.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use edgemq::codec::{Packet, PubAck, QoS};

use crate::client::Client;
use crate::payload::{instant_at, ns_since, write_topic_index, SeqTracker, Stamp, PAYLOAD_LEN};
use crate::Error;

/// A broker that leaves a publisher's window unacknowledged this long is declared stuck.
pub const STALL: Duration = Duration::from_secs(10);
/// QoS 0 messages queued per `write` by a publisher without a fixed rate.
const QOS0_BATCH: u64 = 32;

pub struct PublisherPlan {
    pub id: u32,
    pub topic: String,
    pub qos: QoS,
    /// Unacknowledged QoS 1/2 messages allowed at once.
    pub window: usize,
    pub max_messages: u64,
    pub start: Instant,
    /// No new message is sent at or after this time.
    pub end: Instant,
    /// Fixed rate: message `n` is due at `start + n * interval`, and carries that time.
    pub interval: Option<Duration>,
    /// Payload timestamps count from here.
    pub epoch: Instant,
    /// Record each QoS 1/2 message's acknowledgement latency (PUBLISH written -> PUBACK /
    /// PUBCOMP read) in `PublisherStats::ack_latencies_ns`.
    pub record_ack_latency: bool,
    /// Publish each message to a topic drawn at random instead of `topic` (`subs100k`).
    pub random_topics: Option<RandomTopics>,
}

/// Topics `name(0)` .. `name(count - 1)`, one drawn uniformly for each message; its index goes
/// into the payload (`payload::write_topic_index`) so a receiver can check the routing.
#[derive(Debug, Clone, Copy)]
pub struct RandomTopics {
    pub count: u32,
    pub name: fn(u32) -> String,
    /// Seeds the draw (each publisher its own), so a run can be repeated.
    pub seed: u64,
}

/// splitmix64: a fast, well-mixed generator, enough to spread messages over topics.
pub fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Debug, Default, Clone)]
pub struct PublisherStats {
    pub sent: u64,
    /// QoS 1/2 messages the broker completed (PUBACK / PUBCOMP).
    pub acked: u64,
    /// PUBACK / PUBREC with an error reason code (MQTT 5.0).
    pub refused: u64,
    pub last_send: Option<Instant>,
    pub last_ack: Option<Instant>,
    /// Nanoseconds from handing a PUBLISH to the socket to reading its PUBACK / PUBCOMP,
    /// unsorted; only with `PublisherPlan::record_ack_latency`.
    pub ack_latencies_ns: Vec<u64>,
}

/// Packet ids in flight, indexed by id (the window is far below 65,535), with the time each
/// was queued.
struct InFlight {
    slots: Vec<Option<Instant>>,
    count: usize,
}

impl InFlight {
    fn new() -> InFlight {
        InFlight { slots: vec![None; 65536], count: 0 }
    }

    fn insert(&mut self, id: u16, at: Instant) -> Result<(), Error> {
        match self.slots.get_mut(usize::from(id)) {
            Some(slot) if slot.is_none() => {
                *slot = Some(at);
                self.count += 1;
                Ok(())
            }
            _ => Err(Error::new(format!("packet id {id} reused while in flight"))),
        }
    }

    /// When the message with this id was queued, if it was in flight.
    fn remove(&mut self, id: u16) -> Option<Instant> {
        let sent = self.slots.get_mut(usize::from(id)).and_then(Option::take);
        if sent.is_some() {
            self.count -= 1;
        }
        sent
    }
}

/// Runs one publisher; the client is handed back (connected) so the caller can read the
/// broker's CPU time before any disconnect work.
pub fn publish(
    mut client: Client,
    plan: &PublisherPlan,
    stop: &AtomicBool,
) -> (Result<PublisherStats, Error>, Client) {
    let result = publish_inner(&mut client, plan, stop);
    if result.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    (result, client)
}

fn publish_inner(
    client: &mut Client,
    plan: &PublisherPlan,
    stop: &AtomicBool,
) -> Result<PublisherStats, Error> {
    let topic: Rc<str> = Rc::from(plan.topic.as_str());
    // Every random topic's name, made once: no formatting per message.
    let names: Vec<Rc<str>> = plan
        .random_topics
        .map(|r| (0..r.count).map(|i| Rc::from((r.name)(i))).collect())
        .unwrap_or_default();
    let mut random = plan.random_topics.map_or(0, |r| r.seed);
    let mut stats = PublisherStats::default();
    let mut inflight = InFlight::new();
    let mut payload = [0u8; PAYLOAD_LEN];
    let mut last_progress = Instant::now();
    sleep_until(plan.start);
    loop {
        let now = Instant::now();
        let sending =
            stats.sent < plan.max_messages && now < plan.end && !stop.load(Ordering::Relaxed);
        if !sending && inflight.count == 0 {
            break;
        }
        if sending {
            let room = match plan.qos {
                QoS::AtMostOnce => QOS0_BATCH,
                QoS::AtLeastOnce | QoS::ExactlyOnce => {
                    plan.window.saturating_sub(inflight.count) as u64
                }
            };
            let room = room.min(plan.max_messages - stats.sent);
            for _ in 0..room {
                let sent_ns = match plan.interval {
                    Some(interval) => {
                        let due = plan.epoch_offset_ns() + interval_ns(interval, stats.sent);
                        if instant_at(plan.epoch, due) > now {
                            break;
                        }
                        due
                    }
                    None => ns_since(plan.epoch, Instant::now()),
                };
                Stamp { publisher: plan.id, seq: stats.sent, sent_ns }.write(&mut payload);
                let mut this_topic = &topic;
                if !names.is_empty() {
                    let index = next_random(&mut random) % names.len() as u64;
                    if let Some(name) = names.get(index as usize) {
                        this_topic = name;
                        write_topic_index(&mut payload, index as u32);
                    }
                }
                if let Some(id) = client.queue_publish(this_topic, plan.qos, &payload) {
                    inflight.insert(id.get(), now)?;
                }
                stats.sent += 1;
            }
            if client.has_output() {
                client.flush()?;
                stats.last_send = Some(Instant::now());
            }
        }
        // When to wake up next: the next fixed-rate message, or an acknowledgement.
        let next_due = match (plan.interval, sending) {
            (Some(interval), true) => Some(instant_at(
                plan.epoch,
                plan.epoch_offset_ns() + interval_ns(interval, stats.sent),
            )),
            _ => None,
        };
        if plan.qos == QoS::AtMostOnce {
            match next_due {
                Some(due) => sleep_until(due),
                None => continue,
            }
            continue;
        }
        let window_full = inflight.count >= plan.window;
        let wait_until = match next_due {
            Some(due) if !window_full => due,
            _ => last_progress + STALL,
        };
        if inflight.count == 0 {
            // Nothing to wait for but the clock.
            sleep_until(wait_until.min(plan.end));
            continue;
        }
        let Some(packet) = client.read_packet(wait_until)? else {
            if Instant::now() >= last_progress + STALL {
                return Err(Error::new(format!(
                    "publisher {}: {} messages unacknowledged for {STALL:?}",
                    plan.id, inflight.count
                )));
            }
            continue;
        };
        let mut next = Some(packet);
        while let Some(packet) = next {
            match packet {
                Packet::Puback(ack) | Packet::Pubcomp(ack) => {
                    if let Some(sent) = inflight.remove(ack.packet_id.get()) {
                        stats.acked += 1;
                        if ack.reason.is_error() {
                            stats.refused += 1;
                        }
                        last_progress = Instant::now();
                        if plan.record_ack_latency {
                            stats.ack_latencies_ns.push(ns_since(sent, last_progress));
                        }
                    }
                }
                Packet::Pubrec(ack) => {
                    if ack.reason.is_error() {
                        // A refused QoS 2 message ends here (MQTT 5.0 §4.3.3).
                        if inflight.remove(ack.packet_id.get()).is_some() {
                            stats.acked += 1;
                            stats.refused += 1;
                        }
                    } else {
                        client.queue(&Packet::Pubrel(PubAck::new(ack.packet_id)));
                    }
                    last_progress = Instant::now();
                }
                Packet::Disconnect(d) => {
                    return Err(Error::new(format!(
                        "publisher {}: DISCONNECT {:?}",
                        plan.id, d.reason
                    )))
                }
                Packet::Pingresp => {}
                other => {
                    return Err(Error::new(format!(
                        "publisher {}: unexpected {}",
                        plan.id,
                        other.name()
                    )))
                }
            }
            next = client.buffered_packet()?;
        }
        client.flush()?;
        stats.last_ack = Some(last_progress);
    }
    Ok(stats)
}

impl PublisherPlan {
    fn epoch_offset_ns(&self) -> u64 {
        ns_since(self.epoch, self.start)
    }
}

fn interval_ns(interval: Duration, n: u64) -> u64 {
    u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX).saturating_mul(n)
}

pub fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        thread::sleep(at - now);
    }
}

/// What the subscribers are told while they run.
pub struct SubscriberControl {
    /// Messages each subscriber should get in total; `u64::MAX` until the publishers are done.
    pub expected: AtomicU64,
    /// Once `expected` is known, this long without a message ends the subscriber.
    pub quiet: Duration,
    pub hard_deadline: Instant,
    pub stop: AtomicBool,
}

impl SubscriberControl {
    pub fn new(quiet: Duration, hard_deadline: Instant) -> SubscriberControl {
        SubscriberControl {
            expected: AtomicU64::new(u64::MAX),
            quiet,
            hard_deadline,
            stop: AtomicBool::new(false),
        }
    }
}

pub struct SubscriberPlan {
    pub publishers: usize,
    pub epoch: Instant,
    /// Record receive latency (from the payload's send time) for sequence numbers from here.
    pub latency_from_seq: Option<u64>,
    /// Names this subscriber in error messages.
    pub label: String,
}

#[derive(Debug, Default, Clone)]
pub struct SubscriberStats {
    pub trackers: Vec<SeqTracker>,
    /// PUBLISH packets received, duplicates included.
    pub received: u64,
    pub unknown_payloads: u64,
    pub first_receive: Option<Instant>,
    pub last_receive: Option<Instant>,
    /// Longest silence between two messages (a broker that stalls shows up here).
    pub max_gap: Duration,
    /// Nanoseconds, unsorted.
    pub latencies_ns: Vec<u64>,
    /// Why the subscriber stopped before it had every expected message, if it did.
    pub ended_by: &'static str,
    /// Bytes the broker sent this subscriber, from its SUBACK on.
    pub bytes: u64,
}

impl SubscriberStats {
    pub fn unique(&self) -> u64 {
        self.trackers.iter().map(|t| t.unique).sum()
    }
    pub fn duplicates(&self) -> u64 {
        self.trackers.iter().map(|t| t.duplicates).sum()
    }
    pub fn reordered(&self) -> u64 {
        self.trackers.iter().map(|t| t.reordered).sum()
    }
}

/// Runs one subscriber; the client is handed back like `publish`'s.
pub fn subscribe(
    mut client: Client,
    plan: &SubscriberPlan,
    control: &SubscriberControl,
) -> (Result<SubscriberStats, Error>, Client) {
    let result = subscribe_inner(&mut client, plan, control);
    if result.is_err() {
        control.stop.store(true, Ordering::Relaxed);
    }
    (result, client)
}

fn subscribe_inner(
    client: &mut Client,
    plan: &SubscriberPlan,
    control: &SubscriberControl,
) -> Result<SubscriberStats, Error> {
    let mut stats = SubscriberStats {
        trackers: vec![SeqTracker::default(); plan.publishers],
        ended_by: "complete",
        ..SubscriberStats::default()
    };
    let mut last_activity = Instant::now();
    let bytes_before = client.bytes_read();
    loop {
        let now = Instant::now();
        let expected = control.expected.load(Ordering::Acquire);
        if stats.unique() >= expected {
            break;
        }
        if now >= control.hard_deadline {
            stats.ended_by = "hard deadline";
            break;
        }
        if control.stop.load(Ordering::Relaxed) {
            stats.ended_by = "stopped";
            break;
        }
        if expected != u64::MAX && now.duration_since(last_activity) >= control.quiet {
            stats.ended_by = "quiet";
            break;
        }
        let Some(packet) = client.read_packet(now + Duration::from_millis(100))? else {
            continue;
        };
        let mut next = Some(packet);
        while let Some(packet) = next {
            match packet {
                Packet::Publish(publish) => {
                    let at = Instant::now();
                    if let Some(last) = stats.last_receive {
                        stats.max_gap = stats.max_gap.max(at.duration_since(last));
                    }
                    stats.received += 1;
                    stats.first_receive.get_or_insert(at);
                    stats.last_receive = Some(at);
                    client.queue_ack_for(&publish);
                    match Stamp::read(&publish.payload) {
                        Some(stamp) => {
                            let Some(tracker) = stats.trackers.get_mut(stamp.publisher as usize)
                            else {
                                stats.unknown_payloads += 1;
                                next = client.buffered_packet()?;
                                continue;
                            };
                            let before = tracker.unique;
                            tracker.record(stamp.seq);
                            let fresh = tracker.unique > before;
                            if fresh && plan.latency_from_seq.is_some_and(|from| stamp.seq >= from)
                            {
                                let sent = instant_at(plan.epoch, stamp.sent_ns);
                                stats.latencies_ns.push(ns_since(sent, at));
                            }
                        }
                        None => stats.unknown_payloads += 1,
                    }
                }
                Packet::Pubrel(ack) => client.queue(&Packet::Pubcomp(PubAck::new(ack.packet_id))),
                Packet::Disconnect(d) => {
                    return Err(Error::new(format!("{}: DISCONNECT {:?}", plan.label, d.reason)))
                }
                Packet::Pingresp => {}
                other => {
                    return Err(Error::new(format!("{}: unexpected {}", plan.label, other.name())))
                }
            }
            next = client.buffered_packet()?;
        }
        client.flush()?;
        last_activity = Instant::now();
    }
    client.flush()?;
    stats.bytes = client.bytes_read() - bytes_before;
    Ok(stats)
}
