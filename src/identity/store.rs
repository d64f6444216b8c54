// User stores: where users, their password hashes, roles and permissions come from.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;

use super::{PermissionSet, QualifiedName};

/// A user as a store knows it. Build one with [`UserRecord::new`] and its setters (the
/// fields stay public to read and change; more may come).
///
/// ```
/// use tower_secure::identity::{Permission, QualifiedName, UserRecord};
///
/// let alex = UserRecord::new(QualifiedName::parse("alex")?)
///     .password_hash("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$LwR0gKiubpFYBdXhy9LIdt8OMLdqFvTfuyD4TQVjBFk")
///     .roles(["viewer"])
///     .permissions([Permission::parse("/permission/admin/manage/identity/identitymgt/view")?]);
/// assert!(!alex.disabled);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserRecord {
    /// The user's qualified name.
    pub name: QualifiedName,
    /// The password as a PHC string (`$argon2id$...`), or `None` for users that cannot
    /// log in with a password (certificate-only users, for example).
    pub password_hash: Option<String>,
    /// Role names.
    pub roles: Vec<String>,
    /// The permissions the roles grant.
    pub permissions: PermissionSet,
    /// A disabled user cannot authenticate by any means.
    pub disabled: bool,
}

impl UserRecord {
    /// An enabled user with no password, roles or permissions.
    pub fn new(name: QualifiedName) -> Self {
        Self { name, password_hash: None, roles: Vec::new(), permissions: PermissionSet::default(), disabled: false }
    }

    /// The password as an argon2 PHC string.
    pub fn password_hash(mut self, phc: impl Into<String>) -> Self {
        self.password_hash = Some(phc.into());
        self
    }

    /// The role names.
    pub fn roles(mut self, roles: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// The permissions the roles grant.
    pub fn permissions(mut self, permissions: impl IntoIterator<Item = super::Permission>) -> Self {
        self.permissions = permissions.into_iter().collect();
        self
    }

    /// Disables (or enables) the user.
    pub fn disabled(mut self, disabled: bool) -> Self {
        self.disabled = disabled;
        self
    }
}

/// A user store failed (the backend is down, timed out, answered nonsense). The request
/// fails closed with 503; the message goes to the log, never to the caller.
#[derive(Debug, thiserror::Error)]
#[error("user store failure: {0}")]
pub struct UserStoreError(pub String);

/// Where users come from. Implement it to plug in LDAP, a database or a remote service.
///
/// ```
/// use tower_secure::async_trait;
/// use tower_secure::identity::{QualifiedName, UserRecord, UserStore, UserStoreError};
///
/// struct NobodyStore;
///
/// #[async_trait]
/// impl UserStore for NobodyStore {
///     async fn find_user(&self, _name: &QualifiedName) -> Result<Option<UserRecord>, UserStoreError> {
///         Ok(None)
///     }
/// }
/// ```
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Looks a user up; `Ok(None)` when there is no such user.
    async fn find_user(&self, name: &QualifiedName) -> Result<Option<UserRecord>, UserStoreError>;

    /// A password hash made with the parameters this store's users have. The Basic
    /// handler verifies a dummy hash with the same parameters for unknown users, so that
    /// they take as long as a wrong password. Default: argon2's defaults.
    fn reference_password_hash(&self) -> Option<String> {
        None
    }

    /// The one userstore domain this store serves, for stores whose users do not name
    /// their domain (a SQL table, a directory): they answer for names of that domain only.
    /// [`UserStores`](super::UserStores) refuses to mount such a store under another
    /// domain. Default `None`: the records name their domain themselves (the users file).
    fn domain(&self) -> Option<&str> {
        None
    }

    /// Checks a password in the store itself, for stores that never hand out a hash (an
    /// LDAP directory checks it by binding as the user). The default,
    /// [`PasswordCheck::ByHash`], lets the crate verify the PHC hash of
    /// [`find_user`](Self::find_user)'s record, as for the users file and SQL stores.
    ///
    /// A store that checks passwords answers [`PasswordCheck::Verified`] with the user's
    /// record or [`PasswordCheck::Refused`] for a wrong password *and* for an unknown user,
    /// after the same work for both (so that timing does not tell them apart). An error
    /// (the backend is down, slow or answered oddly) fails closed with 503.
    async fn check_password(&self, name: &QualifiedName, password: &str) -> Result<PasswordCheck, UserStoreError> {
        let _ = (name, password);
        Ok(PasswordCheck::ByHash)
    }
}

/// How a store answered [`UserStore::check_password`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordCheck {
    /// The store does not check passwords: the crate verifies the PHC hash of the user's
    /// record (the default for every store).
    ByHash,
    /// The password is right: the user as the store knows it (a disabled user is still
    /// refused by the crate).
    Verified(UserRecord),
    /// A wrong password or an unknown user: one answer for both.
    Refused,
}

/// A user store held in memory, usually loaded from a users file with
/// [`crate::config::load_users`].
///
/// ```
/// use tower_secure::identity::{InMemoryUserStore, QualifiedName, UserRecord};
///
/// let alex = UserRecord::new(QualifiedName::parse("alex")?);
/// let store = InMemoryUserStore::new([alex]);
/// assert_eq!(store.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
/// Clones share the users: [`replace_with`](Self::replace_with) on one is seen by all
/// (that is how a reload reaches the layer and the token server at once).
#[derive(Debug, Clone, Default)]
pub struct InMemoryUserStore {
    users: Arc<ArcSwap<HashMap<QualifiedName, UserRecord>>>,
}

impl InMemoryUserStore {
    /// A store holding these users (a later record with the same name replaces an earlier one).
    pub fn new(users: impl IntoIterator<Item = UserRecord>) -> Self {
        let users: HashMap<_, _> = users.into_iter().map(|u| (u.name.clone(), u)).collect();
        Self { users: Arc::new(ArcSwap::from_pointee(users)) }
    }

    /// How many users the store holds.
    pub fn len(&self) -> usize {
        self.users.load().len()
    }

    /// True when the store holds no user.
    pub fn is_empty(&self) -> bool {
        self.users.load().is_empty()
    }

    /// Replaces every user with `other`'s, atomically, for this store and its clones.
    pub fn replace_with(&self, other: &InMemoryUserStore) {
        self.users.store(other.users.load_full());
    }
}

#[async_trait]
impl UserStore for InMemoryUserStore {
    async fn find_user(&self, name: &QualifiedName) -> Result<Option<UserRecord>, UserStoreError> {
        Ok(self.users.load().get(name).cloned())
    }

    fn reference_password_hash(&self) -> Option<String> {
        self.users.load().values().find_map(|u| u.password_hash.clone())
    }
}

#[async_trait]
impl<T: UserStore + ?Sized> UserStore for Arc<T> {
    async fn find_user(&self, name: &QualifiedName) -> Result<Option<UserRecord>, UserStoreError> {
        (**self).find_user(name).await
    }

    fn reference_password_hash(&self) -> Option<String> {
        (**self).reference_password_hash()
    }

    async fn check_password(&self, name: &QualifiedName, password: &str) -> Result<PasswordCheck, UserStoreError> {
        (**self).check_password(name, password).await
    }

    fn domain(&self) -> Option<&str> {
        (**self).domain()
    }
}
