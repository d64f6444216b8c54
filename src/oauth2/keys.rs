// The token server's keys: the one that signs, and the public set published as a JWKS
// (SPEC D1, D5). Keys come only from `[[oauth2_server.key]]`; a key without `kid` is
// named by its RFC 7638 thumbprint.

use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, Deployment, SigningKeyConfig, SourceMap, Spanned};

/// One configured key: what signs with it and what verifies it.
pub(super) struct SigningKey {
    pub(super) kid: String,
    pub(super) algorithm: Algorithm,
    pub(super) encoding: EncodingKey,
    pub(super) decoding: DecodingKey,
    /// The public JWK; `None` for HMAC keys, which are never published.
    pub(super) public: Option<Value>,
    /// The HMAC key of login-session cookies, derived from the private key.
    pub(super) session_key: [u8; 32],
}

pub(super) struct SigningKeys {
    /// The first configured key signs; all verify.
    pub(super) keys: Vec<SigningKey>,
    /// `{"keys": [...]}` with the public keys.
    pub(super) jwks: Value,
}

impl SigningKeys {
    pub(super) fn from_config(deployment: &Deployment) -> Result<Self, ConfigError> {
        let source = &deployment.source;
        let Some(server) = &deployment.oauth2_server else {
            return Err(source.error(0..0, "oauth2_server", "the token server needs an [oauth2_server] table"));
        };
        if server.get_ref().key.is_empty() {
            return Err(source.error(server.span(), "key", "the token server needs a [[oauth2_server.key]]"));
        }
        let mut keys: Vec<SigningKey> = Vec::new();
        for table in &server.get_ref().key {
            let key = load(table, source).map_err(|(key, message)| source.error(span_of(table, key), key, message))?;
            if keys.iter().any(|k| k.kid == key.kid) {
                let message =
                    "two keys have this kid (a key without kid is named by its thumbprint: the same key twice?)";
                return Err(source.error(span_of(table, "kid"), "kid", message));
            }
            keys.push(key);
        }
        let public: Vec<&Value> = keys.iter().filter_map(|k| k.public.as_ref()).collect();
        Ok(Self { jwks: json!({ "keys": public }), keys })
    }

    pub(super) fn signing(&self) -> &SigningKey {
        // `from_config` refuses an empty key list.
        &self.keys[0]
    }
}

type LoadError = (&'static str, String);

/// Where a key's error points: the offending value when it is there, else the table.
fn span_of(table: &Spanned<SigningKeyConfig>, key: &str) -> std::ops::Range<usize> {
    let config = table.get_ref();
    let value = match key {
        "kid" => config.kid.as_ref().map(Spanned::span),
        "algorithm" => Some(config.algorithm.span()),
        "secret_base64" => config.secret_base64.as_ref().map(Spanned::span),
        "pem_file" => config.pem_file.as_ref().map(Spanned::span),
        "pem" => config.pem.as_ref().or(config.pem_file.as_ref()).map(Spanned::span),
        _ => None,
    };
    value.unwrap_or_else(|| table.span())
}

fn load(table: &Spanned<SigningKeyConfig>, source: &SourceMap) -> Result<SigningKey, LoadError> {
    let config = table.get_ref();
    let algorithm = match config.algorithm.get_ref().as_str() {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        "HS256" => Algorithm::HS256,
        _ => return Err(("algorithm", "the token server signs with RS256, ES256, EdDSA or HS256".to_owned())),
    };
    let (encoding, decoding, jwk, material) = match algorithm {
        Algorithm::HS256 => hmac(config)?,
        _ => private_key(config, algorithm, source)?,
    };
    // Login sessions are signed with a key derived from the private key: every instance
    // configured with the same key accepts the others' sessions, and nothing else can.
    let session_key =
        Sha256::new().chain_update(b"tower-secure login session v1\0").chain_update(&material).finalize().into();
    let kid = match &config.kid {
        Some(kid) => checked_kid(kid.get_ref())?,
        None => thumbprint(&jwk)?,
    };
    // HMAC keys are never published.
    let public = match algorithm {
        Algorithm::HS256 => None,
        _ => Some(with_kid(jwk, &kid)),
    };
    Ok(SigningKey { kid, algorithm, encoding, decoding, public, session_key })
}

fn checked_kid(kid: &str) -> Result<String, LoadError> {
    if kid.is_empty() || !kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(("kid", "a kid is one or more visible ASCII characters".to_owned()));
    }
    Ok(kid.to_owned())
}

/// The public JWK with its `kid`.
fn with_kid(mut jwk: Value, kid: &str) -> Value {
    jwk["kid"] = Value::from(kid);
    jwk
}

/// The RFC 7638 thumbprint of a JWK: SHA-256 over its required members in lexicographic
/// order and without white space, base64url.
fn thumbprint(jwk: &Value) -> Result<String, LoadError> {
    let members: &[&str] = match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA") => &["e", "kty", "n"],
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("OKP") => &["crv", "kty", "x"],
        Some("oct") => &["k", "kty"],
        _ => return Err(("kid", "no thumbprint for this key type: give a kid".to_owned())),
    };
    let mut canonical = Vec::with_capacity(members.len());
    for member in members {
        let value = jwk.get(*member).and_then(Value::as_str).ok_or(("kid", format!("the key has no `{member}`")))?;
        // A JSON string: the members are base64url or names, but encode them as JSON all the same.
        canonical.push(format!("\"{member}\":{}", Value::from(value)));
    }
    let digest = Sha256::digest(format!("{{{}}}", canonical.join(",")));
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest))
}

