// Userstore domains (SPEC G1): WSO2's PRIMARY store and its secondary stores. A qualified
// name `SECONDARY/alex` goes to the store of domain `SECONDARY`, `alex` to PRIMARY; a
// domain no store serves is an unknown user, never a fallback to PRIMARY.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{PasswordCheck, QualifiedName, UserRecord, UserStore, UserStoreError, PRIMARY_DOMAIN};

/// Why a [`UserStores`] set cannot be built. Names the domain as it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UserStoresError {
    /// A domain name is empty or has characters other than letters, digits, `.`, `_`, `-`
    /// (the characters a `DOMAIN/` prefix of a user name may have).
    #[error("userstore domain {0:?} is not a plain identifier (letters, digits, '.', '_', '-')")]
    BadDomain(String),
    /// Two stores were given for the same domain (domains compare case-insensitively, and
    /// [`UserStoresBuilder::primary`] is the domain `PRIMARY`).
    #[error("userstore domain {0:?} is given twice")]
    DuplicateDomain(String),
    /// A store that serves one domain ([`UserStore::domain`]: a SQL or LDAP store) was
    /// mounted under another: build it with that domain (`.domain("SECONDARY")`).
    #[error(
        "a store of userstore domain {store:?} was given for domain {mounted:?}; build it with .domain({mounted:?})"
    )]
    DomainMismatch {
        /// The domain it was given for.
        mounted: String,
        /// The domain the store serves.
        store: String,
    },
    /// The set has no store at all.
    #[error("a userstore set needs at least one store")]
    Empty,
}

/// A set of user stores, one per userstore domain, itself a [`UserStore`].
///
/// A name is looked up in the store of its domain: `SECONDARY/alex` in the store added with
/// `.domain("SECONDARY", ...)`, `alex` (domain `PRIMARY`) in the one added with
/// [`primary`](UserStoresBuilder::primary). A name of a domain no store serves is an
/// unknown user (`Ok(None)`: 401 to a Basic caller, after the same dummy-hash work as a
/// wrong password), never a look-up in PRIMARY. Each store is asked with the name as
/// written, domain included, and must answer with a record of that domain; a record of
/// another domain is refused as a store failure (503), so a secondary store can never
/// speak for a user of another domain.
///
/// ```
/// use tower_secure::code::Users;
/// use tower_secure::identity::UserStores;
/// use tower_secure::SecureLayer;
///
/// let hash = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$LwR0gKiubpFYBdXhy9LIdt8OMLdqFvTfuyD4TQVjBFk";
/// let primary = Users::builder().user("alex", hash, Vec::<String>::new()).build()?.store;
/// let partners = Users::builder().user("PARTNERS/alex", hash, Vec::<String>::new()).build()?.store;
/// let stores = UserStores::builder().primary(primary).domain("PARTNERS", partners).build()?;
/// assert_eq!(stores.domains().collect::<Vec<_>>(), ["PARTNERS", "PRIMARY"]);
/// let layer = SecureLayer::builder().user_store(stores).build()?;
/// # let _ = layer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct UserStores {
    /// Keyed by the upper-case domain, as [`QualifiedName::domain`] gives it.
    stores: HashMap<String, Arc<dyn UserStore>>,
    /// The domains in the order they were added (for `reference_password_hash`).
    order: Vec<String>,
}

impl std::fmt::Debug for UserStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStores").field("domains", &self.order).finish_non_exhaustive()
    }
}

impl UserStores {
    /// Starts a set; add stores with [`primary`](UserStoresBuilder::primary) and
    /// [`domain`](UserStoresBuilder::domain).
    pub fn builder() -> UserStoresBuilder {
        UserStoresBuilder::default()
    }

    /// The domains served, upper case, sorted.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        let mut domains: Vec<&str> = self.order.iter().map(String::as_str).collect();
        domains.sort_unstable();
        domains.into_iter()
    }

    /// The store of `domain` (case-insensitive), if the set has one.
    pub fn store(&self, domain: &str) -> Option<&Arc<dyn UserStore>> {
        self.stores.get(&domain.to_ascii_uppercase())
    }
}

/// Builds a [`UserStores`] set; start with [`UserStores::builder`].
#[derive(Default)]
pub struct UserStoresBuilder {
    stores: Vec<(String, Arc<dyn UserStore>)>,
}

impl std::fmt::Debug for UserStoresBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let domains: Vec<&str> = self.stores.iter().map(|(d, _)| d.as_str()).collect();
        f.debug_struct("UserStoresBuilder").field("domains", &domains).finish()
    }
}

impl UserStoresBuilder {
    /// The store of the `PRIMARY` domain: names without a `DOMAIN/` prefix.
    pub fn primary(self, store: impl UserStore) -> Self {
        self.domain(PRIMARY_DOMAIN, store)
    }

    /// The store of a secondary domain (`SECONDARY` serves `SECONDARY/alex`). The domain
    /// is case-insensitive, as in user names.
    pub fn domain(mut self, domain: impl Into<String>, store: impl UserStore) -> Self {
        self.stores.push((domain.into(), Arc::new(store)));
        self
    }

    /// [`domain`](Self::domain) with a store already shared.
    pub fn domain_arc(mut self, domain: impl Into<String>, store: Arc<dyn UserStore>) -> Self {
        self.stores.push((domain.into(), store));
        self
    }

