//! Client certificates forwarded by a TLS-terminating proxy, over real HTTP on 127.0.0.1
//! (SPEC A8, F16): each configured format (`rfc9440`, `pem`, `pem-urlencoded`, `xfcc`) is
//! accepted from a trusted proxy with a valid chain and parsed fully, so the XFCC attack
//! (another certificate's `Hash` next to the admin's `Cert`) and every way of placing the
//! admin's certificate next to, after or around another are refused with 400 and an audit
//! event that does not quote the header; from an untrusted peer the header is ignored.
//! A real nginx (started here, unprivileged, in a temporary directory) terminates TLS with
//! client-certificate verification and forwards `$ssl_client_escaped_cert`; curl is the
//! client.
//!
//! The PKI is generated once per test binary with rcgen: a root, an intermediate under it
//! (the header carries the leaf alone; the app builds the path with `intermediates_file`),
//! an unknown root, and a server CA for nginx. Every network step has a timeout.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::audit::{Capture, Captured};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use tower_secure::config::{load_users, Deployment};
use tower_secure::{Principal, SecureLayer, AUDIT_TARGET};
use tracing_subscriber::layer::SubscriberExt as _;

/// Every network step (request, child process, readiness wait) is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(15);
const ADMIN_PERMISSION: &str = "/permission/admin";

// ---------------------------------------------------------------------------------------
// PKI: generated once per test binary
// ---------------------------------------------------------------------------------------

type Ca = CertifiedIssuer<'static, KeyPair>;

struct Pki {
    root: Ca,
    intermediate: Ca,
    unknown_root: Ca,
    server_ca: Ca,
    server_cert: String,
    server_key: String,
    alex: Leaf,
    admin: Leaf,
}

/// A client certificate (PEM and DER) and its key.
struct Leaf {
    pem: String,
    der: Vec<u8>,
    key: String,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(generate_pki)
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "tower-secure forwarding tests");
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    params
}

fn root_ca(cn: &str) -> Ca {
    CertifiedIssuer::self_signed(ca_params(cn), KeyPair::generate().unwrap()).unwrap()
}

/// A client certificate for `cn` (`clientAuth`, valid 2020..2100) issued by `issuer`.
fn leaf(cn: &str, issuer: &Ca) -> Leaf {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    Leaf { pem: cert.pem(), der: cert.der().to_vec(), key: key.serialize_pem() }
}

fn generate_pki() -> Pki {
    let root = root_ca("Forwarding Test Root CA");
    let intermediate =
        CertifiedIssuer::signed_by(ca_params("Forwarding Test Intermediate CA"), KeyPair::generate().unwrap(), &root)
            .unwrap();
    let server_ca = root_ca("Forwarding Test Server CA");
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params.distinguished_name = dn("127.0.0.1");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = params.signed_by(&key, &server_ca).unwrap().pem();
    let alex = leaf("alex", &intermediate);
    let admin = leaf("admin", &intermediate);
    Pki {
        unknown_root: root_ca("Unknown Root CA"),
        root,
        intermediate,
        server_ca,
        server_cert,
        server_key: key.serialize_pem(),
        alex,
        admin,
    }
}

// ---------------------------------------------------------------------------------------
// What each proxy sends
// ---------------------------------------------------------------------------------------

/// RFC 9440 `Client-Cert`: `:base64(DER):`.
fn rfc9440(cert: &Leaf) -> String {
    format!(":{}:", STANDARD.encode(&cert.der))
}

/// The PEM on one line, line breaks as spaces.
fn pem_one_line(cert: &Leaf) -> String {
    cert.pem.trim().replace(['\r', '\n'], " ")
}

/// nginx `$ssl_client_escaped_cert`: everything but letters, digits and `-._~` escaped.
fn nginx_escaped(pem: &str) -> String {
    let keep = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    pem.bytes().map(|b| if keep(b) { char::from(b).to_string() } else { format!("%{b:02X}") }).collect()
}

/// Envoy's URL-encoded PEM in XFCC `Cert`.
fn envoy_escaped(pem: &str) -> String {
    pem.replace('\n', "%0A").replace(' ', "%20").replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
}

fn sha256_hex(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect()
}