/// The HS256 signing and verification keys, and the secret as a JWK (for its thumbprint).
fn hmac(config: &SigningKeyConfig) -> Result<(EncodingKey, DecodingKey, Value, Vec<u8>), LoadError> {
    let secret =
        config.secret_base64.as_ref().ok_or(("secret_base64", "an HS256 key needs secret_base64".to_owned()))?;
    if config.pem.is_some() || config.pem_file.is_some() {
        return Err(("pem", "an HS256 key takes only secret_base64".to_owned()));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret.get_ref())
        .map_err(|_| ("secret_base64", "not base64".to_owned()))?;
    let decoding = crate::authn::hmac_key(&bytes, Algorithm::HS256).map_err(|m| ("secret_base64", m))?;
    let jwk = json!({ "kty": "oct", "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes) });
    Ok((EncodingKey::from_secret(&bytes), decoding, jwk, bytes))
}

/// The signing key, its verification key and its public JWK (with `use` and `alg`).
fn private_key(
    config: &SigningKeyConfig,
    algorithm: Algorithm,
    source: &SourceMap,
) -> Result<(EncodingKey, DecodingKey, Value, Vec<u8>), LoadError> {
    if config.secret_base64.is_some() {
        return Err(("secret_base64", "only HS256 keys take a secret".to_owned()));
    }
    let text = match (&config.pem, &config.pem_file) {
        (Some(pem), None) => pem.get_ref().clone(),
        (None, Some(path)) => crate::config::read_text(source.resolve(path.get_ref()))
            .map_err(|e| ("pem_file", format!("cannot read {}: {e}", path.get_ref())))?,
        _ => return Err(("pem", "give exactly one of pem and pem_file".to_owned())),
    };
    let bad = |e: jsonwebtoken::errors::Error| ("pem", format!("not a PKCS#8 private key for {algorithm:?}: {e}"));
    let encoding = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(text.as_bytes()).map_err(bad)?,
        Algorithm::ES256 => EncodingKey::from_ec_pem(text.as_bytes()).map_err(bad)?,
        _ => EncodingKey::from_ed_pem(text.as_bytes()).map_err(bad)?,
    };
    let mut jwk = match algorithm {
        // jsonwebtoken 10.4 cannot derive an Ed25519 JWK (`unimplemented!`): built here.
        Algorithm::EdDSA => ed25519_jwk(&text)?,
        _ => Jwk::from_encoding_key(&encoding, algorithm).map_err(bad)?,
    };
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(match algorithm {
        Algorithm::RS256 => KeyAlgorithm::RS256,
        Algorithm::ES256 => KeyAlgorithm::ES256,
        _ => KeyAlgorithm::EdDSA,
    });
    let decoding = DecodingKey::from_jwk(&jwk).map_err(bad)?;
    // Signing once proves the key fits the algorithm and its published half (an RSA key
    // given as ES256 fails here, not at the first token request).
    let probe = jsonwebtoken::crypto::sign(b"probe", &encoding, algorithm).map_err(bad)?;
    let verified = jsonwebtoken::crypto::verify(&probe, b"probe", &decoding, algorithm).unwrap_or(false);
    if !verified {
        return Err(("pem", "the key does not verify its own signature".to_owned()));
    }
    if let jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) = &jwk.algorithm {
        crate::authn::check_rsa_modulus(&rsa.n).map_err(|m| ("pem", m))?;
    }
    let public = serde_json::to_value(&jwk).map_err(|e| ("pem", e.to_string()))?;
    Ok((encoding, decoding, public, text.into_bytes()))
}

/// The public JWK (`kty` OKP, `crv` Ed25519) of a PKCS#8 Ed25519 private key.
fn ed25519_jwk(pem_text: &str) -> Result<Jwk, LoadError> {
    use aws_lc_rs::signature::KeyPair as _;
    let bad = |m: &str| ("pem", format!("not a PKCS#8 Ed25519 private key: {m}"));
    let der = pem::parse(pem_text).map_err(|e| bad(&e.to_string()))?;
    let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.contents())
        .map_err(|e| bad(&e.to_string()))?;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    serde_json::from_value(json!({ "kty": "OKP", "crv": "Ed25519", "x": x })).map_err(|e| bad(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPEC D1: a key without `kid` is named by its RFC 7638 thumbprint (the RFC's own
    // example, section 3.1), whatever other members the JWK carries.
    #[test]
    fn default_kid_is_the_rfc_7638_thumbprint() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRX\
                 jBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSq\
                 zs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHa\
                 Q-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let jwk = json!({ "kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29" });
        assert_eq!(thumbprint(&jwk).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert!(thumbprint(&json!({ "kty": "RSA", "n": n })).is_err(), "a missing member is an error");
    }
}
