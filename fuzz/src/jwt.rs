//! Bearer tokens for the fixture issuers: building them (structured inputs) and judging
//! them with an oracle written from SPEC A5, A7, A14, F8-F12 that shares no code with the
//! library's verifier (its own base64url, JSON walk, duplicate-member check, HMAC through
//! aws-lc and time checks).

use arbitrary::Arbitrary;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use tower_secure::identity::QualifiedName;

use crate::fixtures::{
    known_user, AUD, ISS, ISS_B, SECRET_ATTACKER, SECRET_B, SECRET_HS, SECRET_HS5, USERS, VIEW_SCOPE,
};

/// The oauth2 handler's default token size limit (`[oauth2] max_token_bytes`).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The default leeway for `exp`, `nbf` and `iat`.
pub const LEEWAY: f64 = 60.0;

/// base64url without padding.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// HMAC of `message` with `secret` under `alg` (`HS256`, `HS384`, `HS512`; anything else
/// signs with SHA-256), through aws-lc directly.
pub fn hmac(alg: &str, secret: &[u8], message: &[u8]) -> Vec<u8> {
    use aws_lc_rs::hmac;
    let algorithm = match alg {
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        _ => hmac::HMAC_SHA256,
    };
    hmac::sign(&hmac::Key::new(algorithm, secret), message).as_ref().to_vec()
}

/// A configured verification key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The algorithm it is pinned to.
    pub alg: &'static str,
    /// The HMAC secret.
    pub secret: &'static [u8],
}

/// The key the configuration selects for a token of `iss` naming `kid` (SPEC F8): by
/// issuer, then by `kid`; without a `kid` only an issuer's single key.
pub fn configured_key(iss: &str, kid: Option<&str>) -> Option<Key> {
    match (iss, kid) {
        (ISS, Some("hs")) => Some(Key { alg: "HS256", secret: SECRET_HS }),
        (ISS, Some("hs5")) => Some(Key { alg: "HS512", secret: SECRET_HS5 }),
        (ISS_B, None) => Some(Key { alg: "HS256", secret: SECRET_B }),
        _ => None,
    }
}

/// What the oracle expects of a bearer credential, before the route is considered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A valid token of this caller.
    Accepted(Accepted),
    /// A well-formed credential that is not valid: 401 `invalid_token`.
    Invalid(&'static str),
    /// The header is not `Bearer 1*SP token68`: 400.
    Malformed,
    /// The token is over the size limit: 431.
    TooLarge,
}

/// The caller a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The parsed `sub`.
    pub name: QualifiedName,
    /// The scopes, sorted and without duplicates.
    pub scopes: Vec<String>,
    /// A client-credentials token (`client_id` equal to `sub`): no user permissions.
    pub client_token: bool,
}

/// The token68 credential after `Bearer` and `1*SP`, or why there is none (SPEC F6).
pub fn token68(header: &str) -> Result<&str, Verdict> {
    let Some(rest) = header.split_once(' ').map(|(_, rest)| rest) else { return Err(Verdict::Malformed) };
    let token = rest.trim_start_matches(' ');
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Verdict::TooLarge);
    }
    let body = token.trim_end_matches('=');
    let ok = !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if ok {
        Ok(token)
    } else {
        Err(Verdict::Malformed)
    }
}

/// A NumericDate: a JSON number within the range of a signed 64-bit count of seconds
/// (RFC 7519, SPEC F10). `None` for any other JSON type and for numbers beyond that range
/// (`1e300`, `2^63` and up, below `-2^63`).
fn date(value: &Value) -> Option<f64> {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if let Some(whole) = value.as_i64() {
        return Some(whole as f64);
    }
    if value.is_u64() {
        return None; // at least 2^63
    }
    value.as_f64().filter(|f| f.is_finite() && (-LIMIT..LIMIT).contains(f))
}

