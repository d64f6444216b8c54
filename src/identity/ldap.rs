// The LDAP user store (SPEC G3, feature `ldap`): users and groups in an LDAP directory or
// Active Directory, through ldap3. A service account searches; a password is checked by
// binding as the user on a connection of its own; groups are roles, and roles grant the
// permissions given to the builder (the rule file's `[[role]]` tables).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ldap3::asn1::{StructureTag, TagClass, PL};
use ldap3::{ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, Scope, SearchOptions};
use tokio::sync::Mutex;

use super::{
    PasswordCheck, Permission, PermissionSet, QualifiedName, UserRecord, UserStore, UserStoreError, PRIMARY_DOMAIN,
    SUPER_TENANT,
};
use crate::telemetry::{self, Backend};

/// The user search of an OpenLDAP directory with `inetOrgPerson` entries.
pub const DEFAULT_USER_FILTER: &str = "(&(objectClass=inetOrgPerson)(uid={user}))";
/// The group search of an OpenLDAP directory with `groupOfNames` groups.
pub const DEFAULT_GROUP_FILTER: &str = "(&(objectClass=groupOfNames)(member={dn}))";
/// A user search finds at most this many entries: two is enough to refuse an ambiguous name.
const USER_SEARCH_LIMIT: i32 = 2;
/// A user is a member of at most this many groups (more is a store failure, not a guess).
const GROUP_SEARCH_LIMIT: i32 = 1000;
/// The DN an unknown user's password is bound against, so that an unknown user costs a
/// bind as a wrong password does. No entry has it: the bind fails.
const NO_SUCH_USER_RDN: &str = "cn=tower-secure-no-such-user";

/// Users and groups in an LDAP directory or Active Directory (feature `ldap`).
///
/// A service account searches the user (`user_filter` under `user_base`, the name escaped
/// as RFC 4515 asks) and its groups, which become the user's roles; the roles grant the
/// permissions given with [`role`](LdapUserStoreBuilder::role). A password is checked by
/// binding as the user on a connection of its own ([`UserStore::check_password`]): the
/// store never sees a hash, and an unknown user is bound against a DN that does not
/// exist, so that it costs what a wrong password costs. An empty password or one with a
/// NUL byte is refused before any bind (an empty password is an *unauthenticated* bind,
/// which some servers, Active Directory among them, report as a success). A name that
/// matches several entries is refused. A directory that is down, slower than the
/// [`timeout`](LdapUserStoreBuilder::timeout), busy, unwilling or answering with a
/// referral is a store failure: 503 with `Retry-After`, never 401, never 200.
///
/// `ldaps://` URLs and [`start_tls`](LdapUserStoreBuilder::start_tls) use rustls on
/// aws-lc, trusting [`ca_certificates_pem`](LdapUserStoreBuilder::ca_certificates_pem) or
/// else the system's roots.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_secure::identity::{LdapUserStore, Permission};
/// use tower_secure::SecureLayer;
///
/// let store = LdapUserStore::builder("ldaps://ldap.example.com")
///     .service_account("cn=api-reader,dc=example,dc=com", std::env::var("LDAP_PASSWORD")?)
///     .user_base("ou=people,dc=example,dc=com")
///     .group_base("ou=groups,dc=example,dc=com")
///     .role("admins", [Permission::parse("/permission/admin")?])
///     .build()
///     .await?;
/// let layer = SecureLayer::builder().user_store(store).build()?;
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone)]
pub struct LdapUserStore {
    settings: Arc<Settings>,
    /// The service account's connection, bound; `None` after a failure (reconnected on
    /// the next look-up).
    service: Arc<Mutex<Option<Ldap>>>,
}

impl std::fmt::Debug for LdapUserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapUserStore").field("url", &self.settings.url).finish_non_exhaustive()
    }
}

struct Settings {
    url: String,
    start_tls: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    service_dn: String,
    service_password: String,
    user_base: String,
    user_filter: String,
    group_base: String,
    group_filter: String,
    group_name_attribute: String,
    member_of_attribute: Option<String>,
    disabled_filter: Option<String>,
    roles: HashMap<String, PermissionSet>,
    tenant: String,
    domain: String,
    timeout: Duration,
}