/// One XFCC element as Envoy writes it for `cert` (`SANITIZE_SET`, Subject/URI/DNS on).
fn xfcc(cert: &Leaf, subject: &str) -> String {
    format!(
        "By=spiffe://cluster.local/ns/edge/sa/envoy;Hash={};Cert=\"{}\";Subject=\"{subject}\";URI=;DNS=client.example",
        sha256_hex(&cert.der),
        envoy_escaped(&cert.pem)
    )
}

/// A configured format, its header, and how a proxy writes a certificate in it.
#[derive(Clone, Copy)]
struct Format {
    name: &'static str,
    header: &'static str,
    write: fn(&Leaf) -> String,
}

const FORMATS: [Format; 4] = [
    Format { name: "rfc9440", header: "client-cert", write: rfc9440 },
    Format { name: "pem", header: "x-client-cert", write: pem_one_line },
    Format { name: "pem-urlencoded", header: "x-ssl-client-cert", write: |c| nginx_escaped(&c.pem) },
    Format { name: "xfcc", header: "x-forwarded-client-cert", write: |c| xfcc(c, "CN=alex,O=x") },
];

fn format_named(name: &str) -> Format {
    FORMATS.into_iter().find(|f| f.name == name).unwrap()
}

// ---------------------------------------------------------------------------------------
// The app
// ---------------------------------------------------------------------------------------

const USERS: &str = r#"
[[role]]
name = "admin"
permissions = ["/permission/admin"]

[[role]]
name = "everyone"
permissions = ["/permission/admin/login"]

[[user]]
name = "alex"
roles = ["everyone"]

[[user]]
name = "admin"
roles = ["admin"]
"#;

/// `[client_cert]` for `format` from `proxy`, the files written into `dir`; `/public` is
/// open, `/admin/**` needs the admin permission, everything else a caller.
fn deployment(dir: &Path, format: Format, proxy: &str) -> String {
    let pki = pki();
    let (ca_file, intermediates_file) = (dir.join("ca.pem"), dir.join("intermediates.pem"));
    std::fs::write(&ca_file, pki.root.pem()).unwrap();
    std::fs::write(&intermediates_file, pki.intermediate.pem()).unwrap();
    format!(
        r#"
[client_cert]
forwarded_header = "{header}"
forwarded_format = "{name}"
trusted_proxies = ["{proxy}"]
ca_file = '{ca}'
intermediates_file = '{intermediates}'

[[resource.access_control]]
context = "/public"
secure = false

[[resource.access_control]]
context = "/admin/**"
permissions = ["{ADMIN_PERMISSION}"]
"#,
        header = format.header,
        name = format.name,
        ca = ca_file.display(),
        intermediates = intermediates_file.display(),
    )
}

/// `name|handler` of the caller.
async fn echo(caller: Principal) -> String {
    format!("{}|{}", caller.name(), caller.authenticated_by())
}

async fn echo_open(caller: Option<Principal>) -> String {
    caller.map_or_else(|| "anonymous".to_owned(), |c| c.name().to_string())
}

/// The app over plain HTTP on 127.0.0.1 (the peer every request comes from), believing
/// `format` from `proxy`.
async fn serve(format: Format, proxy: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let text = deployment(dir.path(), format, proxy);
    let deployment = Deployment::from_toml_str("deployment.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let users = load_users("users.toml", USERS).unwrap();
    let layer = SecureLayer::builder().deployment(deployment).user_store(users).build().unwrap();
    let app = Router::new().route("/public", get(echo_open)).fallback(echo).layer(layer);
    common::serve(app).await
}

struct Reply {
    status: u16,
    body: String,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body: String = self.body.chars().take(200).collect();
        write!(f, "{} {body}", self.status)
    }
}

/// GET `base` + `path` with `headers` (a repeated name is sent twice).
async fn send(base: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = common::client().get(format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("GET {path}: no response: {e:?}"));
    Reply { status: response.status().as_u16(), body: response.text().await.unwrap() }
}

/// A path no other request uses, so that its audit events can be told apart.
fn unique_path(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{prefix}/{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------
// Audit events: every event of this test binary, captured by one global subscriber
// ---------------------------------------------------------------------------------------

/// The global capture (installed on first use; a global default sees every thread).
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(capture.clone())).unwrap();
        capture
    })
}

