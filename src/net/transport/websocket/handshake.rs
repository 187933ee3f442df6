//! The WebSocket opening handshake, server side (RFC 6455 4.2), sans I/O: the bytes of an
//! HTTP/1.1 upgrade request in, the 101 answer or an HTTP error out.
//!
//! Contract: [`parse`] looks at a buffer the caller bounds by [`REQUEST_LIMIT`]; it parses with
//! httparse (no allocation: at most [`MAX_HEADERS`] header slices) and never panics. A request
//! that is not complete within the limit is refused with 431; one that is not a WebSocket
//! upgrade to the configured path, with the status that says why (400, 404, 405, 426). The
//! subprotocol chosen is `mqtt`, or `mqttv3.1` for clients that offer only that (MQTT 3.1
//! era libraries); a client that offers neither is refused (MQTT-6.0.0-3 makes `mqtt` the
//! one to offer); a client that offers none at all is served without one, as most brokers do.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// Largest upgrade request, headers included: a browser's request with cookies fits.
pub const REQUEST_LIMIT: usize = 8 * 1024;
/// Most header lines in the request.
const MAX_HEADERS: usize = 32;
/// RFC 6455 1.3.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The subprotocols we speak, preferred first.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// A complete, acceptable upgrade request.
#[derive(Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// Bytes of the request (what follows them is already WebSocket frames).
    pub consumed: usize,
    /// The `101 Switching Protocols` answer.
    pub response: Vec<u8>,
}

/// Why a request was refused: an HTTP status and a one-line reason, sent as the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

impl Refusal {
    /// The HTTP answer; the connection is closed after it.
    pub fn response(&self) -> Vec<u8> {
        let text = match self.status {
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            426 => "Upgrade Required",
            431 => "Request Header Fields Too Large",
            _ => "Error",
        };
        let body = format!("{}\n", self.reason);
        let mut out = format!(
            "HTTP/1.1 {} {text}\r\nConnection: close\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n",
            self.status,
            body.len()
        );
        if self.status == 426 {
            out.push_str("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
        }
        if self.status == 405 {
            out.push_str("Allow: GET\r\n");
        }
        out.push_str("\r\n");
        out.push_str(&body);
        out.into_bytes()
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.reason)
    }
}

const fn refuse(status: u16, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

/// `Ok(None)`: the request is not complete yet (and `buf` is under [`REQUEST_LIMIT`]).
pub fn parse(buf: &[u8], path: &str) -> Result<Option<Upgrade>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let consumed = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= REQUEST_LIMIT => {
            return Err(refuse(431, "upgrade request over 8 KB"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refuse(431, "more than 32 header lines"))
        }
        Err(_) => return Err(refuse(400, "not an HTTP/1.1 request")),
    };
    if consumed > REQUEST_LIMIT {
        return Err(refuse(431, "upgrade request over 8 KB"));
    }
    if request.method != Some("GET") {
        return Err(refuse(405, "only GET upgrades to a WebSocket"));
    }
    if request.version != Some(1) {
        return Err(refuse(400, "a WebSocket upgrade needs HTTP/1.1"));
    }
    let target = request.path.unwrap_or_default();
    let requested = target.split_once('?').map_or(target, |(p, _)| p);
    if requested != path {
        return Err(refuse(404, "no WebSocket endpoint at this path"));
    }
    let headers = request.headers;
    let upgrade = header_tokens(headers, "upgrade").any(|t| t.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return Err(refuse(426, "this is an MQTT over WebSocket endpoint: upgrade to websocket"));
    }
    if !header_tokens(headers, "connection").any(|t| t.eq_ignore_ascii_case("upgrade")) {
        return Err(refuse(400, "Connection: Upgrade missing"));
    }
    if !header_tokens(headers, "sec-websocket-version").any(|t| t == "13") {
        return Err(refuse(426, "only WebSocket version 13 is spoken"));
    }
    let key = header_value(headers, "sec-websocket-key").map(str::trim);
    let key_ok = key.and_then(|k| BASE64.decode(k).ok()).is_some_and(|nonce| nonce.len() == 16);
    let (true, Some(key)) = (key_ok, key) else {
        return Err(refuse(400, "Sec-WebSocket-Key missing or not 16 bytes in base64"));
    };
    let offered: Vec<&str> = header_tokens(headers, "sec-websocket-protocol").collect();
    let subprotocol = if offered.is_empty() {
        None
    } else {
        match SUBPROTOCOLS.iter().find(|ours| offered.contains(ours)) {
            Some(ours) => Some(*ours),
            None => return Err(refuse(400, "no supported subprotocol offered (mqtt, mqttv3.1)")),
        }
    };
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    if let Some(subprotocol) = subprotocol {
        response.push_str("Sec-WebSocket-Protocol: ");
        response.push_str(subprotocol);
        response.push_str("\r\n");
    }
    response.push_str("\r\n");
    Ok(Some(Upgrade { consumed, response: response.into_bytes() }))
}