/// True when some JSON object in `bytes` names a member twice (SPEC F10: refused, as
/// parsers disagree on which copy wins). A scan of its own over text that already parsed
/// as JSON: a stack of open objects and arrays, each object with the names seen so far;
/// names compare decoded (`"s\u0075b"` is `sub`). `false` for text that is not JSON.
fn names_a_member_twice(bytes: &[u8]) -> bool {
    if serde_json::from_slice::<Value>(bytes).is_err() {
        return false;
    }
    // One frame per open container: `Some((names, expecting a name))` for an object.
    let mut stack: Vec<Option<(std::collections::HashSet<String>, bool)>> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => stack.push(Some((std::collections::HashSet::new(), true))),
            b'[' => stack.push(None),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => {
                if let Some(Some((_, expecting))) = stack.last_mut() {
                    *expecting = true;
                }
            }
            b':' => {
                if let Some(Some((_, expecting))) = stack.last_mut() {
                    *expecting = false;
                }
            }
            b'"' => {
                let start = i;
                i += 1;
                while bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if let Some(Some((names, true))) = stack.last_mut() {
                    let name: String = serde_json::from_slice(&bytes[start..=i]).unwrap_or_default();
                    if !names.insert(name) {
                        return true;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// How sure the oracle is: a time claim within a couple of seconds of a boundary, or a
/// choice SPEC leaves open, makes the verdict uncertain; callers then check only what
/// holds either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Certainty {
    /// The verdict is the only acceptable answer.
    Certain,
    /// Either answer is acceptable.
    Uncertain,
}

/// Judges a bearer token at time `now` (seconds since 1970).
pub fn judge(token: &str, now: u64) -> (Verdict, Certainty) {
    let a = judge_at(token, now as f64);
    let b = judge_at(token, now as f64 + 3.0);
    let open_choice = negative_optional_date(token);
    let certainty = if a == b && !open_choice { Certainty::Certain } else { Certainty::Uncertain };
    (a, certainty)
}

/// SPEC leaves open whether an `nbf` or `iat` before 1970 is a wrong type; both are fine.
fn negative_optional_date(token: &str) -> bool {
    let Some(payload) = token.split('.').nth(1).and_then(|p| URL_SAFE_NO_PAD.decode(p).ok()) else { return false };
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(&payload) else { return false };
    ["nbf", "iat"].iter().any(|c| claims.get(*c).and_then(Value::as_f64).is_some_and(|f| f < 0.0))
}

fn judge_at(token: &str, now: f64) -> Verdict {
    use Verdict::Invalid;
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Invalid("not three parts (no introspection is configured)");
    }
    if parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')) {
        return Invalid("a part is empty or not base64url");
    }
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).ok();
    let (Some(header), Some(payload), Some(signature)) = (decode(parts[0]), decode(parts[1]), decode(parts[2])) else {
        return Invalid("a part does not decode");
    };
    let (Ok(Value::Object(header_map)), Ok(Value::Object(claims))) =
        (serde_json::from_slice::<Value>(&header), serde_json::from_slice::<Value>(&payload))
    else {
        return Invalid("header or payload is not a JSON object");
    };
    if names_a_member_twice(&header) || names_a_member_twice(&payload) {
        return Invalid("a member named twice");
    }
    let header = header_map;
    if header.contains_key("crit") {
        return Invalid("crit");
    }
    let Some(Value::String(alg)) = header.get("alg") else { return Invalid("alg missing") };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Invalid("kid not a string"),
    };
    let Some(Value::String(iss)) = claims.get("iss") else { return Invalid("iss not a string") };
    let Some(key) = configured_key(iss, kid) else { return Invalid("no configured key") };
    if key.alg != alg {
        return Invalid("alg is not the key's");
    }
    let message = format!("{}.{}", parts[0], parts[1]);
    if hmac(key.alg, key.secret, message.as_bytes()) != signature {
        return Invalid("signature");
    }
    match verify_claims(&claims, iss, now) {
        Ok(accepted) => Verdict::Accepted(accepted),
        Err(reason) => Invalid(reason),
    }
}

