//! RFC 6455 framing, sans I/O: client frames in, the MQTT byte stream out; server frames out.
//!
//! Contract:
//! - [`Decoder::decode`] works in place on the bytes the socket gave: frame headers are
//!   removed, payloads unmasked and moved to the front of the same buffer, so the MQTT decoder
//!   reads them as if they had come over TCP. Frame boundaries mean nothing to MQTT
//!   (MQTT-6.0.0-2, -3): a packet may span frames, a frame may hold several packets. Nothing is
//!   allocated: the decoder keeps at most one frame header (14 bytes) and one control frame's
//!   payload (125 bytes) between calls, whatever lengths the peer declares.
//! - Checked as soon as the bytes that say it arrive (before any payload is accepted): the RSV
//!   bits, the opcode, the mask bit (client frames MUST be masked, RFC 6455 5.1), control frames
//!   short and unfragmented (5.5), continuation only inside a fragmented message and never a
//!   new message inside one (5.4), only binary data frames (MQTT-6.0.0-1), and the length of a
//!   frame and of a whole fragmented message against the limit (`mqtt.max_packet_size`).
//! - Every error maps to the close code that goes on the wire through an exhaustive `match`
//!   ([`FrameError::close_code`]).
//! - Nothing here panics on any input: indexes are bounded by the lengths checked next to them.
//! - Server frames are never masked (5.1) and never fragmented: [`binary_header`] and
//!   [`control_frame`] build them.

/// Longest control frame payload (RFC 6455 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// Longest client frame header: 2 bytes, a 64-bit extended length, the masking key.
const MAX_HEADER: usize = 14;
/// Longest server data frame header (unmasked, 64-bit length).
pub const MAX_SERVER_HEADER: usize = 10;

/// Opcodes (RFC 6455 5.2).
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// Close status codes we send (RFC 6455 7.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: the connection did what it was for.
    Normal,
    /// 1002: a frame broke the protocol.
    ProtocolError,
    /// 1003: a data type we do not accept (text frames: MQTT is binary).
    UnsupportedData,
    /// 1007: a close reason that is not UTF-8.
    InvalidPayload,
    /// 1009: a frame or message over the size limit.
    MessageTooBig,
}

impl CloseCode {
    pub fn value(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::ProtocolError => 1002,
            CloseCode::UnsupportedData => 1003,
            CloseCode::InvalidPayload => 1007,
            CloseCode::MessageTooBig => 1009,
        }
    }
}

/// Why a client's frames were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// RSV1-3 set without a negotiated extension (5.2).
    ReservedBits(u8),
    /// An opcode RFC 6455 reserves.
    UnknownOpcode(u8),
    /// A client frame without the mask bit (5.1).
    Unmasked,
    /// A text frame: MQTT is carried in binary frames only (MQTT-6.0.0-1).
    Text,
    /// A control frame longer than 125 bytes or with FIN clear (5.5).
    BadControlFrame,
    /// A continuation frame outside a fragmented message (5.4).
    UnexpectedContinuation,
    /// A new data message before the fragmented one ended (5.4).
    ExpectedContinuation,
    /// A 64-bit length with the most significant bit set (5.2).
    LengthOverflow,
    /// A frame, or a fragmented message so far, longer than the limit.
    TooBig { length: u64, limit: u64 },
    /// A close frame with a 1-byte payload or a code that must not be sent (7.4).
    BadCloseCode,
    /// A close frame whose reason is not UTF-8 (5.5.1).
    CloseReasonNotUtf8,
}

