// How a verified token's claims (or an introspection answer) name the caller, per issuer
// (SPEC A5, A13, A14, F12): the subject claim and its format, the tenant claim, the roles
// claim (a name or a path into nested objects) and the scope claim in its shapes.

use serde_json::Value;

use crate::config::{ClaimSettings, ConfigError, SourceMap, Spanned, SubjectFormat};
use crate::error::AuthError;
use crate::identity::QualifiedName;

fn invalid(reason: &'static str) -> AuthError {
    AuthError::invalid_credentials(reason)
}

/// Whose callers a token names, and what the user store says about them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Subjects {
    /// Another issuer's opaque subjects: never looked up.
    Opaque,
    /// WSO2 names of this crate's users: their permissions apply; a user the store does
    /// not know holds none.
    Qualified,
    /// The token server of this process: the user must still exist and be enabled.
    Local,
}

/// The claim rules of one issuer (or of the introspection endpoint).
#[derive(Debug, Clone)]
pub(super) struct ClaimRules {
    pub(super) subjects: Subjects,
    subject_claim: String,
    tenant_claim: Option<String>,
    roles_claim: String,
    scope_claim: Option<String>,
}

impl ClaimRules {
    /// The token server of this process: qualified subjects of existing users, the
    /// `[oauth2]` roles claim, `scope`.
    pub(super) fn local(roles_claim: &str) -> Self {
        Self {
            subjects: Subjects::Local,
            subject_claim: "sub".to_owned(),
            tenant_claim: None,
            roles_claim: roles_claim.to_owned(),
            scope_claim: None,
        }
    }

    /// The rules an `[[oauth2.issuer]]` or `[oauth2.introspection]` table sets;
    /// `default_roles` is `[oauth2] roles_claim`.
    pub(super) fn from_settings(
        settings: ClaimSettings<'_>,
        default_roles: &str,
        source: &SourceMap,
    ) -> Result<Self, ConfigError> {
        let name = |claim: Option<&Spanned<String>>, key: &str| -> Result<Option<String>, ConfigError> {
            match claim {
                Some(claim) if claim.get_ref().is_empty() => Err(source.error(claim.span(), key, "name a claim")),
                Some(claim) => Ok(Some(claim.get_ref().clone())),
                None => Ok(None),
            }
        };
        let subjects = match settings.subject_format {
            SubjectFormat::Opaque => Subjects::Opaque,
            SubjectFormat::Qualified => Subjects::Qualified,
        };
        if let (Some(claim), Subjects::Qualified) = (settings.tenant_claim, subjects) {
            let message = "tenant_claim is for opaque subjects; a qualified subject names its tenant (user@tenant)";
            return Err(source.error(claim.span(), "tenant_claim", message));
        }
        Ok(Self {
            subjects,
            subject_claim: name(settings.subject_claim, "subject_claim")?.unwrap_or_else(|| "sub".to_owned()),
            tenant_claim: name(settings.tenant_claim, "tenant_claim")?,
            roles_claim: name(settings.roles_claim, "roles_claim")?.unwrap_or_else(|| default_roles.to_owned()),
            scope_claim: name(settings.scope_claim, "scope_claim")?,
        })
    }

    /// The subject's text. An introspection answer read with the default `sub` may name its
    /// caller as RFC 7662's `username` instead, or, for a client-credentials token, only
    /// by its `client_id`.
    pub(super) fn subject<'a>(&self, claims: &'a Value, introspected: bool) -> Result<&'a str, AuthError> {
        let mut value = claims.get(&self.subject_claim);
        if introspected && self.subject_claim == "sub" {
            value = value.or_else(|| claims.get("username")).or_else(|| claims.get("client_id"));
        }
        value.and_then(Value::as_str).ok_or_else(|| invalid("subject claim missing or not a string"))
    }

    /// The caller's name: the subject whole (opaque, in the super tenant or the tenant
    /// claim's), or parsed as a WSO2 name.
    pub(super) fn name(&self, claims: &Value, subject: &str) -> Result<QualifiedName, AuthError> {
        let name = match (self.subjects, &self.tenant_claim) {
            (Subjects::Opaque, None) => QualifiedName::opaque(subject),
            (Subjects::Opaque, Some(claim)) => {
                let tenant = claims.get(claim).and_then(Value::as_str);
                QualifiedName::opaque_in_tenant(subject, tenant.ok_or_else(|| invalid("tenant claim missing"))?)
            }
            (Subjects::Qualified | Subjects::Local, _) => QualifiedName::parse(subject),
        };
        name.map_err(|_| invalid("subject is not a valid name"))
    }

    /// The roles: an array of strings at the roles claim, or none without it.
    pub(super) fn roles(&self, claims: &Value) -> Result<Vec<String>, AuthError> {
        match claim_at(claims, &self.roles_claim)? {
            None => Ok(Vec::new()),
            Some(value) => string_array(value).ok_or_else(|| invalid("roles claim is not an array of strings")),
        }
    }

    /// The scopes, sorted and without duplicates: from the configured
    /// scope claim, or from `scope` or `scp`, each a space-delimited string or an array of
    /// strings; both present must say the same.
    pub(super) fn scopes(&self, claims: &Value) -> Result<Vec<String>, AuthError> {
        let read = |name: &str| claims.get(name).map(scope_list).transpose();
        match &self.scope_claim {
            Some(name) => Ok(read(name)?.unwrap_or_default()),
            None => match (read("scope")?, read("scp")?) {
                (Some(scope), Some(scp)) if scope != scp => Err(invalid("scope and scp differ")),
                (Some(scopes), _) | (None, Some(scopes)) => Ok(scopes),
                (None, None) => Ok(Vec::new()),
            },
        }
    }
}

