#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod authn;
pub mod authz;
mod builder;
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
pub mod policy;
mod reload;
#[cfg(feature = "axum")]
pub mod secure_attr;
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
    pub use inventory;
}
pub use layer::{AuthContext, ResponseFuture, SecureBody, SecureLayer, SecureService, AUDIT_TARGET};
