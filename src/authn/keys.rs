// Verification keys: loaded from the rule file (PEM, JWK, HMAC secrets) or from a JWKS
// document, each checked for strength and for the algorithms it may verify; shared by the
// bearer handler, the remote key sets and the token server's own keys.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::ParsedPublicKey;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use serde_json::Value;

use crate::config::{ConfigError, IssuerConfig, KeyConfig, SourceMap, Spanned};

/// What a refresh asked for by an unknown `kid` came to (only a key fetch, feature
/// `remote-keys`, makes one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "remote-keys"), allow(dead_code))]
pub(crate) enum Refreshed {
    /// A fetch ran (this caller's, or one it waited for) and stored a key set.
    Fetched,
    /// That fetch failed; the previous keys stay.
    Failed,
    /// Too soon after the last fetch: nothing ran.
    RateLimited,
}

/// A key and the algorithms it verifies.
pub(super) struct VerificationKey {
    pub(super) kid: Option<String>,
    /// The algorithms this key verifies: the one it was configured or published with, or,
    /// for a published key without `alg`, those its issuer allows that fit its type.
    pub(super) algorithms: Vec<Algorithm>,
    pub(super) key: DecodingKey,
    /// The public key parsed by aws-lc once per asymmetric algorithm it verifies, so that
    /// checking a signature does not parse (and copy) the key again; HMAC keys have none.
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl VerificationKey {
    pub(super) fn new(kid: Option<String>, algorithms: Vec<Algorithm>, key: DecodingKey) -> Self {
        let parsed = algorithms.iter().filter_map(|&a| parse_public_key(&key, a).map(|parsed| (a, parsed))).collect();
        Self { kid, algorithms, key, parsed }
    }

    /// Whether `signature` (base64url) signs `message` under `algorithm`, which the caller
    /// checked this key verifies: with the parsed key when there is one (the same aws-lc
    /// verification jsonwebtoken runs, without parsing the key each time), otherwise
    /// (HMAC) through jsonwebtoken.
    pub(super) fn verifies(&self, message: &[u8], signature: &str, algorithm: Algorithm) -> bool {
        match self.parsed.iter().find(|(a, _)| *a == algorithm) {
            Some((_, parsed)) => base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(signature)
                .is_ok_and(|signature| parsed.verify_sig(message, &signature).is_ok()),
            None => jsonwebtoken::crypto::verify(signature, message, &self.key, algorithm).unwrap_or(false),
        }
    }
}

/// The aws-lc verification algorithm jsonwebtoken's aws-lc backend uses for `algorithm`,
/// and the key parsed for it; `None` for HMAC or a key aws-lc does not take.
fn parse_public_key(key: &DecodingKey, algorithm: Algorithm) -> Option<ParsedPublicKey> {
    use aws_lc_rs::signature as sig;
    let verification: &'static dyn sig::VerificationAlgorithm = match algorithm {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &sig::ED25519,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => return None,
    };
    match key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => ParsedPublicKey::new(verification, bytes).ok(),
        DecodingKeyKind::RsaModulusExponent { n, e } => {
            let der = aws_lc_rs::rsa::PublicKeyComponents { n: n.as_slice(), e: e.as_slice() }.as_der().ok()?;
            ParsedPublicKey::new(verification, der.as_ref()).ok()
        }
    }
}

pub(super) fn load_issuer_keys(
    issuer: &IssuerConfig,
    allowed: Option<&[Algorithm]>,
    source: &SourceMap,
) -> Result<Vec<VerificationKey>, ConfigError> {
    let mut keys = Vec::new();
    for table in &issuer.key {
        let key = load_key(table, source)?;
        if allowed.is_some_and(|allowed| !key.algorithms.iter().all(|a| allowed.contains(a))) {
            let span = table.get_ref().algorithm.span();
            return Err(source.error(span, "algorithm", "not one of the issuer's algorithms"));
        }
        keys.push(key);
    }
    if let Some(file) = &issuer.jwks_file {
        let error = |m: String| source.error(file.span(), "jwks_file", m);
        let text = crate::config::read_text(source.resolve(file.get_ref()))
            .map_err(|e| error(format!("cannot read the file: {e}")))?;
        keys.extend(keys_from_jwks(&text, allowed).map_err(error)?.keys);
    }
    let mut kids: Vec<Option<&str>> = keys.iter().map(|k| k.kid.as_deref()).collect();
    kids.sort_unstable();
    if keys.len() > 1 && (kids.contains(&None) || kids.windows(2).any(|w| w[0] == w[1])) {
        return Err(source.error(issuer.issuer.span(), "kid", "with several keys, each needs a distinct kid"));
    }
    Ok(keys)
}