impl FrameError {
    /// What the peer is told in our close frame.
    pub fn close_code(&self) -> CloseCode {
        match self {
            FrameError::ReservedBits(_)
            | FrameError::UnknownOpcode(_)
            | FrameError::Unmasked
            | FrameError::BadControlFrame
            | FrameError::UnexpectedContinuation
            | FrameError::ExpectedContinuation
            | FrameError::LengthOverflow
            | FrameError::BadCloseCode => CloseCode::ProtocolError,
            FrameError::Text => CloseCode::UnsupportedData,
            FrameError::CloseReasonNotUtf8 => CloseCode::InvalidPayload,
            FrameError::TooBig { .. } => CloseCode::MessageTooBig,
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::ReservedBits(bits) => write!(f, "reserved bits {bits:#x} set"),
            FrameError::UnknownOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            FrameError::Unmasked => write!(f, "unmasked client frame"),
            FrameError::Text => write!(f, "text frame (MQTT travels in binary frames)"),
            FrameError::BadControlFrame => write!(f, "fragmented or over-long control frame"),
            FrameError::UnexpectedContinuation => write!(f, "continuation frame outside a message"),
            FrameError::ExpectedContinuation => {
                write!(f, "new message inside a fragmented message")
            }
            FrameError::LengthOverflow => write!(f, "frame length with its top bit set"),
            FrameError::TooBig { length, limit } => {
                write!(f, "frame or message of {length} bytes, over the limit of {limit}")
            }
            FrameError::BadCloseCode => write!(f, "invalid close frame status code"),
            FrameError::CloseReasonNotUtf8 => write!(f, "close reason is not UTF-8"),
        }
    }
}

/// A control frame the peer sent, complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Answer with a pong carrying the same payload (5.5.2).
    Ping(ControlPayload),
    /// Unsolicited or an answer: nothing to do (5.5.3).
    Pong,
    /// The peer closes; `code` is absent when its close frame had no payload.
    Close { code: Option<u16> },
}

/// Up to 125 bytes of a control frame's payload, kept without allocating.
#[derive(Clone, PartialEq, Eq)]
pub struct ControlPayload {
    bytes: [u8; MAX_CONTROL_PAYLOAD],
    len: u8,
}

impl ControlPayload {
    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl std::fmt::Debug for ControlPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

/// What one call of [`Decoder::decode`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct Progress {
    /// End of the payload bytes at the front of the buffer.
    pub out: usize,
    /// End of the input consumed; short of the buffer's end only when `control` is set.
    pub pos: usize,
    /// A complete control frame, returned as soon as it is complete (data after it is not yet
    /// decoded: call again from `pos`).
    pub control: Option<Control>,
}

/// What the decoder waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// (The rest of) a frame header.
    ExpectHeader,
    /// `remaining` bytes of a data frame's payload.
    ExpectData { remaining: u64 },
    /// `remaining` bytes of a control frame's payload.
    ExpectControl { opcode: u8, remaining: u8 },
    /// A close frame was decoded: what follows is not read (RFC 6455 5.5.1).
    Closed,
}

/// Client frames to the MQTT byte stream; see the module documentation.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    header: [u8; MAX_HEADER],
    header_len: usize,
    mask: [u8; 4],
    /// Position in the mask of the next payload byte.
    mask_pos: usize,
    control: [u8; MAX_CONTROL_PAYLOAD],
    control_len: usize,
    /// A data message began with FIN clear and has not ended.
    in_message: bool,
    /// Payload bytes of the fragmented message so far.
    message_len: u64,
    /// Longest frame, and longest fragmented message.
    limit: u64,
}

impl Decoder {
    pub fn new(limit: u64) -> Decoder {
        Decoder {
            state: State::ExpectHeader,
            header: [0; MAX_HEADER],
            header_len: 0,
            mask: [0; 4],
            mask_pos: 0,
            control: [0; MAX_CONTROL_PAYLOAD],
            control_len: 0,
            in_message: false,
            message_len: 0,
            limit,
        }
    }

