//! TLS 1.2 and 1.3 over a non-blocking socket with rustls (`ring` provider), both sides: the
//! server side for `kind = "tls"` listeners and the client side for outbound connections (the
//! bridge). No threads, no blocking: rustls is a state machine fed with the socket's bytes
//! when the loop reads, and drained into the socket when the loop writes.
//!
//! - [`TlsServer`] is a listener's TLS configuration, built from its PEM files at start-up and
//!   rebuilt on SIGHUP ([`TlsServer::reload`]: a bad file keeps the configuration in use).
//! - [`TlsClient`] is a client configuration: server verification against a CA file or the
//!   system's CA bundle, an optional client certificate for mutual TLS, SNI from the host name.
//! - [`TlsStream`] is one connection, either side; the `Transport` enum owns it.
//!
//! What a stream buffers is bounded by `TLS_BUFFER_LIMIT` each way (plus one TLS record).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

use super::{TlsError, TLS_BUFFER_LIMIT};
use crate::config::ListenerTls;

mod x509;

/// This build speaks TLS.
pub const AVAILABLE: bool = true;

/// TLS 1.3 first, then 1.2: what Mosquitto 2 accepts by default too.
static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// CA bundles of the common Linux distributions, tried in order when no CA file is configured
/// (after `SSL_CERT_FILE`): Debian/Ubuntu/Alpine/OpenWrt, Fedora/RHEL, others.
const SYSTEM_CA_BUNDLES: [&str; 3] =
    ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ---------------------------------------------------------------------------------------------
// Loading PEM files

fn file_error(key: &str, file: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError { key: key.to_string(), file: Some(file.to_path_buf()), reason: reason.to_string() }
}

/// Every certificate in a PEM file; at least one.
fn load_certs(key: &str, file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(file)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(key, file, pem_reason(&e)))?;
    if certs.is_empty() {
        return Err(file_error(key, file, "no certificate (\"BEGIN CERTIFICATE\") in the file"));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
fn load_key(key: &str, file: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(file).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            file_error(key, file, "no private key (\"BEGIN PRIVATE KEY\") in the file")
        }
        other => file_error(key, file, pem_reason(&other)),
    })
}

fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => format!("cannot read: {io}"),
        other => format!("not a valid PEM file: {other}"),
    }
}

/// A root store of every certificate in a PEM file.
fn load_roots(key: &str, file: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(key, file)? {
        roots.add(cert).map_err(|e| file_error(key, file, format!("bad CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

// ---------------------------------------------------------------------------------------------
// Server side

/// A TLS listener's configuration: its files and the rustls configuration built from them.
pub struct TlsServer {
    /// `listeners.NAME`, the prefix of the keys errors name.
    prefix: String,
    files: ListenerTls,
    config: Arc<ServerConfig>,
}

impl TlsServer {
    /// Reads the listener's certificate chain, key and CA file. `prefix` is `listeners.NAME`.
    pub fn load(prefix: &str, files: &ListenerTls) -> Result<TlsServer, TlsError> {
        let config = server_config(prefix, files)?;
        Ok(TlsServer { prefix: prefix.to_string(), files: files.clone(), config })
    }

    /// Reads the files again; on success new connections use them (established ones keep what
    /// they negotiated), on failure the configuration in use stays.
    pub fn reload(&mut self) -> Result<(), TlsError> {
        self.config = server_config(&self.prefix, &self.files)?;
        Ok(())
    }

    pub fn files(&self) -> &ListenerTls {
        &self.files
    }

    /// A server-side stream over a freshly accepted socket.
    pub fn accept(&self, socket: TcpStream) -> io::Result<TlsStream> {
        let connection = ServerConnection::new(Arc::clone(&self.config))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(TlsStream::new(socket, rustls::Connection::Server(connection)))
    }
}

fn server_config(prefix: &str, files: &ListenerTls) -> Result<Arc<ServerConfig>, TlsError> {
    let certfile_key = format!("{prefix}.certfile");
    let keyfile_key = format!("{prefix}.keyfile");
    let chain = load_certs(&certfile_key, &files.certfile)?;
    let key = load_key(&keyfile_key, &files.keyfile)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError { key: prefix.to_string(), file: None, reason: e.to_string() })?;
    let builder = match &files.cafile {
        None => builder.with_no_client_auth(),
        Some(cafile) => {
            let cafile_key = format!("{prefix}.cafile");
            let roots = load_roots(&cafile_key, cafile)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier =
                if files.require_certificate { verifier } else { verifier.allow_unauthenticated() };
            let verifier =
                verifier.build().map_err(|e| file_error(&cafile_key, cafile, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        file_error(&keyfile_key, &files.keyfile, format!("{e} (with {certfile_key})"))
    })?;
    Ok(Arc::new(config))
}

// ---------------------------------------------------------------------------------------------
// Client side

/// Where a client configuration's files are, and the config keys that name them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsClientSettings {
    /// The prefix of the keys errors name (e.g. `bridges.NAME`).
    pub prefix: String,
    /// CAs to verify the server with; `None` = the system's CA bundle.
    pub cafile: Option<PathBuf>,
    /// A client certificate chain and its key, for servers that ask for one (mutual TLS).
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
}

/// A client configuration, shared by every connection made with it.
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl TlsClient {
    pub fn load(settings: &TlsClientSettings) -> Result<TlsClient, TlsError> {
        let prefix = &settings.prefix;
        let roots = match &settings.cafile {
            Some(cafile) => load_roots(&format!("{prefix}.cafile"), cafile)?,
            None => system_roots(prefix)?,
        };
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| TlsError { key: prefix.clone(), file: None, reason: e.to_string() })?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsError { key: prefix.clone(), file: None, reason: e.to_string() })?
            .with_webpki_verifier(verifier);
        let config = match (&settings.certfile, &settings.keyfile) {
            (None, None) => builder.with_no_client_auth(),
            (Some(certfile), Some(keyfile)) => {
                let keyfile_key = format!("{prefix}.keyfile");
                let chain = load_certs(&format!("{prefix}.certfile"), certfile)?;
                let key = load_key(&keyfile_key, keyfile)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| file_error(&keyfile_key, keyfile, e))?
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(TlsError {
                    key: format!("{prefix}.certfile"),
                    file: None,
                    reason: format!("{prefix}.certfile and {prefix}.keyfile go together"),
                })
            }
        };
        Ok(TlsClient { config: Arc::new(config) })
    }

    /// A client-side stream over `socket` (connected or still connecting) to `host`: the name
    /// sent as SNI and checked against the server's certificate (an IP address works too).
    pub fn connect(&self, socket: TcpStream, host: &str) -> io::Result<TlsStream> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?}: {e}")))?;
        let connection = ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(TlsStream::new(socket, rustls::Connection::Client(connection)))
    }
}