    /// Checks the domain names (plain identifiers, each once) and returns the set.
    pub fn build(self) -> Result<UserStores, UserStoresError> {
        if self.stores.is_empty() {
            return Err(UserStoresError::Empty);
        }
        let mut stores = HashMap::with_capacity(self.stores.len());
        let mut order = Vec::with_capacity(self.stores.len());
        for (domain, store) in self.stores {
            if !is_plain_domain(&domain) {
                return Err(UserStoresError::BadDomain(domain));
            }
            if let Some(own) = store.domain().filter(|own| !own.eq_ignore_ascii_case(&domain)) {
                return Err(UserStoresError::DomainMismatch { mounted: domain, store: own.to_owned() });
            }
            let key = domain.to_ascii_uppercase();
            if stores.insert(key.clone(), store).is_some() {
                return Err(UserStoresError::DuplicateDomain(domain));
            }
            order.push(key);
        }
        Ok(UserStores { stores, order })
    }
}

#[async_trait]
impl UserStore for UserStores {
    async fn find_user(&self, name: &QualifiedName) -> Result<Option<UserRecord>, UserStoreError> {
        // An unknown domain is an unknown user: never PRIMARY's.
        let Some(store) = self.stores.get(name.domain()) else { return Ok(None) };
        match store.find_user(name).await? {
            Some(record) => own_domain(name, record).map(Some),
            None => Ok(None),
        }
    }

    /// The store of the name's domain checks it; an unknown domain leaves it to the
    /// crate's hash verification, which finds no user there.
    async fn check_password(&self, name: &QualifiedName, password: &str) -> Result<PasswordCheck, UserStoreError> {
        let Some(store) = self.stores.get(name.domain()) else { return Ok(PasswordCheck::ByHash) };
        match store.check_password(name, password).await? {
            PasswordCheck::Verified(record) => own_domain(name, record).map(PasswordCheck::Verified),
            answer => Ok(answer),
        }
    }

    /// The first hash any store offers, PRIMARY's first.
    fn reference_password_hash(&self) -> Option<String> {
        let primary = self.stores.get(PRIMARY_DOMAIN).and_then(|s| s.reference_password_hash());
        primary
            .or_else(|| self.order.iter().filter_map(|d| self.stores.get(d)).find_map(|s| s.reference_password_hash()))
    }
}

/// A userstore domain as a `DOMAIN/` prefix may have it: letters, digits, `.`, `_`, `-`.
pub(crate) fn is_plain_domain(domain: &str) -> bool {
    !domain.is_empty() && domain.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// A store's record for `name`, unless it is a user of another domain (then a store failure).
fn own_domain(name: &QualifiedName, record: UserRecord) -> Result<UserRecord, UserStoreError> {
    if record.name.domain() == name.domain() && record.name.is_opaque() == name.is_opaque() {
        return Ok(record);
    }
    tracing::error!(
        target: crate::AUDIT_TARGET,
        domain = name.domain(),
        answered = record.name.domain(),
        "a userstore answered with a user of another domain"
    );
    Err(UserStoreError(format!("the store of domain {} answered for another domain", name.domain())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::InMemoryUserStore;

    fn user(name: &str) -> UserRecord {
        UserRecord {
            name: QualifiedName::parse(name).unwrap(),
            password_hash: None,
            roles: vec![],
            permissions: Default::default(),
            disabled: false,
        }
    }

    // SPEC G1: bad, duplicate and missing domains are refused when the set is built.
    #[test]
    fn build_checks_domains() {
        let empty = InMemoryUserStore::default;
        assert_eq!(UserStores::builder().build().unwrap_err(), UserStoresError::Empty);
        for bad in ["", "SEC ONDARY", "SEC/ONDARY", "é"] {
            let err = UserStores::builder().domain(bad, empty()).build().unwrap_err();
            assert_eq!(err, UserStoresError::BadDomain(bad.to_owned()));
        }
        let err = UserStores::builder().primary(empty()).domain("primary", empty()).build().unwrap_err();
        assert_eq!(err, UserStoresError::DuplicateDomain("primary".to_owned()));
        let set = UserStores::builder().domain("secondary", empty()).build().unwrap();
        assert!(set.store("SECONDARY").is_some() && set.store("Secondary").is_some());
        assert!(set.store("PRIMARY").is_none());
    }

    // SPEC G1: routing by domain; an unknown domain is no user; a store answering for
    // another domain fails closed.
    #[tokio::test]
    async fn routes_by_domain_and_fails_closed() {
        let primary = InMemoryUserStore::new([user("alex")]);
        let secondary = InMemoryUserStore::new([user("SECONDARY/alex")]);
        let set = UserStores::builder().primary(primary.clone()).domain("SECONDARY", secondary).build().unwrap();
        let find = |n: &str| {
            let set = set.clone();
            let name = QualifiedName::parse(n).unwrap();
            async move { set.find_user(&name).await }
        };
        assert_eq!(find("alex").await.unwrap().unwrap().name.domain(), "PRIMARY");
        assert_eq!(find("secondary/alex").await.unwrap().unwrap().name.domain(), "SECONDARY");
        assert!(find("OTHER/alex").await.unwrap().is_none());

        // A store that answers every name with a PRIMARY user.
        struct Liar;
        #[async_trait]
        impl UserStore for Liar {
            async fn find_user(&self, _: &QualifiedName) -> Result<Option<UserRecord>, UserStoreError> {
                Ok(Some(user("admin")))
            }
            async fn check_password(&self, _: &QualifiedName, _: &str) -> Result<PasswordCheck, UserStoreError> {
                Ok(PasswordCheck::Verified(user("admin")))
            }
        }
        let set = UserStores::builder().primary(primary).domain("EVIL", Liar).build().unwrap();
        let evil = QualifiedName::parse("EVIL/admin").unwrap();
        assert!(set.find_user(&evil).await.is_err());
        assert!(set.check_password(&evil, "pw").await.is_err());
        // Other domains leave passwords to the crate's hash check.
        let unknown = QualifiedName::parse("OTHER/admin").unwrap();
        assert_eq!(set.check_password(&unknown, "pw").await.unwrap(), PasswordCheck::ByHash);
    }
}
