//! Both sides of the TLS transport over loopback, driven by one mio poll loop as the broker
//! drives its connections: certificates made at test time, bytes exchanged through the
//! `Transport` API only.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::super::Transport;
use super::*;
use crate::test_support::TempDir;

/// A test CA and what it signs, written as PEM files into a temp directory.
struct Pki {
    dir: TempDir,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} CA"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages =
            vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        let pki = Pki { dir: TempDir::new(name), ca, ca_key };
        std::fs::write(pki.path("ca.pem"), pki.ca.pem()).unwrap();
        pki
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Writes `NAME.pem` and `NAME.key`, signed by the CA.
    fn issue(&self, name: &str, cn: &str, server: bool) -> (PathBuf, PathBuf) {
        let names = if server { vec!["localhost".to_string()] } else { Vec::new() };
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        if server {
            params.subject_alt_names.push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        }
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![if server {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (cert_path, key_path) =
            (self.path(&format!("{name}.pem")), self.path(&format!("{name}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

fn listener_tls(pki: &Pki, require_certificate: bool) -> ListenerTls {
    let (certfile, keyfile) = pki.issue("server", "edgemq server", true);
    ListenerTls {
        certfile,
        keyfile,
        cafile: Some(pki.path("ca.pem")),
        require_certificate,
        use_identity_as_username: true,
    }
}

/// Two transports on one poll: token 0 is the server side, 1 the client side.
struct Pair {
    poll: Poll,
    events: Events,
    ends: [Transport; 2],
    received: [Vec<u8>; 2],
    /// Each side's error, once it had one.
    failed: [Option<io::Error>; 2],
    identity: Option<Rc<str>>,
}

impl Pair {
    fn connect(server: &TlsServer, client: &TlsClient, host: &str) -> Pair {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = TcpStream::connect(addr).unwrap();
        let client_end = Transport::Tls(Box::new(client.connect(socket, host).unwrap()));
        let deadline = Instant::now() + Duration::from_secs(10);
        let accepted = loop {
            match listener.accept() {
                Ok((socket, _)) => break socket,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no connection accepted");
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        let server_end = Transport::Tls(Box::new(server.accept(accepted).unwrap()));
        let poll = Poll::new().unwrap();
        let mut pair = Pair {
            poll,
            events: Events::with_capacity(16),
            ends: [server_end, client_end],
            received: [Vec::new(), Vec::new()],
            failed: [None, None],
            identity: None,
        };
        for (i, end) in pair.ends.iter_mut().enumerate() {
            let interest = Interest::READABLE | Interest::WRITABLE;
            pair.poll.registry().register(end.socket_mut(), Token(i), interest).unwrap();
        }
        // The client's ClientHello is queued: the loop flushes it like any queued output.
        assert!(pair.ends[1].wants_write());
        let _ = pair.ends[1].flush();
        pair
    }

    /// Reads and flushes both sides as the event loop does, until `done` or the deadline.
    fn run_until(&mut self, done: impl Fn(&Pair) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while !done(self) {
            assert!(Instant::now() < deadline, "not done within 10s");
            self.poll.poll(&mut self.events, Some(Duration::from_millis(100))).unwrap();
            for i in 0..2 {
                if self.failed[i].is_some() {
                    continue;
                }
                loop {
                    match self.ends[i].read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => self.received[i].extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            self.failed[i] = Some(e);
                            break;
                        }
                    }
                }
                if i == 0 && self.identity.is_none() {
                    self.identity = self.ends[0].take_identity();
                }
                if self.failed[i].is_none() {
                    if let Err(e) = self.ends[i].flush() {
                        self.failed[i] = Some(e);
                    }
                }
            }
        }
    }

    /// Writes all of `bytes` from side `from`, as `Connection::flush` does.
    fn send(&mut self, from: usize, bytes: &[u8]) {
        let mut written = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while written < bytes.len() {
            assert!(Instant::now() < deadline, "could not write within 10s");
            match self.ends[from].write(&bytes[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Let the other side read so the socket drains.
                    let before = self.received[1 - from].len();
                    self.run_until(|p| p.received[1 - from].len() > before);
                }
                Err(e) => panic!("write: {e}"),
            }
        }
        let _ = self.ends[from].flush();
    }
}

#[test]
fn client_and_server_exchange_bytes_with_mutual_tls() {
    let pki = Pki::new("tls-pair");
    let server = TlsServer::load("listeners.t", &listener_tls(&pki, true)).unwrap();
    let (certfile, keyfile) = pki.issue("client", "sensor-17", false);
    let settings = TlsClientSettings {
        prefix: "bridge".to_string(),
        cafile: Some(pki.path("ca.pem")),
        certfile: Some(certfile),
        keyfile: Some(keyfile),
    };
    let client = TlsClient::load(&settings).unwrap();
    let mut pair = Pair::connect(&server, &client, "localhost");

    // MQTT CONNECT-sized bytes one way, then 300 KB the other way: several records, more than
    // the TLS buffer limit, so writes meet WouldBlock and resume.
    pair.send(1, b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00");
    pair.run_until(|p| p.received[0].len() == 14);
    assert_eq!(pair.received[0], b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00");
    assert_eq!(pair.identity.as_deref(), Some("sensor-17"));

    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    pair.send(0, &big);
    pair.run_until(|p| p.received[1].len() == big.len());
    assert_eq!(pair.received[1], big);
    assert!(pair.failed.iter().all(Option::is_none), "{:?}", pair.failed);
}

#[test]
fn the_client_checks_the_server_name_and_ip() {
    let pki = Pki::new("tls-names");
    let server = TlsServer::load("listeners.t", &listener_tls(&pki, false)).unwrap();
    let settings = TlsClientSettings {
        prefix: "bridge".to_string(),
        cafile: Some(pki.path("ca.pem")),
        ..TlsClientSettings::default()
    };
    let client = TlsClient::load(&settings).unwrap();

    // By IP address (in the certificate), no client certificate (not required).
    let mut pair = Pair::connect(&server, &client, "127.0.0.1");
    pair.send(1, b"hello");
    pair.run_until(|p| p.received[0] == b"hello");
    assert_eq!(pair.identity, None);

    // A name the certificate does not have: the client refuses the server.
    let mut pair = Pair::connect(&server, &client, "broker.example");
    pair.run_until(|p| p.failed[1].is_some());
    let error = pair.failed[1].as_ref().unwrap();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(error.to_string().contains("certificate"), "{error}");
}

#[test]
fn a_client_of_another_ca_is_refused_and_a_missing_certificate_when_required() {
    let pki = Pki::new("tls-ca");
    let other = Pki::new("tls-other");
    let server = TlsServer::load("listeners.t", &listener_tls(&pki, true)).unwrap();

    // The client trusts another CA: it refuses the server.
    let settings = TlsClientSettings {
        prefix: "bridge".to_string(),
        cafile: Some(other.path("ca.pem")),
        ..TlsClientSettings::default()
    };
    let client = TlsClient::load(&settings).unwrap();
    let mut pair = Pair::connect(&server, &client, "localhost");
    pair.run_until(|p| p.failed[1].is_some());
    assert!(pair.failed[1].as_ref().unwrap().to_string().contains("UnknownIssuer"));

    // No client certificate on a listener that requires one: the server refuses.
    let settings = TlsClientSettings { cafile: Some(pki.path("ca.pem")), ..settings };
    let client = TlsClient::load(&settings).unwrap();
    let mut pair = Pair::connect(&server, &client, "localhost");
    pair.run_until(|p| p.failed[0].is_some());
    let error = pair.failed[0].as_ref().unwrap().to_string();
    assert!(error.contains("TLS handshake failed"), "{error}");
}

#[test]
fn load_errors_name_the_key_and_the_file() {
    let pki = Pki::new("tls-errors");
    let mut files = listener_tls(&pki, false);
    files.certfile = pki.path("missing.pem");
    let e = TlsServer::load("listeners.secure", &files).err().unwrap();
    assert_eq!(e.key, "listeners.secure.certfile");
    assert!(e.to_string().starts_with(&format!(
        "listeners.secure.certfile: {}: cannot read: ",
        pki.path("missing.pem").display()
    )));

    let mut files = listener_tls(&pki, false);
    files.keyfile = pki.path("ca.pem"); // a certificate, no key
    let e = TlsServer::load("listeners.secure", &files).err().unwrap();
    assert_eq!(e.key, "listeners.secure.keyfile");
    assert!(e.reason.contains("no private key"), "{e}");

    let mut files = listener_tls(&pki, false);
    let (_, other_key) = pki.issue("other", "other", true);
    files.keyfile = other_key; // a key that does not match the certificate
    let e = TlsServer::load("listeners.secure", &files).err().unwrap();
    assert_eq!(e.key, "listeners.secure.keyfile", "{e}");

    // A reload that fails keeps the server usable with what it had.
    let mut server = TlsServer::load("listeners.secure", &listener_tls(&pki, false)).unwrap();
    std::fs::write(&server.files().certfile, "garbage").unwrap();
    assert!(server.reload().is_err());
    let settings = TlsClientSettings {
        prefix: "bridge".to_string(),
        cafile: Some(pki.path("ca.pem")),
        ..TlsClientSettings::default()
    };
    let client = TlsClient::load(&settings).unwrap();
    let mut pair = Pair::connect(&server, &client, "localhost");
    pair.send(1, b"still");
    pair.run_until(|p| p.received[0] == b"still");
}