fn load_key(table: &Spanned<KeyConfig>, source: &SourceMap) -> Result<VerificationKey, ConfigError> {
    let config = table.get_ref();
    let span = table.span();
    let algorithm: Algorithm =
        config.algorithm.get_ref().parse().map_err(|_| {
            source.error(config.algorithm.span(), "algorithm", "not a JWS algorithm this crate verifies")
        })?;
    let error = |key: &str, m: String| source.error(span.clone(), key, m);
    let given = [config.pem.is_some(), config.pem_file.is_some(), config.jwk.is_some(), config.secret_base64.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(error("algorithm", "give exactly one of pem, pem_file, jwk, secret_base64".to_owned()));
    }
    let key = if let Some(pem) = &config.pem {
        public_key_from_pem(pem.get_ref(), algorithm).map_err(|m| error("pem", m))?
    } else if let Some(path) = &config.pem_file {
        let text = crate::config::read_text(source.resolve(path.get_ref()))
            .map_err(|e| error("pem_file", format!("cannot read the file: {e}")))?;
        public_key_from_pem(&text, algorithm).map_err(|m| error("pem_file", m))?
    } else if let Some(jwk) = &config.jwk {
        let jwk: Value = serde_json::from_str(jwk.get_ref()).map_err(|e| error("jwk", format!("not JSON: {e}")))?;
        public_key_from_jwk(&jwk, algorithm).map_err(|m| error("jwk", m))?
    } else if let Some(secret) = &config.secret_base64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(secret.get_ref())
            .map_err(|_| error("secret_base64", "not base64".to_owned()))?;
        hmac_key(&bytes, algorithm).map_err(|m| error("secret_base64", m))?
    } else {
        return Err(error("algorithm", "no key material".to_owned()));
    };
    Ok(verification_key(config.kid.clone(), algorithm, key))
}

pub(super) fn verification_key(kid: Option<String>, algorithm: Algorithm, key: DecodingKey) -> VerificationKey {
    VerificationKey::new(kid, vec![algorithm], key)
}

fn family(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => "HMAC",
        Algorithm::ES256 | Algorithm::ES384 => "EC",
        Algorithm::EdDSA => "OKP",
        _ => "RSA",
    }
}

/// HMAC keys at least as long as the hash (and never under 256 bits), for keys this crate
/// verifies with and keys its token server signs with.
pub(crate) fn hmac_key(secret: &[u8], algorithm: Algorithm) -> Result<DecodingKey, String> {
    let minimum = match algorithm {
        Algorithm::HS256 => 32,
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => return Err("secret_base64 is for HS256, HS384 and HS512 only".to_owned()),
    };
    if secret.len() < minimum {
        return Err(format!("an {algorithm:?} secret needs at least {minimum} bytes"));
    }
    Ok(DecodingKey::from_secret(secret))
}

fn public_key_from_pem(pem_text: &str, algorithm: Algorithm) -> Result<DecodingKey, String> {
    pem::parse(pem_text).map_err(|e| format!("not PEM: {e}"))?;
    let bytes = pem_text.as_bytes();
    match family(algorithm) {
        "RSA" => {
            let key = DecodingKey::from_rsa_pem(bytes).map_err(|e| format!("not an RSA public key: {e}"))?;
            check_rsa_size(key.as_bytes())?;
            Ok(key)
        }
        "EC" => {
            let key = DecodingKey::from_ec_pem(bytes).map_err(|e| format!("not an EC public key: {e}"))?;
            check_ec_curve(key.as_bytes(), algorithm)?;
            Ok(key)
        }
        "OKP" => DecodingKey::from_ed_pem(bytes).map_err(|e| format!("not an Ed25519 public key: {e}")),
        _ => Err("HMAC keys are given with secret_base64".to_owned()),
    }
}