    /// A close frame was decoded; nothing more will be.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Decodes `buf[pos..]`, writing payload bytes at `buf[out..]` (`out <= pos`, so the
    /// payload only ever moves towards the front). Returns at the end of the buffer or right
    /// after a complete control frame.
    pub fn decode(
        &mut self,
        buf: &mut [u8],
        out: usize,
        mut pos: usize,
    ) -> Result<Progress, FrameError> {
        // The contract, enforced: payload never moves past the input it came from.
        let mut out = out.min(pos);
        while pos < buf.len() {
            match self.state {
                State::Closed => {
                    pos = buf.len();
                }
                State::ExpectHeader => {
                    let byte = buf.get(pos).copied().unwrap_or_default();
                    pos += 1;
                    if let Some(slot) = self.header.get_mut(self.header_len) {
                        *slot = byte;
                    }
                    self.header_len += 1;
                    if self.header_len == 2 {
                        self.check_first_bytes()?;
                    }
                    if self.header_len >= 2 && self.header_len == self.header_size() {
                        if let Some(control) = self.start_payload()? {
                            return Ok(Progress { out, pos, control: Some(control) });
                        }
                    }
                }
                State::ExpectData { remaining } => {
                    let available = (buf.len() - pos) as u64;
                    let n = remaining.min(available) as usize;
                    // `out <= pos` and `pos + n <= buf.len()`: both ranges are in bounds.
                    buf.copy_within(pos..pos + n, out);
                    if let Some(payload) = buf.get_mut(out..out + n) {
                        unmask(payload, self.mask, self.mask_pos);
                    }
                    self.mask_pos = (self.mask_pos + n) & 3;
                    out += n;
                    pos += n;
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        State::ExpectHeader
                    } else {
                        State::ExpectData { remaining }
                    };
                }
                State::ExpectControl { opcode, remaining } => {
                    let byte = buf.get(pos).copied().unwrap_or_default();
                    pos += 1;
                    let key = self.mask.get(self.mask_pos & 3).copied().unwrap_or_default();
                    self.mask_pos = (self.mask_pos + 1) & 3;
                    if let Some(slot) = self.control.get_mut(self.control_len) {
                        *slot = byte ^ key;
                    }
                    self.control_len += 1;
                    let remaining = remaining.saturating_sub(1);
                    if remaining == 0 {
                        let control = self.finish_control(opcode)?;
                        return Ok(Progress { out, pos, control: Some(control) });
                    }
                    self.state = State::ExpectControl { opcode, remaining };
                }
            }
        }
        Ok(Progress { out, pos, control: None })
    }

    /// FIN, RSV, opcode, MASK and the 7-bit length: everything that can be refused before the
    /// extended length and the mask arrive.
    fn check_first_bytes(&mut self) -> Result<(), FrameError> {
        let [b0, b1, ..] = self.header;
        let fin = b0 & 0x80 != 0;
        let rsv = b0 & 0x70;
        let op = b0 & 0x0F;
        if rsv != 0 {
            return Err(FrameError::ReservedBits(rsv >> 4));
        }
        if b1 & 0x80 == 0 {
            return Err(FrameError::Unmasked);
        }
        let short_len = b1 & 0x7F;
        match op {
            opcode::CONTINUATION if !self.in_message => Err(FrameError::UnexpectedContinuation),
            opcode::CONTINUATION => Ok(()),
            opcode::TEXT => Err(FrameError::Text),
            opcode::BINARY if self.in_message => Err(FrameError::ExpectedContinuation),
            opcode::BINARY => Ok(()),
            opcode::CLOSE | opcode::PING | opcode::PONG => {
                if !fin || usize::from(short_len) > MAX_CONTROL_PAYLOAD {
                    Err(FrameError::BadControlFrame)
                } else {
                    Ok(())
                }
            }
            other => Err(FrameError::UnknownOpcode(other)),
        }
    }

    /// The whole header's size, known once its first two bytes are in.
    fn header_size(&self) -> usize {
        let extended = match self.header[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + extended + 4
    }

    /// A complete header: checks the length, takes the mask, moves to the payload. A control
    /// frame without payload is complete here already.
    fn start_payload(&mut self) -> Result<Option<Control>, FrameError> {
        let [b0, b1, rest @ ..] = self.header;
        self.header_len = 0;
        let fin = b0 & 0x80 != 0;
        let op = b0 & 0x0F;
        let (length, mask_at) = match b1 & 0x7F {
            126 => (u64::from(u16::from_be_bytes([rest[0], rest[1]])), 2),
            127 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&rest[..8]);
                (u64::from_be_bytes(be), 8)
            }
            short => (u64::from(short), 0),
        };
        if length >> 63 != 0 {
            return Err(FrameError::LengthOverflow);
        }
        self.mask.copy_from_slice(&rest[mask_at..mask_at + 4]);
        self.mask_pos = 0;
        match op {
            opcode::CLOSE | opcode::PING | opcode::PONG => {
                // At most 125 (checked with the first bytes).
                self.control_len = 0;
                if length == 0 {
                    self.state = State::ExpectHeader;
                    return self.finish_control(op).map(Some);
                }
                self.state = State::ExpectControl { opcode: op, remaining: length as u8 };
            }
            _ => {
                // Binary or continuation (the rest were refused with the first bytes).
                let total = self.message_len.saturating_add(length);
                if total > self.limit {
                    return Err(FrameError::TooBig { length: total, limit: self.limit });
                }
                self.in_message = !fin;
                self.message_len = if fin { 0 } else { total };
                self.state = if length == 0 {
                    State::ExpectHeader
                } else {
                    State::ExpectData { remaining: length }
                };
            }
        }
        Ok(None)
    }

    /// A control frame's payload is complete.
    fn finish_control(&mut self, op: u8) -> Result<Control, FrameError> {
        let payload = self.control.get(..self.control_len).unwrap_or_default();
        self.state = State::ExpectHeader;
        match op {
            opcode::PING => {
                let mut bytes = [0u8; MAX_CONTROL_PAYLOAD];
                bytes.get_mut(..payload.len()).unwrap_or_default().copy_from_slice(payload);
                Ok(Control::Ping(ControlPayload { bytes, len: payload.len() as u8 }))
            }
            opcode::PONG => Ok(Control::Pong),
            _ => {
                let code = match payload {
                    [] => None,
                    [_] => return Err(FrameError::BadCloseCode),
                    [hi, lo, reason @ ..] => {
                        let code = u16::from_be_bytes([*hi, *lo]);
                        if !close_code_allowed(code) {
                            return Err(FrameError::BadCloseCode);
                        }
                        if std::str::from_utf8(reason).is_err() {
                            return Err(FrameError::CloseReasonNotUtf8);
                        }
                        Some(code)
                    }
                };
                self.state = State::Closed;
                Ok(Control::Close { code })
            }
        }
    }
}

