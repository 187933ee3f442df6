//! Byte-level tests of the frame codec. Client frames are written out field by field; the mask
//! `37 fa 21 3d` is the one of RFC 6455 5.7's examples.

use super::*;

const LIMIT: u64 = 1024;

/// Decodes all of `input` (answering nothing), collecting payload and control frames.
fn run(decoder: &mut Decoder, input: &[u8]) -> Result<(Vec<u8>, Vec<Control>), FrameError> {
    let mut buf = input.to_vec();
    let mut controls = Vec::new();
    let (mut out, mut pos) = (0, 0);
    loop {
        let progress = decoder.decode(&mut buf, out, pos)?;
        out = progress.out;
        pos = progress.pos;
        match progress.control {
            Some(control) => controls.push(control),
            None => break,
        }
    }
    assert_eq!(pos, buf.len());
    buf.truncate(out);
    Ok((buf, controls))
}

fn decode_all(input: &[u8]) -> Result<(Vec<u8>, Vec<Control>), FrameError> {
    run(&mut Decoder::new(LIMIT), input)
}

/// A masked client frame, for the longer cases (the short ones are literal below).
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![first];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n @ 126..=65535 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// PINGREQ (c0 00) and PINGRESP-like bytes: a two-byte MQTT packet.
#[test]
fn a_masked_binary_frame_gives_its_unmasked_payload() {
    let input = [
        0x82, // FIN, binary
        0x82, // MASK, length 2
        0x37, 0xfa, 0x21, 0x3d, // masking key
        0xf7, 0xfa, // c0 00 (PINGREQ) masked: c0^37, 00^fa
    ];
    assert_eq!(decode_all(&input), Ok((vec![0xc0, 0x00], vec![])));
}