/// RSA keys of at least 2048 bits, checked at load, for keys and certificates
/// alike (`der` is the PKCS#1 public key jsonwebtoken extracted).
fn check_rsa_size(der: &[u8]) -> Result<(), String> {
    let key = aws_lc_rs::rsa::PublicKey::from_der(der).map_err(|_| "not an RSA public key".to_owned())?;
    let bits = key.modulus().big_endian_without_leading_zero().len() * 8;
    if bits < 2048 {
        return Err(format!("RSA keys need at least 2048 bits, this one has {bits}"));
    }
    Ok(())
}

/// The modulus `n` of an RSA JWK (base64url) has at least 2048 bits: for keys this crate
/// verifies with and keys its token server signs with.
pub(crate) fn check_rsa_modulus(n: &str) -> Result<(), String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(n).map_err(|_| "n is not base64url")?;
    let bits = bytes.iter().skip_while(|b| **b == 0).count() * 8;
    if bits < 2048 {
        return Err(format!("RSA keys need at least 2048 bits, this one has {bits}"));
    }
    Ok(())
}

/// The curve must be the algorithm's: an uncompressed P-256 point for ES256, P-384 for
/// ES384 (otherwise every token would fail at verification time instead of at load).
fn check_ec_curve(point: &[u8], algorithm: Algorithm) -> Result<(), String> {
    let expected = if algorithm == Algorithm::ES384 { 97 } else { 65 };
    if point.len() != expected || point.first() != Some(&4) {
        return Err(format!("the EC key is not on the curve {algorithm:?} uses"));
    }
    Ok(())
}

/// A public JWK whose `kty` fits the algorithm, and whose `alg`, `use` and `key_ops`
/// (when present) agree with it. Symmetric (`oct`) keys are refused: a JWKS is public.
fn public_key_from_jwk(jwk: &Value, algorithm: Algorithm) -> Result<DecodingKey, String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if field("kty") != Some(family_kty(algorithm)) {
        return Err(format!("kty must be {} for {algorithm:?}", family_kty(algorithm)));
    }
    if let Some(alg) = field("alg") {
        if alg.parse::<Algorithm>().ok() != Some(algorithm) {
            return Err("the JWK's alg differs from the configured algorithm".to_owned());
        }
    }
    if field("use").is_some_and(|u| u != "sig") {
        return Err("the JWK's use is not sig".to_owned());
    }
    if jwk.get("d").is_some() {
        return Err("the JWK holds a private key: give only the public part".to_owned());
    }
    let curve = match algorithm {
        Algorithm::ES256 => Some("P-256"),
        Algorithm::ES384 => Some("P-384"),
        Algorithm::EdDSA => Some("Ed25519"),
        _ => None,
    };
    if curve.is_some() && field("crv") != curve {
        return Err(format!("crv must be {} for {algorithm:?}", curve.unwrap_or_default()));
    }
    if family(algorithm) == "RSA" {
        check_rsa_modulus(field("n").ok_or("an RSA JWK needs n")?)?;
    }
    let parsed: Jwk = serde_json::from_value(jwk.clone()).map_err(|e| format!("not a supported JWK: {e}"))?;
    DecodingKey::from_jwk(&parsed).map_err(|e| format!("not a usable JWK: {e}"))
}

fn family_kty(algorithm: Algorithm) -> &'static str {
    match family(algorithm) {
        "HMAC" => "oct",
        other => other,
    }
}

/// The keys of a JWKS document.
#[derive(Default)]
pub(super) struct KeySet {
    /// The keys this crate verifies signatures with.
    pub(super) keys: Vec<VerificationKey>,
    /// The `kid`s of the other keys published (encryption keys, algorithms this issuer
    /// does not allow): a token naming one is refused without asking for a refresh.
    pub(super) unusable: Vec<String>,
}

impl KeySet {
    pub(super) fn is_unusable(&self, kid: Option<&str>) -> bool {
        kid.is_some_and(|kid| self.unusable.iter().any(|k| k == kid))
    }
}

