// One verification of a signed JWT, shared by the `oauth2` handler and the token server's
// introspection and revocation: structure, header (strictly parsed, `crit` refused), the
// issuer named by `iss`, its key for the `kid` and `alg`, the signature (jsonwebtoken),
// then every claim check (ours: jsonwebtoken lets absent `iss`/`aud` and `iss` arrays
// pass), and this process's revocations for its own tokens.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::claims::{seconds, ClaimRules};
use super::jwks::RemoteKeys;
use super::keys::{verification_key, KeySet, Refreshed, VerificationKey};
use crate::error::AuthError;
use crate::state::RevokedTokens;

/// The issuers whose tokens are accepted, and the rules every token meets.
pub(crate) struct JwtVerifier {
    pub(super) issuers: HashMap<String, Issuer>,
    /// Seconds of clock skew allowed on `exp`, `nbf` and `iat`.
    pub(super) leeway: u64,
    /// The `typ` header a token must carry (`at+jwt`), when set.
    pub(super) require_typ: Option<String>,
}

pub(super) struct Issuer {
    /// The exact `iss`.
    pub(super) name: String,
    pub(super) audience: Option<String>,
    /// How its claims name the caller.
    pub(super) rules: ClaimRules,
    pub(super) keys: Vec<VerificationKey>,
    pub(super) remote: Option<Arc<RemoteKeys>>,
    /// Set for the token server of this process: its revocations apply to these tokens.
    pub(super) revoked: Option<RevokedTokens>,
    /// Verified tokens are also introspected (`introspect = true`).
    pub(super) introspect: bool,
}

/// The token server of this process as a trusted issuer: its keys (HMAC ones included,
/// which are never published) and its revocation list.
pub(crate) struct LocalIssuer {
    pub(crate) issuer: String,
    pub(crate) audience: Option<String>,
    pub(crate) keys: Vec<(String, Algorithm, DecodingKey)>,
    pub(crate) revoked: RevokedTokens,
}

impl JwtVerifier {
    /// The token server of this process as the only issuer: what its introspection and
    /// revocation endpoints accept as one of its access tokens (`typ` `at+jwt`, no leeway).
    #[cfg(feature = "oauth2-server")]
    pub(crate) fn local(local: LocalIssuer, roles_claim: &str) -> Self {
        let mut issuers = HashMap::new();
        let name = local.issuer.clone();
        issuers.insert(name, Issuer::local(local, ClaimRules::local(roles_claim)));
        Self { issuers, leeway: 0, require_typ: Some("at+jwt".to_owned()) }
    }

    /// The claims of a token that passes [`verify`](Self::verify).
    #[cfg(feature = "oauth2-server")]
    pub(crate) async fn claims(&self, token: &str) -> Result<serde_json::Map<String, Value>, AuthError> {
        match self.verify(token).await? {
            (Value::Object(claims), _, _) => Ok(claims),
            _ => Err(invalid("claims are not an object")),
        }
    }

    /// Whether tokens of `iss` are accepted.
    pub(super) fn trusts(&self, iss: &str) -> bool {
        self.issuers.contains_key(iss)
    }