/// The audit events about `path`.
fn audit_events_for(path: &str) -> Vec<Captured> {
    let events = capture().events();
    events
        .iter()
        .filter(|e| e.target == AUDIT_TARGET && e.fields.get("path").is_some_and(|p| p == path))
        .cloned()
        .collect()
}

/// Asserts that no captured event, on any target, quotes any of `pieces`.
fn assert_no_event_quotes(pieces: &[&str]) {
    let events = capture().events();
    for event in events.iter() {
        for (name, value) in &event.fields {
            for piece in pieces {
                assert!(!value.contains(piece), "event field `{name}` quotes the header ({piece:?}): {event:?}");
            }
        }
    }
}

/// Asserts a 400 refusal of `path` with one audit event saying so, whose reason names
/// `reason_fragment`.
#[track_caller]
fn assert_refused_and_audited(reply: &Reply, path: &str, reason_fragment: &str, what: &str) {
    assert_eq!(reply.status, 400, "{what}: {reply:?}");
    let events = audit_events_for(path);
    assert_eq!(events.len(), 1, "{what}: one audit event for {path}: {events:#?}");
    let fields = &events[0].fields;
    assert_eq!(fields.get("outcome").map(String::as_str), Some("deny"), "{what}: {fields:?}");
    assert_eq!(fields.get("status").map(String::as_str), Some("400"), "{what}: {fields:?}");
    let reason = fields.get("reason").map_or("", String::as_str);
    assert!(reason.contains(reason_fragment), "{what}: reason {reason:?} should say {reason_fragment:?}");
}

// ---------------------------------------------------------------------------------------
// F16: the XFCC attack and the admin-certificate swap
// ---------------------------------------------------------------------------------------

// SPEC F16: the attack corpus's XFCC value, another certificate's Hash and a Subject of
// alice next to the admin's Cert, is refused with 400 and audited without the header;
// the admin's own, consistent element authenticates the admin (control).
#[tokio::test]
async fn f16_xfcc_admin_cert_under_another_hash_is_refused() {
    capture();
    let pki = pki();
    let base = serve(format_named("xfcc"), "127.0.0.1").await;
    let attack = format!(
        "By=spiffe://cluster.local/ns/edge/sa/envoy;Hash={};Subject=\"CN=alice\";Cert=\"{}\"",
        sha256_hex(&pki.alex.der),
        envoy_escaped(&pki.admin.pem)
    );
    let path = unique_path("/admin/attack");
    let reply = send(&base, &path, &[("x-forwarded-client-cert", &attack)]).await;
    assert_refused_and_audited(&reply, &path, "Hash is not the SHA-256 of Cert", "the XFCC attack");
    assert!(!reply.body.contains("alice") && !reply.body.contains("admin"), "nothing reflected: {reply:?}");
    let admin_base64 = STANDARD.encode(&pki.admin.der);
    assert_no_event_quotes(&[&sha256_hex(&pki.alex.der), "CN=alice", &admin_base64[20..60], "spiffe://"]);

    let reply = send(&base, "/admin/x", &[("x-forwarded-client-cert", &xfcc(&pki.admin, "CN=admin"))]).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "admin|client_cert"), "control: the admin's own element");
}

