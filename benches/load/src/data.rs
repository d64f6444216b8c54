//! The data directory `load-prepare` writes and the others read: which file holds what.
//! Nothing here generates anything; see `load-prepare` for that.

use std::path::{Path, PathBuf};

/// The four signature algorithms of the bearer modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Hs256,
    Rs256,
    Es256,
    EdDsa,
}

impl Alg {
    pub const ALL: [Alg; 4] = [Alg::Hs256, Alg::Rs256, Alg::Es256, Alg::EdDsa];

    /// The JOSE name (`alg` header, `algorithm` in the rule file).
    pub fn jose(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// Lower-case name used in file and mode names.
    pub fn slug(self) -> &'static str {
        match self {
            Alg::Hs256 => "hs256",
            Alg::Rs256 => "rs256",
            Alg::Es256 => "es256",
            Alg::EdDsa => "eddsa",
        }
    }

    /// The `kid` of this algorithm's key.
    pub fn kid(self) -> &'static str {
        match self {
            Alg::Hs256 => "hs",
            Alg::Rs256 => "rs",
            Alg::Es256 => "es",
            Alg::EdDsa => "ed",
        }
    }

    pub fn jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Alg::Hs256 => jsonwebtoken::Algorithm::HS256,
            Alg::Rs256 => jsonwebtoken::Algorithm::RS256,
            Alg::Es256 => jsonwebtoken::Algorithm::ES256,
            Alg::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }

    pub fn from_slug(slug: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|alg| alg.slug() == slug)
    }
}

/// Paths inside the data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What was generated, with which settings and when (decides whether to reuse it).
    pub fn manifest(&self) -> PathBuf {
        self.root.join("manifest.json")
    }

    /// The HS256 secret, raw bytes.
    pub fn hmac_secret(&self) -> PathBuf {
        self.root.join("keys/hs256.secret")
    }

    /// PKCS#8 private key (asymmetric algorithms only).
    pub fn private_key(&self, alg: Alg) -> PathBuf {
        self.root.join(format!("keys/{}.pem", alg.slug()))
    }

    /// SPKI public key (asymmetric algorithms only).
    pub fn public_key(&self, alg: Alg) -> PathBuf {
        self.root.join(format!("keys/{}.pub.pem", alg.slug()))
    }

    /// One token per line, each distinct (the fresh-token modes cycle through them).
    pub fn fresh_tokens(&self, alg: Alg) -> PathBuf {
        self.root.join(format!("tokens/{}-fresh.txt", alg.slug()))
    }

    /// The one token the repeated-token modes send.
    pub fn repeated_token(&self, alg: Alg) -> PathBuf {
        self.root.join(format!("tokens/{}-repeated.txt", alg.slug()))
    }

    /// `Basic ...` header values with distinct wrong passwords for the flooded user.
    pub fn flood_credentials(&self) -> PathBuf {
        self.root.join("tokens/flood-basic.txt")
    }

    /// alex (cheap hash) and eve (argon2 default cost), both holding the view permission.
    pub fn users(&self) -> PathBuf {
        self.root.join("users.toml")
    }

    /// Root CA (it also issued the server certificate).
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("pki/root-ca.pem")
    }

    /// Server certificate for `localhost` and `127.0.0.1`, then its key.
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("pki/server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.root.join("pki/server.key")
    }

    /// alex's client certificate followed by the intermediate that issued it, then its key.
    pub fn client_chain(&self) -> PathBuf {
        self.root.join("pki/alex-chain.pem")
    }

    pub fn client_key(&self) -> PathBuf {
        self.root.join("pki/alex.key")
    }

    /// Reads a file that `load-prepare` wrote, naming it when it is missing.
    pub fn read(path: &Path) -> String {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {} (run load-prepare first): {e}", path.display()))
    }
}

/// The CN of the intermediate CA that issues client certificates (the allow-listed one).
pub const CLIENT_CA_CN: &str = "Bench Intermediate CA";
