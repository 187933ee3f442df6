//! One client connection: its transport (plain TCP or TLS) with bounded input and output
//! buffers.
//!
//! Buffers are allocated only while they hold data: input arrives in the loop's shared read
//! buffer and only an incomplete packet's bytes are kept here (released once the packet is
//! complete); output is appended here and the buffer is released once written, so an idle
//! connection holds no buffer at all (a busy one allocates once per loop pass that writes to
//! it).
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

pub struct Connection {
    pub transport: Transport,
    pub peer: SocketAddr,
    /// The listener that accepted it (for log lines).
    pub listener: ListenerId,
    /// Bytes of an incomplete packet, waiting for the rest.
    pub rx: Vec<u8>,
    /// Encoded packets not yet written, only while there are some (see [`Output`]).
    tx: Option<Box<Output>>,
    /// WRITABLE interest is registered (only while output is pending).
    pub write_interest: bool,
    /// The broker asked to close; flush what is queued, then drop.
    pub closing: bool,
    /// Already in the loop's list of connections with output to flush.
    pub flush_queued: bool,
    /// Not read because its output is over the limit (it does not read what we send).
    pub throttled: bool,
    /// Set for a bridge's outbound link: the bridge's index (see `outbound.rs`).
    /// (u32, not usize: 8 bytes fewer in every connection's slot.)
    pub link: Option<u32>,
    /// Counted by admission as waiting for its CONNECT (accepted connections only; a bridge
    /// link is never counted).
    pub pending: bool,
    /// Read from since the last pass that released acknowledgements to it (see
    /// `EventLoop::gather_before_sync`). A flag, not a pass number: it fits in the slot's
    /// padding.
    pub read_since_acks: bool,
}

/// Output waiting for the socket: `bytes[written..]` is pending. Boxed in the connection and
/// dropped once written, so an idle connection holds 8 bytes for it instead of 32 and no
/// buffer at all; a busy one allocates it once per loop pass that writes to it.
#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    written: usize,
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
            tx: None,
            write_interest: false,
            closing: false,
            flush_queued: false,
            throttled: false,
            link: None,
            pending: true,
            read_since_acks: false,
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
        self.tx.as_ref().map_or(0, |tx| tx.bytes.len() - tx.written)
    }

    /// The output buffer to append encoded packets to (allocated on first use).
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.tx.get_or_insert_with(Box::default).bytes
    }

    /// Writes pending output until done or `WouldBlock`; done means the transport holds
    /// nothing either (TLS records).
    pub fn flush(&mut self) -> io::Result<Flush> {
        if let Some(tx) = self.tx.as_mut() {
            while tx.written < tx.bytes.len() {
                match self.transport.write(&tx.bytes[tx.written..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => tx.written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Keep only what is pending.
                        tx.bytes.drain(..tx.written);
                        tx.written = 0;
                        return Ok(Flush::Blocked);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.tx = None;
        if self.transport.flush()? {
            Ok(Flush::Done)
        } else {
            Ok(Flush::Blocked)
        }
    }

    /// Reads and discards whatever the peer already sent, so closing does not turn into a
    /// reset that destroys our last packet (a v5 DISCONNECT) in the peer's receive queue.
    pub fn drain_input(&mut self, scratch: &mut [u8]) {
        self.transport.drain_socket(scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every connection costs in `net`'s slot table (issue 16); today's size on 64-bit
    /// targets: growing past it must be a decision, documented in README "Memory per
    /// connection".
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn connection_slot_stays_small() {
        // 128 before issue 16: the output buffer and its written mark are boxed, and only
        // while output is pending; the bridge index is a u32.
        // Debug builds only: mio's TcpStream carries its selector's id for a debug check (16
        // bytes instead of 4), which makes the three-variant `Transport` 24 bytes, not 16.
        let limit = if cfg!(debug_assertions) { 104 } else { 96 };
        let size = std::mem::size_of::<Option<Connection>>();
        assert!(size <= limit, "{size}");
    }
}