// SPEC F16, A8: the admin's certificate placed next to, after or around alex's, or
// wrapped in text, is refused in every format with 400 (never read as either user).
#[tokio::test]
async fn f16_admin_certificate_swap_is_refused_in_every_format() {
    let pki = pki();
    let (alex, admin) = (&pki.alex, &pki.admin);
    let admin_escaped = envoy_escaped(&admin.pem);
    let cases: [(&str, String, &str); 16] = [
        ("rfc9440", format!("{}, {}", rfc9440(alex), rfc9440(admin)), "a list of two"),
        ("rfc9440", format!("{}{}", rfc9440(alex), rfc9440(admin)), "two byte sequences"),
        ("rfc9440", format!("{};admin={}", rfc9440(alex), rfc9440(admin)), "a parameter"),
        ("pem", format!("{} {}", pem_one_line(alex), pem_one_line(admin)), "two certificates"),
        ("pem", format!("Subject: CN=alex {}", pem_one_line(admin)), "text before"),
        ("pem", format!("{} CN=alex", pem_one_line(admin)), "text after"),
        ("pem-urlencoded", nginx_escaped(&format!("{}{}", alex.pem, admin.pem)), "two certificates"),
        ("pem-urlencoded", format!("alex{}", nginx_escaped(&admin.pem)), "text before"),
        ("pem-urlencoded", format!("{}%0Aalex", nginx_escaped(&admin.pem)), "text after"),
        ("xfcc", format!("{},{}", xfcc(alex, "CN=alex"), xfcc(admin, "CN=admin")), "a second element"),
        ("xfcc", format!("{},{}", xfcc(admin, "CN=admin"), xfcc(alex, "CN=alex")), "a first element"),
        ("xfcc", format!("{};Cert=\"{admin_escaped}\"", xfcc(alex, "CN=alex")), "a second Cert"),
        ("xfcc", format!("{};Hash={}", xfcc(admin, "CN=admin"), sha256_hex(&alex.der)), "a second Hash"),
        ("xfcc", format!("{};Chain=\"{admin_escaped}\"", xfcc(alex, "CN=alex")), "a Chain"),
        ("xfcc", format!("Cert=\"{admin_escaped}\";Subject=\"CN=admin\""), "no Hash"),
        ("xfcc", format!("{};User=admin", xfcc(alex, "CN=alex")), "an unknown key"),
    ];
    let mut servers = BTreeMap::new();
    for name in ["rfc9440", "pem", "pem-urlencoded", "xfcc"] {
        servers.insert(name, serve(format_named(name), "127.0.0.1").await);
    }
    for (name, value, what) in &cases {
        let header = format_named(name).header;
        for path in ["/admin/x", "/api/me"] {
            let reply = send(&servers[name], path, &[(header, value)]).await;
            assert_eq!(reply.status, 400, "{name}, {what}, {path}: {reply:?}");
        }
    }
    // Controls: each certificate alone is its own user.
    for name in ["rfc9440", "pem", "pem-urlencoded", "xfcc"] {
        let f = format_named(name);
        let reply = send(&servers[name], "/api/me", &[(f.header, &(f.write)(alex))]).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "alex|client_cert"), "{name}");
        let reply = send(&servers[name], "/admin/x", &[(f.header, &(f.write)(alex))]).await;
        assert_eq!(reply.status, 403, "{name}: alex is not an admin: {reply:?}");
    }
}

// ---------------------------------------------------------------------------------------
// F16: each format from the trusted proxy; nothing from anyone else
// ---------------------------------------------------------------------------------------

// SPEC F16, A8: each format, written the way its proxy writes it, authenticates the CN's
// user from the trusted proxy (path built with intermediates_file); a certificate from an
// unknown root is 401; text around it is 400 with an audit event; a value in another
// format is 400 (the format is configured, never guessed).
#[tokio::test]
async fn f16_each_format_accepted_from_the_trusted_proxy() {
    capture();
    let pki = pki();
    let foreign = leaf("admin", &pki.unknown_root);
    for f in FORMATS {
        let base = serve(f, "127.0.0.1").await;
        let reply = send(&base, "/admin/x", &[(f.header, &(f.write)(&pki.admin))]).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "admin|client_cert"), "{}", f.name);
        let reply = send(&base, "/public", &[(f.header, &(f.write)(&pki.alex))]).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "alex"), "{}: on an open resource", f.name);

        let reply = send(&base, "/admin/x", &[(f.header, &(f.write)(&foreign))]).await;
        assert_eq!(reply.status, 401, "{}: a chain to an unknown root: {reply:?}", f.name);

        let path = unique_path("/admin/around");
        let around = format!("{} x", (f.write)(&pki.admin));
        let reply = send(&base, &path, &[(f.header, &around)]).await;
        assert_refused_and_audited(&reply, &path, f.name.split('-').next().unwrap_or(f.name), "text after");

        for other in FORMATS.iter().filter(|o| o.name != f.name) {
            let reply = send(&base, "/admin/x", &[(f.header, &(other.write)(&pki.admin))]).await;
            assert_eq!(reply.status, 400, "{} server, {} value: {reply:?}", f.name, other.name);
        }
        // Two headers from the trusted proxy are a bad request too.
        let value = (f.write)(&pki.alex);
        let reply = send(&base, "/api/me", &[(f.header, &value), (f.header, &value)]).await;
        assert_eq!(reply.status, 400, "{}: two headers: {reply:?}", f.name);
    }
}

