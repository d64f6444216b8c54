//! What the fixture layer must answer to a request with an `Authorization` header on one
//! of a few routes: an oracle for SPEC A2-A4, A7, B2, C1-C5, E7, F5-F7 and F12 that works
//! from the header bytes alone.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use tower_secure::identity::QualifiedName;

use crate::drive::Outcome;
use crate::fixtures::known_user;
use crate::jwt::{self, Certainty, Verdict};
use crate::oracle::{authorized, segments, Caller};
use crate::rules::{reference_lookup, RefLookup};

/// Longest `Authorization` header the layer reads.
pub const MAX_AUTHORIZATION_BYTES: usize = 16 * 1024;
/// Longest Basic credential (base64).
pub const MAX_BASIC_TOKEN: usize = 1024;

/// A request the targets send: a method and a canonical path.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The method.
    pub method: &'static str,
    /// The path (canonical, no query).
    pub path: &'static str,
}

/// The routes the credential targets pick from (one byte of the input).
pub const ROUTES: &[Route] = &[
    Route { method: "GET", path: "/api/me" },
    Route { method: "GET", path: "/public/x" },
    Route { method: "GET", path: "/api/view" },
    Route { method: "GET", path: "/api/perm" },
    Route { method: "GET", path: "/api/admin/stats" },
    Route { method: "GET", path: "/api/bearer-only" },
    Route { method: "GET", path: "/api/basic-only" },
    Route { method: "GET", path: "/api/users/v1/42/challenges" },
    Route { method: "GET", path: "/t/example.com/api/me" },
    Route { method: "GET", path: "/elsewhere" },
    Route { method: "GET", path: "/api/health" },
    Route { method: "POST", path: "/api/export/1" },
    Route { method: "GET", path: "/t/example.com/shared/x" },
    Route { method: "GET", path: "/t/example.com/scim2/Users" },
    Route { method: "HEAD", path: "/api/perm-any" },
    Route { method: "GET", path: "/api/view-any" },
    Route { method: "GET", path: "/api/cert-only" },
    Route { method: "DELETE", path: "/api/reports" },
];

/// The route for a selector byte.
pub fn route(selector: u8) -> Route {
    ROUTES[usize::from(selector) % ROUTES.len()]
}

impl Route {
    /// The rule that applies (by the reference) and the path's tenant.
    pub fn lookup(&self) -> (RefLookup, Option<&'static str>) {
        let (tenant, rest) = match self.path.strip_prefix("/t/") {
            Some(rest) => match rest.split_once('/') {
                Some((tenant, tail)) => (Some(tenant), tail),
                None => (Some(rest), ""),
            },
            None => (None, self.path),
        };
        (reference_lookup(self.method, &segments(rest)), tenant)
    }

    /// True when the handler called `name` may authenticate callers here.
    pub fn allows(&self, name: &str) -> bool {
        match self.lookup().0 {
            RefLookup::Rule(rule) => rule.handlers.is_none_or(|list| list.contains(&name)),
            _ => true,
        }
    }

    /// An `http::Request` for this route.
    pub fn request(&self) -> http::request::Builder {
        http::Request::builder().method(self.method).uri(self.path)
    }
}

/// What the `Authorization` header(s) amount to.
#[derive(Debug, Clone)]
pub enum Credential {
    /// No header, or a scheme no handler takes.
    None,
    /// Two or more headers: 400.
    Duplicate,
    /// Over [`MAX_AUTHORIZATION_BYTES`]: 431.
    TooLarge,
    /// Bytes outside visible ASCII and space: 400.
    NotVisible,
    /// `Basic ...`.
    Basic(Judged),
    /// `Bearer ...`.
    Bearer(Judged),
}

