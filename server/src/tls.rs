//! TLS in the server itself (`--tls-cert`, `--tls-key`): the page over
//! https and workers over wss without a reverse proxy in front.
//!
//! The certificate and key are read at start and again by
//! [`CertFiles::reload`] (the binary does so on SIGHUP): a renewed
//! certificate is served to new connections without a restart, and a
//! reload that fails keeps the one being served.
//!
//! Handshakes run one task per connection, each bounded by the
//! configuration's `handshake_timeout`, at most [`MAX_HANDSHAKES`] at once
//! and at most `max_connections_per_ip` from one address (more are closed
//! at once), so clients that open connections and say nothing hold up
//! nobody else; finished connections are handed to axum through
//! `TlsListener`.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// TLS handshakes in progress at once; further connections wait in the
/// kernel's accept queue.
pub const MAX_HANDSHAKES: usize = 1024;

/// Why a certificate chain and key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or is not PEM.
    #[error("cannot read the certificate chain {}: {source}", path.display())]
    Cert {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: pem::Error,
    },
    /// The certificate file holds no `CERTIFICATE` block.
    #[error("{} holds no PEM certificate", .0.display())]
    NoCert(PathBuf),
    /// The key file could not be read or holds no private key.
    #[error("cannot read a private key from {}: {source}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: pem::Error,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("the certificate and key are not usable together: {0}")]
    Config(#[from] rustls::Error),
}

/// A certificate chain and key read from PEM files: the chain with the
/// server's certificate first, then any intermediates (as ACME clients
/// write `fullchain.pem`), and its private key (PKCS#8, PKCS#1 or SEC1).
#[derive(Debug)]
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertFiles {
    /// Reads both files; refuses a key that does not match the certificate.
    pub fn open(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        // One named provider: a build linking two (as the tests do) makes
        // rustls refuse to guess.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = read(cert, key, &provider)?;
        Ok(Arc::new(CertFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
            current: RwLock::new(Arc::new(current)),
        }))
    }

    /// Reads the files again; new handshakes use what they hold now. On an
    /// error the certificate served so far stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(read(&self.cert, &self.key, &self.provider)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// The server configuration serving these files (HTTP/1.1, which
    /// WebSockets use; TLS 1.2 and 1.3).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|p| p.into_inner()),
        ))
    }
}

fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert_err = |source| TlsError::Cert {
        path: cert.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(cert_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(cert_err)?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(cert.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_owned(),
        source,
    })?;
    let certified = CertifiedKey::from_der(certs, key, provider)?;
    // `from_der` lets a key whose match it cannot tell through; refuse it,
    // as `with_single_cert` would.
    certified.keys_match()?;
    Ok(certified)
}

/// Connections that have completed their TLS handshake, for `axum::serve`.
#[derive(Debug)]
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    /// Accepts TCP connections and starts their handshakes; stopped when
    /// the listener is dropped (the server stopped serving).
    _acceptor: AbortOnDrop,
}

impl TlsListener {
    pub(crate) fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        timeout: Duration,
        max_per_ip: usize,
    ) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        // Handshakes in progress (the semaphore bounds their total).
        let per_ip = Arc::new(crate::ConnCounter::default());
        let task = tokio::spawn(async move {
            loop {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                let (tcp, peer) = match listener.accept().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: pause rather
                        // than spin (as axum does for plain TCP).
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(_counted) = per_ip.acquire(peer.ip(), usize::MAX, max_per_ip) else {
                    tracing::debug!(%peer, "too many TLS handshakes from this address; closed");
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let (_slot, _counted) = (slot, _counted);
                    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            local,
            _acceptor: AbortOnDrop(task),
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accepting task ended (it only does when aborted): no more
            // connections, which `serve` waits for until it shuts down.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Answers every plain-http request on `listener` with a permanent redirect
/// (308: a POST stays a POST) to the same host, path and query over https
/// on `https_port` (`--redirect-http`, e.g. port 80 beside TLS on 443), so
/// a volunteer who types the bare host name lands on the page. Runs until
/// the process ends; it holds no state. Its connections are limited and
/// timed out as the server's are (`config`).
pub async fn redirect_to_https(
    listener: TcpListener,
    https_port: u16,
    config: &crate::Config,
) -> io::Result<()> {
    let app = axum::Router::new()
        .fallback(redirect)
        .with_state(https_port);
    let listener =
        crate::listen::Guarded::new(listener, crate::listen::Limits::of(config), Arc::default());
    axum::serve(listener, app).await
}

async fn redirect(
    axum::extract::State(port): axum::extract::State<u16>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    match https_location(&headers, &uri, port) {
        Some(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            "this address only redirects to https, and needs a valid Host header to do so\n",
        )
            .into_response(),
    }
}

/// `https://<Host without its port>[:port]<path and query>`; `None` for a
/// missing or malformed Host.
fn https_location(
    headers: &axum::http::HeaderMap,
    uri: &axum::http::Uri,
    port: u16,
) -> Option<String> {
    let host = headers.get(axum::http::header::HOST)?.to_str().ok()?;
    let authority: axum::http::uri::Authority = host.parse().ok()?;
    // A Host header is host[:port], nothing else.
    let port_part = authority.as_str().strip_prefix(authority.host())?;
    let port_ok = port_part.is_empty()
        || port_part
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !port_ok || authority.host().is_empty() {
        return None;
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Some(match port {
        443 => format!("https://{}{path}", authority.host()),
        _ => format!("https://{}:{port}{path}", authority.host()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_host_path_and_query() {
        let location = |host: &str, uri: &str, port: u16| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert(
                axum::http::header::HOST,
                host.parse().expect("a header value"),
            );
            https_location(&headers, &uri.parse().expect("a uri"), port)
        };
        for (host, uri, port, want) in [
            (
                "factor.example.org",
                "/",
                443,
                "https://factor.example.org/",
            ),
            (
                "factor.example.org:80",
                "/api/jobs?x=1",
                8443,
                "https://factor.example.org:8443/api/jobs?x=1",
            ),
            ("[::1]:80", "/dashboard", 443, "https://[::1]/dashboard"),
            ("127.0.0.1", "/", 8443, "https://127.0.0.1:8443/"),
        ] {
            assert_eq!(location(host, uri, port).as_deref(), Some(want));
        }
        for bad in ["", "user@evil.example", "a b", "host:port", "/path"] {
            assert_eq!(location(bad, "/", 443), None, "{bad:?}");
        }
        assert_eq!(
            https_location(
                &axum::http::HeaderMap::new(),
                &"/".parse().expect("a uri"),
                443
            ),
            None
        );
    }
}
