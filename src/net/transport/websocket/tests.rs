//! A `WsStream` over a real loopback socket: the handshake, frames both ways, ping, close.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;

const REQUEST: &[u8] = b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A client socket and the server's `WsStream` for it.
fn pair() -> (std::net::TcpStream, WsStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    accepted.set_nonblocking(true).unwrap();
    let settings = Rc::new(WsSettings { path: "/mqtt".to_string(), max_message: 1024 });
    let ws = WsStream::accept(Transport::Tcp(TcpStream::from_std(accepted)), settings).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (client, ws)
}

/// Reads from the server stream until it gives bytes, an end or an error.
fn server_read(ws: &mut WsStream) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 4096];
    loop {
        match ws.read(&mut buf) {
            Ok(n) => return Ok(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

fn client_read(client: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n];
    client.read_exact(&mut got).unwrap();
    got
}

const ANSWER: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
    Sec-WebSocket-Protocol: mqtt\r\n\r\n";

#[test]
fn upgrade_then_mqtt_bytes_both_ways_with_a_ping_in_between() {
    let (mut client, mut ws) = pair();
    // The request and the first frame in one write: a client need not wait for the 101.
    let mut input = REQUEST.to_vec();
    input.extend([0x82, 0x82, 0x37, 0xfa, 0x21, 0x3d, 0xf7, 0xfa]); // c0 00 masked
    client.write_all(&input).unwrap();
    assert_eq!(server_read(&mut ws).unwrap(), vec![0xc0, 0x00]);
    assert_eq!(client_read(&mut client, ANSWER.len()), ANSWER);
    // A ping is answered with its payload.
    client.write_all(&[0x89, 0x82, 0x37, 0xfa, 0x21, 0x3d, 0x5f, 0x93]).unwrap(); // "hi"
    client.write_all(&[0x82, 0x81, 0x37, 0xfa, 0x21, 0x3d, 0x37]).unwrap(); // 00
    assert_eq!(server_read(&mut ws).unwrap(), vec![0x00]);
    while ws.wants_write() {
        ws.flush().unwrap();
    }
    assert_eq!(client_read(&mut client, 4), vec![0x8a, 0x02, b'h', b'i']);
    // Output is one binary frame per write.
    assert_eq!(ws.write(&[0xd0, 0x00]).unwrap(), 2); // PINGRESP
    ws.flush().unwrap();
    assert_eq!(client_read(&mut client, 4), vec![0x82, 0x02, 0xd0, 0x00]);
    // The peer's close is echoed and ends the stream.
    client.write_all(&[0x88, 0x82, 0x37, 0xfa, 0x21, 0x3d, 0x34, 0x12]).unwrap(); // 1000
    assert_eq!(server_read(&mut ws).unwrap(), Vec::<u8>::new());
    ws.close();
    assert_eq!(client_read(&mut client, 4), vec![0x88, 0x02, 0x03, 0xe8]);
    assert_eq!(client.read(&mut [0u8; 1]).unwrap(), 0, "then the socket closes");
}

#[test]
fn an_unmasked_frame_gets_close_1002_and_a_plain_get_gets_http_426() {
    let (mut client, mut ws) = pair();
    client.write_all(REQUEST).unwrap();
    client.write_all(&[0x82, 0x02, 0xc0, 0x00]).unwrap();
    let error = server_read(&mut ws).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    assert_eq!(client_read(&mut client, ANSWER.len()), ANSWER);
    assert_eq!(client_read(&mut client, 4), vec![0x88, 0x02, 0x03, 0xea]); // 1002
    assert!(ws.write(&[0xd0, 0x00]).is_err(), "nothing after the close frame");

    let (mut client, mut ws) = pair();
    client.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let error = server_read(&mut ws).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    ws.close();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{answer}");
}

#[test]
fn output_waits_in_a_bounded_buffer_when_the_socket_is_full() {
    let (mut client, mut ws) = pair();
    client.write_all(REQUEST).unwrap();
    client.write_all(&[0x82, 0x81, 0x37, 0xfa, 0x21, 0x3d, 0x37]).unwrap(); // 00
    assert_eq!(server_read(&mut ws).unwrap(), vec![0x00]);
    let chunk = vec![0x55u8; 16 * 1024];
    let mut taken = 0usize;
    loop {
        match ws.write(&chunk) {
            Ok(n) => taken += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
        assert!(taken < 64 << 20, "the client reads nothing: writes must block");
    }
    assert!(ws.out.len() - ws.written <= WS_BUFFER_LIMIT, "{}", ws.out.len());
}