/// Builds an [`LdapUserStore`]; start with [`LdapUserStore::builder`].
pub struct LdapUserStoreBuilder {
    url: String,
    start_tls: bool,
    ca_pem: Option<String>,
    service_dn: String,
    service_password: String,
    user_base: String,
    user_filter: String,
    group_base: Option<String>,
    group_filter: String,
    group_name_attribute: String,
    member_of_attribute: Option<String>,
    disabled_filter: Option<String>,
    roles: HashMap<String, PermissionSet>,
    tenant: String,
    domain: String,
    timeout: Duration,
}

impl std::fmt::Debug for LdapUserStoreBuilder {
    /// Leaves out the service account's password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapUserStoreBuilder")
            .field("url", &self.url)
            .field("start_tls", &self.start_tls)
            .field("service_dn", &self.service_dn)
            .field("user_base", &self.user_base)
            .field("user_filter", &self.user_filter)
            .field("group_base", &self.group_base)
            .field("group_filter", &self.group_filter)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl LdapUserStore {
    /// A store on the directory at `url` (`ldap://host:389` or `ldaps://host:636`).
    pub fn builder(url: impl Into<String>) -> LdapUserStoreBuilder {
        LdapUserStoreBuilder {
            url: url.into(),
            start_tls: false,
            ca_pem: None,
            service_dn: String::new(),
            service_password: String::new(),
            user_base: String::new(),
            user_filter: DEFAULT_USER_FILTER.to_owned(),
            group_base: None,
            group_filter: DEFAULT_GROUP_FILTER.to_owned(),
            group_name_attribute: "cn".to_owned(),
            member_of_attribute: None,
            disabled_filter: None,
            roles: HashMap::new(),
            tenant: SUPER_TENANT.to_owned(),
            domain: PRIMARY_DOMAIN.to_owned(),
            timeout: Duration::from_secs(5),
        }
    }
}

impl LdapUserStoreBuilder {
    /// The account that searches users and groups. Without one, searches are anonymous.
    pub fn service_account(mut self, dn: impl Into<String>, password: impl Into<String>) -> Self {
        self.service_dn = dn.into();
        self.service_password = password.into();
        self
    }

    /// Where users are searched (subtree). Required.
    pub fn user_base(mut self, dn: impl Into<String>) -> Self {
        self.user_base = dn.into();
        self
    }

    /// The user search, with `{user}` for the user part of the name (escaped). Default
    /// [`DEFAULT_USER_FILTER`]; Active Directory:
    /// `(&(objectClass=user)(sAMAccountName={user}))`.
    pub fn user_filter(mut self, filter: impl Into<String>) -> Self {
        self.user_filter = filter.into();
        self
    }

    /// Where groups are searched (subtree). Default: the user base.
    pub fn group_base(mut self, dn: impl Into<String>) -> Self {
        self.group_base = Some(dn.into());
        self
    }

    /// The group search, with `{dn}` for the user's DN and `{user}` for the user part of
    /// the name (both escaped). Default [`DEFAULT_GROUP_FILTER`].
    pub fn group_filter(mut self, filter: impl Into<String>) -> Self {
        self.group_filter = filter.into();
        self
    }

    /// The group attribute that names the role (default `cn`).
    pub fn group_name_attribute(mut self, attribute: impl Into<String>) -> Self {
        self.group_name_attribute = attribute.into();
        self
    }

    /// Reads the groups from this attribute of the user's entry (`memberOf` in Active
    /// Directory or with OpenLDAP's memberof overlay) instead of searching them: each
    /// value is a group DN, and the role is the value of its first RDN.
    pub fn member_of_attribute(mut self, attribute: impl Into<String>) -> Self {
        self.member_of_attribute = Some(attribute.into());
        self
    }