/// A credential of a scheme a handler takes.
#[derive(Debug, Clone)]
pub enum Judged {
    /// Valid: this caller.
    Accepted(Caller),
    /// Present and not valid: 401.
    Invalid(&'static str),
    /// Not `scheme 1*SP token68`, or (Basic) not `user:password` in base64 and UTF-8: 400.
    Malformed,
    /// The credential is over the scheme's limit: 431.
    TooLarge,
}

/// Judges the header values of a request at time `now`.
pub fn classify(values: &[&[u8]], now: u64) -> (Credential, Certainty) {
    let value = match values {
        [] => return (Credential::None, Certainty::Certain),
        [value] => *value,
        _ => return (Credential::Duplicate, Certainty::Certain),
    };
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return (Credential::TooLarge, Certainty::Certain);
    }
    if !value.iter().all(|&b| b == b' ' || b.is_ascii_graphic()) {
        return (Credential::NotVisible, Certainty::Certain);
    }
    let text = std::str::from_utf8(value).expect("visible ASCII is UTF-8");
    let scheme = text.split(' ').next().unwrap_or_default();
    if scheme.eq_ignore_ascii_case("basic") {
        (Credential::Basic(basic(text)), Certainty::Certain)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        let (judged, certainty) = bearer(text, now);
        (Credential::Bearer(judged), certainty)
    } else {
        (Credential::None, Certainty::Certain)
    }
}

/// SPEC A4, F6, F7: `Basic 1*SP token68`, strict base64 and UTF-8, split at the first `:`,
/// a non-empty user; valid when that user (parsed as a qualified name) exists, is enabled
/// and has that password.
pub fn basic(header: &str) -> Judged {
    let Some(rest) = header.split_once(' ').map(|(_, rest)| rest) else { return Judged::Malformed };
    let token = rest.trim_start_matches(' ');
    if token.len() > MAX_BASIC_TOKEN {
        return Judged::TooLarge;
    }
    let body = token.trim_end_matches('=');
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)) {
        return Judged::Malformed;
    }
    let Ok(decoded) = STANDARD.decode(token) else { return Judged::Malformed };
    let Ok(text) = String::from_utf8(decoded) else { return Judged::Malformed };
    let Some((user, password)) = text.split_once(':') else { return Judged::Malformed };
    if user.is_empty() {
        return Judged::Malformed;
    }
    let Ok(name) = QualifiedName::parse(user) else { return Judged::Invalid("not a user name") };
    match known_user(&name) {
        Some(known) if known.disabled => Judged::Invalid("disabled"),
        Some(known) if known.password == password => {
            Judged::Accepted(Caller { name, permissions: known.permissions.to_vec(), token_scopes: None })
        }
        Some(_) => Judged::Invalid("wrong password"),
        None => Judged::Invalid("unknown user"),
    }
}

/// SPEC A5, A7, F8-F12 through [`jwt::judge`].
pub fn bearer(header: &str, now: u64) -> (Judged, Certainty) {
    let token = match jwt::token68(header) {
        Ok(token) => token,
        Err(Verdict::TooLarge) => return (Judged::TooLarge, Certainty::Certain),
        Err(_) => return (Judged::Malformed, Certainty::Certain),
    };
    let (verdict, certainty) = jwt::judge(token, now);
    let judged = match verdict {
        Verdict::Accepted(accepted) => {
            let permissions = jwt::permissions_of(&accepted);
            Judged::Accepted(Caller { name: accepted.name, permissions, token_scopes: Some(accepted.scopes) })
        }
        Verdict::Invalid(reason) => Judged::Invalid(reason),
        Verdict::Malformed => Judged::Malformed,
        Verdict::TooLarge => Judged::TooLarge,
    };
    (judged, certainty)
}

/// The expected answer: a status, and for a 200 the caller (`None`: anonymous).
#[derive(Debug, Clone)]
pub struct Expected {
    /// The status.
    pub status: u16,
    /// The caller the inner service sees on a 200.
    pub caller: Option<Caller>,
}

fn no_credential(lookup: RefLookup) -> Expected {
    Expected { status: if lookup.is_secure() { 401 } else { 200 }, caller: None }
}

/// What the fixture layer must answer on `route` with `credential`.
pub fn expected(route: Route, credential: &Credential) -> Expected {
    let (lookup, tenant) = route.lookup();
    if lookup == RefLookup::MethodNotAllowed {
        return Expected { status: 405, caller: None };
    }
    let (handler, judged) = match credential {
        Credential::None => return no_credential(lookup),
        Credential::Duplicate | Credential::NotVisible => return Expected { status: 400, caller: None },
        Credential::TooLarge => return Expected { status: 431, caller: None },
        Credential::Basic(judged) => ("basic", judged),
        Credential::Bearer(judged) => ("oauth2", judged),
    };
    if !route.allows(handler) {
        // SPEC A2: a credential for a handler the resource does not allow is no credential.
        return no_credential(lookup);
    }
    match judged {
        Judged::Malformed => Expected { status: 400, caller: None },
        Judged::TooLarge => Expected { status: 431, caller: None },
        Judged::Invalid(_) => Expected { status: 401, caller: None },
        Judged::Accepted(caller) if authorized(lookup, caller, tenant) => {
            Expected { status: 200, caller: Some(caller.clone()) }
        }
        Judged::Accepted(_) => Expected { status: 403, caller: None },
    }
}

