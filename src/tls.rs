//! A TLS server (rustls on aws-lc) for an axum `Router` or any tower service, with client
//! certificates optional or required. Each connection's certificate is
//! verified and parsed once, after the handshake: the [`ClientCertificate`] (with the path
//! webpki built, or why it did not verify) goes into every request's extensions, and so
//! does the peer's address ([`authn::PeerAddress`](crate::authn::PeerAddress), and with the `axum`
//! feature axum's `ConnectInfo<SocketAddr>`). The feature `tls` does not need `axum`: any
//! tower service of `http::Request<hyper::body::Incoming>` can be served.
//!
//! The handshake accepts any client certificate whose holder proves its key; whether the
//! chain is valid is decided afterwards and answered per request (401 from the
//! `client_cert` handler), so a client learns *why* in an HTTP status instead of a TLS alert.
//! HTTP/1.1 with keep-alive.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use tower_secure::authn::TrustRoots;
//! use tower_secure::tls::{ClientAuth, TlsServer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let roots = TrustRoots::from_pem_file("ca.pem")?;
//! let server = TlsServer::from_pem_files("server.pem", "server.key", ClientAuth::Optional(roots))?;
//! let app: Router = Router::new().route("/", get(|| async { "hello" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! server.serve(listener, app).await?;
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use crate::authn::{pem_certificates, ClientCertificate, PeerAddress, TrustRoots};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether clients present certificates.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// No client certificates are asked for.
    None,
    /// Asked for, not required: clients without one can use other credentials.
    Optional(TrustRoots),
    /// Required: the handshake fails without one.
    Required(TrustRoots),
}

/// A TLS configuration problem (certificate, key or roots).
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(String);

/// Serves a tower service over TLS; see the [module docs](self).
#[derive(Clone)]
pub struct TlsServer {
    acceptor: TlsAcceptor,
    roots: Option<Arc<TrustRoots>>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer").field("client_auth", &self.roots.is_some()).finish_non_exhaustive()
    }
}

impl TlsServer {
    /// The server certificate chain and private key as PEM text (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(cert_chain_pem: &str, key_pem: &str, client_auth: ClientAuth) -> Result<Self, TlsError> {
        let chain = pem_certificates(cert_chain_pem).map_err(TlsError)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| TlsError(format!("not a PEM private key: {e}")))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?;
        let (builder, roots) = match client_auth {
            ClientAuth::None => (builder.with_no_client_auth(), None),
            ClientAuth::Optional(roots) => {
                (builder.with_client_cert_verifier(deferred(&roots, false, &provider)?), Some(roots))
            }
            ClientAuth::Required(roots) => {
                (builder.with_client_cert_verifier(deferred(&roots, true, &provider)?), Some(roots))
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| TlsError(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { acceptor: TlsAcceptor::from(Arc::new(config)), roots: roots.map(Arc::new) })
    }

    /// [`from_pem`](Self::from_pem) with files.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
        client_auth: ClientAuth,
    ) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            crate::config::read_text(path).map_err(|e| TlsError(format!("cannot read {}: {e}", path.display())))
        };
        Self::from_pem(&read(cert_chain.as_ref())?, &read(key.as_ref())?, client_auth)
    }

    /// Accepts connections until the listener fails; each connection runs on its own task.
    /// Handshakes are bounded in time; a failed one closes that connection only.
    pub async fn serve<S, B>(self, listener: TcpListener, service: S) -> std::io::Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a moment, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let server = self.clone();
            let service = service.clone();
            tokio::spawn(async move { server.connection(stream, peer, service).await });
        }
    }

    async fn connection<S, B>(self, stream: tokio::net::TcpStream, peer: SocketAddr, service: S)
    where
        S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
        };
        // Verified and parsed once for the whole connection.
        let certificate = match (&self.roots, tls.get_ref().1.peer_certificates()) {
            (Some(roots), Some(chain)) => ClientCertificate::verify(chain, roots, SystemTime::now()),
            _ => None,
        };
        let per_request = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let extensions = request.extensions_mut();
            if let Some(certificate) = &certificate {
                extensions.insert(certificate.clone());
            }
            extensions.insert(PeerAddress(peer));
            #[cfg(feature = "axum")]
            extensions.insert(axum::extract::ConnectInfo(peer));
            let mut service = service.clone();
            async move {
                std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                service.call(request).await
            }
        });
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(tls), per_request)
            .await;
        if let Err(error) = served {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }
}

/// rustls's webpki verifier for everything but the chain: root hints, and the proof that
/// the client holds the certificate's key. The chain is verified after the handshake.
fn deferred(
    roots: &TrustRoots,
    mandatory: bool,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in roots.certificates() {
        store.add(cert.clone()).map_err(|e| TlsError(format!("not a usable CA certificate: {e}")))?;
    }
    let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| TlsError(e.to_string()))?;
    Ok(Arc::new(DeferredChainVerifier { webpki, mandatory }))
}

#[derive(Debug)]
struct DeferredChainVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    mandatory: bool,
}

impl ClientCertVerifier for DeferredChainVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    /// Deferred: [`ClientCertificate::verify`] builds the path after the handshake and keeps
    /// the outcome; nothing trusts the certificate before that.
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
