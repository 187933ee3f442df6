//! One client connection: its transport (plain TCP or TLS) with bounded input and output
//! buffers.
//!
//! Buffers are allocated only while they hold data: input arrives in the loop's shared read
//! buffer and only an incomplete packet's bytes are kept here (released once the packet is
//! complete); output is appended here, and a buffer that grew past 16 KB is released once
//! written (a smaller one is kept for reuse).
//!
//! The input buffer holds one incomplete packet and grows with what arrives, never past the
//! packet's declared size (fixed header included) — which the decoder already checked against
//! `max_packet_size` (before CONNECT: `max_connect_packet_size`) — and never ahead of the bytes
//! that came: a peer that declares 1 MB and sends 16 bytes costs 16 bytes. Bytes after that
//! packet are decoded from the shared buffer, not appended here ([`Connection::wanted`]).

use std::io;
use std::net::SocketAddr;

use super::transport::Transport;
use crate::broker::ListenerId;
use crate::codec;

/// Output buffers larger than this are released, not kept, once drained.
const KEEP_TX_CAPACITY: usize = 16 * 1024;

pub struct Connection {
    pub transport: Transport,
    pub peer: SocketAddr,
    /// The listener that accepted it (for log lines).
    pub listener: ListenerId,
    /// Bytes of an incomplete packet, waiting for the rest.
    pub rx: Vec<u8>,
    /// Encoded packets not yet written; `tx[tx_written..]` is pending.
    pub tx: Vec<u8>,
    pub tx_written: usize,
    /// WRITABLE interest is registered (only while output is pending).
    pub write_interest: bool,
    /// The broker asked to close; flush what is queued, then drop.
    pub closing: bool,
    /// Already in the loop's list of connections with output to flush.
    pub flush_queued: bool,
    /// Not read because its output is over the limit (it does not read what we send).
    pub throttled: bool,
    /// Set for a bridge's outbound link: the bridge's index (see `outbound.rs`).
    pub link: Option<usize>,
    /// Counted by admission as waiting for its CONNECT (accepted connections only; a bridge
    /// link is never counted).
    pub pending: bool,
    /// The loop pass that last read bytes from it.
    pub read_pass: u64,
}

/// What a write attempt achieved.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything pending was written.
    Done,
    /// The socket is full; wait for WRITABLE.
    Blocked,
}

impl Connection {
    pub fn new(transport: Transport, peer: SocketAddr, listener: ListenerId) -> Connection {
        Connection {
            transport,
            peer,
            listener,
            rx: Vec::new(),
            tx: Vec::new(),
            tx_written: 0,
            write_interest: false,
            closing: false,
            flush_queued: false,
            throttled: false,
            link: None,
            pending: true,
            read_pass: 0,
        }
    }

    /// How many of the next input bytes belong to the incomplete packet in `rx`: the rest of its
    /// declared size once its fixed header is complete, else one more header byte; 0 if `rx`
    /// holds a whole packet or a header the decoder refuses (it reports that).
    pub fn wanted(&self) -> usize {
        // The declared size was checked against the real limit when `rx` was decoded.
        match codec::check_frame(&self.rx, u32::MAX) {
            Ok(Some(header)) => header.total_len().saturating_sub(self.rx.len()),
            Ok(None) => 1,
            Err(_) => 0,
        }
    }

    /// Appends input to `rx`, growing it (doubling, for few copies) up to the declared size of
    /// the packet it holds at most: `bytes` must not go past that packet ([`Connection::wanted`]).
    pub fn append_input(&mut self, bytes: &[u8]) {
        let needed = self.rx.len() + bytes.len();
        if needed > self.rx.capacity() {
            let declared = match codec::check_frame(&self.rx, u32::MAX) {
                Ok(Some(header)) => header.total_len(),
                Ok(None) | Err(_) => needed,
            };
            let target = needed.max(self.rx.capacity() * 2).min(declared.max(needed));
            self.rx.reserve_exact(target - self.rx.len());
        }
        self.rx.extend_from_slice(bytes);
    }

    /// Keeps the bytes of an incomplete packet; an emptied buffer is released, so a
    /// connection that once received a large packet does not hold its memory while idle.
    pub fn keep_input(&mut self, rest: Vec<u8>) {
        self.rx = if rest.is_empty() { Vec::new() } else { rest };
    }

    pub fn pending_output(&self) -> usize {
        self.tx.len() - self.tx_written
    }

    /// Writes pending output until done or `WouldBlock`; done means the transport holds
    /// nothing either (TLS records).
    pub fn flush(&mut self) -> io::Result<Flush> {
        while self.tx_written < self.tx.len() {
            match self.transport.write(&self.tx[self.tx_written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.tx_written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.compact_tx();
                    return Ok(Flush::Blocked);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.tx_written = 0;
        if self.tx.capacity() > KEEP_TX_CAPACITY {
            self.tx = Vec::new();
        } else {
            self.tx.clear();
        }
        if self.transport.flush()? {
            Ok(Flush::Done)
        } else {
            Ok(Flush::Blocked)
        }
    }

    /// Drops the written prefix so the buffer holds only pending bytes.
    fn compact_tx(&mut self) {
        if self.tx_written > 0 {
            self.tx.drain(..self.tx_written);
            self.tx_written = 0;
        }
    }

    /// Reads and discards whatever the peer already sent, so closing does not turn into a
    /// reset that destroys our last packet (a v5 DISCONNECT) in the peer's receive queue.
    pub fn drain_input(&mut self, scratch: &mut [u8]) {
        self.transport.drain_socket(scratch);
    }
}