    /// A user entry matching this filter is disabled (it cannot authenticate by any
    /// means). Active Directory:
    /// `(userAccountControl:1.2.840.113556.1.4.803:=2)`; OpenLDAP with ppolicy:
    /// `(pwdAccountLockedTime=*)`. Default: none.
    pub fn disabled_filter(mut self, filter: impl Into<String>) -> Self {
        self.disabled_filter = Some(filter.into());
        self
    }

    /// The permissions a role (a group name) grants. Groups without a role grant none.
    pub fn role(mut self, name: impl Into<String>, permissions: impl IntoIterator<Item = Permission>) -> Self {
        self.roles.entry(name.into()).or_default().extend(permissions);
        self
    }

    /// The tenant whose users the directory holds (default `carbon.super`); names of
    /// other tenants are unknown users.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// The userstore domain whose users the directory holds (default `PRIMARY`): the
    /// store answers for names of that domain only (`SECONDARY/alex` is `alex` of a store
    /// built with `.domain("SECONDARY")`). Mount it in [`UserStores`](super::UserStores)
    /// under the same domain.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = domain.into().to_ascii_uppercase();
        self
    }

    /// Upgrades `ldap://` connections with StartTLS.
    pub fn start_tls(mut self, start_tls: bool) -> Self {
        self.start_tls = start_tls;
        self
    }

