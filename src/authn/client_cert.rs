// The built-in `client_cert` handler (SPEC A8, A9, F14-F16): the caller is the subject CN
// of a client certificate whose path webpki verified (the TLS connection's, or one a
// trusted proxy forwarded), checked against the intermediate-CA allow-list on that verified
// path, and looked up in the user store.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use http::header::HeaderName;
use http::request::Parts;
use quick_cache::sync::Cache;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use sha2::{Digest, Sha256};

use super::forwarded_cert;
use super::AuthenticationHandler;
use crate::config::{ConfigError, Deployment, ForwardedFormat, SourceMap, Spanned};
use crate::error::AuthError;
use crate::identity::{Principal, QualifiedName, UserStore};
use crate::policy::{CanonicalPath, CLIENT_CERT_HANDLER};

/// The `clientAuth` extended key usage, 1.3.6.1.5.5.7.3.2, DER-encoded.
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// CA certificates client certificates must chain to.
///
/// ```no_run
/// use tower_secure::authn::TrustRoots;
///
/// let roots = TrustRoots::from_pem_file("ca.pem")?;
/// assert!(!roots.is_empty());
/// # Ok::<(), tower_secure::authn::CertificateError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TrustRoots {
    certs: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    infos: Vec<CaInfo>,
}

/// CA certificates that cannot be used: not PEM, not certificates, not CAs, or a file
/// that cannot be read.
///
/// ```
/// let error = tower_secure::authn::TrustRoots::from_pem("not a certificate").unwrap_err();
/// assert!(error.to_string().contains("CERTIFICATE"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CertificateError(String);

impl TrustRoots {
    /// The CA certificates in PEM text (one or more `CERTIFICATE` blocks).
    pub fn from_pem(text: &str) -> Result<Self, CertificateError> {
        Self::parse(text).map_err(CertificateError)
    }

    fn parse(text: &str) -> Result<Self, String> {
        let certs = pem_certificates(text)?;
        let mut anchors = Vec::with_capacity(certs.len());
        let mut infos = Vec::with_capacity(certs.len());
        for cert in &certs {
            let anchor = webpki::anchor_from_trusted_cert(cert).map_err(|e| format!("not a CA certificate: {e}"))?;
            anchors.push(anchor.to_owned());
            infos.push(CaInfo::of(cert)?);
        }
        Ok(Self { certs, anchors, infos })
    }

    /// Reads a PEM file of CA certificates.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, CertificateError> {
        let path = path.as_ref();
        let text = crate::config::read_text(path)
            .map_err(|e| CertificateError(format!("cannot read {}: {e}", path.display())))?;
        Self::from_pem(&text)
    }

    /// How many CA certificates.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// True without any CA certificate.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// The certificates as DER.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }
}

/// Every `CERTIFICATE` block of a PEM text; none is an error.
pub(crate) fn pem_certificates(text: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE in the PEM text".to_owned());
    }
    Ok(certs)
}

/// One CA on a verified path: its common name and SHA-256 fingerprints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaInfo {
    /// The subject CN, when it has exactly one.
    pub common_name: Option<String>,
    /// SHA-256 of the certificate (DER).
    pub cert_sha256: [u8; 32],
    /// SHA-256 of its SubjectPublicKeyInfo (DER).
    pub spki_sha256: [u8; 32],
}

impl CaInfo {
    fn of(cert: &CertificateDer<'_>) -> Result<Self, String> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert).map_err(|e| format!("not a certificate: {e}"))?;
        let names = common_names(&parsed)?;
        Ok(Self {
            common_name: (names.len() == 1).then(|| names[0].clone()),
            cert_sha256: Sha256::digest(cert.as_ref()).into(),
            spki_sha256: Sha256::digest(parsed.public_key().raw).into(),
        })
    }
}

/// The subject CNs, each a string without control characters.
fn common_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<Vec<String>, String> {
    cert.subject()
        .iter_common_name()
        .map(|cn| cn.as_str().map(str::to_owned).map_err(|_| "a CN is not a string".to_owned()))
        .collect()
}