/// The system's CA bundle: `SSL_CERT_FILE`, else the first of [`SYSTEM_CA_BUNDLES`] present.
fn system_roots(prefix: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let key = format!("{prefix}.cafile");
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let found = from_env
        .or_else(|| SYSTEM_CA_BUNDLES.iter().map(PathBuf::from).find(|path| path.is_file()));
    let Some(bundle) = found else {
        return Err(TlsError {
            key,
            file: None,
            reason: format!(
                "not set and no system CA bundle found ({}); set it",
                SYSTEM_CA_BUNDLES.join(", ")
            ),
        });
    };
    let certs = load_certs(&key, &bundle)?;
    let mut roots = RootCertStore::empty();
    // A system bundle may hold a certificate webpki cannot use; the rest still count.
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(file_error(&key, &bundle, "no usable CA certificate in the system bundle"));
    }
    Ok(Arc::new(roots))
}

// ---------------------------------------------------------------------------------------------
// One connection

/// A TLS connection over a non-blocking socket.
pub struct TlsStream {
    socket: TcpStream,
    tls: rustls::Connection,
    /// The socket reached its end (rustls reports it as a clean close or an unexpected EOF).
    socket_eof: bool,
    /// The client certificate's name was handed out (or there is none to hand).
    identity_taken: bool,
}

impl TlsStream {
    fn new(socket: TcpStream, mut tls: rustls::Connection) -> TlsStream {
        tls.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        TlsStream { socket, tls, socket_eof: false, identity_taken: false }
    }

    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    pub fn socket_mut(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// The handshake is done.
    pub fn is_established(&self) -> bool {
        !self.tls.is_handshaking()
    }

    /// Decrypted bytes; `WouldBlock` once the socket is drained and no plaintext is left.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // UnexpectedEof: the peer closed the socket without a close_notify.
                Err(e) => return Err(e),
            }
            if self.socket_eof {
                return Ok(0);
            }
            match self.tls.read_tls(&mut self.socket) {
                Ok(0) => self.socket_eof = true,
                Ok(_) => {}
                Err(e) => return Err(e), // WouldBlock and Interrupted included
            }
            if let Err(e) = self.tls.process_new_packets() {
                // rustls queued an alert for the peer: a best-effort write, then the error.
                let _ = self.flush();
                let why = if self.tls.is_handshaking() {
                    format!("TLS handshake failed: {e}")
                } else {
                    format!("TLS error: {e}")
                };
                return Err(io::Error::new(io::ErrorKind::InvalidData, why));
            }
            // Handshake answers (or a key update) go out as soon as they exist; what the
            // socket does not take now stays queued (`wants_write`).
            match self.flush() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Encrypts what fits in the TLS buffer and writes what the socket takes.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Older records first, so the buffer has room.
        let drained = self.flush()?;
        let taken = self.tls.writer().write(buf)?;
        if taken == 0 && !buf.is_empty() {
            // The buffer is full and the socket did not take its bytes: wait for WRITABLE.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if drained {
            // Best effort now; `wants_write` says if something stays.
            let _ = self.flush();
        }
        Ok(taken)
    }

    /// Writes queued TLS records until none is left (`true`) or the socket is full (`false`).
    pub fn flush(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    pub fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }

    /// The Common Name of the peer's verified certificate, once, after the handshake.
    pub fn take_identity(&mut self) -> Option<Rc<str>> {
        if self.identity_taken || self.tls.is_handshaking() {
            return None;
        }
        self.identity_taken = true;
        let leaf = self.tls.peer_certificates()?.first()?;
        x509::common_name(leaf.as_ref()).map(Rc::from)
    }

    /// Queues a close_notify alert and writes it if the socket takes it.
    pub fn close_notify(&mut self) {
        self.tls.send_close_notify();
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests;
