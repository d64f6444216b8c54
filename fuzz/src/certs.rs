//! The fixture PKI: a root, two intermediates under it (one allow-listed), an unknown
//! root, and the key every generated leaf uses. Generated once by
//! `cargo run --example make_corpus` (rcgen) and kept in `fuzz/fixtures/`, so seeds and
//! crash reproducers verify against the same root in every run.

use std::path::PathBuf;
use std::sync::OnceLock;

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use tower_secure::authn::TrustRoots;

/// The CN of the intermediate the allow-list names.
pub const ALLOWED_CN: &str = "Allowed Intermediate CA";
/// The CN of the intermediate it does not.
pub const OTHER_CN: &str = "Other Intermediate CA";
/// The root's CN.
pub const ROOT_CN: &str = "Fuzz Root CA";
/// The unknown root's CN.
pub const UNKNOWN_CN: &str = "Unknown Root CA";

/// `fuzz/fixtures/<name>`.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// The text of a fixture file.
pub fn fixture(name: &str) -> String {
    let path = fixture_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e} (run `cargo run --manifest-path fuzz/Cargo.toml --example make_corpus`)", path.display())
    })
}

/// The first certificate of a PEM text, DER.
pub fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM certificate")
}

/// The loaded fixture PKI.
pub struct Pki {
    /// The root the layer trusts.
    pub roots: TrustRoots,
    /// The root, DER.
    pub root_der: CertificateDer<'static>,
    /// The root as an issuer.
    pub root: Issuer<'static, KeyPair>,
    /// The allow-listed intermediate, DER.
    pub allowed_der: CertificateDer<'static>,
    /// The allow-listed intermediate as an issuer.
    pub allowed: Issuer<'static, KeyPair>,
    /// The other intermediate, DER.
    pub other_der: CertificateDer<'static>,
    /// The other intermediate as an issuer.
    pub other: Issuer<'static, KeyPair>,
    /// The unknown root, DER.
    pub unknown_der: CertificateDer<'static>,
    /// The unknown root as an issuer.
    pub unknown: Issuer<'static, KeyPair>,
    /// The key of every generated leaf.
    pub leaf_key: KeyPair,
}

fn issuer(name: &str) -> Issuer<'static, KeyPair> {
    let key = KeyPair::from_pem(&fixture(&format!("{name}.key"))).expect("a fixture key");
    Issuer::from_ca_cert_pem(&fixture(&format!("{name}.pem")), key).expect("a fixture CA")
}

/// The fixture PKI, loaded once.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| Pki {
        roots: TrustRoots::from_pem(&fixture("root.pem")).expect("the fixture root"),
        root_der: der(&fixture("root.pem")),
        root: issuer("root"),
        allowed_der: der(&fixture("allowed.pem")),
        allowed: issuer("allowed"),
        other_der: der(&fixture("other.pem")),
        other: issuer("other"),
        unknown_der: der(&fixture("unknown.pem")),
        unknown: issuer("unknown"),
        leaf_key: KeyPair::from_pem(&fixture("leaf.key")).expect("the fixture leaf key"),
    })
}

/// A distinguished name with an organisation and this CN.
pub fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "tower-secure fuzz");
    dn.push(DnType::CommonName, cn);
    dn
}

/// A valid client-certificate template: CN `cn`, `clientAuth`, valid 2020..2100.
pub fn client_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    params
}

/// `params` signed by `issuer` for the fixture leaf key, DER.
pub fn issue(params: &CertificateParams, issuer: &Issuer<'_, KeyPair>) -> Option<CertificateDer<'static>> {
    params.signed_by(&pki().leaf_key, issuer).ok().map(|cert| cert.der().clone())
}

/// Splits fuzz bytes into a certificate chain: each certificate is preceded by its length
/// (two bytes, big endian). What is left at the end is the last certificate.
pub fn split_chain(mut data: &[u8]) -> Vec<CertificateDer<'static>> {
    let mut chain = Vec::new();
    while data.len() >= 2 && chain.len() < 8 {
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let take = len.min(rest.len());
        chain.push(CertificateDer::from(rest[..take].to_vec()));
        data = &rest[take..];
    }
    chain
}

