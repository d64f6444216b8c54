//! The users, token issuers and rule file every layer target shares. Users and passwords
//! are those of `tests/common/mod.rs`; hashes are argon2id with the cheapest legal
//! parameters and a fixed salt, so every run (and every replay of a crash) sees the same
//! store.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use tower_secure::config::{load_users, Deployment};
use tower_secure::identity::{InMemoryUserStore, QualifiedName};
use tower_secure::SecureLayer;

/// The realm of every fixture layer.
pub const REALM: &str = "fuzz";
/// The identity-management view permission.
pub const VIEW: &str = "/permission/admin/manage/identity/identitymgt/view";
/// The scope bound to [`VIEW`].
pub const VIEW_SCOPE: &str = "internal_identity_mgt_view";

/// The main token issuer: keys `hs` (HS256) and `hs5` (HS512), audience [`AUD`].
pub const ISS: &str = "https://idp.fuzz";
/// The audience tokens of [`ISS`] must carry.
pub const AUD: &str = "fuzz-api";
/// A second issuer with one HS256 key without a `kid`, and no audience.
pub const ISS_B: &str = "https://other.fuzz";
/// The HS256 secret of `kid = "hs"` at [`ISS`].
pub const SECRET_HS: &[u8] = b"fuzz-hs256-secret-0123456789abcdef";
/// The HS512 secret of `kid = "hs5"` at [`ISS`].
pub const SECRET_HS5: &[u8] = b"fuzz-hs512-secret-0123456789abcdef-0123456789abcdef-0123456789ab";
/// The HS256 secret of the only key of [`ISS_B`].
pub const SECRET_B: &[u8] = b"fuzz-issuer-b-secret-0123456789abcdef";
/// A secret no issuer knows (the attacker's).
pub const SECRET_ATTACKER: &[u8] = b"attacker-secret-0123456789abcdef-xyz";

/// A user of the fixture store.
#[derive(Debug, Clone, Copy)]
pub struct KnownUser {
    /// The name as written in the users file.
    pub name: &'static str,
    /// The password.
    pub password: &'static str,
    /// The permissions its roles grant.
    pub permissions: &'static [&'static str],
    /// A disabled user never authenticates.
    pub disabled: bool,
}

/// The fixture users (the quickstart's shape, as in `tests/common/mod.rs`).
pub const USERS: &[KnownUser] = &[
    KnownUser { name: "alex", password: "alex123", permissions: &[VIEW, "/permission/admin/login"], disabled: false },
    KnownUser { name: "bob", password: "bob123", permissions: &["/permission/admin/login"], disabled: false },
    KnownUser { name: "admin", password: "admin", permissions: &["/permission/admin"], disabled: false },
    KnownUser { name: "SECONDARY/sam", password: "sam123", permissions: &[VIEW], disabled: false },
    KnownUser { name: "tina@example.com", password: "tina123", permissions: &[VIEW], disabled: false },
    KnownUser { name: "dave", password: "dave123", permissions: &["/permission/admin"], disabled: true },
];

/// The fixture user with this (parsed) name.
pub fn known_user(name: &QualifiedName) -> Option<&'static KnownUser> {
    USERS.iter().find(|u| QualifiedName::parse(u.name).is_ok_and(|n| &n == name))
}

/// An argon2id PHC hash with the cheapest legal parameters and a fixed salt.
pub fn cheap_hash(password: &str) -> String {
    let params = Params::new(8, 1, 1, None).expect("legal argon2 parameters");
    let salt = SaltString::encode_b64(b"tower-secure-fuz").expect("a 16-byte salt");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes")
        .to_string()
}

/// The users file of [`USERS`].
pub fn users_toml() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut text = format!(
            "[[role]]\nname = \"identity_viewer\"\npermissions = [\"{VIEW}\"]\n\n\
             [[role]]\nname = \"admin\"\npermissions = [\"/permission/admin\"]\n\n\
             [[role]]\nname = \"everyone\"\npermissions = [\"/permission/admin/login\"]\n\n"
        );
        let roles = |user: &KnownUser| match user.name {
            "alex" => "[\"identity_viewer\", \"everyone\"]",
            "bob" => "[\"everyone\"]",
            "admin" | "dave" => "[\"admin\"]",
            _ => "[\"identity_viewer\"]",
        };
        for user in USERS {
            text.push_str(&format!(
                "[[user]]\nname = \"{}\"\npassword = \"{}\"\nroles = {}\ndisabled = {}\n\n",
                user.name,
                cheap_hash(user.password),
                roles(user),
                user.disabled
            ));
        }
        text
    })
}

/// A fresh in-memory store of [`USERS`].
pub fn user_store() -> InMemoryUserStore {
    load_users("users.toml", users_toml()).expect("the fixture users file loads")
}

/// The deployment every layer target starts from: the rules of [`crate::rules::RULES`],
/// Basic with lockout and the hashing throttle off (so a run is deterministic), the two
/// HMAC token issuers (whose subjects are users of the store), and a `[client_cert]` table whose body is `client_cert` (so all three built-in
/// handlers are registered). `extra` is appended (more tables).
pub fn deployment_text(client_cert: &str, extra: &str) -> String {
    format!(
        r#"[authentication]
realm = "{REALM}"

[authentication.basic]
hashes_per_second = 0
max_failed_attempts = 0

[[oauth2.issuer]]
issuer = "{ISS}"
audience = "{AUD}"
subject_format = "qualified"

[[oauth2.issuer.key]]
kid = "hs"
algorithm = "HS256"
secret_base64 = "{hs}"

[[oauth2.issuer.key]]
kid = "hs5"
algorithm = "HS512"
secret_base64 = "{hs5}"

[[oauth2.issuer]]
issuer = "{ISS_B}"
subject_format = "qualified"

[[oauth2.issuer.key]]
algorithm = "HS256"
secret_base64 = "{b}"

[[scope]]
name = "{VIEW_SCOPE}"
permissions = ["{VIEW}"]

[[scope]]
name = "openid"

[client_cert]
{client_cert}

{rules}
{extra}
"#,
        hs = STANDARD.encode(SECRET_HS),
        hs5 = STANDARD.encode(SECRET_HS5),
        b = STANDARD.encode(SECRET_B),
        rules = crate::rules::rules_toml(),
    )
}

/// A layer over [`deployment_text`] and [`user_store`]. Panics when it does not build:
/// the fixtures are fixed, so that is a bug in the fuzz crate or the library.
pub fn layer(client_cert: &str, extra: &str) -> SecureLayer {
    let text = deployment_text(client_cert, extra);
    let deployment = Deployment::from_toml_str("deployment.toml", &text).unwrap_or_else(|e| panic!("fixture: {e}"));
    SecureLayer::builder()
        .deployment(deployment)
        .user_store(user_store())
        .build()
        .unwrap_or_else(|e| panic!("fixture layer: {e}"))
}

/// The fixture layer with no forwarded certificates and no intermediate allow-list.
pub fn standard_layer() -> &'static SecureLayer {
    static LAYER: OnceLock<SecureLayer> = OnceLock::new();
    LAYER.get_or_init(|| layer("", ""))
}