/// A client certificate and what verifying it found, put into each request's extensions by
/// the crate's TLS server (parsed and verified once per connection).
///
/// Handlers may read it: `parts.extensions.get::<ClientCertificate>()`.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    inner: Arc<CertInner>,
}

#[derive(Debug)]
struct CertInner {
    der: CertificateDer<'static>,
    thumbprint: [u8; 32],
    verified: Result<VerifiedCert, String>,
    /// The caller this certificate authenticated as, for the rest of the connection.
    principal: Mutex<Option<CachedPrincipal>>,
}

#[derive(Debug)]
struct VerifiedCert {
    common_names: Vec<String>,
    not_before: i64,
    not_after: i64,
    /// The CAs on the verified path, from the issuer of the certificate up to the anchor.
    issuers: Vec<CaInfo>,
}

#[derive(Debug, Clone)]
struct CachedPrincipal {
    principal: Principal,
    expires: Instant,
    epoch: u64,
}

impl ClientCertificate {
    /// Verifies `chain` (the client's certificate, then the intermediates it sent) against
    /// `roots` at `now`, and parses the certificate. `None` for an empty chain. A chain
    /// that does not verify still gives a certificate, marked unverified with the reason:
    /// the `client_cert` handler refuses it with 401.
    pub fn verify(chain: &[CertificateDer<'_>], roots: &TrustRoots, now: SystemTime) -> Option<Self> {
        let (leaf, intermediates) = chain.split_first()?;
        let verified = verify_path(leaf, intermediates, roots, now);
        if let Err(reason) = &verified {
            tracing::warn!(target: crate::AUDIT_TARGET, reason = %reason, "client certificate not verified");
        }
        let inner = CertInner {
            der: leaf.clone().into_owned(),
            thumbprint: Sha256::digest(leaf.as_ref()).into(),
            verified,
            principal: Mutex::new(None),
        };
        Some(Self { inner: Arc::new(inner) })
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        self.inner.der.as_ref()
    }

    /// SHA-256 of the certificate (RFC 8705's `x5t#S256`, before base64url).
    pub fn thumbprint_sha256(&self) -> [u8; 32] {
        self.inner.thumbprint
    }

    /// True when webpki verified its path to a trust root, for client authentication.
    pub fn is_verified(&self) -> bool {
        self.inner.verified.is_ok()
    }

    /// Why verification failed, if it did.
    pub fn verification_error(&self) -> Option<&str> {
        self.inner.verified.as_ref().err().map(String::as_str)
    }

    /// The subject CNs of a verified certificate.
    pub fn common_names(&self) -> &[String] {
        self.inner.verified.as_ref().map_or(&[], |v| &v.common_names)
    }

    /// The CAs on the verified path, issuer first, trust anchor last.
    pub fn issuers(&self) -> &[CaInfo] {
        self.inner.verified.as_ref().map_or(&[], |v| &v.issuers)
    }

    fn cached(&self, epoch: u64, now: Instant) -> Option<Principal> {
        let slot = self.inner.principal.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref().filter(|c| c.epoch == epoch && c.expires > now).map(|c| c.principal.clone())
    }

    fn remember(&self, principal: Principal, expires: Instant, epoch: u64) {
        let mut slot = self.inner.principal.lock().unwrap_or_else(PoisonError::into_inner);
        *slot = Some(CachedPrincipal { principal, expires, epoch });
    }
}

fn unix_seconds(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// webpki builds and verifies the path (signatures, validity, name constraints, and no CA
/// on it whose EKU extension excludes `clientAuth`); the certificate itself must list
/// `clientAuth` (RFC 5280 4.2.1.12: CAs usually carry no EKU extension, which restricts
/// nothing, so webpki's "required" test cannot be used on the whole path). The facts the
/// handler needs come from that path, never from the list the client sent.
fn verify_path(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &TrustRoots,
    now: SystemTime,
) -> Result<VerifiedCert, String> {
    let end_entity = webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("malformed certificate: {e}"))?;
    let time = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
    let usage = webpki::KeyUsage::required_if_present(EKU_CLIENT_AUTH);
    let path = end_entity
        .verify_for_usage(webpki::ALL_VERIFICATION_ALGS, &roots.anchors, intermediates, time, usage, None, None)
        .map_err(|e| format!("path not verified: {e}"))?;
    let mut issuers =
        path.intermediate_certificates().map(|ca| CaInfo::of(&ca.der())).collect::<Result<Vec<_>, _>>()?;
    let anchor = roots.anchors.iter().position(|a| std::ptr::eq(a, path.anchor())).map(|i| roots.infos[i].clone());
    issuers.extend(anchor);
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("malformed certificate: {e}"))?;
    let client_auth = parsed.extended_key_usage().map_err(|e| format!("malformed extended key usage: {e}"))?;
    if !client_auth.is_some_and(|eku| eku.value.client_auth) {
        return Err("the certificate's extended key usage does not list clientAuth".to_owned());
    }
    Ok(VerifiedCert {
        common_names: common_names(&parsed)?,
        not_before: parsed.validity().not_before.timestamp(),
        not_after: parsed.validity().not_after.timestamp(),
        issuers,
    })
}