    /// The CA certificates (PEM) that `ldaps://` and StartTLS trust instead of the
    /// system's roots.
    pub fn ca_certificates_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Bounds connecting and each operation (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Checks the settings, connects and binds the service account (the directory must
    /// answer now), and returns the store. Errors never show the password.
    pub async fn build(self) -> Result<LdapUserStore, UserStoreError> {
        let fail = |message: String| UserStoreError(format!("LDAP user store: {message}"));
        let (scheme, host) =
            self.url.split_once("://").ok_or_else(|| fail("the URL needs ldap:// or ldaps://".into()))?;
        let (scheme, host) = (scheme.to_ascii_lowercase(), host.to_owned());
        let secure = match scheme.as_str() {
            "ldaps" => true,
            "ldap" => self.start_tls,
            _ => return Err(fail("the URL needs ldap:// or ldaps://".into())),
        };
        if !super::domains::is_plain_domain(&self.domain) {
            return Err(fail(format!("{:?} is not a userstore domain", self.domain)));
        }
        if self.user_base.trim().is_empty() {
            return Err(fail("a user base DN is required".into()));
        }
        if !self.service_dn.is_empty() && self.service_password.is_empty() {
            return Err(fail("the service account needs a password (an empty one is an unauthenticated bind)".into()));
        }
        check_filter("user filter", &self.user_filter, &["{user}"]).map_err(fail)?;
        check_filter("group filter", &self.group_filter, &["{dn}", "{user}"]).map_err(fail)?;
        if let Some(filter) = &self.disabled_filter {
            check_filter("disabled filter", filter, &[]).map_err(fail)?;
        }
        let tls = if secure { Some(tls_config(self.ca_pem.as_deref()).map_err(fail)?) } else { None };
        let loopback = ["127.0.0.1", "localhost", "[::1]"].iter().any(|h| host.starts_with(h));
        if !secure && !loopback {
            tracing::warn!(
                target: crate::AUDIT_TARGET,
                url = %self.url,
                "the LDAP user store sends passwords in clear text: use ldaps:// or StartTLS"
            );
        }
        let settings = Settings {
            group_base: self.group_base.unwrap_or_else(|| self.user_base.clone()),
            url: self.url,
            start_tls: self.start_tls && scheme == "ldap",
            tls,
            service_dn: self.service_dn,
            service_password: self.service_password,
            user_base: self.user_base,
            user_filter: self.user_filter,
            group_filter: self.group_filter,
            group_name_attribute: self.group_name_attribute,
            member_of_attribute: self.member_of_attribute,
            disabled_filter: self.disabled_filter,
            roles: self.roles,
            tenant: self.tenant,
            domain: self.domain,
            timeout: self.timeout,
        };
        let store = LdapUserStore { settings: Arc::new(settings), service: Arc::default() };
        store.service().await.map_err(|e| {
            let why = e.0.trim_start_matches("LDAP user store: ");
            fail(format!("cannot bind the service account: {why}"))
        })?;
        Ok(store)
    }
}

/// A filter template with its placeholders filled in parses as an LDAP filter.
fn check_filter(what: &str, template: &str, placeholders: &[&str]) -> Result<(), String> {
    if !placeholders.is_empty() && !placeholders.iter().any(|p| template.contains(p)) {
        return Err(format!("the {what} needs {}", placeholders.join(" or ")));
    }
    let sample = placeholders.iter().fold(template.to_owned(), |t, p| t.replace(p, "x"));
    ldap3::parse_filter(&sample).map(drop).map_err(|_| format!("the {what} is not an LDAP filter: {template}"))
}

/// rustls on aws-lc, trusting the given CA certificates or else the system's roots.
fn tls_config(ca_pem: Option<&str>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(text) => {
            let blocks = pem::parse_many(text).map_err(|e| format!("bad CA certificates: {e}"))?;
            for block in blocks.iter().filter(|b| b.tag() == "CERTIFICATE") {
                roots.add(block.contents().to_vec().into()).map_err(|e| format!("bad CA certificate: {e}"))?;
            }
        }
        None => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                // A system root rustls cannot use is left out, as every TLS client does.
                let _ = roots.add(certificate);
            }
        }
    }
    if roots.is_empty() {
        return Err("no CA certificate to trust for ldaps:// or StartTLS".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A failed operation as a store error: the message names the operation and the result.
fn failure(what: &str, e: LdapError) -> UserStoreError {
    match e {
        LdapError::LdapResult { result } => result_failure(what, &result),
        other => UserStoreError(format!("LDAP user store: {what}: {other}")),
    }
}

/// A result other than success: busy, unavailable, unwilling, a referral, ...
fn result_failure(what: &str, result: &LdapResult) -> UserStoreError {
    let name = match result.rc {
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        10 => "referral",
        32 => "noSuchObject",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        _ => "error",
    };
    UserStoreError(format!("LDAP user store: {what}: result {} ({name}) {}", result.rc, result.text))
}

/// Result code 0, or a store failure.
fn succeeded(what: &str, result: LdapResult) -> Result<(), UserStoreError> {
    if result.rc == 0 {
        Ok(())
    } else {
        Err(result_failure(what, &result))
    }
}

/// A found entry: its DN and attributes (names lower case, values as text).
struct Entry {
    dn: String,
    attributes: HashMap<String, Vec<String>>,
}

/// Parses a search result entry without panicking on a malformed answer (ldap3's
/// `SearchEntry::construct` panics); a continuation reference is `None`.
fn entry_of(tag: StructureTag) -> Option<Entry> {
    if tag.class != TagClass::Application || tag.id != 4 {
        return None;
    }
    let PL::C(parts) = tag.payload else { return None };
    let mut parts = parts.into_iter();
    let dn = String::from_utf8(parts.next()?.expect_primitive()?).ok()?;
    let mut attributes = HashMap::new();
    for attribute in parts.next()?.expect_constructed()? {
        let mut attribute = attribute.expect_constructed()?.into_iter();
        let name = String::from_utf8(attribute.next()?.expect_primitive()?).ok()?;
        let values = attribute.next()?.expect_constructed()?;
        let values: Option<Vec<String>> =
            values.into_iter().map(|v| v.expect_primitive().and_then(|b| String::from_utf8(b).ok())).collect();
        attributes.insert(name.to_ascii_lowercase(), values?);
    }
    Some(Entry { dn, attributes })
}

/// The value of a DN's first RDN, unescaped (RFC 4514): `admins` for
/// `cn=admins,ou=groups,dc=example,dc=com`.
fn first_rdn_value(dn: &str) -> Option<String> {
    let (_, rest) = dn.split_once('=')?;
    let mut bytes = Vec::new();
    let mut chars = rest.bytes();
    while let Some(b) = chars.next() {
        match b {
            b',' | b'+' => break,
            b'\\' => {
                let first = chars.next()?;
                let hex = |c: u8| (c as char).to_digit(16);
                match hex(first) {
                    Some(high) => {
                        let low = hex(chars.next()?)?;
                        bytes.push(u8::try_from(high * 16 + low).ok()?);
                    }
                    None => bytes.push(first),
                }
            }
            _ => bytes.push(b),
        }
    }
    let value = String::from_utf8(bytes).ok()?;
    (!value.is_empty()).then_some(value)
}

impl LdapUserStore {
    /// Opens a connection (StartTLS or ldaps as configured), its driver on the runtime.
    async fn connect(&self) -> Result<Ldap, UserStoreError> {
        let s = &self.settings;
        let mut options = LdapConnSettings::new().set_conn_timeout(s.timeout).set_starttls(s.start_tls);
        if let Some(tls) = &s.tls {
            options = options.set_config(Arc::clone(tls));
        }
        let (connection, ldap) =
            LdapConnAsync::with_settings(options, &s.url).await.map_err(|e| failure("connect", e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.drive().await {
                tracing::debug!(error = %e, "LDAP connection closed");
            }
        });
        Ok(ldap)
    }

    /// The service account's bound connection, opened (and bound) when there is none.
    async fn service(&self) -> Result<Ldap, UserStoreError> {
        let mut slot = self.service.lock().await;
        if let Some(ldap) = slot.as_mut() {
            if !ldap.is_closed() {
                return Ok(ldap.clone());
            }
        }
        let mut ldap = self.connect().await?;
        let s = &self.settings;
        if !s.service_dn.is_empty() {
            let bound = ldap.with_timeout(s.timeout).simple_bind(&s.service_dn, &s.service_password).await;
            succeeded("service bind", bound.map_err(|e| failure("service bind", e))?)?;
        }
        *slot = Some(ldap.clone());
        Ok(ldap)
    }

    /// Forgets the service connection after a failure: the next look-up reconnects.
    async fn reset_service(&self) {
        if let Some(mut ldap) = self.service.lock().await.take() {
            let _ = ldap.unbind().await;
        }
    }

    /// A search on the service connection: the entries, or a failure for any result but
    /// success, for a referral and for a malformed entry.
    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        attributes: &[&str],
        limit: i32,
    ) -> Result<Vec<Entry>, UserStoreError> {
        let options = SearchOptions::new().sizelimit(limit);
        let found = ldap
            .with_timeout(self.settings.timeout)
            .with_search_options(options)
            .search(base, scope, filter, attributes.to_vec())
            .await
            .map_err(|e| failure("search", e))?;
        let ldap3::SearchResult(entries, result) = found;
        if result.rc == 4 && entries.len() >= limit as usize {
            return Err(UserStoreError(format!("LDAP user store: more than {} entries match {filter}", limit - 1)));
        }
        succeeded("search", result)?;
        entries
            .into_iter()
            .map(|entry| {
                let reference = entry.is_ref();
                entry_of(entry.0).ok_or_else(|| {
                    let what = if reference { "a referral" } else { "a malformed entry" };
                    UserStoreError(format!("LDAP user store: search answered with {what}"))
                })
            })
            .collect()
    }

    /// The user's DN and record, or `None` for an unknown user; with `dummy_work`, an
    /// unknown user costs the group search a known one costs.
    async fn lookup(
        &self,
        name: &QualifiedName,
        dummy_work: bool,
    ) -> Result<Option<(String, UserRecord)>, UserStoreError> {
        let s = &self.settings;
        let mut ldap = self.service().await?;
        let user = ldap_escape(name.user());
        let filter = s.user_filter.replace("{user}", &user);
        let wanted: Vec<&str> = match &s.member_of_attribute {
            Some(attribute) => vec![attribute.as_str()],
            None => vec!["1.1"], // no attributes
        };
        let mut found =
            self.search(&mut ldap, &s.user_base, Scope::Subtree, &filter, &wanted, USER_SEARCH_LIMIT).await?;
        if found.len() > 1 {
            return Err(UserStoreError(format!("LDAP user store: several entries match {filter}")));
        }
        let Some(entry) = found.pop() else {
            if dummy_work && s.member_of_attribute.is_none() {
                self.groups(&mut ldap, &format!("{NO_SUCH_USER_RDN},{}", s.user_base), &user).await?;
            }
            return Ok(None);
        };
        let roles = match &s.member_of_attribute {
            Some(attribute) => {
                let dns = entry.attributes.get(&attribute.to_ascii_lowercase()).cloned().unwrap_or_default();
                dns.iter().filter_map(|dn| first_rdn_value(dn)).collect()
            }
            None => self.groups(&mut ldap, &entry.dn, &user).await?,
        };
        let disabled = match &s.disabled_filter {
            Some(filter) => !self.search(&mut ldap, &entry.dn, Scope::Base, filter, &["1.1"], 1).await?.is_empty(),
            None => false,
        };
        let mut permissions = PermissionSet::default();
        for role in &roles {
            if let Some(granted) = s.roles.get(role) {
                permissions.extend(granted.iter().cloned());
            }
        }
        let record = UserRecord {
            name: name.clone(),
            password_hash: None,
            roles: roles.into_iter().collect(),
            permissions,
            disabled,
        };
        Ok(Some((entry.dn, record)))
    }

    /// The names of the groups `dn` is a member of, sorted.
    async fn groups(&self, ldap: &mut Ldap, dn: &str, escaped_user: &str) -> Result<BTreeSet<String>, UserStoreError> {
        let s = &self.settings;
        let filter = s.group_filter.replace("{dn}", &ldap_escape(dn)).replace("{user}", escaped_user);
        let attribute = s.group_name_attribute.as_str();
        let groups =
            self.search(ldap, &s.group_base, Scope::Subtree, &filter, &[attribute], GROUP_SEARCH_LIMIT).await?;
        let key = attribute.to_ascii_lowercase();
        Ok(groups.into_iter().filter_map(|mut g| g.attributes.remove(&key)?.into_iter().next()).collect())
    }

    /// Binds as `dn` on a connection of its own: `Ok(true)` when the password is right,
    /// `Ok(false)` for invalid credentials, a failure for anything else.
    async fn bind_as(&self, dn: &str, password: &str) -> Result<bool, UserStoreError> {
        let mut ldap = self.connect().await?;
        let bound = ldap.with_timeout(self.settings.timeout).simple_bind(dn, password).await;
        let _ = ldap.unbind().await;
        let result = bound.map_err(|e| failure("bind", e))?;
        match result.rc {
            0 => Ok(true),
            49 => Ok(false),
            _ => Err(result_failure("bind", &result)),
        }
    }

    /// Whether this store may hold `name` at all (other domains, other tenants and other
    /// issuers' subjects are never its users).
    fn serves(&self, name: &QualifiedName) -> bool {
        let s = &self.settings;
        !name.is_opaque() && name.domain() == s.domain && name.tenant() == s.tenant
    }

    /// `work` bounded by the store's timeout; a failure drops the service connection.
    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, UserStoreError>>,
    ) -> Result<T, UserStoreError> {
        let outcome = match tokio::time::timeout(self.settings.timeout, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(UserStoreError("LDAP user store: timed out".to_owned())),
        };
        if outcome.is_err() {
            self.reset_service().await;
        }
        outcome
    }
}