// SPEC F16, A8: from a peer that is not a trusted proxy, every format's header is ignored
// (the request has no credential: 401, or anonymous on an open resource), and logged.
#[tokio::test]
async fn f16_forwarded_header_from_an_untrusted_peer_is_ignored() {
    let capture = capture();
    let pki = pki();
    for f in FORMATS {
        let base = serve(f, "10.1.2.3").await;
        let path = unique_path("/admin/untrusted");
        let value = (f.write)(&pki.admin);
        let reply = send(&base, &path, &[(f.header, &value)]).await;
        assert_eq!(reply.status, 401, "{}: {reply:?}", f.name);
        let events = audit_events_for(&path);
        assert_eq!(events.len(), 1, "{}: {events:#?}", f.name);
        assert_eq!(events[0].fields.get("status").map(String::as_str), Some("401"));
        let reply = send(&base, "/public", &[(f.header, &value)]).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "anonymous"), "{}", f.name);
    }
    let logged = capture.events().iter().any(|e| {
        e.target == AUDIT_TARGET
            && e.fields
                .get("message")
                .is_some_and(|m| m.contains("forwarded certificate from an untrusted peer ignored"))
    });
    assert!(logged, "the ignored header is logged");
}

// ---------------------------------------------------------------------------------------
// F16: a real nginx in front (pem-urlencoded from $ssl_client_escaped_cert)
// ---------------------------------------------------------------------------------------

/// The nginx binary that `scripts/test` installs; the test fails (never skips) without it.
fn nginx_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join("nginx")).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = on_path.into_iter().chain([PathBuf::from("/usr/sbin/nginx")]).find(|path| path.is_file());
    found.unwrap_or_else(|| {
        panic!("this test needs nginx, which scripts/test installs (Debian: apt-get install nginx): run `scripts/test`")
    })
}

/// An nginx process this test started; killed (by its own id) when dropped.
struct Nginx {
    child: Child,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on 127.0.0.1 (bound, then released for nginx).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// nginx in the foreground, one process, everything under `dir`, on 127.0.0.1: TLS with
/// the server certificate, client certificates verified against the root (optional, the
/// path up to depth 3), `$ssl_client_escaped_cert` forwarded to `app` in `X-SSL-Client-Cert`.
fn nginx_config(dir: &Path, port: u16, app: &str) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        ssl_client_certificate {d}/client-ca.pem;
        ssl_verify_client optional;
        ssl_verify_depth 3;
        location / {{
            proxy_pass {app};
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
        }}
    }}
}}
"#
    )
}

/// Starts nginx in front of `app`; waits (bounded) until it accepts connections. A port
/// taken between [`free_port`] and nginx's bind is retried with another.
fn start_nginx(dir: &Path, app: &str) -> Nginx {
    let pki = pki();
    std::fs::write(dir.join("server.pem"), &pki.server_cert).unwrap();
    std::fs::write(dir.join("server.key"), &pki.server_key).unwrap();
    std::fs::write(dir.join("client-ca.pem"), pki.root.pem()).unwrap();
    let binary = nginx_binary();
    for _ in 0..3 {
        let port = free_port();
        let config = dir.join("nginx.conf");
        std::fs::write(&config, nginx_config(dir, port, app)).unwrap();
        let child = Command::new(&binary)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut nginx = Nginx { child, port };
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return nginx;
            }
            if nginx.child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        assert!(log.contains("Address already in use"), "nginx did not start on port {port}:\n{log}");
        drop(nginx);
    }
    panic!("nginx found no free port in three attempts");
}