fn verify_claims(claims: &Map<String, Value>, iss: &str, now: f64) -> Result<Accepted, &'static str> {
    let time = |name: &str| -> Result<Option<f64>, &'static str> {
        claims.get(name).map(|v| date(v).ok_or("a time claim is not a number")).transpose()
    };
    let exp = time("exp")?.ok_or("exp missing")?;
    if now > exp + LEEWAY {
        return Err("expired");
    }
    if time("nbf")?.is_some_and(|nbf| nbf > now + LEEWAY) {
        return Err("not yet valid");
    }
    if time("iat")?.is_some_and(|iat| iat > now + LEEWAY) {
        return Err("issued in the future");
    }
    if iss == ISS {
        let ok = match claims.get("aud") {
            Some(Value::String(aud)) => aud == AUD,
            Some(Value::Array(list)) => list.iter().all(Value::is_string) && list.iter().any(|a| a == AUD),
            _ => false,
        };
        if !ok {
            return Err("audience");
        }
    }
    if claims.contains_key("cnf") {
        // Bound to a client certificate (RFC 8705) or an unsupported confirmation: these
        // requests carry no certificate.
        return Err("cnf");
    }
    // A JWT names its caller in `sub` alone (RFC 9068); `username` and `client_id` stand in
    // only in introspection answers, which the fixtures do not use.
    let Some(Value::String(sub)) = claims.get("sub") else { return Err("no string sub") };
    let name = QualifiedName::parse(sub).map_err(|_| "sub is not a user name")?;
    let scope = claims.get("scope").map(scope_set).transpose()?;
    let scp = claims.get("scp").map(scope_set).transpose()?;
    let scopes: Vec<String> = match (scope, scp) {
        (Some(a), Some(b)) if a != b => return Err("scope and scp differ"),
        (Some(set), _) | (None, Some(set)) => set.into_iter().collect(),
        (None, None) => Vec::new(),
    };
    match claims.get("roles") {
        None => {}
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => {}
        Some(_) => return Err("roles not strings"),
    }
    let client_id = match claims.get("client_id").or_else(|| claims.get("azp")) {
        None => None,
        Some(Value::String(id)) => Some(id.as_str()),
        Some(_) => return Err("client_id not a string"),
    };
    let client_token = client_id == Some(sub.as_str());
    if !client_token && known_user(&name).is_some_and(|u| u.disabled) {
        return Err("disabled user");
    }
    Ok(Accepted { name, scopes, client_token })
}

/// One scope claim as a sorted set (SPEC A14, F12): a space-delimited string (no empty
/// tokens) or an array of strings, each a non-empty token without spaces.
fn scope_set(value: &Value) -> Result<std::collections::BTreeSet<String>, &'static str> {
    let tokens: Vec<&str> = match value {
        Value::String(text) if text.is_empty() => Vec::new(),
        Value::String(text) => text.split(' ').collect(),
        Value::Array(list) => list.iter().map(Value::as_str).collect::<Option<Vec<_>>>().ok_or("scope item")?,
        _ => return Err("scope claim of another type"),
    };
    if tokens.iter().any(|t| t.is_empty() || t.contains(' ')) {
        return Err("empty scope token");
    }
    Ok(tokens.into_iter().map(str::to_owned).collect())
}

/// The permissions a valid token's caller holds (from the user store, SPEC C2).
pub fn permissions_of(accepted: &Accepted) -> Vec<&'static str> {
    if accepted.client_token {
        return Vec::new();
    }
    known_user(&accepted.name).map(|u| u.permissions.to_vec()).unwrap_or_default()
}

// ---- structured tokens ----------------------------------------------------------------

/// A token, described field by field (or with raw JSON bytes) for the fuzzer to vary.
#[derive(Debug, Arbitrary)]
pub struct TokenSpec {
    /// The JOSE header.
    pub header: HeaderSpec,
    /// The claims.
    pub payload: PayloadSpec,
    /// How it is signed.
    pub signature: SignatureSpec,
}

