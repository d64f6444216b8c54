// The authenticated caller, as every handler and extractor sees it.

use std::sync::Arc;

use super::{Permission, PermissionSet, QualifiedName};

/// An authenticated caller: who it is, how it proved it and what it holds.
///
/// Cheap to clone (one reference count), so handlers can take it by value. Built by the
/// authentication handlers through [`Principal::builder`].
///
/// ```
/// use tower_secure::identity::{Permission, Principal, QualifiedName};
///
/// let alex = Principal::builder(QualifiedName::parse("alex")?, "basic")
///     .roles(["identity_viewer"])
///     .permission(Permission::parse("/permission/admin/manage/identity")?)
///     .build();
/// assert_eq!(alex.name().user(), "alex");
/// assert_eq!(alex.authenticated_by(), "basic");
/// assert!(alex.has_permission(&Permission::parse("/permission/admin/manage/identity/view")?));
/// assert!(alex.scopes().is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(Arc<PrincipalData>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct PrincipalData {
    name: QualifiedName,
    authenticated_by: String,
    roles: Vec<String>,
    permissions: PermissionSet,
    scopes: Option<Vec<String>>,
    client_id: Option<String>,
}

impl Principal {
    /// A hash of who the caller is and what it holds (name, handler, roles, scopes, client;
    /// not the permissions): equal principals hash alike. For sharing one principal among
    /// cache entries; equality decides, the hash only finds candidates.
    pub(crate) fn content_hash(&self) -> u64 {
        use std::hash::{Hash as _, Hasher as _};
        let data = &*self.0;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&data.name, &data.authenticated_by, &data.roles, &data.scopes, &data.client_id).hash(&mut hasher);
        hasher.finish()
    }

    /// Whether both are the same shared principal (not merely equal ones).
    #[cfg(test)]
    pub(crate) fn is_same(&self, other: &Principal) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Starts a principal for `name`, authenticated by the handler called `authenticated_by`.
    pub fn builder(name: QualifiedName, authenticated_by: impl Into<String>) -> PrincipalBuilder {
        PrincipalBuilder(PrincipalData {
            name,
            authenticated_by: authenticated_by.into(),
            roles: Vec::new(),
            permissions: PermissionSet::default(),
            scopes: None,
            client_id: None,
        })
    }

    /// The qualified user name.
    pub fn name(&self) -> &QualifiedName {
        &self.0.name
    }

    /// The name of the authentication handler that accepted the credential. The layer
    /// sets it to the name the handler is registered under, whatever the handler wrote,
    /// so a rule's `allowed_auth_handlers` and the audit log can trust it.
    pub fn authenticated_by(&self) -> &str {
        &self.0.authenticated_by
    }

    /// This principal as accepted by the handler registered as `handler`; a copy only when
    /// the handler wrote another name.
    pub(crate) fn stamped(self, handler: &str) -> Self {
        if self.0.authenticated_by == handler {
            return self;
        }
        let mut data = Arc::unwrap_or_clone(self.0);
        data.authenticated_by = handler.to_owned();
        Self(Arc::new(data))
    }

    /// The user's roles.
    pub fn roles(&self) -> &[String] {
        &self.0.roles
    }

    /// True when the user has the role.
    pub fn has_role(&self, role: &str) -> bool {
        self.0.roles.iter().any(|r| r == role)
    }

    /// The permissions the user holds through its roles.
    pub fn permissions(&self) -> &PermissionSet {
        &self.0.permissions
    }

    /// True when a held permission covers `required`.
    pub fn has_permission(&self, required: &Permission) -> bool {
        self.0.permissions.covers(required)
    }

    /// The OAuth2 scopes of the token, or `None` when the caller did not use a token.
    pub fn scopes(&self) -> Option<&[String]> {
        self.0.scopes.as_deref()
    }

    /// The OAuth2 client the token was issued to, if any.
    pub fn client_id(&self) -> Option<&str> {
        self.0.client_id.as_deref()
    }
}

/// Builds a [`Principal`]; see [`Principal::builder`].
#[derive(Debug)]
pub struct PrincipalBuilder(PrincipalData);

impl PrincipalBuilder {
    /// Sets the roles.
    pub fn roles<I, R>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<String>,
    {
        self.0.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Adds one permission.
    pub fn permission(mut self, permission: Permission) -> Self {
        self.0.permissions.insert(permission);
        self
    }

    /// Sets all permissions.
    pub fn permissions(mut self, permissions: PermissionSet) -> Self {
        self.0.permissions = permissions;
        self
    }

    /// Sets the token's scopes (token callers only).
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.0.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the OAuth2 client id (token callers only).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.0.client_id = Some(client_id.into());
        self
    }

    /// Finishes the principal.
    pub fn build(self) -> Principal {
        Principal(Arc::new(self.0))
    }
}