/// Keys of a JWKS document. Each key is parsed on its own: one that is not for signatures
/// this crate verifies (`use` other than `sig`, an encryption or unknown `alg`, no `kid`,
/// an `alg` outside the issuer's `allowed` algorithms) is skipped and logged, and does not
/// void the set. Symmetric keys refuse the whole set, and so does a set without
/// one usable key.
pub(super) fn keys_from_jwks(text: &str, allowed: Option<&[Algorithm]>) -> Result<KeySet, String> {
    let document: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let list = document.get("keys").and_then(Value::as_array).ok_or("a JWKS needs a `keys` array")?;
    if list.iter().any(|jwk| jwk.get("kty").and_then(Value::as_str) == Some("oct")) {
        return Err("a JWKS must not hold symmetric (oct) keys".to_owned());
    }
    let mut set = KeySet { keys: Vec::with_capacity(list.len()), unusable: Vec::new() };
    for jwk in list {
        match jwks_key(jwk, allowed) {
            Ok(key) => set.keys.push(key),
            Err(reason) => {
                tracing::warn!(target: crate::AUDIT_TARGET, %reason, "skipping a JWKS key");
                set.unusable.extend(jwk.get("kid").and_then(Value::as_str).map(str::to_owned));
            }
        }
    }
    if set.keys.is_empty() {
        return Err("the JWKS holds no usable signing key".to_owned());
    }
    Ok(set)
}

fn jwks_key(jwk: &Value, allowed: Option<&[Algorithm]>) -> Result<VerificationKey, String> {
    let kid = jwk.get("kid").and_then(Value::as_str).ok_or("a key without kid")?;
    if jwk.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
        return Err(format!("key {kid}: not a signing key"));
    }
    let algorithms = match jwk.get("alg") {
        Some(alg) => {
            let alg = alg.as_str().ok_or_else(|| format!("key {kid}: alg is not a string"))?;
            let algorithm: Algorithm = alg.parse().map_err(|_| format!("key {kid}: unsupported alg"))?;
            if allowed.is_some_and(|allowed| !allowed.contains(&algorithm)) {
                return Err(format!("key {kid}: alg {alg} is not one of the issuer's algorithms"));
            }
            vec![algorithm]
        }
        None => algorithms_for_key_type(jwk, allowed),
    };
    let Some(&first) = algorithms.first() else {
        return Err(format!("key {kid}: no alg, and none of the issuer's algorithms fits its key type"));
    };
    // Every algorithm of the list needs the same key type and size, so one check holds for all.
    let key = public_key_from_jwk(jwk, first).map_err(|m| format!("key {kid}: {m}"))?;
    Ok(VerificationKey::new(Some(kid.to_owned()), algorithms, key))
}

