//! What the three binaries of the load comparison share: the benchmarked route, the
//! token claims, and the layout of the data directory (keys, PKI, users, token files).
//!
//! * `load-prepare` writes the data directory and times bare signature verification;
//! * `load-server` serves the small app in one mode;
//! * `load-runner` runs every mode under wrk / oha and writes the results.
#![forbid(unsafe_code)]

pub mod data;

/// The benchmarked route (axum syntax) and the concrete path the load generators request.
pub const ROUTE: &str = "/api/users/v1/{user_id}/challenges";
pub const PATH: &str = "/api/users/v1/42/challenges";

/// `iss`, `aud` and `scope` of every bench token; the route's rule needs the scope.
pub const ISSUER: &str = "https://idp.bench.example";
pub const AUDIENCE: &str = "bench";
pub const SCOPE: &str = "internal_identity_mgt_view";

/// The permission the Basic and certificate callers hold through their role.
pub const VIEW_PERMISSION: &str = "/permission/admin/manage/identity/identitymgt/view";

/// The opaque token the local introspection endpoint answers as active.
pub const OPAQUE_TOKEN: &str = "opaque-bench-token-3f9a7c2e";

/// The client the layer authenticates as at the introspection endpoint.
pub const INTROSPECTION_CLIENT: (&str, &str) = ("bench-api", "bench-introspection-secret");

/// The Basic users: alex (cached, cheap hash) and eve (flooded, argon2 default cost).
pub const GOOD_USER: (&str, &str) = ("alex", "alex123");
pub const FLOODED_USER: &str = "eve";
