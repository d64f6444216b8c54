//! Invariants every response of a fixture layer must meet, and an authorization oracle
//! written from SPEC C1, C2, C4 and C5.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use tower_secure::identity::{QualifiedName, SUPER_TENANT};

use crate::drive::Outcome;
use crate::fixtures::{REALM, VIEW, VIEW_SCOPE};
use crate::rules::{RefLookup, RefRule, Tenants};

/// Statuses a fixture layer may answer. No 5xx: the stores are in memory and the keys are
/// static, so the documented 503s cannot happen; 429 cannot either (throttle off).
pub const ALLOWED_STATUSES: &[u16] = &[200, 400, 401, 403, 405, 431];

/// Checks what must hold for every response, whatever the request:
///
/// * the status is one of [`ALLOWED_STATUSES`] (SPEC F6: malformed input is 4xx, never 500;
///   F17: nothing but the documented outages is 5xx);
/// * 200 exactly when the inner service ran (E8: the layer never answers 200 itself);
/// * a refusal's body is one of a fixed few per status and is problem+json (F13: nothing
///   the caller sent is reflected), with no `Retry-After`;
/// * every challenge is the realm's `Basic` or `Bearer` challenge, and only a handful of
///   distinct challenges ever appear (F13 again: they reflect nothing).
pub fn check_response(outcome: &Outcome) {
    let code = outcome.code();
    assert!(ALLOWED_STATUSES.contains(&code), "unexpected status {code}: {outcome:?}");
    assert_eq!(code == 200, outcome.passed.is_some(), "200 iff the inner service ran: {outcome:?}");
    if outcome.passed.is_some() {
        return;
    }
    static BODIES: Mutex<Option<HashMap<u16, HashSet<bytes::Bytes>>>> = Mutex::new(None);
    {
        // One fixed body per kind of refusal; 401 has two kinds (no credential, invalid
        // credential), every other status one.
        let mut bodies = BODIES.lock().unwrap_or_else(|e| e.into_inner());
        let seen = bodies.get_or_insert_with(HashMap::new).entry(code).or_default();
        seen.insert(outcome.body.clone());
        assert!(seen.len() <= 2, "SPEC F13: the body of a {code} changes with the request: {seen:?}");
    }
    let content_type = outcome.headers.get(CONTENT_TYPE).map(|v| v.as_bytes());
    assert_eq!(content_type, Some(&b"application/problem+json"[..]), "refusals are problem+json");
    assert!(outcome.headers.get(RETRY_AFTER).is_none(), "Retry-After without a backend outage");
    let challenges = outcome.challenges();
    let basic = format!("Basic realm=\"{REALM}\"");
    let bearer = format!("Bearer realm=\"{REALM}\"");
    for challenge in &challenges {
        assert!(challenge.starts_with(&basic) || challenge.starts_with(&bearer), "unexpected challenge {challenge:?}");
    }
    static CHALLENGES: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    {
        let mut seen = CHALLENGES.lock().unwrap_or_else(|e| e.into_inner());
        let seen = seen.get_or_insert_with(HashSet::new);
        seen.extend(challenges.iter().cloned());
        assert!(seen.len() <= 16, "SPEC F13: challenges vary with the request: {seen:?}");
    }
}

/// True when holding `held` grants `required` (SPEC C1): equal, or a prefix ending on a
/// `/` boundary. Never the parent.
pub fn covers(held: &str, required: &str) -> bool {
    required == held
        || (required.len() > held.len() && required.starts_with(held) && required.as_bytes()[held.len()] == b'/')
}

/// An authenticated caller, as the oracle sees it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The qualified name.
    pub name: QualifiedName,
    /// Permissions the user store grants (none for unknown users and client tokens).
    pub permissions: Vec<&'static str>,
    /// The token's scopes for a token caller; `None` for Basic and certificate callers.
    pub token_scopes: Option<Vec<String>>,
}

/// The permissions bound to a scope of the fixture deployment (`[[scope]]`); `None` for a
/// scope that is not defined.
fn scope_binding(scope: &str) -> Option<&'static [&'static str]> {
    match scope {
        VIEW_SCOPE => Some(&[VIEW]),
        "openid" => Some(&[]),
        _ => None,
    }
}

/// Whether `caller` passes `rule` on a path of `path_tenant` (SPEC C1, C2, C4, C5). The
/// secure default requires an authenticated caller of the path's tenant, nothing more.
pub fn authorized(lookup: RefLookup, caller: &Caller, path_tenant: Option<&str>) -> bool {
    let rule: &RefRule = match lookup {
        RefLookup::Rule(rule) if !rule.secure => return true,
        RefLookup::Rule(rule) => rule,
        RefLookup::SecureDefault => return same_tenant(caller, path_tenant, Tenants::Own),
        RefLookup::MethodNotAllowed => return false,
    };
    if !same_tenant(caller, path_tenant, rule.tenants) {
        return false;
    }
    let holds = |required: &str| caller.permissions.iter().any(|held| covers(held, required));
    if !rule.scopes.is_empty() {
        let has_scope = |scope: &&str| match &caller.token_scopes {
            Some(scopes) => scopes.iter().any(|s| s == scope),
            // A Basic or certificate caller is judged by the permissions a scope is bound
            // to; a scope bound to none, or not defined, denies (C2, C4).
            None => scope_binding(scope).is_some_and(|perms| !perms.is_empty() && perms.iter().all(|p| holds(p))),
        };
        let ok = if rule.scopes_any { rule.scopes.iter().any(has_scope) } else { rule.scopes.iter().all(has_scope) };
        if !ok {
            return false;
        }
        if caller.token_scopes.is_some() {
            // The token's scopes were issued against its user's permissions (C2).
            return true;
        }
    }
    if rule.permissions.is_empty() {
        return true;
    }
    if rule.permissions_any {
        rule.permissions.iter().any(|p| holds(p))
    } else {
        rule.permissions.iter().all(|p| holds(p))
    }
}

fn same_tenant(caller: &Caller, path_tenant: Option<&str>, tenants: Tenants) -> bool {
    let path_tenant = path_tenant.unwrap_or(SUPER_TENANT);
    let caller_tenant = caller.name.tenant();
    caller_tenant.eq_ignore_ascii_case(path_tenant)
        || match tenants {
            Tenants::Own => false,
            Tenants::Any => true,
            Tenants::These(list) => list.iter().any(|t| t.eq_ignore_ascii_case(caller_tenant)),
        }
}

/// The canonical path's segments for the reference lookup.
pub fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}