#[test]
fn rfc_6455_masked_hello_example() {
    // RFC 6455 5.7: "A single-frame masked text message" is refused (text), but the same
    // payload in a binary frame decodes to "Hello".
    let text = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    assert_eq!(decode_all(&text), Err(FrameError::Text));
    let binary = [0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    assert_eq!(decode_all(&binary), Ok((b"Hello".to_vec(), vec![])));
}

#[test]
fn one_packet_split_across_frames_and_fragments_joins_up() {
    // PUBLISH "a/b" "xy" QoS 0: 30 07 00 03 61 2f 62 78 79, as three fragments.
    let packet = [0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'x', b'y'];
    let mut input = masked(0x02, &packet[..2]); // binary, FIN clear
    input.extend(masked(0x00, &packet[2..5])); // continuation, FIN clear
    input.extend(masked(0x80, &packet[5..])); // continuation, FIN
    assert_eq!(decode_all(&input), Ok((packet.to_vec(), vec![])));
    // And as separate unfragmented frames (a packet over two messages).
    let mut input = masked(0x82, &packet[..4]);
    input.extend(masked(0x82, &packet[4..]));
    assert_eq!(decode_all(&input), Ok((packet.to_vec(), vec![])));
}

#[test]
fn several_packets_in_one_frame_come_out_in_order() {
    let two_pings = [0xc0, 0x00, 0xc0, 0x00];
    assert_eq!(decode_all(&masked(0x82, &two_pings)), Ok((two_pings.to_vec(), vec![])));
}

#[test]
fn a_frame_fed_one_byte_at_a_time_decodes_the_same() {
    let payload: Vec<u8> = (0..=255u8).collect(); // 16-bit extended length
    let input = masked(0x82, &payload);
    assert_eq!(&input[..4], &[0x82, 0xfe, 0x01, 0x00]); // MASK|126, length 256
    let mut decoder = Decoder::new(LIMIT);
    let mut got = Vec::new();
    for byte in &input {
        let (data, controls) = run(&mut decoder, &[*byte]).unwrap();
        assert!(controls.is_empty());
        got.extend(data);
    }
    assert_eq!(got, payload);
}

#[test]
fn a_ping_between_data_frames_is_returned_with_its_payload() {
    let mut input = masked(0x82, &[0xc0]);
    input.extend([
        0x89, // FIN, ping
        0x82, // MASK, length 2
        0x37, 0xfa, 0x21, 0x3d, // mask
        0x5f, 0x93, // "hi" masked
    ]);
    input.extend(masked(0x82, &[0x00]));
    let (data, controls) = decode_all(&input).unwrap();
    assert_eq!(data, vec![0xc0, 0x00]);
    let [Control::Ping(payload)] = controls.as_slice() else { panic!("{controls:?}") };
    assert_eq!(payload.as_slice(), b"hi");
}

#[test]
fn a_ping_inside_a_fragmented_message_is_allowed() {
    let mut input = masked(0x02, &[0xc0]); // first fragment
    input.extend(masked(0x89, b"")); // ping between fragments (5.4)
    input.extend(masked(0x8a, b"x")); // unsolicited pong
    input.extend(masked(0x80, &[0x00])); // last fragment
    let (data, controls) = decode_all(&input).unwrap();
    assert_eq!(data, vec![0xc0, 0x00]);
    assert_eq!(controls.len(), 2);
    assert_eq!(controls[1], Control::Pong);
}

#[test]
fn a_close_frame_ends_decoding_and_gives_its_code() {
    let mut input = vec![
        0x88, // FIN, close
        0x82, // MASK, length 2
        0x37, 0xfa, 0x21, 0x3d, // mask
        0x34, 0x12, // 03 e8 = 1000 masked
    ];
    input.extend(masked(0x82, &[0xc0, 0x00])); // ignored: after the close
    let mut decoder = Decoder::new(LIMIT);
    let (data, controls) = run(&mut decoder, &input).unwrap();
    assert_eq!(data, Vec::<u8>::new());
    assert_eq!(controls, vec![Control::Close { code: Some(1000) }]);
    assert!(decoder.is_closed());
    assert_eq!(decode_all(&masked(0x88, b"")), Ok((vec![], vec![Control::Close { code: None }])));
}

#[test]
fn bad_close_frames_are_protocol_errors() {
    assert_eq!(decode_all(&masked(0x88, &[0x03])), Err(FrameError::BadCloseCode));
    // 1005 "no status" must not be sent on the wire.
    assert_eq!(decode_all(&masked(0x88, &[0x03, 0xed])), Err(FrameError::BadCloseCode));
    assert_eq!(decode_all(&masked(0x88, &[0x03, 0xe8, 0xff])), Err(FrameError::CloseReasonNotUtf8));
    assert_eq!(FrameError::CloseReasonNotUtf8.close_code().value(), 1007);
}

#[test]
fn an_unmasked_client_frame_is_refused_after_two_bytes() {
    // 82 02 c0 00: what a server would send; a client must mask.
    let mut decoder = Decoder::new(LIMIT);
    let mut buf = [0x82, 0x02];
    assert_eq!(decoder.decode(&mut buf, 0, 0), Err(FrameError::Unmasked));
    assert_eq!(FrameError::Unmasked.close_code().value(), 1002);
}

#[test]
fn a_huge_declared_length_is_refused_before_any_payload() {
    // 64-bit length 2^40, and no payload byte sent.
    let input = [
        0x82, 0xff, // binary, MASK|127
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, // length 2^40
        0x37, 0xfa, 0x21, 0x3d, // mask
    ];
    let error = decode_all(&input).unwrap_err();
    assert_eq!(error, FrameError::TooBig { length: 1 << 40, limit: LIMIT });
    assert_eq!(error.close_code().value(), 1009);
    // The top bit of a 64-bit length is forbidden whatever the limit.
    let mut input = input;
    input[2] = 0x80;
    assert_eq!(run(&mut Decoder::new(u64::MAX), &input), Err(FrameError::LengthOverflow));
}

#[test]
fn the_limit_counts_a_whole_fragmented_message() {
    let half = vec![0u8; 600];
    let mut input = masked(0x02, &half);
    input.extend(masked(0x80, &half));
    assert_eq!(decode_all(&input), Err(FrameError::TooBig { length: 1200, limit: LIMIT }));
    // Exactly the limit passes, and the count starts again with the next message.
    let mut input = masked(0x02, &half);
    input.extend(masked(0x80, &half[..424]));
    input.extend(masked(0x82, &half));
    assert_eq!(decode_all(&input).map(|(d, _)| d.len()), Ok(1624));
}

#[test]
fn framing_rule_violations_map_to_their_close_codes() {
    let cases: &[(&[u8], FrameError, u16)] = &[
        (&[0xc2, 0x80], FrameError::ReservedBits(4), 1002), // RSV1 (no extension agreed)
        (&[0x83, 0x80], FrameError::UnknownOpcode(3), 1002), // reserved data opcode
        (&[0x8b, 0x80], FrameError::UnknownOpcode(0xb), 1002), // reserved control opcode
        (&[0x80, 0x80], FrameError::UnexpectedContinuation, 1002),
        (&[0x09, 0x80], FrameError::BadControlFrame, 1002), // fragmented ping
        (&[0x89, 0xfe], FrameError::BadControlFrame, 1002), // ping of 126+ bytes
        (&[0x81, 0x80], FrameError::Text, 1003),
    ];
    for (input, error, code) in cases {
        assert_eq!(decode_all(input).as_ref(), Err(error), "{input:02x?}");
        assert_eq!(error.close_code().value(), *code);
    }
    // A new binary message while a fragmented one is open.
    let mut input = masked(0x02, &[1]);
    input.extend(masked(0x82, &[2]));
    assert_eq!(decode_all(&input), Err(FrameError::ExpectedContinuation));
}

#[test]
fn empty_frames_carry_nothing_and_break_nothing() {
    let mut input = masked(0x82, b"");
    input.extend(masked(0x02, b""));
    input.extend(masked(0x80, &[0xc0, 0x00]));
    assert_eq!(decode_all(&input), Ok((vec![0xc0, 0x00], vec![])));
}

#[test]
fn server_headers_use_the_shortest_length_form() {
    assert_eq!(binary_header(2).0[..2], [0x82, 0x02]);
    assert_eq!(binary_header(125).0[..2], [0x82, 0x7d]);
    let (h, n) = binary_header(126);
    assert_eq!(&h[..n], &[0x82, 0x7e, 0x00, 0x7e]);
    let (h, n) = binary_header(65536);
    assert_eq!(&h[..n], &[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
    let mut out = Vec::new();
    close_frame(1009, &mut out);
    assert_eq!(out, vec![0x88, 0x02, 0x03, 0xf1]);
    out.clear();
    control_frame(opcode::PONG, b"hi", &mut out);
    assert_eq!(out, vec![0x8a, 0x02, b'h', b'i']);
}

#[test]
fn unmasking_is_right_at_every_length_and_key_phase() {
    // Lengths around the 8-byte steps, fed whole and split at every point (so the key phase
    // carried between calls is exercised too).
    for len in [0usize, 1, 3, 7, 8, 9, 15, 16, 17, 125, 126, 300] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        let frame = masked(0x82, &payload);
        for split in 0..=frame.len() {
            let mut decoder = Decoder::new(LIMIT);
            let (mut got, _) = run(&mut decoder, &frame[..split]).unwrap();
            got.extend(run(&mut decoder, &frame[split..]).unwrap().0);
            assert_eq!(got, payload, "len {len}, split at {split}");
        }
    }
}