/// `[intermediate_cert_validation]`, compiled.
struct AllowList {
    common_names: Vec<String>,
    fingerprints: Vec<[u8; 32]>,
    /// Exempt path prefixes, without a trailing `/`.
    exempt: Vec<String>,
}

impl AllowList {
    fn exempt(&self, path: &str) -> bool {
        self.exempt.iter().any(|prefix| {
            path.strip_prefix(prefix.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    fn allows(&self, issuers: &[CaInfo]) -> bool {
        issuers.iter().any(|ca| {
            ca.common_name.as_ref().is_some_and(|cn| self.common_names.contains(cn))
                || self.fingerprints.iter().any(|f| *f == ca.cert_sha256 || *f == ca.spki_sha256)
        })
    }
}

/// Certificates forwarded by a TLS-terminating proxy.
struct Forwarded {
    header: HeaderName,
    format: ForwardedFormat,
    proxies: Vec<IpAddr>,
    roots: TrustRoots,
    intermediates: Vec<CertificateDer<'static>>,
    /// Verified certificates by SHA-256 of the header value.
    verified: Cache<[u8; 32], ClientCertificate>,
}

/// Client-certificate authentication (the `client_cert` handler), registered by
/// [`crate::SecureLayerBuilder::build`] when the deployment has a `[client_cert]` table.
///
/// ```
/// use tower_secure::authn::ClientCertAuthenticator;
/// use tower_secure::config::{load_users, Deployment};
///
/// let deployment = Deployment::from_toml_str("deployment.toml", "[client_cert]\n")?;
/// let users = std::sync::Arc::new(load_users("users.toml", "")?);
/// assert!(ClientCertAuthenticator::from_config(&deployment, users)?.is_some());
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct ClientCertAuthenticator {
    inner: Arc<HandlerInner>,
}

impl std::fmt::Debug for ClientCertAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertAuthenticator").finish_non_exhaustive()
    }
}

struct HandlerInner {
    store: Arc<dyn UserStore>,
    store_timeout: Duration,
    cache_ttl: Duration,
    /// Bumped by [`ClientCertAuthenticator::clear_cache`]: older remembered callers are
    /// looked up again.
    epoch: AtomicU64,
    allow_list: Option<AllowList>,
    forwarded: Option<Forwarded>,
}

impl ClientCertAuthenticator {
    /// The handler for the deployment's `[client_cert]` and `[intermediate_cert_validation]`
    /// tables, or `None` without a `[client_cert]` table.
    pub fn from_config(deployment: &Deployment, store: Arc<dyn UserStore>) -> Result<Option<Self>, ConfigError> {
        let Some(table) = &deployment.client_cert else { return Ok(None) };
        let source = &deployment.source;
        let config = table.get_ref();
        let forwarded = match (&config.forwarded_header, &config.forwarded_format) {
            (None, None) => {
                // Settings only a forwarded header uses are refused rather than ignored.
                if let Some(file) = &config.intermediates_file {
                    let message = "intermediates_file without forwarded_header: it serves forwarded certificates only";
                    return Err(source.error(file.span(), "intermediates_file", message));
                }
                None
            }
            (None, Some(format)) => {
                let message = "forwarded_format without forwarded_header: name the header the proxy forwards in";
                return Err(source.error(format.span(), "forwarded_format", message));
            }
            (Some(header), _) => Some(forwarded(config, header, source, table.span())?),
        };
        let basic = &deployment.authentication.basic;
        let inner = HandlerInner {
            store,
            store_timeout: Duration::from_secs(basic.store_timeout_seconds.max(1)),
            cache_ttl: Duration::from_secs(basic.cache_ttl_seconds),
            epoch: AtomicU64::new(0),
            allow_list: allow_list(deployment)?,
            forwarded,
        };
        Ok(Some(Self { inner: Arc::new(inner) }))
    }

    /// Forgets every remembered caller (after the users change).
    pub fn clear_cache(&self) {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(forwarded) = &self.inner.forwarded {
            forwarded.verified.clear();
        }
    }
}

fn forwarded(
    config: &crate::config::ClientCertConfig,
    header: &Spanned<String>,
    source: &SourceMap,
    table: std::ops::Range<usize>,
) -> Result<Forwarded, ConfigError> {
    let name = HeaderName::from_bytes(header.get_ref().as_bytes())
        .map_err(|_| source.error(header.span(), "forwarded_header", "not a header name"))?;
    if config.trusted_proxies.is_empty() {
        let message = "a forwarded header needs trusted_proxies: the addresses whose header is believed";
        return Err(source.error(header.span(), "trusted_proxies", message));
    }
    let proxies = config
        .trusted_proxies
        .iter()
        .map(|p| p.get_ref().parse().map_err(|_| source.error(p.span(), "trusted_proxies", "not an IP address")))
        .collect::<Result<Vec<IpAddr>, _>>()?;
    let Some(ca_file) = &config.ca_file else {
        return Err(source.error(table, "ca_file", "a forwarded header needs ca_file: the roots to verify it against"));
    };
    let roots = TrustRoots::from_pem_file(source.resolve(ca_file.get_ref()))
        .map_err(|m| source.error(ca_file.span(), "ca_file", m.to_string()))?;
    let intermediates = match &config.intermediates_file {
        None => Vec::new(),
        Some(file) => crate::config::read_text(source.resolve(file.get_ref()))
            .map_err(|e| e.to_string())
            .and_then(|text| pem_certificates(&text))
            .map_err(|m| source.error(file.span(), "intermediates_file", m))?,
    };
    let Some(format) = config.forwarded_format.as_ref().map(|f| *f.get_ref()) else {
        let message = "a forwarded header needs forwarded_format: rfc9440, pem, pem-urlencoded or xfcc";
        return Err(source.error(header.span(), "forwarded_format", message));
    };
    Ok(Forwarded { header: name, format, proxies, roots, intermediates, verified: Cache::new(1024) })
}

fn allow_list(deployment: &Deployment) -> Result<Option<AllowList>, ConfigError> {
    let config = &deployment.intermediate_cert_validation;
    let Some(enable) = config.enable.as_ref().filter(|enable| *enable.get_ref()) else { return Ok(None) };
    let source = &deployment.source;
    let fingerprints = config
        .cert_fingerprints
        .iter()
        .map(|f| {
            fingerprint(f.get_ref()).ok_or_else(|| source.error(f.span(), "cert_fingerprints", "not a SHA-256 in hex"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let exempt = config
        .exempt_contexts
        .iter()
        .map(|c| match CanonicalPath::parse(c.get_ref()) {
            Ok(path) if path.tenant().is_none() => Ok(path.as_str().trim_end_matches('/').to_owned()),
            _ => Err(source.error(c.span(), "exempt_contexts", "not a canonical path such as `/scim2`")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if config.cert_cns.is_empty() && fingerprints.is_empty() {
        let message = "enable = true with neither cert_cns nor cert_fingerprints would refuse every certificate";
        return Err(source.error(enable.span(), "enable", message));
    }
    Ok(Some(AllowList { common_names: config.cert_cns.clone(), fingerprints, exempt }))
}

/// 64 hex digits, `:` separators allowed.
fn fingerprint(text: &str) -> Option<[u8; 32]> {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn refused(reason: &'static str) -> AuthError {
    AuthError::invalid_credentials(reason)
}

/// The address of the connection's peer, in a request's extensions: the crate's TLS server
/// puts it there; with plain hyper, put it there yourself to use `trusted_proxies`.
///
/// ```
/// use tower_secure::authn::PeerAddress;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(PeerAddress("10.0.0.5:51000".parse()?));
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddress(pub SocketAddr);

/// The peer's IP: [`PeerAddress`], or axum's `ConnectInfo<SocketAddr>` (`axum::serve` with
/// `into_make_service_with_connect_info`).
fn peer_ip(extensions: &http::Extensions) -> Option<std::net::IpAddr> {
    if let Some(peer) = extensions.get::<PeerAddress>() {
        return Some(peer.0.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    None
}

impl HandlerInner {
    /// The certificate this request authenticates with: the TLS connection's, else a
    /// forwarded one from a trusted proxy. `None`: no certificate this handler may use.
    fn certificate(&self, parts: &Parts) -> Option<Result<ClientCertificate, AuthError>> {
        let direct = parts.extensions.get::<ClientCertificate>();
        let forwarded = self.forwarded.as_ref().filter(|f| parts.headers.contains_key(&f.header));
        match (direct, forwarded) {
            (Some(cert), None) => Some(Ok(cert.clone())),
            (Some(cert), Some(_)) => {
                tracing::warn!(target: crate::AUDIT_TARGET, "forwarded certificate ignored: the connection has its own");
                Some(Ok(cert.clone()))
            }
            (None, None) => None,
            (None, Some(forwarded)) => {
                let peer = peer_ip(&parts.extensions);
                if !peer.is_some_and(|ip| forwarded.proxies.contains(&ip)) {
                    tracing::warn!(target: crate::AUDIT_TARGET, peer = ?peer, "forwarded certificate from an untrusted peer ignored");
                    return None;
                }
                Some(forwarded.certificate(parts))
            }
        }
    }

    /// The checks that depend on the request or the time, run on every request: verified,
    /// valid now, issued by an allowed CA (or the path is exempt).
    fn check<'c>(&self, cert: &'c ClientCertificate, parts: &Parts) -> Result<&'c VerifiedCert, AuthError> {
        let verified = cert.inner.verified.as_ref().map_err(|_| refused("certificate not verified"))?;
        let now = unix_seconds(SystemTime::now());
        if now < verified.not_before || now > verified.not_after {
            return Err(refused("certificate not valid now"));
        }
        if let Some(allow) = &self.allow_list {
            // The path is parsed only for a certificate the list does not allow.
            if !allow.allows(&verified.issuers) {
                let path = CanonicalPath::parse(crate::policy::request_path(parts))
                    .map_err(|_| AuthError::invalid_request("bad path"))?;
                if !allow.exempt(path.as_str()) {
                    return Err(refused("certificate not issued by an allowed intermediate CA"));
                }
            }
        }
        Ok(verified)
    }
}

/// The user a verified certificate names: its one CN, as a qualified user name.
fn user_name(verified: &VerifiedCert) -> Result<QualifiedName, AuthError> {
    let [cn] = verified.common_names.as_slice() else {
        return Err(refused("certificate subject needs exactly one CN"));
    };
    QualifiedName::parse(cn).map_err(|_| refused("certificate CN is not a user name"))
}

impl Forwarded {
    fn certificate(&self, parts: &Parts) -> Result<ClientCertificate, AuthError> {
        let mut values = parts.headers.get_all(&self.header).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(AuthError::invalid_request("more than one forwarded certificate header"));
        };
        let key: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        if let Some(cert) = self.verified.get(&key) {
            return Ok(cert);
        }
        let der = forwarded_cert::certificate_der(self.format, value.as_bytes()).map_err(AuthError::invalid_request)?;
        let mut chain = vec![CertificateDer::from(der)];
        chain.extend(self.intermediates.iter().cloned());
        let cert = ClientCertificate::verify(&chain, &self.roots, SystemTime::now())
            .ok_or_else(|| AuthError::invalid_request("empty forwarded certificate"))?;
        self.verified.insert(key, cert.clone());
        Ok(cert)
    }
}

#[async_trait]
impl AuthenticationHandler for ClientCertAuthenticator {
    fn name(&self) -> &str {
        CLIENT_CERT_HANDLER
    }

    fn users_changed(&self) {
        self.clear_cache();
    }

    fn default_priority(&self) -> i32 {
        10
    }

    fn can_handle(&self, request: &Parts) -> bool {
        if request.extensions.get::<ClientCertificate>().is_some() {
            return true;
        }
        let Some(forwarded) = &self.inner.forwarded else { return false };
        if !request.headers.contains_key(&forwarded.header) {
            return false;
        }
        let peer = peer_ip(&request.extensions);
        let trusted = peer.is_some_and(|ip| forwarded.proxies.contains(&ip));
        if !trusted {
            tracing::warn!(target: crate::AUDIT_TARGET, peer = ?peer, "forwarded certificate from an untrusted peer ignored");
        }
        trusted
    }

    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthError> {
        let inner = &self.inner;
        let cert = match inner.certificate(request) {
            Some(cert) => cert?,
            None => return Err(AuthError::internal("client_cert handler called without a certificate")),
        };
        let name = user_name(inner.check(&cert, request)?)?;
        let epoch = inner.epoch.load(Ordering::Acquire);
        if let Some(principal) = cert.cached(epoch, Instant::now()) {
            return Ok(principal);
        }
        let record = super::find_user(&*inner.store, &name, inner.store_timeout).await?;
        let record = match record {
            Some(record) if !record.disabled => record,
            Some(_) => return Err(refused("certificate user is disabled")),
            None => return Err(refused("certificate user unknown")),
        };
        let principal = Principal::builder(record.name, CLIENT_CERT_HANDLER)
            .roles(record.roles)
            .permissions(record.permissions)
            .build();
        cert.remember(principal.clone(), Instant::now() + inner.cache_ttl, epoch);
        Ok(principal)
    }

    /// The connection's certificate already authenticated a caller: answered without a
    /// store look-up (checks that depend on the request or the time run every time; the
    /// CN passed the one-CN and user-name checks before the caller was remembered).
    fn authenticate_now(&self, request: &Parts) -> Option<Result<Principal, AuthError>> {
        let inner = &self.inner;
        let cert = request.extensions.get::<ClientCertificate>()?;
        if let Err(error) = inner.check(cert, request) {
            return Some(Err(error));
        }
        cert.cached(inner.epoch.load(Ordering::Acquire), Instant::now()).map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_and_exempt_prefixes() {
        let hex = "AB".repeat(32);
        assert_eq!(fingerprint(&hex), Some([0xab; 32]));
        let colons: Vec<String> = (0..32).map(|_| "ab".to_owned()).collect();
        assert_eq!(fingerprint(&colons.join(":")), Some([0xab; 32]));
        assert_eq!(fingerprint("abc"), None);
        assert_eq!(fingerprint(&"zz".repeat(32)), None);
        let allow = AllowList { common_names: vec![], fingerprints: vec![], exempt: vec!["/scim2".to_owned()] };
        assert!(allow.exempt("/scim2") && allow.exempt("/scim2/Users"));
        assert!(!allow.exempt("/scim2x") && !allow.exempt("/foo-scim2-bar") && !allow.exempt("/api/scim2"));
    }
}
