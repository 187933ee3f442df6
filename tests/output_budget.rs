//! The global output budget (`mqtt.tx_buffer_total`, issue 16): a crowd of subscribers that
//! never read, each under its own `mqtt.tx_buffer_limit`, cannot make the broker hold more
//! than the budget for all of them together, and the healthy subscribers beside them get
//! their messages (QoS 1: every one, in order; QoS 0: every one too, since a subscriber that
//! reads is never over its share for long).
//!
//! Without the budget the same crowd would hold `SLOW` x 256 KB (the default
//! `tx_buffer_limit`): 12.5 MB here, the README's fan-out finding in small. The kernel's socket
//! buffers come on top (not the broker's RSS: about 3 MB per socket whose peer does not read).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::packets::{self, kind, Ack, Connect, Publish};
use common::{skip_in_reference, timeout, BrokerBuilder, TestClient};
use socket2::{Domain, Socket, Type};

/// Subscribers that never read.
const SLOW: usize = 50;
/// The budget for all connections together, in bytes.
const BUDGET: u64 = 512 * 1024;
/// Messages published, and their payload size: 600 x 8 KB, so each slow subscriber is sent
/// 4.8 MB: more than the kernel takes for a socket whose peer does not read (on loopback the
/// send buffer grows to `net.ipv4.tcp_wmem`'s maximum, 4 MB here: about 3 MB were taken) and
/// its own 256 KB limit.
const MESSAGES: u16 = 600;
const PAYLOAD: usize = 8 * 1024;

/// The broker's peak RSS (`VmHWM`) in KiB; `None` where [`common::Broker::rss_kib`] would not
/// be edgemq's own (behind an emulator) or cannot be read.
fn peak_rss_kib(broker: &common::Broker) -> Option<u64> {
    broker.rss_kib()?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", broker.pid())).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A subscriber to `fan/#` at QoS 0 that never reads after its SUBACK, with a receive buffer
/// of 4 KB set before it connects (so the window it announces is small from the start): the
/// kernel takes little of what the broker sends it, the rest waits in the broker.
fn slow_subscriber(broker: &common::Broker, i: usize) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect_timeout(&broker.addr().into(), timeout()).expect("connect");
    let mut stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(timeout())).expect("read timeout");
    stream.write_all(&Connect::v311(&format!("slow-{i}")).build()).expect("CONNECT");
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).expect("CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK accepted");
    stream.write_all(&packets::subscribe(1, &[("fan/#", 0)])).expect("SUBSCRIBE");
    let mut suback = [0u8; 5];
    stream.read_exact(&mut suback).expect("SUBACK");
    assert_eq!(suback, [0x90, 3, 0, 1, 0], "SUBACK QoS 0");
    stream
}

fn payload(i: u16) -> Vec<u8> {
    let mut p = vec![b'.'; PAYLOAD];
    p[..2].copy_from_slice(&i.to_be_bytes());
    p
}

fn index(p: &common::packets::Publish) -> u16 {
    u16::from_be_bytes([p.payload[0], p.payload[1]])
}

#[test]
fn a_crowd_that_never_reads_holds_the_budget_and_healthy_subscribers_get_everything() {
    if skip_in_reference("mqtt.tx_buffer_total is edgemq's") {
        return;
    }
    let broker = BrokerBuilder::new()
        .mqtt("tx_buffer_total", BUDGET as i64)
        .mqtt("max_connections_per_address", 0)
        .mqtt("max_pending_connections", 0)
        .start();
    let crowd: Vec<TcpStream> = (0..SLOW).map(|i| slow_subscriber(&broker, i)).collect();
    let mut healthy = TestClient::v311(&broker, "healthy-qos0");
    healthy.subscribe("fan/#", 0);
    let mut reliable = TestClient::v311(&broker, "healthy-qos1");
    reliable.subscribe("fan/#", 1);
    let base = broker.rss_kib();

    thread::scope(|scope| {
        scope.spawn(|| {
            let mut publisher = TestClient::v311(&broker, "publisher");
            // Pipelined, in writes of 64 messages (over WebSockets each write is one frame,
            // which must stay under max_packet_size).
            let all: Vec<u16> = (1..=MESSAGES).collect();
            for chunk in all.chunks(64) {
                let mut batch = Vec::new();
                for &i in chunk {
                    batch.extend(Publish::new("fan/x", &payload(i)).qos(1, i).build());
                }
                publisher.send(&batch);
            }
            for i in 1..=MESSAGES {
                let ack = Ack::parse(&publisher.read_expected(kind::PUBACK), kind::PUBACK);
                assert_eq!(ack.packet_id, i, "PUBACKs in order");
            }
        });
        let healthy = &mut healthy;
        scope.spawn(move || {
            for i in 1..=MESSAGES {
                let p = healthy.expect_publish();
                assert_eq!((p.qos, index(&p)), (0, i), "QoS 0 subscriber: lost or reordered");
            }
        });
        for i in 1..=MESSAGES {
            let p = reliable.expect_publish();
            assert_eq!((p.qos, index(&p)), (1, i), "QoS 1 subscriber: lost or reordered");
            reliable.ack(&p);
        }
    });
    healthy.expect_no_packet(common::scaled(Duration::from_millis(100)));

    // The crowd was sent far more than the budget: most of it was dropped and counted.
    let warning = broker.wait_for_log("the budget's drop warning", |l| {
        l.contains("dropped") && l.contains("mqtt.tx_buffer_total")
    });
    assert!(warning.contains("slow-"), "{warning}");

    // What the broker held for the crowd: twice the budget at most, plus one message per
    // connection crossing its share, plus room for the allocator (debug build) — far from the
    // 12.5 MB the crowd's own limits allow.
    if let (Some(base), Some(peak)) = (base, peak_rss_kib(&broker)) {
        let crossing = (SLOW as u64 + 3) * (PAYLOAD as u64 + 16);
        let bound = (2 * BUDGET + crossing) / 1024 + 4 * 1024;
        let grew = peak.saturating_sub(base);
        eprintln!(
            "RSS {base} KiB after connecting, peak {peak} KiB: grew {grew} KiB (bound {bound} KiB)"
        );
        assert!(grew <= bound, "peak RSS grew by {grew} KiB, over {bound} KiB");
    }
    common::assert_broker_serves(&broker);
    drop(crowd);
}