/// The JOSE header.
#[derive(Debug, Arbitrary)]
pub enum HeaderSpec {
    /// These bytes, base64url-encoded (fuzzed JSON).
    Raw(Vec<u8>),
    /// A header built from fields.
    Fields {
        /// `alg`.
        alg: AlgSpec,
        /// `kid`.
        kid: KidSpec,
        /// `typ`.
        typ: Option<TypSpec>,
        /// `crit`.
        crit: bool,
        /// `jku`, `x5u` pointing at the attacker (F9: never fetched).
        remote_keys: bool,
        /// `jwk`: the attacker's own HMAC key (F9: never used).
        attacker_jwk: bool,
        /// `x5c`: a certificate chain (never used).
        x5c: bool,
        /// An unregistered header parameter (`x_...`), with a string value.
        extra: Option<(String, String)>,
    },
}

/// `alg`.
#[derive(Debug, Arbitrary)]
pub enum AlgSpec {
    /// HS256.
    Hs256,
    /// HS384.
    Hs384,
    /// HS512.
    Hs512,
    /// RS256 (no RSA key is configured).
    Rs256,
    /// `none`.
    None,
    /// `hs256` (algorithm names are case-sensitive).
    Lower,
    /// Anything.
    Other(String),
}

/// `kid`.
#[derive(Debug, Arbitrary)]
pub enum KidSpec {
    /// No `kid`.
    Absent,
    /// `hs` (HS256 at the main issuer).
    Hs,
    /// `hs5` (HS512 at the main issuer).
    Hs5,
    /// A `kid` no issuer has.
    Unknown,
    /// A number.
    Number(u16),
    /// Anything.
    Other(String),
}

/// `typ`.
#[derive(Debug, Arbitrary)]
pub enum TypSpec {
    /// `JWT`.
    Jwt,
    /// `at+jwt`.
    AtJwt,
    /// Anything.
    Other(String),
}

/// The claims.
#[derive(Debug, Arbitrary)]
pub enum PayloadSpec {
    /// These bytes, base64url-encoded (fuzzed JSON).
    Raw(Vec<u8>),
    /// Claims built from fields.
    Fields(Box<ClaimsSpec>),
}

/// Claims, field by field.
#[derive(Debug, Arbitrary)]
pub struct ClaimsSpec {
    /// `iss`.
    pub iss: IssSpec,
    /// `aud`.
    pub aud: AudSpec,
    /// `sub` (or `username`, or `active` + `client_id`).
    pub sub: SubSpec,
    /// `exp`.
    pub exp: TimeSpec,
    /// `nbf`.
    pub nbf: TimeSpec,
    /// `iat`.
    pub iat: TimeSpec,
    /// `scope` / `scp`.
    pub scope: ScopeSpec,
    /// `roles`.
    pub roles: RolesSpec,
    /// `client_id` / `azp`.
    pub client: ClientSpec,
    /// `cnf`.
    pub cnf: Option<CnfSpec>,
    /// An unregistered claim (`x_...`) with a string value.
    pub extra: Option<(String, String)>,
}

/// `iss`.
#[derive(Debug, Arbitrary)]
pub enum IssSpec {
    /// The main issuer.
    Main,
    /// The second issuer.
    B,
    /// An issuer nobody configured.
    Evil,
    /// `[main]` (an array).
    Array,
    /// Absent.
    Absent,
    /// Anything.
    Other(String),
}

/// `aud`.
#[derive(Debug, Arbitrary)]
pub enum AudSpec {
    /// Absent.
    Absent,
    /// The configured audience.
    Main,
    /// Another audience.
    Other,
    /// `[other, configured]`.
    ArrayWith,
    /// `[other]`.
    ArrayWithout,
    /// `[configured, 5]`.
    ArrayMixed,
    /// A number.
    Number,
}

/// The subject.
#[derive(Debug, Arbitrary)]
pub enum SubSpec {
    /// A fixture user, by index (and a spelling of its name).
    Known(u8, u8),
    /// A user the store does not have.
    Unknown,
    /// Anything.
    Other(String),
    /// A number.
    Number,
    /// No `sub`.
    Absent,
    /// No `sub`; `username` instead.
    Username(u8),
    /// No `sub`; `active: true` and a `client_id`.
    ActiveClient,
}

