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
#[cfg(feature = "oauth2-server")]
pub mod oauth2;
pub mod policy;

pub use builder::SecureLayerBuilder;
pub use error::{AuthError, AuthErrorKind, ErrorBody, ErrorResponder, ProblemJson};
pub use identity::Principal;
pub use layer::{AuthContext, ResponseFuture, SecureBody, SecureLayer, SecureService, AUDIT_TARGET};