/// `Sec-WebSocket-Accept` for a client's key (RFC 6455 4.2.2 step 5.4).
pub fn accept_key(key: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(sha1.finalize())
}

/// The first value of a header (names compare case-insensitively).
fn header_value<'a>(headers: &'a [httparse::Header<'a>], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
}

/// The comma-separated tokens of every header line with this name, trimmed.
fn header_tokens<'a>(
    headers: &'a [httparse::Header<'a>],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 1.3's example request, with the MQTT subprotocol.
    const REQUEST: &str = "GET /mqtt HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Protocol: mqtt\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn with(from: &str, to: &str) -> String {
        assert!(REQUEST.contains(from), "{from}");
        REQUEST.replacen(from, to, 1)
    }

    #[test]
    fn the_rfc_example_key_gives_the_rfc_accept_value() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn a_complete_request_is_answered_with_101_and_mqtt() {
        let mut input = REQUEST.as_bytes().to_vec();
        input.extend([0x82, 0x80]); // the first frame may follow at once
        let upgrade = parse(&input, "/mqtt").unwrap().unwrap();
        assert_eq!(upgrade.consumed, REQUEST.len());
        assert_eq!(
            String::from_utf8(upgrade.response).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: mqtt\r\n\r\n"
        );
    }

    #[test]
    fn every_prefix_of_the_request_is_incomplete() {
        for end in 0..REQUEST.len() {
            assert_eq!(parse(&REQUEST.as_bytes()[..end], "/mqtt"), Ok(None), "{end}");
        }
    }

    #[test]
    fn subprotocols_query_strings_and_header_case() {
        let old = with("Sec-WebSocket-Protocol: mqtt", "sec-websocket-protocol: mqttv3.1");
        let response = parse(old.as_bytes(), "/mqtt").unwrap().unwrap().response;
        assert!(String::from_utf8(response).unwrap().contains("Protocol: mqttv3.1\r\n"));
        let both = with("Protocol: mqtt", "Protocol: mqttv3.1, mqtt");
        let response = parse(both.as_bytes(), "/mqtt").unwrap().unwrap().response;
        assert!(String::from_utf8(response).unwrap().contains("Protocol: mqtt\r\n"));
        let none = with("Sec-WebSocket-Protocol: mqtt\r\n", "");
        let response = parse(none.as_bytes(), "/mqtt").unwrap().unwrap().response;
        assert!(!String::from_utf8(response).unwrap().contains("Sec-WebSocket-Protocol"));
        let query = with("GET /mqtt ", "GET /mqtt?token=1 ");
        assert!(parse(query.as_bytes(), "/mqtt").unwrap().is_some());
        let lists = with("Connection: Upgrade", "Connection: keep-alive, Upgrade");
        assert!(parse(lists.as_bytes(), "/mqtt").unwrap().is_some());
    }

    #[test]
    fn refusals_carry_the_status_that_says_why() {
        let cases: [(String, u16); 10] = [
            (with("GET /mqtt", "GET /other"), 404),
            (with("GET /mqtt", "POST /mqtt"), 405),
            (with("HTTP/1.1", "HTTP/1.0"), 400),
            (with("Upgrade: websocket\r\n", ""), 426),
            (with("Connection: Upgrade", "Connection: close"), 400),
            (with("Version: 13", "Version: 8"), 426),
            (with("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="), 400),
            (with("Protocol: mqtt", "Protocol: chat"), 400),
            ("\x16\x03\x01\x02\x00\x01\x00\x01\x03\x03 TLS hello".to_string(), 400),
            ("GET /mqtt HTTP/1.1\r\nX: y\r\n".to_string() + &"A: b\r\n".repeat(40) + "\r\n", 431),
        ];
        for (request, status) in cases {
            let refusal = parse(request.as_bytes(), "/mqtt").unwrap_err();
            assert_eq!(refusal.status, status, "{request:?}: {refusal}");
        }
        let endless = format!("GET /mqtt HTTP/1.1\r\nX: {}", "y".repeat(REQUEST_LIMIT));
        assert_eq!(parse(endless.as_bytes(), "/mqtt").unwrap_err().status, 431);
    }

    #[test]
    fn an_error_response_is_plain_http_with_a_body() {
        let response = refuse(426, "upgrade to websocket").response();
        assert_eq!(
            String::from_utf8(response).unwrap(),
            "HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\nContent-Type: text/plain\r\n\
             Content-Length: 21\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n\
             upgrade to websocket\n"
        );
    }
}
