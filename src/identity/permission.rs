// The permission tree (SPEC C1): `/permission/admin` covers everything below it on `/`
// boundaries, never its parent and never a sibling that merely shares a prefix.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// Why a string is not a permission path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PermissionError {
    /// A permission must start with `/`.
    #[error("a permission must start with '/'")]
    NotAbsolute,
    /// `//`, a trailing `/`, `.` or `..` segments.
    #[error("a permission must not have empty, '.' or '..' segments or a trailing '/'")]
    BadSegment,
    /// White space or control characters.
    #[error("a permission must not hold white space or control characters")]
    BadCharacter,
}

/// One node of the permission tree, such as `/permission/admin/manage`.
///
/// ```
/// use tower_secure::identity::Permission;
///
/// let admin = Permission::parse("/permission/admin")?;
/// assert!(admin.covers(&Permission::parse("/permission/admin/login")?));
/// assert!(!admin.covers(&Permission::parse("/permission/administer")?));
/// assert!(!admin.covers(&Permission::parse("/permission")?));
/// # Ok::<(), tower_secure::identity::PermissionError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission(Arc<str>);

impl Permission {
    /// Validates a permission path.
    pub fn parse(path: &str) -> Result<Self, PermissionError> {
        let rest = path.strip_prefix('/').ok_or(PermissionError::NotAbsolute)?;
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(PermissionError::BadCharacter);
        }
        if rest.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(PermissionError::BadSegment);
        }
        Ok(Self(Arc::from(path)))
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when holding `self` grants `other`: equal, or `other` lies below `self`.
    pub fn covers(&self, other: &Permission) -> bool {
        match other.0.strip_prefix(&*self.0) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The permissions a principal holds. Checking one costs a set look-up per ancestor of the
/// required permission, not a scan of everything held.
///
/// ```
/// use tower_secure::identity::{Permission, PermissionSet};
///
/// let held: PermissionSet = [Permission::parse("/permission/admin/manage")?].into_iter().collect();
/// assert!(held.covers(&Permission::parse("/permission/admin/manage/identity")?));
/// assert!(!held.covers(&Permission::parse("/permission/admin")?));
/// # Ok::<(), tower_secure::identity::PermissionError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionSet(BTreeSet<Permission>);

impl PermissionSet {
    /// True when some held permission covers `required`.
    pub fn covers(&self, required: &Permission) -> bool {
        // A few held permissions (the usual case): one prefix test each beats a set
        // look-up per ancestor.
        if self.0.len() <= 8 {
            return self.0.iter().any(|held| held.covers(required));
        }
        let path = required.as_str();
        let ancestors = path.match_indices('/').skip(1).map(|(at, _)| &path[..at]).chain(std::iter::once(path));
        // `Permission: Borrow<str>` makes each probe a plain set look-up.
        ancestors.into_iter().any(|prefix| self.0.contains(prefix))
    }

    /// Adds a permission.
    pub fn insert(&mut self, permission: Permission) {
        self.0.insert(permission);
    }

    /// The held permissions, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Permission> {
        self.0.iter()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::borrow::Borrow<str> for Permission {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl Extend<Permission> for PermissionSet {
    fn extend<I: IntoIterator<Item = Permission>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Permission {
        Permission::parse(s).unwrap()
    }

    // SPEC C1: a prefix on a `/` boundary, never the parent, never a textual prefix.
    #[test]
    fn tree_semantics() {
        let held: PermissionSet = [p("/permission/admin")].into_iter().collect();
        assert!(held.covers(&p("/permission/admin")));
        assert!(held.covers(&p("/permission/admin/login")));
        assert!(held.covers(&p("/permission/admin/manage/identity/identitymgt/view")));
        assert!(!held.covers(&p("/permission/administer")));
        assert!(!held.covers(&p("/permission")));
        assert!(!PermissionSet::default().covers(&p("/permission")));
    }

    #[test]
    fn large_sets_use_the_ancestor_walk() {
        let many: PermissionSet =
            (0..20).map(|i| p(&format!("/permission/x{i}"))).chain([p("/permission/admin")]).collect();
        assert!(many.covers(&p("/permission/admin/login")));
        assert!(!many.covers(&p("/permission/administer")));
        assert!(!many.covers(&p("/permission")));
    }

    #[test]
    fn refuses_malformed_paths() {
        for bad in ["", "permission", "/permission/", "//x", "/a//b", "/a/../b", "/a b", "/a\tb"] {
            assert!(Permission::parse(bad).is_err(), "{bad:?}");
        }
    }
}
