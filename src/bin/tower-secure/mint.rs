// `mint-token`: a signed token with chosen claims, for development and tests only. The key
// must be named explicitly: a rule file's `[oauth2_server]` key, or a private key file.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Map, Value};
use tower_secure::config::Deployment;
use tower_secure::oauth2::TokenServer;

use crate::args::Args;
use crate::{Failure, Outcome};

pub(crate) const OPTIONS: &[&str] =
    &["--rules", "--key", "--alg", "--kid", "--iss", "--sub", "--scope", "--aud", "--ttl", "--claim"];

pub(crate) const HELP: &str = "\
usage: tower-secure mint-token (--rules <deployment.toml> | --key <private.pem> --iss <issuer>)
                               --sub <name> [--scope S]... [--aud A] [--ttl SECONDS] [--claim K=V]...

Signs an access token (JWT, typ at+jwt) with chosen claims, FOR DEVELOPMENT AND TESTS ONLY:
anyone with the key can mint any caller this way. The key is never guessed: name it.
The token goes to standard output.

  --rules FILE    sign with the first [[oauth2_server.key]] of this rule file, as its token
                  server does; iss is its issuer, aud its audience when it has one
  --key FILE      sign with this PKCS#8 private key (needs --iss)
  --alg ALG       with --key: RS256, ES256 or EdDSA (default: from the key's type)
  --kid KID       with --key: the kid (default: the key's RFC 7638 thumbprint, as the token
                  server names a key without kid)
  --iss ISSUER    iss (required with --key; replaces the rule file's issuer)
  --sub NAME      sub: the caller (required)
  --scope S       a scope (repeatable; a value with spaces is several)
  --aud A         aud
  --ttl SECONDS   lifetime (default 3600)
  --claim K=V     another claim (repeatable); V is JSON when it parses as JSON
                  (42, true, [\"a\",\"b\"], {\"x\":1}), else a string";

/// `mint-token`.
pub(crate) fn mint_token(args: Args) -> Outcome {
    args.positional(0, 0, HELP)?;
    let server = signer(&args)?;
    let claims = claims(&args, &server)?;
    let token = server.sign_claims(&claims).map_err(|e| Failure::Failed(format!("cannot sign: {e}")))?;
    eprintln!("tower-secure mint-token: a development token; never hand such tokens to anyone");
    println!("{token}");
    Ok(())
}

/// The token server whose key signs: from the rule file, or from the key file.
fn signer(args: &Args) -> Result<TokenServer, Failure> {
    let failed = |message: String| Failure::Failed(message);
    match (args.option("--rules")?, args.option("--key")?) {
        (Some(rules), None) => {
            if args.option("--alg")?.is_some() || args.option("--kid")?.is_some() {
                return Err(Failure::Usage(format!("--alg and --kid go with --key\n\n{HELP}")));
            }
            let deployment = Deployment::from_file(rules).map_err(|e| failed(e.to_string()))?;
            TokenServer::builder().deployment(&deployment).build().map_err(|e| failed(e.to_string()))
        }
        (None, Some(key)) => {
            let issuer = args.option("--iss")?.ok_or_else(|| Failure::Usage(format!("--key needs --iss\n\n{HELP}")))?;
            let algorithm = match args.option("--alg")? {
                Some(algorithm) => algorithm.to_owned(),
                None => algorithm_of(Path::new(key))?,
            };
            let text = key_deployment(issuer, Path::new(key), &algorithm, args.option("--kid")?)?;
            let deployment = Deployment::from_toml_str(key, &text).map_err(|e| failed(e.to_string()))?;
            let server = TokenServer::builder().deployment(&deployment).build();
            server.map_err(|e| failed(format!("{key}: {}", e.message)))
        }
        _ => Err(Failure::Usage(format!(
            "mint-token is for development and needs an explicit key: --rules <deployment.toml> or --key <private.pem>\n\n{HELP}"
        ))),
    }
}

/// A rule file with one `[[oauth2_server.key]]`: the key file, by absolute path.
fn key_deployment(issuer: &str, key: &Path, algorithm: &str, kid: Option<&str>) -> Result<String, Failure> {
    let path = std::path::absolute(key).map_err(|e| Failure::Failed(format!("{}: {e}", key.display())))?;
    let mut table = toml::Table::new();
    table.insert("algorithm".into(), algorithm.into());
    table.insert("pem_file".into(), path.display().to_string().into());
    if let Some(kid) = kid {
        table.insert("kid".into(), kid.into());
    }
    let mut server = toml::Table::new();
    server.insert("issuer".into(), issuer.into());
    server.insert("key".into(), toml::Value::Array(vec![table.into()]));
    let mut document = toml::Table::new();
    document.insert("oauth2_server".into(), server.into());
    toml::to_string(&document).map_err(|e| Failure::Failed(e.to_string()))
}

/// RS256, ES256 or EdDSA, from the type of a PKCS#8 private key.
fn algorithm_of(key: &Path) -> Result<String, Failure> {
    let text = std::fs::read(key).map_err(|e| Failure::Failed(format!("cannot read {}: {e}", key.display())))?;
    use jsonwebtoken::EncodingKey;
    let algorithm = if EncodingKey::from_rsa_pem(&text).is_ok() {
        "RS256"
    } else if EncodingKey::from_ec_pem(&text).is_ok() {
        "ES256"
    } else if EncodingKey::from_ed_pem(&text).is_ok() {
        "EdDSA"
    } else {
        let message = format!("{}: not a PKCS#8 RSA, EC or Ed25519 private key (or give --alg)", key.display());
        return Err(Failure::Failed(message));
    };
    Ok(algorithm.to_owned())
}

/// `iss`, `sub`, `aud`, `iat`, `exp`, `jti`, `scope`, then the `--claim`s (which may
/// replace any of them).
fn claims(args: &Args, server: &TokenServer) -> Result<Map<String, Value>, Failure> {
    let usage = |message: &str| Failure::Usage(format!("{message}\n\n{HELP}"));
    let subject = args.option("--sub")?.ok_or_else(|| usage("--sub is required"))?;
    let ttl = match args.option("--ttl")? {
        Some(ttl) => ttl.parse::<u64>().map_err(|_| usage("--ttl is a number of seconds"))?,
        None => 3600,
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut claims = Map::new();
    claims.insert("iss".into(), args.option("--iss")?.unwrap_or(server.issuer()).into());
    claims.insert("sub".into(), subject.into());
    if let Some(audience) = args.option("--aud")?.or(server.audience()) {
        claims.insert("aud".into(), audience.into());
    }
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), now.saturating_add(ttl).into());
    claims.insert("jti".into(), jti()?.into());
    let scopes: Vec<&str> = args.options("--scope").flat_map(str::split_whitespace).collect();
    if !scopes.is_empty() {
        claims.insert("scope".into(), scopes.join(" ").into());
    }
    for claim in args.options("--claim") {
        let (name, value) = claim.split_once('=').ok_or_else(|| usage("--claim is NAME=VALUE"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
        claims.insert(name.to_owned(), value);
    }
    Ok(claims)
}

/// 128 random bits, base64url.
fn jti() -> Result<String, Failure> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Failure::Failed(format!("no randomness: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}
