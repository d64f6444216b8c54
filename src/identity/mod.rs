//! Who a caller is: the [`Principal`], qualified user names, the permission tree and
//! the [`UserStore`] trait with its in-memory implementation, and [`UserStores`], a set of
//! stores routed by userstore domain.
//!
//! This is the ground floor of the crate: it imports no other module of it but the SQL
//! pool and the metrics (`telemetry`).

mod domains;
#[cfg(feature = "ldap")]
mod ldap;
mod name;
mod permission;
mod principal;
#[cfg(feature = "sql")]
mod sql;
mod store;

pub(crate) use domains::is_plain_domain;
pub use domains::{UserStores, UserStoresBuilder, UserStoresError};
#[cfg(feature = "ldap")]
pub use ldap::{LdapUserStore, LdapUserStoreBuilder, DEFAULT_GROUP_FILTER, DEFAULT_USER_FILTER};
pub use name::{NameError, QualifiedName, PRIMARY_DOMAIN, SUPER_TENANT};
pub use permission::{Permission, PermissionError, PermissionSet};
pub use principal::{Principal, PrincipalBuilder};
#[cfg(feature = "sql")]
pub use sql::{SqlQueries, SqlUserStore, SqlUserStoreBuilder, SQL_SCHEMA};
pub use store::{InMemoryUserStore, PasswordCheck, UserRecord, UserStore, UserStoreError};