    /// Structure, header, issuer, key, signature, then claims. Each part is decoded and
    /// parsed once (strictly: a member named twice refuses); jsonwebtoken only checks the
    /// signature. Returns the claims, `exp` and the issuer.
    pub(super) async fn verify(&self, token: &str) -> Result<(Value, u64, &Issuer), AuthError> {
        let base64url = |b: u8| super::header::is_alphanumeric(b) | (b == b'-') | (b == b'_') | (b == b'.');
        let parts_ok = super::header::all_bytes(token.as_bytes(), base64url) && token.split('.').all(|p| !p.is_empty());
        let (Some((message, signature)), true) = (token.rsplit_once('.'), parts_ok) else {
            return Err(invalid("not a JWS compact serialization"));
        };
        let header = decode_header(message)?;
        // jku, x5u, jwk and x5c are never looked at: keys come only from configuration.
        let payload = message.split_once('.').map_or("", |(_, payload)| payload);
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| invalid("payload is not base64url"))?;
        let claims = super::json::parse(&bytes).map_err(|_| invalid("payload is not JSON without duplicates"))?;
        // `iss` chooses whose keys verify the signature; it is checked again with the claims.
        let issuer_name = match claims.get("iss") {
            Some(Value::String(iss)) => iss.as_str(),
            _ => return Err(invalid("iss missing or not a single string")),
        };
        let issuer = self.issuers.get(issuer_name).ok_or_else(|| invalid("unknown issuer"))?;
        let selected = issuer.select(header.kid.as_deref(), header.alg).await?;
        let key = selected.key();
        // `select` checked that the key verifies exactly this algorithm.
        if !key.verifies(message.as_bytes(), signature, header.alg) {
            return Err(invalid("bad signature"));
        }
        if let Some(required) = &self.require_typ {
            let typ = header.typ.as_deref().unwrap_or_default();
            let matches = typ.eq_ignore_ascii_case(required)
                || typ.strip_prefix("application/").is_some_and(|t| t.eq_ignore_ascii_case(required));
            if !matches {
                return Err(invalid("wrong typ (not an access token)"));
            }
        }
        let exp = self.check_claims(&claims, issuer_name, issuer)?;
        if let Some(revoked) = &issuer.revoked {
            if revoked.is_stale() {
                return Err(stale_revocations());
            }
            let (jti, client) =
                (claims.get("jti").and_then(Value::as_str), claims.get("client_id").and_then(Value::as_str));
            if revoked.is_revoked(jti, client, claims.get("iat").and_then(seconds)) {
                return Err(invalid("token revoked"));
            }
        }
        Ok((claims, exp, issuer))
    }

    /// `exp` required; `nbf`/`iat` not in the future beyond the leeway;
    /// `iss` a single string equal to the issuer; `aud` containing the audience; claims of
    /// the wrong JSON type refuse. Returns `exp`.
    fn check_claims(&self, claims: &Value, issuer_name: &str, issuer: &Issuer) -> Result<u64, AuthError> {
        let claims = claims.as_object().ok_or_else(|| invalid("claims are not an object"))?;
        let now = crate::unix_seconds();
        let time = |name: &str| -> Result<Option<u64>, AuthError> {
            match claims.get(name) {
                None => Ok(None),
                Some(value) => seconds(value).map(Some).ok_or_else(|| invalid("a time claim is not a number")),
            }
        };
        let exp = time("exp")?.ok_or_else(|| invalid("exp missing"))?;
        if now > exp.saturating_add(self.leeway) {
            return Err(invalid("token expired"));
        }
        if time("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(invalid("token not yet valid"));
        }
        if time("iat")?.is_some_and(|iat| iat > now.saturating_add(self.leeway)) {
            return Err(invalid("token issued in the future"));
        }
        if claims.get("iss").and_then(Value::as_str) != Some(issuer_name) {
            return Err(invalid("iss mismatch"));
        }
        if let Some(audience) = &issuer.audience {
            let contains = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(list)) if list.iter().all(Value::is_string) => {
                    list.iter().any(|a| a == audience.as_str())
                }
                _ => false,
            };
            if !contains {
                return Err(invalid("audience mismatch"));
            }
        }
        Ok(exp)
    }
}

/// The key chosen for a token: one from the configuration file or one of the fetched set.
enum Selected<'a> {
    Static(&'a VerificationKey),
    Remote(Arc<KeySet>, usize),
}

impl Selected<'_> {
    fn key(&self) -> &VerificationKey {
        match self {
            Selected::Static(key) => key,
            Selected::Remote(set, index) => &set.keys[*index],
        }
    }
}

impl Issuer {
    /// The token server of this process: all its keys (HMAC ones too) and its revocations.
    pub(super) fn local(local: LocalIssuer, rules: ClaimRules) -> Self {
        let keys = local.keys.into_iter().map(|(kid, alg, key)| verification_key(Some(kid), alg, key)).collect();
        Issuer {
            name: local.issuer,
            audience: local.audience,
            rules,
            keys,
            remote: None,
            revoked: Some(local.revoked),
            introspect: false,
        }
    }

    /// The key named by `kid` (or the only key when the token names none), which must
    /// verify exactly the header's algorithm. A `kid` the set publishes for
    /// another use is refused at once. An unknown `kid` asks the remote key source for a (rate-limited, shared) refresh once; the answer is
    /// 401 only once a fetch that completed for this request (or that it waited for) still
    /// lacks the key. While the refresh is rate limited, failed or no key set was ever
    /// fetched, it is 503 with `Retry-After`: a valid token of a key published since the
    /// last fetch is never refused.
    async fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<Selected<'_>, AuthError> {
        if let Some(index) = find(&self.keys, kid, self.remote.is_none()) {
            return checked(Selected::Static(&self.keys[index]), alg);
        }
        let Some(remote) = &self.remote else { return Err(invalid("no configured key for this kid")) };
        remote.ensure_background();
        let only_remote = self.keys.is_empty();
        let set = remote.current();
        if let Some(index) = find(&set.keys, kid, only_remote) {
            return checked(Selected::Remote(set, index), alg);
        }
        if set.is_unusable(kid) {
            return Err(invalid("the kid names a published key that does not verify signatures"));
        }
        let refreshed = remote.refresh().await;
        let set = remote.current();
        if let Some(index) = find(&set.keys, kid, only_remote) {
            return checked(Selected::Remote(set, index), alg);
        }
        match refreshed {
            Refreshed::Fetched => Err(invalid("no key for this kid")),
            Refreshed::Failed | Refreshed::RateLimited => {
                let retry_after = remote.retry_after().as_secs_f64().ceil().max(1.0) as u64;
                Err(AuthError::unavailable("signing keys cannot be refreshed yet").with_retry_after(retry_after))
            }
        }
    }
}

