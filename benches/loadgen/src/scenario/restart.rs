//! Restart with a big store: `SESSIONS` persistent sessions with `PER_SESSION` QoS 1 messages
//! queued each (1,000,000 in all), then a graceful restart (SIGTERM, start again on the same
//! data).
//!
//! 1. The sessions are made as in `storm` (`storm-<n>` on `storm/<n>`, then offline) and the
//!    messages queued by one publisher (128 in flight, every one PUBACKed).
//! 2. SIGTERM; the broker is started again with the same command line. `serving_s` is the
//!    time from its start to the first accepted TCP connection (store opened and checked,
//!    sessions restored, listening); `restart_rss_kb` its VmRSS 200 ms later, against
//!    `start_rss_kb` of the first, empty start (`restart_over_empty`).
//! 3. Session 0 reconnects: `first_message_ms` is CONNECT written -> first PUBLISH read.
//!
//! edgemq: `durability = "sync"`, `disk_cache_size` raised to hold them all. Mosquitto:
//! `persistence true` (it writes its whole state at SIGTERM and reads it back at start) and
//! its shipped `max_queued_messages` (1,000 per client, more than `PER_SESSION`).

use std::thread;
use std::time::{Duration, Instant};

use edgemq::codec::Packet;

use super::storm::{create_sessions, publish, session_options};
use super::Options;
use crate::broker::{BrokerProcess, Settings, Stopped};
use crate::client::Client;
use crate::json::Object;
use crate::Error;

const SESSIONS: usize = 10_000;
const PER_SESSION: u32 = 100;
const STOP_LIMIT: Duration = Duration::from_secs(120);

pub fn run(options: &Options, out: &mut Object) -> Result<(), Error> {
    let total = SESSIONS as u64 * u64::from(PER_SESSION);
    let settings = Settings {
        max_connections: SESSIONS + 100,
        max_inflight: options.broker_inflight,
        durability: options.durability,
        persistence: true,
        store_messages: total as usize + 100_000,
        ..Settings::default()
    };
    let mut broker = BrokerProcess::start(&options.launcher, &settings, "restart")?;
    let addr = broker.addr;
    let empty = broker.usage()?;
    out.int("sessions", SESSIONS as u64).int("messages", total).int("start_rss_kb", empty.rss_kb);

    create_sessions(addr, options.version, SESSIONS)?;
    let started = Instant::now();
    publish(addr, options.version, total, PER_SESSION)?;
    let queue_s = started.elapsed().as_secs_f64();
    out.num("queue_s", queue_s).num("queue_per_s", total as f64 / queue_s);
    let full = broker.usage()?;
    out.int("full_rss_kb", full.rss_kb);

    match broker.stop_with_sigterm(STOP_LIMIT)? {
        Stopped::Exited { after, .. } => out.num("stop_s", after.as_secs_f64()),
        Stopped::TimedOut => return Err(Error::new("did not stop within 120 s of SIGTERM")),
    };
    let data_kb = super::offline::dir_size(broker.data_dir()) / 1024;
    out.int("data_dir_kb", data_kb);
    let restarted = Instant::now();
    broker.restart()?;
    out.num("serving_s", restarted.elapsed().as_secs_f64());
    thread::sleep(Duration::from_millis(200));
    let after = broker.usage()?;
    out.int("restart_rss_kb", after.rss_kb)
        .num("restart_over_empty", after.rss_kb as f64 / empty.rss_kb.max(1) as f64);

    let reconnect = Instant::now();
    let (mut client, connack) = Client::connect(addr, &session_options(options.version, 0))?;
    let deadline = reconnect + Duration::from_secs(30);
    let first = loop {
        match client.read_packet(deadline)? {
            Some(Packet::Publish(_)) => break Some(reconnect.elapsed()),
            Some(_) => {}
            None => break None,
        }
    };
    client.close();
    out.bool("session_present", connack.session_present);
    let first = first.ok_or_else(|| Error::new("no message within 30 s of reconnecting"))?;
    out.num("first_message_ms", first.as_secs_f64() * 1000.0);
    out.int("peak_rss_kb", broker.usage()?.hwm_kb);
    broker.check_alive()?;
    if !connack.session_present {
        return Err(Error::new("session not present after the restart"));
    }
    Ok(())
}