#[async_trait]
impl UserStore for LdapUserStore {
    async fn find_user(&self, name: &QualifiedName) -> Result<Option<UserRecord>, UserStoreError> {
        if !self.serves(name) {
            return Ok(None);
        }
        let find = Backend::UserStore { backend: "ldap", operation: "find_user" };
        let found = telemetry::timed_result(find, self.bounded(self.lookup(name, false))).await?;
        Ok(found.map(|(_, record)| record))
    }

    async fn check_password(&self, name: &QualifiedName, password: &str) -> Result<PasswordCheck, UserStoreError> {
        if password.is_empty() || password.contains('\0') {
            tracing::warn!(
                target: crate::AUDIT_TARGET,
                user = %name,
                "LDAP user store: an empty password or one with a NUL byte is refused before any bind"
            );
            return Ok(PasswordCheck::Refused);
        }
        let check = async {
            let found = if self.serves(name) { self.lookup(name, true).await? } else { None };
            let dn = match &found {
                Some((dn, _)) => dn.clone(),
                None => format!("{NO_SUCH_USER_RDN},{}", self.settings.user_base),
            };
            let bound = self.bind_as(&dn, password).await?;
            Ok(match found {
                Some((_, record)) if bound => PasswordCheck::Verified(record),
                _ => PasswordCheck::Refused,
            })
        };
        let operation = Backend::UserStore { backend: "ldap", operation: "check_password" };
        telemetry::timed_result(operation, self.bounded(check)).await
    }