/// The position of the key with this `kid`; without a `kid`, of the only key when
/// `sole_source` holds it.
fn find(keys: &[VerificationKey], kid: Option<&str>, sole_source: bool) -> Option<usize> {
    match kid {
        Some(kid) => keys.iter().position(|k| k.kid.as_deref() == Some(kid)),
        None if sole_source && keys.len() == 1 => Some(0),
        None => None,
    }
}

fn checked(selected: Selected<'_>, alg: Algorithm) -> Result<Selected<'_>, AuthError> {
    if selected.key().algorithms.contains(&alg) {
        Ok(selected)
    } else {
        Err(invalid("alg is not an algorithm of the key"))
    }
}

/// jsonwebtoken panics at the first verification when no crypto backend or two are
/// enabled; features unify across a build, so a dependency enabling the other backend
/// would break us. Installing ours first settles it (a second install is a no-op error).
pub(crate) fn install_crypto_provider() {
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
}

/// The shared revocations could not be confirmed recently enough: 503, try again.
pub(super) fn stale_revocations() -> AuthError {
    tracing::error!(target: crate::AUDIT_TARGET, "the revocation replica is stale: tokens of this issuer wait");
    AuthError::unavailable("revocations not current").with_retry_after(1)
}

pub(super) fn invalid(reason: &'static str) -> AuthError {
    AuthError::invalid_credentials(reason)
}

/// What verification reads of a JOSE header: the algorithm, and `kid` and `typ` when named.
struct JoseHeader {
    alg: Algorithm,
    kid: Option<String>,
    typ: Option<String>,
}

/// The JOSE header, parsed strictly (a member named twice refuses). Any `crit` refuses:
/// no extension is understood here (RFC 7515 section 4.1.11). `alg` must name an
/// algorithm, `kid` and `typ` must be strings when present; the other members are never
/// read.
fn decode_header(message: &str) -> Result<JoseHeader, AuthError> {
    let encoded = message.split_once('.').map_or(message, |(header, _)| header);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| invalid("header is not base64url"))?;
    let [alg, kid, typ, crit] = super::json::members(&bytes, ["alg", "kid", "typ", "crit"])
        .map_err(|_| invalid("header is not a JSON object without duplicates"))?;
    if crit.is_some() {
        return Err(invalid("crit header present"));
    }
    let alg = match alg {
        Some(Value::String(alg)) => alg.parse::<Algorithm>().map_err(|_| invalid("malformed JWT header"))?,
        _ => return Err(invalid("malformed JWT header")),
    };
    let text = |member: Option<Value>| match member {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(invalid("malformed JWT header")),
    };
    Ok(JoseHeader { alg, kid: text(kid)?, typ: text(typ)? })
}

/// A JWS compact serialization has exactly three dot-separated parts.
pub(super) fn is_jws(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: &str) -> Result<JoseHeader, String> {
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        decode_header(&format!("{encoded}.e30")).map_err(|e| e.to_string())
    }

    // SPEC F9, F10: the header is read strictly: `alg` a known algorithm, `kid` and `typ`
    // strings, any `crit` and any member named twice refuse; other members are not read.
    #[test]
    fn header_is_read_strictly() {
        let ok = header(r#"{"alg":"ES256","kid":"k1","typ":"at+jwt","jwk":7,"x5c":"junk"}"#).unwrap();
        assert_eq!((ok.alg, ok.kid.as_deref(), ok.typ.as_deref()), (Algorithm::ES256, Some("k1"), Some("at+jwt")));
        let bare = header(r#"{"alg":"EdDSA","kid":null}"#).unwrap();
        assert_eq!((bare.alg, bare.kid, bare.typ), (Algorithm::EdDSA, None, None));
        for (json, reason) in [
            (r#"{"alg":"none"}"#, "malformed JWT header"),
            (r#"{"alg":"hs256"}"#, "malformed JWT header"),
            (r#"{"kid":"k1"}"#, "malformed JWT header"),
            (r#"{"alg":["RS256"]}"#, "malformed JWT header"),
            (r#"{"alg":"RS256","kid":1}"#, "malformed JWT header"),
            (r#"{"alg":"RS256","typ":{}}"#, "malformed JWT header"),
            (r#"["RS256"]"#, "not a JSON object"),
            (r#"{"alg":"RS256","crit":["exp"]}"#, "crit header present"),
            (r#"{"alg":"RS256","crit":null}"#, "crit header present"),
            (r#"{"alg":"RS256","alg":"HS256"}"#, "without duplicates"),
            (r#"{"alg":"RS256","kid":"a","k\u0069d":"b"}"#, "without duplicates"),
            (r#"{"alg":"RS256","jwk":{"kty":"oct","kty":"RSA"}}"#, "without duplicates"),
        ] {
            let error = header(json).err().unwrap_or_else(|| panic!("{json} was accepted"));
            assert!(error.contains(reason), "{json}: {error}");
        }
    }
}