/// Checks `outcome` against the oracle: exactly when `certainty` is certain; otherwise only
/// what must hold either way (a 200 on a secured route needs a caller the credential names).
pub fn check(route: Route, credential: &Credential, certainty: Certainty, outcome: &Outcome) {
    let expected = expected(route, credential);
    let code = outcome.code();
    if certainty == Certainty::Certain {
        assert_eq!(code, expected.status, "{route:?} with {credential:?}: {outcome:?}");
    }
    let refused_by = match credential {
        Credential::Basic(Judged::Invalid(_)) if route.allows("basic") => Some(true),
        Credential::Bearer(Judged::Invalid(_)) if route.allows("oauth2") => Some(false),
        _ => None,
    };
    if let (Some(basic), 401) = (refused_by, code) {
        // SPEC F13: unknown user, wrong password, disabled account, bad token: one answer
        // per scheme.
        same_as_first(basic, outcome);
    }
    if code == 401 {
        // SPEC A3, A7: one challenge per allowed scheme, or the refusing scheme's.
        // (A rule that allows only `client_cert` has no HTTP scheme to name.)
        let schemes = route.allows("basic") || route.allows("oauth2");
        assert!(!schemes || !outcome.challenges().is_empty(), "{route:?}: a 401 without WWW-Authenticate");
    }
    if code != 200 {
        return;
    }
    let (lookup, _) = route.lookup();
    let caller = outcome.caller();
    if lookup.is_secure() {
        // SPEC B2, E8: never 200 on a secured route without a valid credential.
        let accepted = match credential {
            Credential::Basic(Judged::Accepted(c)) | Credential::Bearer(Judged::Accepted(c)) => Some(c),
            _ => None,
        };
        let (Some(accepted), Some(caller)) = (accepted, caller) else {
            panic!("200 on secured {route:?} with {credential:?}: {outcome:?}");
        };
        assert_eq!(caller.name(), &accepted.name, "the caller is not the one the credential names");
    }
    match (&expected.caller, caller) {
        (Some(want), Some(got)) => {
            assert_eq!(got.name(), &want.name, "{route:?}: wrong caller");
            let handler = if want.token_scopes.is_some() { "oauth2" } else { "basic" };
            assert_eq!(got.authenticated_by(), handler);
            if let Some(scopes) = &want.token_scopes {
                let mut got_scopes = got.scopes().unwrap_or_default().to_vec();
                got_scopes.sort();
                got_scopes.dedup();
                assert_eq!(&got_scopes, scopes, "SPEC F12: scopes are exact, space-delimited tokens");
            }
        }
        (None, Some(got)) if certainty == Certainty::Certain => {
            panic!("SPEC F5: {route:?} with {credential:?} yielded caller {got:?}");
        }
        (Some(want), None) if certainty == Certainty::Certain => {
            panic!("SPEC E7: {route:?}: a valid credential ({want:?}) yielded no caller");
        }
        _ => {}
    }
}

/// The first invalid-credential refusal per scheme; later ones must be identical.
fn same_as_first(basic: bool, outcome: &Outcome) {
    use std::sync::Mutex;
    type First = Option<(bytes::Bytes, Vec<String>)>;
    static FIRST: Mutex<[First; 2]> = Mutex::new([None, None]);
    let mut first = FIRST.lock().unwrap_or_else(|e| e.into_inner());
    let slot = &mut first[usize::from(basic)];
    let this = (outcome.body.clone(), outcome.challenges());
    let first = slot.get_or_insert_with(|| this.clone());
    assert_eq!(*first, this, "SPEC F13: invalid credentials of one scheme are refused differently");
}
