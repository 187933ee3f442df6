//! Idle connections: open `connections` MQTT connections (CONNECT, clean session, keep-alive
//! 60 s), each holding one QoS 1 subscription of its own (`idle/<n>/cmd`, as a device
//! listening for its commands), then measure what the broker holds for them and what it does
//! while nothing happens, and what it gives back once they have all gone.
//!
//! With two or more CPUs the load generator is pinned to CPU 0 and the broker to CPU 1
//! (`--no-pin` leaves placement to the scheduler, which makes the connect rate bimodal).
//! Connections are opened in batches of `BATCH` (all TCP connects and CONNECTs of a batch,
//! then all CONNACKs) from one thread, which keeps the broker's accept queue short and the
//! connect rate a property of the broker, not of one round trip at a time. RSS is VmRSS
//! right after start-up and again `SETTLE` after the last CONNACK; bytes per connection is
//! their difference over the connections made. Then, for `idle_window`, nobody sends
//! anything: the broker's CPU time (utime + stime) and context switches (voluntary +
//! involuntary, all threads) over that window give `idle_cpu_pct` and `idle_wakeups_per_s`
//! (a sleep in `epoll_wait` that ends is one voluntary switch). With keep-alive 60 s no
//! client timer is due in the window. At the end every socket is checked to be still open,
//! then all are closed (DISCONNECT) and `rss_closed_kb` is VmRSS `SETTLE` later:
//! `closed_over_start` = rss_closed / start RSS says how much of the storm's memory the
//! broker gave back. `idle_15k` is the same with 15,000 connections.
//! Needs about `connections` file descriptors in this process and in the broker.

use std::thread;
use std::time::{Duration, Instant};

use edgemq::codec::QoS;

use super::{close_all, record_usage, Options};
use crate::broker::{pin_to_cpu, BrokerProcess, Settings};
use crate::client::{Client, ConnectOptions};
use crate::json::Object;
use crate::Error;

const BATCH: usize = 50;
const SETTLE: Duration = Duration::from_secs(1);

pub fn run(options: &Options, connections: usize, out: &mut Object) -> Result<(), Error> {
    let settings = Settings {
        // Head-room for the readiness probe and anything that lingers.
        max_connections: connections + 100,
        max_inflight: options.broker_inflight,
        durability: options.durability,
        ..Settings::default()
    };
    let mut broker = BrokerProcess::start(&options.launcher, &settings, "idle")?;
    let addr = broker.addr;
    out.int("connections", connections as u64);
    // Unpinned, the connect rate of either broker flips between two levels (about 22k and 35k
    // connections/s here) with the scheduler's placement of the two processes: on separate
    // CPUs it measures the broker's accept path instead.
    let two_cpus = thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    let pinned = options.pin_idle
        && two_cpus
        && pin_to_cpu(std::process::id(), 0)
        && pin_to_cpu(broker.pid(), 1);
    out.bool("pinned", pinned);
    // Let the readiness probe's connection go away before the baseline.
    thread::sleep(Duration::from_millis(200));
    let before = broker.usage()?;
    out.int("start_rss_kb", before.rss_kb);

    let mut clients = Vec::with_capacity(connections);
    let mut failure = None;
    let started = Instant::now();
    'outer: while clients.len() < connections {
        let n = BATCH.min(connections - clients.len());
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            let id = format!("idle-{}", clients.len() + batch.len());
            let connect = ConnectOptions::new(id, options.version);
            let filter = format!("idle/{}/cmd", clients.len() + batch.len());
            let started = Client::start_connect(addr, &connect).and_then(|mut client| {
                let packet_id = client.queue_subscribe(&filter, QoS::AtLeastOnce);
                client.flush()?;
                Ok((client, filter, packet_id))
            });
            match started {
                Ok(started) => batch.push(started),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        for (mut client, filter, packet_id) in batch {
            let finished =
                client.finish_connect().and_then(|_| client.finish_subscribe(&filter, packet_id));
            match finished {
                Ok(()) => clients.push(client),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if failure.is_some() {
            break 'outer;
        }
    }
    let connect_s = started.elapsed().as_secs_f64();
    let connected = clients.len() as u64;
    thread::sleep(SETTLE);
    let after = broker.usage()?;

    // The idle window: nobody sends anything.
    let window_start = Instant::now();
    thread::sleep(options.idle_window);
    let idle = broker.usage()?;
    let window_s = window_start.elapsed().as_secs_f64();
    let still_open = clients.iter_mut().map(Client::is_open).filter(|&open| open).count() as u64;

    out.int("connected", connected)
        .int("still_open", still_open)
        .num("connect_s", connect_s)
        .num("connect_per_s", connected as f64 / connect_s)
        .int("rss_before_kb", before.rss_kb)
        .int("rss_after_kb", after.rss_kb)
        .num(
            "bytes_per_conn",
            (after.rss_kb as f64 - before.rss_kb as f64) * 1024.0 / connected.max(1) as f64,
        );
    record_usage(out, "", &before, &after, connected);
    out.num("idle_window_s", window_s)
        .num("idle_cpu_pct", (idle.cpu_s - after.cpu_s).max(0.0) * 100.0 / window_s)
        .int(
            "idle_voluntary_switches",
            idle.voluntary_switches.saturating_sub(after.voluntary_switches),
        )
        .int(
            "idle_nonvoluntary_switches",
            idle.nonvoluntary_switches.saturating_sub(after.nonvoluntary_switches),
        )
        .num(
            "idle_wakeups_per_s",
            idle.switches().saturating_sub(after.switches()) as f64 / window_s,
        );
    out.int("peak_rss_kb", idle.hwm_kb);
    broker.check_alive()?;
    // Everyone leaves: what does the broker give back?
    close_all(clients);
    thread::sleep(SETTLE);
    let closed = broker.usage()?;
    out.int("rss_closed_kb", closed.rss_kb)
        .num("closed_over_start", closed.rss_kb as f64 / before.rss_kb.max(1) as f64)
        .int("broker_log_lines", broker.log_lines());
    broker.check_alive()?;
    if let Some(e) = failure {
        return Err(Error::new(format!("after {connected} connections: {e}")));
    }
    if still_open < connected {
        return Err(Error::new(format!("{} idle connections were closed", connected - still_open)));
    }
    Ok(())
}