/// The inverse of [`split_chain`], for seeds.
pub fn join_chain(chain: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for cert in chain {
        let len = u16::try_from(cert.len()).expect("a certificate under 64 KiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(cert);
    }
    out
}

// ---- the client_cert oracle ----------------------------------------------------------

/// The `[client_cert]` body and extra tables of the fixture layer with the intermediate
/// allow-list (SPEC A9): only certificates issued under [`ALLOWED_CN`], except below
/// `/public` and `/scim2`.
pub const ALLOW_LIST: &str = "[intermediate_cert_validation]\nenable = true\ncert_cns = [\"Allowed Intermediate CA\"]\nexempt_contexts = [\"/public\", \"/scim2\"]\n";

/// The exempt contexts of [`ALLOW_LIST`], matched on segment boundaries of the path
/// without its tenant.
pub fn exempt(path_without_tenant: &str) -> bool {
    ["/public", "/scim2"].iter().any(|prefix| {
        path_without_tenant.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// What verifying a certificate found, as far as the oracle needs it.
#[derive(Debug, Clone)]
pub struct Facts {
    /// webpki verified the path to the fixture root, for client authentication, now.
    pub verified: bool,
    /// The subject CNs.
    pub common_names: Vec<String>,
    /// An allow-listed CA is on the verified path.
    pub allowed_issuer: bool,
}

impl Facts {
    /// The facts of a certificate the library verified.
    pub fn of(cert: &tower_secure::authn::ClientCertificate) -> Self {
        Facts {
            verified: cert.is_verified(),
            common_names: cert.common_names().to_vec(),
            allowed_issuer: cert.issuers().iter().any(|ca| ca.common_name.as_deref() == Some(ALLOWED_CN)),
        }
    }
}

/// What the layer must answer on `route` for a request whose only credential is a client
/// certificate with these facts (SPEC A8, A9, F5, F14, F15, C1-C5).
pub fn expected(route: crate::credential::Route, facts: &Facts, allow_list: bool) -> crate::credential::Expected {
    use crate::credential::Expected;
    use crate::oracle::{authorized, Caller};
    use crate::rules::RefLookup;
    use tower_secure::identity::QualifiedName;

    let (lookup, tenant) = route.lookup();
    if lookup == RefLookup::MethodNotAllowed {
        return Expected { status: 405, caller: None };
    }
    if !route.allows("client_cert") {
        return Expected { status: if lookup.is_secure() { 401 } else { 200 }, caller: None };
    }
    let refused = Expected { status: 401, caller: None };
    if !facts.verified {
        return refused;
    }
    let [cn] = facts.common_names.as_slice() else { return refused };
    let Ok(name) = QualifiedName::parse(cn) else { return refused };
    let path = match tenant {
        Some(tenant) => &route.path[3 + tenant.len()..],
        None => route.path,
    };
    if allow_list && !facts.allowed_issuer && !exempt(if path.is_empty() { "/" } else { path }) {
        return refused;
    }
    let Some(user) = crate::fixtures::known_user(&name).filter(|u| !u.disabled) else { return refused };
    let caller = Caller { name, permissions: user.permissions.to_vec(), token_scopes: None };
    if authorized(lookup, &caller, tenant) {
        Expected { status: 200, caller: Some(caller) }
    } else {
        Expected { status: 403, caller: None }
    }
}

/// Checks an answer against [`expected`]; `certain` false checks only what holds either
/// way (no 200 on a secured route without a caller the certificate names).
pub fn check(
    route: crate::credential::Route,
    facts: &Facts,
    allow_list: bool,
    certain: bool,
    outcome: &crate::drive::Outcome,
) {
    let expected = expected(route, facts, allow_list);
    let code = outcome.code();
    if certain {
        assert_eq!(code, expected.status, "{route:?} with {facts:?} (allow-list {allow_list}): {outcome:?}");
        let got = outcome.caller().map(|p| p.name().clone());
        assert_eq!(got, expected.caller.as_ref().map(|c| c.name.clone()), "{route:?} with {facts:?}: wrong caller");
    }
    if code == 200 && route.lookup().0.is_secure() {
        let caller = outcome.caller().unwrap_or_else(|| panic!("SPEC E8: 200 on secured {route:?} without a caller"));
        assert!(facts.verified, "SPEC F14: an unverified certificate authenticated {caller:?}");
        assert_eq!(facts.common_names.len(), 1, "SPEC F15: exactly one CN");
        assert_eq!(
            caller.name().to_string(),
            tower_secure::identity::QualifiedName::parse(&facts.common_names[0])
                .map(|n| n.to_string())
                .unwrap_or_default()
        );
        assert_eq!(caller.authenticated_by(), "client_cert");
    }
    if let Some(caller) = outcome.caller() {
        assert_eq!(caller.authenticated_by(), "client_cert", "a certificate request authenticated by another handler");
    }
}

// ---- structured certificates ---------------------------------------------------------

/// A `client_cert_fields` input: a route, whether the allow-list applies, a certificate.
#[derive(Debug, arbitrary::Arbitrary)]
pub struct CertInput {
    /// The route selector.
    pub route: u8,
    /// The layer with [`ALLOW_LIST`].
    pub allow_list: bool,
    /// The certificate.
    pub cert: CertSpec,
}

/// A client certificate, described for the fuzzer to vary.
#[derive(Debug, arbitrary::Arbitrary)]
pub struct CertSpec {
    /// Subject CNs (the first two are used).
    pub common_names: Vec<Cn>,
    /// A subject O.
    pub organization: Option<String>,
    /// Who signs it.
    pub issuer: IssuerChoice,
    /// Whether the client presents its issuer after it.
    pub present_issuer: bool,
    /// Another CA certificate the client presents.
    pub also_present: Option<IssuerChoice>,
    /// Its validity period.
    pub validity: Validity,
    /// Its extended key usage.
    pub eku: Eku,
    /// `cA = true`.
    pub ca: bool,
}

/// A CN value.
#[derive(Debug, arbitrary::Arbitrary)]
pub enum Cn {
    /// A fixture user, by index, and a spelling of its name.
    Known(u8, u8),
    /// A user the store does not have.
    Unknown,
    /// UTF8String.
    Utf8(String),
    /// PrintableString (when the text allows).
    Printable(String),
    /// IA5String (when the text allows).
    Ia5(String),
    /// BMPString (when the text allows).
    Bmp(String),
}

/// A signer.
#[derive(Debug, arbitrary::Arbitrary, Clone, Copy, PartialEq, Eq)]
pub enum IssuerChoice {
    /// The allow-listed intermediate.
    Allowed,
    /// The other intermediate.
    Other,
    /// The root itself.
    Root,
    /// A root the layer does not trust.
    UnknownRoot,
    /// The leaf's own key.
    SelfSigned,
}

/// A validity period.
#[derive(Debug, arbitrary::Arbitrary, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// 2020 to 2100.
    Current,
    /// 2000 to 2010.
    Expired,
    /// 2090 to 2100.
    NotYet,
}

/// Extended key usage.
#[derive(Debug, arbitrary::Arbitrary, Clone, Copy, PartialEq, Eq)]
pub enum Eku {
    /// `clientAuth`.
    ClientAuth,
    /// `serverAuth`.
    ServerAuth,
    /// Both.
    Both,
    /// No extension.
    Absent,
}

/// A certificate built from a [`CertSpec`], with what SPEC says verifying it finds.
#[derive(Debug)]
pub struct Built {
    /// The chain the client presents, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The facts, predicted without the library.
    pub facts: Facts,
    /// False when a CN is of a string type the oracle cannot say how the library reads.
    pub certain: bool,
}

fn known_name(index: u8, spelling: u8) -> String {
    let name = crate::fixtures::USERS[usize::from(index) % crate::fixtures::USERS.len()].name;
    match spelling % 3 {
        1 if !name.contains('/') => format!("PRIMARY/{name}"),
        2 if !name.contains('@') => format!("{name}@carbon.super"),
        _ => name.to_owned(),
    }
}

/// The value for a CN, its text, and whether the oracle knows how it reads.
fn cn_value(cn: &Cn) -> Option<(rcgen::DnValue, String, bool)> {
    use rcgen::DnValue;
    Some(match cn {
        Cn::Known(i, s) => {
            let text = known_name(*i, *s);
            (DnValue::Utf8String(text.clone()), text, true)
        }
        Cn::Unknown => (DnValue::Utf8String("zed".to_owned()), "zed".to_owned(), true),
        Cn::Utf8(text) => (DnValue::Utf8String(text.clone()), text.clone(), true),
        // yasna (rcgen's DER writer) panics on `?` and `'`, which rcgen's type lets through.
        Cn::Printable(text) if text.contains(['?', '\'']) => return None,
        Cn::Printable(text) => (DnValue::PrintableString(text.as_str().try_into().ok()?), text.clone(), true),
        Cn::Ia5(text) => (DnValue::Ia5String(text.as_str().try_into().ok()?), text.clone(), true),
        Cn::Bmp(text) => (DnValue::BmpString(text.as_str().try_into().ok()?), text.clone(), false),
    })
}

fn ca_der(choice: IssuerChoice) -> Option<CertificateDer<'static>> {
    let pki = pki();
    match choice {
        IssuerChoice::Allowed => Some(pki.allowed_der.clone()),
        IssuerChoice::Other => Some(pki.other_der.clone()),
        IssuerChoice::Root => Some(pki.root_der.clone()),
        IssuerChoice::UnknownRoot => Some(pki.unknown_der.clone()),
        IssuerChoice::SelfSigned => None,
    }
}

impl CertSpec {
    /// Issues the certificate; `None` when rcgen refuses the values.
    pub fn build(&self) -> Option<Built> {
        use rcgen::{BasicConstraints, IsCa};
        let pki = pki();
        let mut params = client_params("x");
        params.distinguished_name = DistinguishedName::new();
        if let Some(org) = &self.organization {
            params.distinguished_name.push(DnType::OrganizationName, org.as_str());
        }
        let mut names = Vec::new();
        let mut certain = true;
        // rcgen keeps one value per attribute type: a second CN goes under the CN's OID as
        // a custom type (the same attribute, twice in the subject).
        for (i, cn) in self.common_names.iter().take(2).enumerate() {
            let (value, text, known) = cn_value(cn)?;
            let ty = if i == 0 { DnType::CommonName } else { DnType::CustomDnType(vec![2, 5, 4, 3]) };
            params.distinguished_name.push(ty, value);
            names.push(text);
            certain &= known;
        }
        params.extended_key_usages = match self.eku {
            Eku::ClientAuth => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Eku::ServerAuth => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Eku::Both => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
            Eku::Absent => Vec::new(),
        };
        (params.not_before, params.not_after) = match self.validity {
            Validity::Current => (rcgen::date_time_ymd(2020, 1, 1), rcgen::date_time_ymd(2100, 1, 1)),
            Validity::Expired => (rcgen::date_time_ymd(2000, 1, 1), rcgen::date_time_ymd(2010, 1, 1)),
            Validity::NotYet => (rcgen::date_time_ymd(2090, 1, 1), rcgen::date_time_ymd(2100, 1, 1)),
        };
        if self.ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages.push(KeyUsagePurpose::KeyCertSign);
        }
        let leaf = match self.issuer {
            IssuerChoice::Allowed => issue(&params, &pki.allowed),
            IssuerChoice::Other => issue(&params, &pki.other),
            IssuerChoice::Root => issue(&params, &pki.root),
            IssuerChoice::UnknownRoot => issue(&params, &pki.unknown),
            IssuerChoice::SelfSigned => params.self_signed(&pki.leaf_key).ok().map(|c| c.der().clone()),
        }?;
        let mut chain = vec![leaf];
        if self.present_issuer {
            chain.extend(ca_der(self.issuer));
        }
        chain.extend(self.also_present.and_then(ca_der));
        // SPEC F14: a path to the root from what was presented, valid now, clientAuth, and
        // an end entity.
        let presented = |c: IssuerChoice| (self.present_issuer && self.issuer == c) || self.also_present == Some(c);
        let path = match self.issuer {
            IssuerChoice::Root => true,
            IssuerChoice::Allowed | IssuerChoice::Other => presented(self.issuer),
            IssuerChoice::UnknownRoot | IssuerChoice::SelfSigned => false,
        };
        let verified =
            path && self.validity == Validity::Current && matches!(self.eku, Eku::ClientAuth | Eku::Both) && !self.ca;
        let facts = Facts { verified, common_names: names, allowed_issuer: self.issuer == IssuerChoice::Allowed };
        Some(Built { chain, facts, certain })
    }
}
