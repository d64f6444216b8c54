#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(missing_debug_implementations)]

pub mod authn;
pub mod authz;
mod builder;
pub mod code;
pub mod config;
mod error;
#[cfg(feature = "axum")]
mod extract;
pub mod identity;
mod layer;
#[cfg(feature = "axum")]
mod listing;
#[cfg(feature = "oauth2-server")]
pub mod oauth2;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod policy;
mod reload;
#[cfg(feature = "axum")]
pub mod secure_attr;
#[cfg(feature = "sql")]
mod sql_pool;
pub mod state;
mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "tls")]
pub mod tls;

/// The attribute plugin traits are written with ([`authn::AuthenticationHandler`],
/// [`authz::AuthorizationHandler`], [`oauth2::ScopeValidator`], [`identity::UserStore`]),
/// re-exported so that a plugin needs no dependency of its own: `#[tower_secure::async_trait]`.
pub use async_trait::async_trait;
pub use builder::SecureLayerBuilder;
pub use error::{AuthError, AuthErrorKind, ErrorBody, ErrorResponder, ProblemJson};
pub use identity::Principal;
#[cfg(feature = "axum")]
pub use listing::{ListedHandler, ListedRule, PolicyListing};
pub use reload::Reloader;
#[cfg(feature = "axum")]
pub use tower_secure_macros::secure;

/// What the `#[secure]` attribute expands to refers to; not an API.
#[doc(hidden)]
#[cfg(feature = "axum")]
pub mod __private {
    pub use crate::secure_attr::{Guard, HandlerRule, RegisteredRule, RuleOf};
    pub use inventory;
}
pub use layer::{AuthContext, ResponseFuture, SecureBody, SecureLayer, SecureService};

/// The `tracing` target of every security event: one event per decision (caller, handler,
/// rule, outcome, reason; never a secret), plus refused keys, locked accounts and reloads.
///
/// ```
/// // Send the audit events to their own layer or file by filtering on the target.
/// let filter = format!("{}=info", tower_secure::AUDIT_TARGET);
/// assert_eq!(filter, "tower_secure::audit=info");
/// ```
pub const AUDIT_TARGET: &str = "tower_secure::audit";

/// Seconds since the Unix epoch, the clock of every token date (`exp`, `iat`, revocation
/// watermarks); 0 if the system clock is before 1970.
pub(crate) fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