/// The value at `path`: a claim of that exact name, or else a dot-separated path of object
/// members (`realm_access.roles`). A path through a value that is not an object refuses
/// (a claim of the wrong type); a member that is not there is `None`.
fn claim_at<'a>(claims: &'a Value, path: &str) -> Result<Option<&'a Value>, AuthError> {
    if let Some(value) = claims.get(path) {
        return Ok(Some(value));
    }
    let mut current = claims;
    for member in path.split('.') {
        let object = current.as_object().ok_or_else(|| invalid("a claim on the roles path is not an object"))?;
        match object.get(member) {
            Some(value) => current = value,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// One scope claim: a space-delimited string (RFC 6749 3.3) or an array with one scope per
/// element (RFC 8693 4.2, RFC 9068 2.2.3.1). Empty tokens (double or edge spaces), empty
/// elements or elements holding a space refuse; nothing is split on commas.
fn scope_list(value: &Value) -> Result<Vec<String>, AuthError> {
    let mut scopes: Vec<String> = match value {
        Value::String(text) if text.is_empty() => Vec::new(),
        Value::String(text) => text.split(' ').map(str::to_owned).collect(),
        Value::Array(items) => {
            string_array(value).ok_or_else(|| invalid("a scope array holds a non-string"))?;
            items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        _ => return Err(invalid("scope claim is neither a string nor an array of strings")),
    };
    if scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
        return Err(invalid("scope has an empty or spaced token"));
    }
    scopes.sort_unstable();
    scopes.dedup();
    Ok(scopes)
}

pub(super) fn string_array(value: &Value) -> Option<Vec<String>> {
    value.as_array()?.iter().map(|v| v.as_str().map(str::to_owned)).collect()
}

/// A NumericDate (RFC 7519): a number of seconds, integer or not, within the range of a
/// signed 64-bit count: `1e300` or `2^64` are malformed, never "no expiry".
/// A time before 1970 reads as 0 (long past).
pub(super) fn seconds(value: &Value) -> Option<u64> {
    let whole = match value.as_i64() {
        Some(whole) => whole,
        None => {
            let real = value.as_f64()?;
            // i64::MIN as f64 is exactly -2^63, i64::MAX as f64 rounds up to 2^63.
            if !(real.is_finite() && real >= i64::MIN as f64 && real < i64::MAX as f64) {
                return None;
            }
            real as i64
        }
    };
    Some(u64::try_from(whole).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(scope_claim: Option<&str>, roles_claim: &str) -> ClaimRules {
        ClaimRules {
            subjects: Subjects::Opaque,
            subject_claim: "sub".to_owned(),
            tenant_claim: None,
            roles_claim: roles_claim.to_owned(),
            scope_claim: scope_claim.map(str::to_owned),
        }
    }

    // SPEC A14, F12: `scope` or `scp`, string or array; exact, space-delimited, never split
    // on commas; both present must agree; malformed forms refuse.
    #[test]
    fn scope_claims() {
        let default = rules(None, "roles");
        let scopes = |claims: Value| default.scopes(&claims);
        assert_eq!(scopes(json!({"scope": "b a b"})).unwrap(), ["a", "b"]);
        assert_eq!(scopes(json!({"scope": "a,b"})).unwrap(), ["a,b"]);
        assert_eq!(scopes(json!({"scp": ["x", "y"]})).unwrap(), ["x", "y"]);
        assert_eq!(scopes(json!({"scp": "User.Read Mail.Send"})).unwrap(), ["Mail.Send", "User.Read"]);
        assert_eq!(scopes(json!({"scope": ["read", "write"]})).unwrap(), ["read", "write"]);
        assert_eq!(scopes(json!({"scope": "a b", "scp": ["b", "a"]})).unwrap(), ["a", "b"]);
        assert_eq!(scopes(json!({})).unwrap(), Vec::<String>::new());
        for bad in [
            json!({"scope": "a  b"}),
            json!({"scope": " a"}),
            json!({"scope": ["a b"]}),
            json!({"scope": [""]}),
            json!({"scp": [1]}),
            json!({"scp": {"a": true}}),
            json!({"scope": "a", "scp": ["a", "b"]}),
            json!({"scope": "a", "scp": "b"}),
        ] {
            assert!(scopes(bad.clone()).is_err(), "{bad}");
        }
        let permissions = rules(Some("permissions"), "roles");
        let claims = json!({"scope": "openid", "scp": "other", "permissions": ["read:reports"]});
        assert_eq!(permissions.scopes(&claims).unwrap(), ["read:reports"]);
    }

    // SPEC A13: roles from a claim name or a path into nested objects; an exact claim name
    // (namespaced, with dots) wins over the path reading.
    #[test]
    fn roles_claim_paths() {
        let claims = json!({
            "realm_access": {"roles": ["offline_access", "admin"]},
            "resource_access": {"my-api": {"roles": ["reader"]}},
            "https://example.com/roles": ["namespaced"],
            "flat": "admin",
        });
        let roles = |path: &str| rules(None, path).roles(&claims);
        assert_eq!(roles("realm_access.roles").unwrap(), ["offline_access", "admin"]);
        assert_eq!(roles("resource_access.my-api.roles").unwrap(), ["reader"]);
        assert_eq!(roles("https://example.com/roles").unwrap(), ["namespaced"]);
        assert_eq!(roles("resource_access.other-api.roles").unwrap(), Vec::<String>::new());
        assert!(roles("flat.roles").is_err(), "a path through a string");
        assert!(roles("realm_access").is_err(), "an object where an array belongs");
    }
}