/// The algorithms a key without `alg` serves: the issuer's `allowed` ones that fit
/// its type, or without a list RS256 for RSA and the curve's one algorithm for EC and OKP.
fn algorithms_for_key_type(jwk: &Value, allowed: Option<&[Algorithm]>) -> Vec<Algorithm> {
    use Algorithm::{EdDSA, ES256, ES384, PS256, PS384, PS512, RS256, RS384, RS512};
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    let (fitting, default): (&[Algorithm], &[Algorithm]) = match (field("kty"), field("crv")) {
        (Some("RSA"), _) => (&[RS256, RS384, RS512, PS256, PS384, PS512], &[RS256]),
        (Some("EC"), Some("P-256")) => (&[ES256], &[ES256]),
        (Some("EC"), Some("P-384")) => (&[ES384], &[ES384]),
        (Some("OKP"), Some("Ed25519")) => (&[EdDSA], &[EdDSA]),
        _ => (&[], &[]),
    };
    match allowed {
        Some(allowed) => allowed.iter().copied().filter(|a| fitting.contains(a)).collect(),
        None => default.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // SPEC F8: HMAC keys at least as long as their hash; JWKS never carries symmetric keys.
    #[test]
    fn key_strength_is_checked_at_load() {
        assert!(hmac_key(&[7; 31], Algorithm::HS256).is_err());
        assert!(hmac_key(&[7; 32], Algorithm::HS256).is_ok());
        assert!(hmac_key(&[7; 32], Algorithm::HS512).is_err());
        assert!(hmac_key(&[7; 64], Algorithm::RS256).is_err());
        let oct = r#"{"keys":[{"kty":"oct","kid":"k","alg":"HS256","k":"c2VjcmV0"}]}"#;
        assert!(keys_from_jwks(oct, None).err().unwrap().contains("symmetric"));
        let short_rsa = json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"});
        assert!(public_key_from_jwk(&short_rsa, Algorithm::RS256).err().unwrap().contains("2048"));
        let wrong_kty = json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
        assert!(public_key_from_jwk(&wrong_kty, Algorithm::RS256).is_err());
    }

    /// A signature (base64url) over `message` with the key pair's private half.
    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    // SPEC F8, F9, issue 17: asymmetric keys verify through their parsed form (the fast
    // path), and it agrees with jsonwebtoken's own verification on good signatures,
    // tampered messages, tampered signatures and undecodable signatures, for RSA keys given
    // as DER and as JWK components, RSA-PSS, P-256 and Ed25519; HMAC keys keep
    // jsonwebtoken's path.
    #[test]
    fn parsed_keys_verify_exactly_as_jsonwebtoken_does() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
        use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
        let message = b"header.payload";
        let rng = SystemRandom::new();
        let rsa = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let rsa_sign = |padding: &'static dyn signature::RsaEncoding| {
            let mut out = vec![0; rsa.public_modulus_len()];
            rsa.sign(padding, &rng, message, &mut out).unwrap();
            out
        };
        let components = PublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
        let rsa_der = DecodingKey::from_rsa_der(rsa.public_key().as_ref());
        let rsa_jwk = DecodingKey::from_rsa_raw_components(&components.n, &components.e);
        let ec = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let ed = Ed25519KeyPair::generate().unwrap();
        let cases = [
            (Algorithm::RS256, rsa_der.clone(), rsa_sign(&signature::RSA_PKCS1_SHA256)),
            (Algorithm::RS256, rsa_jwk.clone(), rsa_sign(&signature::RSA_PKCS1_SHA256)),
            (Algorithm::PS256, rsa_jwk, rsa_sign(&signature::RSA_PSS_SHA256)),
            (
                Algorithm::ES256,
                DecodingKey::from_ec_der(ec.public_key().as_ref()),
                ec.sign(&rng, message).unwrap().as_ref().to_vec(),
            ),
            (Algorithm::EdDSA, DecodingKey::from_ed_der(ed.public_key().as_ref()), ed.sign(message).as_ref().to_vec()),
        ];
        for (algorithm, key, good) in cases {
            let verification = VerificationKey::new(None, vec![algorithm], key.clone());
            assert_eq!(verification.parsed.len(), 1, "{algorithm:?}: the key is parsed once");
            let mut tampered = good.clone();
            tampered[10] ^= 1;
            let other_message = b"header.payloaD";
            for (text, signature, expected) in [
                (&message[..], b64(&good), true),
                (&other_message[..], b64(&good), false),
                (&message[..], b64(&tampered), false),
                (&message[..], "not base64url!".to_owned(), false),
            ] {
                let reference = jsonwebtoken::crypto::verify(&signature, text, &key, algorithm).unwrap_or(false);
                assert_eq!(reference, expected, "{algorithm:?}: jsonwebtoken's answer");
                assert_eq!(
                    verification.verifies(text, &signature, algorithm),
                    expected,
                    "{algorithm:?}: the parsed key's"
                );
            }
        }
        // An RSA key parsed for PKCS#1 v1.5 does not take a PSS signature.
        let pkcs1_only = VerificationKey::new(None, vec![Algorithm::RS256], rsa_der);
        assert!(!pkcs1_only.verifies(message, &b64(&rsa_sign(&signature::RSA_PSS_SHA256)), Algorithm::RS256));

        let hmac = VerificationKey::new(None, vec![Algorithm::HS256], hmac_key(&[7; 32], Algorithm::HS256).unwrap());
        assert!(hmac.parsed.is_empty(), "HMAC keys stay with jsonwebtoken");
        let encoding = jsonwebtoken::EncodingKey::from_secret(&[7; 32]);
        let mac = jsonwebtoken::crypto::sign(message, &encoding, Algorithm::HS256).unwrap();
        assert!(hmac.verifies(message, &mac, Algorithm::HS256));
        assert!(!hmac.verifies(b"other", &mac, Algorithm::HS256));
    }
}