    fn domain(&self) -> Option<&str> {
        Some(&self.settings.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPEC G3: group names come from the first RDN of a group DN, escapes undone.
    #[test]
    fn first_rdn_values() {
        assert_eq!(first_rdn_value("cn=admins,ou=groups,dc=example,dc=com").as_deref(), Some("admins"));
        assert_eq!(first_rdn_value("CN=Domain Admins,CN=Users,DC=corp").as_deref(), Some("Domain Admins"));
        assert_eq!(first_rdn_value(r"cn=a\,b\2Bc,ou=g").as_deref(), Some("a,b+c"));
        assert_eq!(first_rdn_value("cn=x+uid=y,ou=g").as_deref(), Some("x"));
        assert_eq!(first_rdn_value("no-equals").as_deref(), None);
        assert_eq!(first_rdn_value("cn=,ou=g").as_deref(), None);
        assert_eq!(first_rdn_value(r"cn=bad\").as_deref(), None);
    }

    // SPEC G3: filter templates are checked when the store is built.
    #[test]
    fn filter_templates() {
        assert!(check_filter("user filter", DEFAULT_USER_FILTER, &["{user}"]).is_ok());
        assert!(check_filter("user filter", "(uid=alex)", &["{user}"]).unwrap_err().contains("{user}"));
        assert!(check_filter("user filter", "(uid={user}", &["{user}"]).unwrap_err().contains("not an LDAP filter"));
        assert!(check_filter("group filter", DEFAULT_GROUP_FILTER, &["{dn}", "{user}"]).is_ok());
        assert!(check_filter("group filter", "(memberUid={user})", &["{dn}", "{user}"]).is_ok());
    }

    // SPEC G3, F4: a malformed entry is refused, never a panic (ldap3's own parser panics).
    #[test]
    fn malformed_entries_are_refused() {
        let primitive =
            |id: u64, bytes: &[u8]| StructureTag { class: TagClass::Universal, id, payload: PL::P(bytes.to_vec()) };
        let constructed = |class, id, parts| StructureTag { class, id, payload: PL::C(parts) };
        let good = constructed(
            TagClass::Application,
            4,
            vec![
                primitive(4, b"uid=alex,dc=example"),
                constructed(
                    TagClass::Universal,
                    16,
                    vec![constructed(
                        TagClass::Universal,
                        16,
                        vec![
                            primitive(4, b"memberOf"),
                            constructed(TagClass::Universal, 17, vec![primitive(4, b"cn=a")]),
                        ],
                    )],
                ),
            ],
        );
        let entry = entry_of(good).unwrap();
        assert_eq!(entry.dn, "uid=alex,dc=example");
        assert_eq!(entry.attributes["memberof"], ["cn=a"]);
        for bad in [
            primitive(4, b"x"),
            constructed(TagClass::Application, 4, vec![]),
            constructed(TagClass::Application, 4, vec![primitive(4, &[0xff, 0xfe])]),
            constructed(TagClass::Application, 4, vec![primitive(4, b"dn"), primitive(4, b"not a sequence")]),
            constructed(TagClass::Application, 19, vec![primitive(4, b"ldap://elsewhere")]),
        ] {
            assert!(entry_of(bad).is_none());
        }
    }
}