/// `curl` GET through nginx with `args`; returns the status and the body.
fn curl(url: &str, dir: &Path, args: &[&str]) -> (u16, String) {
    let server_ca = dir.join("server-ca.pem");
    std::fs::write(&server_ca, pki().server_ca.pem()).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}", "--cacert"])
        .arg(&server_ca)
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl (scripts/test installs it): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "curl {args:?}: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    let (body, status) = stdout.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_owned())
}

// SPEC F16, A8: a real nginx terminates TLS, verifies the client certificate (curl
// presents the leaf and its intermediate) and forwards `$ssl_client_escaped_cert`; the app
// believes it as `pem-urlencoded` from 127.0.0.1: alex and the admin are themselves. A
// client's own header is replaced by nginx (empty without a certificate, so not sent):
// a forged admin certificate gets 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f16_nginx_forwards_ssl_client_escaped_cert() {
    let pki = pki();
    let app = serve(format_named("pem-urlencoded"), "127.0.0.1").await;
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_owned();
    let nginx = tokio::task::spawn_blocking(move || start_nginx(&dir_path, &app)).await.unwrap();
    let base = format!("https://127.0.0.1:{}", nginx.port);

    for (name, cert) in [("alex", &pki.alex), ("admin", &pki.admin)] {
        let (chain, key) = (dir.path().join(format!("{name}.pem")), dir.path().join(format!("{name}.key")));
        std::fs::write(&chain, format!("{}{}", cert.pem, pki.intermediate.pem())).unwrap();
        std::fs::write(&key, &cert.key).unwrap();
        let (chain, key) = (chain.display().to_string(), key.display().to_string());
        let url = format!("{base}/api/me");
        let dir_path = dir.path().to_owned();
        let (status, body) =
            tokio::task::spawn_blocking(move || curl(&url, &dir_path, &["--cert", &chain, "--key", &key]))
                .await
                .unwrap();
        assert_eq!((status, body.as_str()), (200, format!("{name}|client_cert").as_str()), "through nginx as {name}");
    }

    let forged = format!("X-SSL-Client-Cert: {}", nginx_escaped(&pki.admin.pem));
    let url = format!("{base}/admin/x");
    let dir_path = dir.path().to_owned();
    let (status, body) = tokio::task::spawn_blocking(move || curl(&url, &dir_path, &["-H", &forged])).await.unwrap();
    assert_eq!(status, 401, "a client's own header does not pass nginx: {body}");
    drop(nginx);
}

/// The app over plain hyper (no `axum::serve`, so no `ConnectInfo`): each request gets the
/// connection's peer as `PeerAddress` when `tell_peer`, as a hyper user would add it.
async fn serve_with_hyper(format: Format, proxy: &str, tell_peer: bool) -> String {
    use hyper_util::rt::TokioIo;
    use tower::ServiceExt as _;
    use tower_secure::authn::PeerAddress;

    let dir = tempfile::tempdir().unwrap();
    let text = deployment(dir.path(), format, proxy);
    let deployment = Deployment::from_toml_str("deployment.toml", &text).unwrap();
    let users = load_users("users.toml", USERS).unwrap();
    let layer = SecureLayer::builder().deployment(deployment).user_store(users).build().unwrap();
    let app = Router::new().route("/public", get(echo_open)).fallback(echo).layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else { return };
            let app = app.clone();
            let service = hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                if tell_peer {
                    request.extensions_mut().insert(PeerAddress(peer));
                }
                app.clone().oneshot(request)
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    base
}

// SPEC F16, A8, I1: without axum's `serve`, a server that puts the connection's peer into
// the request as `authn::PeerAddress` gets forwarded certificates believed from its
// trusted proxy; without it the peer is unknown and the header is ignored (401).
#[tokio::test]
async fn f16_peer_address_from_plain_hyper() {
    let pki = pki();
    let format = format_named("rfc9440");
    let value = (format.write)(&pki.admin);
    let told = serve_with_hyper(format, "127.0.0.1", true).await;
    let reply = send(&told, "/admin/x", &[(format.header, &value)]).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "admin|client_cert"), "{reply:?}");
    let untold = serve_with_hyper(format, "127.0.0.1", false).await;
    assert_eq!(send(&untold, "/admin/x", &[(format.header, &value)]).await.status, 401);
}