/// XORs `payload` with the masking key, starting at key position `start` (0..=3): eight
/// bytes at a time, since every byte of a client's payload passes here.
fn unmask(payload: &mut [u8], mask: [u8; 4], start: usize) {
    let mut key = [0u8; 8];
    for (i, k) in key.iter_mut().enumerate() {
        *k = mask[(start + i) & 3];
    }
    let wide = u64::from_ne_bytes(key);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // Eight bytes keep the key's phase: the tail starts at `start` again.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 7];
    }
}

/// Codes a peer may put in a close frame (RFC 6455 7.4.1, 7.4.2; 1004-1006 and 1015 are
/// never sent, 1012-1014 are registered since).
fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The header of an unmasked, unfragmented binary frame of `len` payload bytes: the bytes
/// and how many of them are used.
pub fn binary_header(len: usize) -> ([u8; MAX_SERVER_HEADER], usize) {
    header(opcode::BINARY, len as u64)
}

fn header(op: u8, len: u64) -> ([u8; MAX_SERVER_HEADER], usize) {
    let mut h = [0u8; MAX_SERVER_HEADER];
    h[0] = 0x80 | op;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if len <= u64::from(u16::MAX) {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&len.to_be_bytes());
        (h, 10)
    }
}

/// A whole unmasked control frame (at most 2 + 125 bytes) appended to `out`; a payload over
/// 125 bytes is cut there.
pub fn control_frame(op: u8, payload: &[u8], out: &mut Vec<u8>) {
    let payload = payload.get(..MAX_CONTROL_PAYLOAD).unwrap_or(payload);
    let (h, n) = header(op, payload.len() as u64);
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
}

/// A close frame with `code` appended to `out`.
pub fn close_frame(code: u16, out: &mut Vec<u8>) {
    control_frame(opcode::CLOSE, &code.to_be_bytes(), out);
}

#[cfg(test)]
mod tests;