/// A NumericDate claim.
#[derive(Debug, Arbitrary)]
pub enum TimeSpec {
    /// Absent.
    Absent,
    /// A day ago.
    DayAgo,
    /// Ten minutes ago.
    TenMinutesAgo,
    /// Thirty seconds ago (inside the leeway).
    JustNow,
    /// In thirty seconds (inside the leeway).
    Soon,
    /// In ten minutes.
    TenMinutes,
    /// In a year.
    NextYear,
    /// 0.
    Zero,
    /// 1e20 (beyond u64).
    Huge,
    /// Ten minutes from now, plus half a second (not an integer).
    Fraction,
    /// Before 1970.
    Negative,
    /// A string.
    String,
    /// null.
    Null,
}

/// `scope` / `scp`.
#[derive(Debug, Arbitrary)]
pub enum ScopeSpec {
    /// Neither.
    Absent,
    /// The view scope.
    View,
    /// `openid <view>`.
    ViewAndOpenid,
    /// `a,<view>` (never split on commas).
    Comma,
    /// An empty string.
    Empty,
    /// `<view>  openid` (an empty token).
    DoubleSpace,
    /// `<view> ` (a trailing space).
    Trailing,
    /// The view scope upper-cased.
    Upper,
    /// `<view>_extra` (never a substring match).
    Longer,
    /// A number.
    NotString,
    /// `scp: [<view>]`.
    ScpArray,
    /// `scp: [<view>, 1]`.
    ScpMixed,
    /// `scp: "<view>"` (not an array).
    ScpString,
    /// Both `scope` and `scp`.
    Both,
    /// Anything.
    Other(String),
}

/// `roles`.
#[derive(Debug, Arbitrary)]
pub enum RolesSpec {
    /// Absent.
    Absent,
    /// `["admin"]`.
    Array,
    /// `"admin"`.
    String,
    /// `["admin", 1]`.
    Mixed,
}

/// `client_id` / `azp`.
#[derive(Debug, Arbitrary)]
pub enum ClientSpec {
    /// Absent.
    Absent,
    /// A client id other than the subject.
    ClientId,
    /// The subject itself (a client-credentials token).
    SameAsSub,
    /// `azp` only.
    Azp,
    /// A number.
    NotString,
}

/// `cnf`.
#[derive(Debug, Arbitrary)]
pub enum CnfSpec {
    /// `x5t#S256` of some certificate.
    Thumbprint,
    /// `jkt` (DPoP).
    Jkt,
    /// null.
    Null,
}

/// How the token is signed.
#[derive(Debug, Arbitrary)]
pub enum SignatureSpec {
    /// With the key the configuration selects for it (HS256 with `hs` when none).
    Correct,
    /// With one of the keys, under one of the HMAC algorithms.
    With(KeyChoice, HmacChoice),
    /// Correct, then one bit flipped.
    FlipBit(u16),
    /// Correct, then its last base64url character changed in the unused low bits.
    NonCanonical,
    /// Correct, with `=` padding.
    Padded,
    /// No signature (`header.payload.`).
    Empty,
    /// Only two parts.
    TwoParts,
    /// A fourth part after the signature.
    FourParts,
    /// These bytes, base64url-encoded.
    Raw(Vec<u8>),
}

/// A secret.
#[derive(Debug, Arbitrary)]
pub enum KeyChoice {
    /// `hs`.
    Hs,
    /// `hs5`.
    Hs5,
    /// The second issuer's.
    B,
    /// The attacker's.
    Attacker,
}

/// An HMAC algorithm.
#[derive(Debug, Arbitrary)]
pub enum HmacChoice {
    /// HS256.
    Hs256,
    /// HS384.
    Hs384,
    /// HS512.
    Hs512,
}

fn time_value(spec: &TimeSpec, now: u64) -> Option<Value> {
    let now = now as i64;
    Some(match spec {
        TimeSpec::Absent => return None,
        TimeSpec::DayAgo => json!(now - 86_400),
        TimeSpec::TenMinutesAgo => json!(now - 600),
        TimeSpec::JustNow => json!(now - 30),
        TimeSpec::Soon => json!(now + 30),
        TimeSpec::TenMinutes => json!(now + 600),
        TimeSpec::NextYear => json!(now + 366 * 86_400),
        TimeSpec::Zero => json!(0),
        TimeSpec::Huge => json!(1e20),
        TimeSpec::Fraction => json!(now as f64 + 600.5),
        TimeSpec::Negative => json!(-1_000),
        TimeSpec::String => json!(now.to_string()),
        TimeSpec::Null => Value::Null,
    })
}

fn user_name(index: u8, spelling: u8) -> String {
    let user = USERS[usize::from(index) % USERS.len()];
    match spelling % 4 {
        0 => user.name.to_owned(),
        // The same user, spelled out in full: `PRIMARY/` and `@carbon.super` are defaults.
        1 if !user.name.contains('/') => format!("primary/{}", user.name),
        2 if !user.name.contains('@') => format!("{}@CARBON.SUPER", user.name),
        3 if user.name.contains('/') => user.name.to_lowercase(),
        _ => user.name.to_owned(),
    }
}

fn header_json(spec: &HeaderSpec) -> Vec<u8> {
    let HeaderSpec::Fields { alg, kid, typ, crit, remote_keys, attacker_jwk, x5c, extra } = spec else {
        unreachable!("raw headers are not built")
    };
    let mut header = Map::new();
    let alg = match alg {
        AlgSpec::Hs256 => "HS256".to_owned(),
        AlgSpec::Hs384 => "HS384".to_owned(),
        AlgSpec::Hs512 => "HS512".to_owned(),
        AlgSpec::Rs256 => "RS256".to_owned(),
        AlgSpec::None => "none".to_owned(),
        AlgSpec::Lower => "hs256".to_owned(),
        AlgSpec::Other(other) => other.clone(),
    };
    header.insert("alg".into(), json!(alg));
    match kid {
        KidSpec::Absent => {}
        KidSpec::Hs => _ = header.insert("kid".into(), json!("hs")),
        KidSpec::Hs5 => _ = header.insert("kid".into(), json!("hs5")),
        KidSpec::Unknown => _ = header.insert("kid".into(), json!("rotated-away")),
        KidSpec::Number(n) => _ = header.insert("kid".into(), json!(n)),
        KidSpec::Other(other) => _ = header.insert("kid".into(), json!(other)),
    }
    if let Some(typ) = typ {
        let typ = match typ {
            TypSpec::Jwt => "JWT".to_owned(),
            TypSpec::AtJwt => "at+jwt".to_owned(),
            TypSpec::Other(other) => other.clone(),
        };
        header.insert("typ".into(), json!(typ));
    }
    if *crit {
        header.insert("crit".into(), json!(["exp"]));
    }
    if *remote_keys {
        header.insert("jku".into(), json!("https://attacker.example/jwks.json"));
        header.insert("x5u".into(), json!("https://attacker.example/cert.pem"));
    }
    if *attacker_jwk {
        header.insert("jwk".into(), json!({"kty": "oct", "k": b64(SECRET_ATTACKER), "alg": "HS256"}));
    }
    if *x5c {
        header.insert("x5c".into(), json!(["MIIBszCCAVmgAwIBAgIUEXAMPLE"]));
    }
    if let Some((name, value)) = extra {
        header.insert(format!("x_{name}"), json!(value));
    }
    serde_json::to_vec(&Value::Object(header)).expect("JSON serializes")
}

fn claims_json(spec: &ClaimsSpec, now: u64) -> Vec<u8> {
    let mut claims = Map::new();
    let mut put = |name: &str, value: Value| _ = claims.insert(name.to_owned(), value);
    match &spec.iss {
        IssSpec::Main => put("iss", json!(ISS)),
        IssSpec::B => put("iss", json!(ISS_B)),
        IssSpec::Evil => put("iss", json!("https://attacker.example")),
        IssSpec::Array => put("iss", json!([ISS])),
        IssSpec::Absent => {}
        IssSpec::Other(other) => put("iss", json!(other)),
    }
    match spec.aud {
        AudSpec::Absent => {}
        AudSpec::Main => put("aud", json!(AUD)),
        AudSpec::Other => put("aud", json!("another-api")),
        AudSpec::ArrayWith => put("aud", json!(["another-api", AUD])),
        AudSpec::ArrayWithout => put("aud", json!(["another-api"])),
        AudSpec::ArrayMixed => put("aud", json!([AUD, 5])),
        AudSpec::Number => put("aud", json!(5)),
    }
    let sub = match &spec.sub {
        SubSpec::Known(index, spelling) => Some(user_name(*index, *spelling)),
        SubSpec::Unknown => Some("zed".to_owned()),
        SubSpec::Other(other) => Some(other.clone()),
        SubSpec::Number => {
            put("sub", json!(42));
            None
        }
        SubSpec::Absent => None,
        SubSpec::Username(index) => {
            put("username", json!(user_name(*index, 0)));
            None
        }
        SubSpec::ActiveClient => {
            put("active", json!(true));
            None
        }
    };
    if let Some(sub) = &sub {
        put("sub", json!(sub));
    }
    for (name, time) in [("exp", &spec.exp), ("nbf", &spec.nbf), ("iat", &spec.iat)] {
        if let Some(value) = time_value(time, now) {
            put(name, value);
        }
    }
    match &spec.scope {
        ScopeSpec::Absent => {}
        ScopeSpec::View => put("scope", json!(VIEW_SCOPE)),
        ScopeSpec::ViewAndOpenid => put("scope", json!(format!("openid {VIEW_SCOPE}"))),
        ScopeSpec::Comma => put("scope", json!(format!("a,{VIEW_SCOPE}"))),
        ScopeSpec::Empty => put("scope", json!("")),
        ScopeSpec::DoubleSpace => put("scope", json!(format!("{VIEW_SCOPE}  openid"))),
        ScopeSpec::Trailing => put("scope", json!(format!("{VIEW_SCOPE} "))),
        ScopeSpec::Upper => put("scope", json!(VIEW_SCOPE.to_uppercase())),
        ScopeSpec::Longer => put("scope", json!(format!("{VIEW_SCOPE}_extra"))),
        ScopeSpec::NotString => put("scope", json!(7)),
        ScopeSpec::ScpArray => put("scp", json!([VIEW_SCOPE])),
        ScopeSpec::ScpMixed => put("scp", json!([VIEW_SCOPE, 1])),
        ScopeSpec::ScpString => put("scp", json!(VIEW_SCOPE)),
        ScopeSpec::Both => {
            put("scope", json!(VIEW_SCOPE));
            put("scp", json!([VIEW_SCOPE]));
        }
        ScopeSpec::Other(other) => put("scope", json!(other)),
    }
    match spec.roles {
        RolesSpec::Absent => {}
        RolesSpec::Array => put("roles", json!(["admin"])),
        RolesSpec::String => put("roles", json!("admin")),
        RolesSpec::Mixed => put("roles", json!(["admin", 1])),
    }
    match spec.client {
        ClientSpec::Absent if matches!(spec.sub, SubSpec::ActiveClient) => put("client_id", json!("svc")),
        ClientSpec::Absent => {}
        ClientSpec::ClientId => put("client_id", json!("svc")),
        ClientSpec::SameAsSub => put("client_id", json!(sub.clone().unwrap_or_else(|| "svc".to_owned()))),
        ClientSpec::Azp => put("azp", json!("svc")),
        ClientSpec::NotString => put("client_id", json!(3)),
    }
    match spec.cnf {
        None => {}
        Some(CnfSpec::Thumbprint) => put("cnf", json!({"x5t#S256": b64([7u8; 32])})),
        Some(CnfSpec::Jkt) => put("cnf", json!({"jkt": b64([7u8; 32])})),
        Some(CnfSpec::Null) => put("cnf", Value::Null),
    }
    if let Some((name, value)) = &spec.extra {
        put(&format!("x_{name}"), json!(value));
    }
    serde_json::to_vec(&Value::Object(claims)).expect("JSON serializes")
}

/// The key [`SignatureSpec::Correct`] signs with: the configured one for the token's
/// `iss` and `kid` (under the header's HMAC algorithm when it names one), else `hs`.
fn correct_key(header: &[u8], payload: &[u8]) -> (&'static str, &'static [u8]) {
    let header: Option<Value> = serde_json::from_slice(header).ok();
    let payload: Option<Value> = serde_json::from_slice(payload).ok();
    let iss = payload.as_ref().and_then(|p| p.get("iss")).and_then(Value::as_str).unwrap_or(ISS);
    let kid = header.as_ref().and_then(|h| h.get("kid")).and_then(Value::as_str);
    let alg = header.as_ref().and_then(|h| h.get("alg")).and_then(Value::as_str);
    let secret = configured_key(iss, kid).map_or(SECRET_HS, |k| k.secret);
    let alg = match alg {
        Some("HS384") => "HS384",
        Some("HS512") => "HS512",
        _ => "HS256",
    };
    (alg, secret)
}

/// The token a spec describes, at time `now`.
pub fn build(spec: &TokenSpec, now: u64) -> String {
    let header = match &spec.header {
        HeaderSpec::Raw(bytes) => bytes.clone(),
        fields => header_json(fields),
    };
    let payload = match &spec.payload {
        PayloadSpec::Raw(bytes) => bytes.clone(),
        PayloadSpec::Fields(claims) => claims_json(claims, now),
    };
    let message = format!("{}.{}", b64(&header), b64(&payload));
    let (alg, secret) = correct_key(&header, &payload);
    let correct = hmac(alg, secret, message.as_bytes());
    match &spec.signature {
        SignatureSpec::Correct => format!("{message}.{}", b64(&correct)),
        SignatureSpec::With(key, algorithm) => {
            let secret = match key {
                KeyChoice::Hs => SECRET_HS,
                KeyChoice::Hs5 => SECRET_HS5,
                KeyChoice::B => SECRET_B,
                KeyChoice::Attacker => SECRET_ATTACKER,
            };
            let alg = match algorithm {
                HmacChoice::Hs256 => "HS256",
                HmacChoice::Hs384 => "HS384",
                HmacChoice::Hs512 => "HS512",
            };
            format!("{message}.{}", b64(hmac(alg, secret, message.as_bytes())))
        }
        SignatureSpec::FlipBit(bit) => {
            let mut signature = correct;
            let bit = usize::from(*bit) % (signature.len() * 8);
            signature[bit / 8] ^= 1 << (bit % 8);
            format!("{message}.{}", b64(&signature))
        }
        SignatureSpec::NonCanonical => {
            // HS256 and HS512 signatures end in spare bits (2 and 4): flip the lowest one,
            // which changes the text but not the bytes a lenient decoder would produce.
            const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut encoded = b64(&correct).into_bytes();
            if let Some(last) = encoded.last_mut() {
                let index = ALPHABET.iter().position(|c| c == last).unwrap_or(0);
                *last = ALPHABET[index ^ 1];
            }
            format!("{message}.{}", String::from_utf8_lossy(&encoded))
        }
        SignatureSpec::Padded => {
            format!("{message}.{}", base64::engine::general_purpose::URL_SAFE.encode(&correct))
        }
        SignatureSpec::Empty => format!("{message}."),
        SignatureSpec::TwoParts => message,
        SignatureSpec::FourParts => format!("{message}.{}.{}", b64(&correct), b64(&correct)),
        SignatureSpec::Raw(bytes) => format!("{message}.{}", b64(bytes)),
    }
}

/// A `bearer_structured` input: a route selector and a token.
#[derive(Debug, Arbitrary)]
pub struct BearerInput {
    /// The route selector.
    pub route: u8,
    /// The token.
    pub token: TokenSpec,
}
