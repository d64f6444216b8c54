// Qualified user names: `[DOMAIN/]user[@tenant]`, shared by Basic usernames, certificate
// CNs and token subjects (SPEC A4, A8, F15) so every door parses names the same way; and
// opaque subjects of other token issuers (SPEC A13), which are never parsed.

use std::fmt;

/// The userstore domain a name without a `DOMAIN/` prefix belongs to.
pub const PRIMARY_DOMAIN: &str = "PRIMARY";
/// The tenant a name without an `@tenant` suffix belongs to (WSO2's super tenant).
pub const SUPER_TENANT: &str = "carbon.super";

const MAX_NAME_BYTES: usize = 255;

/// What the display form of an opaque name starts with, before a `/`. The part before the
/// first `/` of a qualified name's display form is an upper-case userstore domain, so this
/// lower-case mark can never begin one.
const OPAQUE_MARK: &str = "opaque";

/// Why a string is not a valid qualified name. Carries no part of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty, or a part of it (`DOMAIN/`, user, `@tenant`) is empty.
    #[error("a part of the name is empty")]
    EmptyPart,
    /// The name is longer than 255 bytes.
    #[error("the name is longer than 255 bytes")]
    TooLong,
    /// The name holds a control character or starts or ends with white space.
    #[error("the name holds a control character or edge white space")]
    BadCharacter,
    /// The userstore domain has characters other than letters, digits, `.`, `_`, `-`.
    #[error("the userstore domain is not a plain identifier")]
    BadDomain,
    /// The tenant has characters other than letters, digits, `.`, `-`.
    #[error("the tenant is not a domain name")]
    BadTenant,
    /// The user part holds a `/`.
    #[error("the user part holds a '/'")]
    SlashInUser,
}

/// A user name qualified by userstore domain and tenant.
///
/// `SECONDARY/alex@example.com` is user `alex` in userstore domain `SECONDARY` of tenant
/// `example.com`. The domain is upper-cased and the tenant lower-cased, so they compare
/// case-insensitively; the user part is case-sensitive.
///
/// A name can also be *opaque* ([`QualifiedName::opaque`]): the subject another token
/// issuer assigned, kept whole. It is never the same name as a qualified one, whatever its
/// text, and displays with an `opaque/` mark.
///
/// ```
/// use tower_secure::identity::QualifiedName;
///
/// let name = QualifiedName::parse("secondary/alex@Example.com")?;
/// assert_eq!(name.user(), "alex");
/// assert_eq!(name.domain(), "SECONDARY");
/// assert_eq!(name.tenant(), "example.com");
/// assert_eq!(name.to_string(), "SECONDARY/alex@example.com");
/// assert_eq!(QualifiedName::parse("alex")?.to_string(), "alex");
/// # Ok::<(), tower_secure::identity::NameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QualifiedName {
    user: String,
    domain: String,
    tenant: String,
    /// A subject of another issuer: `user` is its text, never split into parts.
    opaque: bool,
}

impl QualifiedName {
    /// Parses `[DOMAIN/]user[@tenant]`: the domain ends at the first `/`, the tenant starts
    /// at the last `@` (so `bob@mail.com@example.com` is user `bob@mail.com` of tenant
    /// `example.com`).
    pub fn parse(input: &str) -> Result<Self, NameError> {
        if input.len() > MAX_NAME_BYTES {
            return Err(NameError::TooLong);
        }
        if input.is_empty() {
            return Err(NameError::EmptyPart);
        }
        if input.chars().any(char::is_control) || input.trim() != input {
            return Err(NameError::BadCharacter);
        }
        let (domain, rest) = match input.split_once('/') {
            Some((domain, rest)) => (domain, rest),
            None => (PRIMARY_DOMAIN, input),
        };
        let (user, tenant) = match rest.rsplit_once('@') {
            Some((user, tenant)) => (user, tenant),
            None => (rest, SUPER_TENANT),
        };
        Self::new(user, domain, tenant)
    }

    /// Builds a name from its parts, with the same checks as [`QualifiedName::parse`].
    pub fn new(user: &str, domain: &str, tenant: &str) -> Result<Self, NameError> {
        if user.is_empty() || domain.is_empty() || tenant.is_empty() {
            return Err(NameError::EmptyPart);
        }
        let qualified = |part: &str, default: &str| if part.eq_ignore_ascii_case(default) { 0 } else { part.len() + 1 };
        // The canonical form's length (`@carbon.super` counts when the user holds an `@`).
        let tenant_len = if user.contains('@') { tenant.len() + 1 } else { qualified(tenant, SUPER_TENANT) };
        if user.len() + qualified(domain, PRIMARY_DOMAIN) + tenant_len > MAX_NAME_BYTES {
            return Err(NameError::TooLong);
        }
        if user.chars().any(char::is_control) || user.trim() != user {
            return Err(NameError::BadCharacter);
        }
        if user.contains('/') {
            return Err(NameError::SlashInUser);
        }
        let plain = |c: char, extra: &str| c.is_ascii_alphanumeric() || extra.contains(c);
        if !domain.chars().all(|c| plain(c, "._-")) {
            return Err(NameError::BadDomain);
        }
        if !tenant.chars().all(|c| plain(c, ".-")) {
            return Err(NameError::BadTenant);
        }
        Ok(Self {
            user: user.to_owned(),
            domain: domain.to_ascii_uppercase(),
            tenant: tenant.to_ascii_lowercase(),
            opaque: false,
        })
    }

    /// The subject another token issuer gave a caller (OpenID Connect `sub`: unique within
    /// that issuer, any text), as a name of the super tenant and the `PRIMARY` domain. It
    /// is never split at `/` or `@`: `svc@clients`, `alice@example.com` and
    /// `https://client.example/svc` are whole subjects, and an opaque `alice@example.com`
    /// is not the tenant user `alice@example.com`. The subject may hold no control
    /// characters, nor white space at its edges, and at most 255 bytes.
    ///
    /// ```
    /// use tower_secure::identity::QualifiedName;
    ///
    /// let name = QualifiedName::opaque("alice@example.com")?;
    /// assert_eq!((name.user(), name.tenant()), ("alice@example.com", "carbon.super"));
    /// assert!(name.is_opaque());
    /// assert_eq!(name.to_string(), "opaque/alice@example.com");
    /// assert_ne!(name, QualifiedName::parse("alice@example.com")?);
    /// # Ok::<(), tower_secure::identity::NameError>(())
    /// ```
    pub fn opaque(subject: &str) -> Result<Self, NameError> {
        Self::opaque_in_tenant(subject, SUPER_TENANT)
    }

    /// [`QualifiedName::opaque`] in `tenant` (for an issuer that names its callers' tenant
    /// in a claim of its own). Displays as `opaque@tenant/subject`.
    ///
    /// ```
    /// use tower_secure::identity::QualifiedName;
    ///
    /// let name = QualifiedName::opaque_in_tenant("svc@clients", "Example.com")?;
    /// assert_eq!((name.user(), name.tenant()), ("svc@clients", "example.com"));
    /// assert_eq!(name.to_string(), "opaque@example.com/svc@clients");
    /// # Ok::<(), tower_secure::identity::NameError>(())
    /// ```
    pub fn opaque_in_tenant(subject: &str, tenant: &str) -> Result<Self, NameError> {
        if subject.is_empty() || tenant.is_empty() {
            return Err(NameError::EmptyPart);
        }
        if subject.len() > MAX_NAME_BYTES {
            return Err(NameError::TooLong);
        }
        if subject.chars().any(char::is_control) || subject.trim() != subject {
            return Err(NameError::BadCharacter);
        }
        if !tenant.chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c)) {
            return Err(NameError::BadTenant);
        }
        Ok(Self {
            user: subject.to_owned(),
            domain: PRIMARY_DOMAIN.to_owned(),
            tenant: tenant.to_ascii_lowercase(),
            opaque: true,
        })
    }

    /// The user part, without domain or tenant; the whole subject of an opaque name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The userstore domain, upper case (`PRIMARY` when the name had none).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The tenant, lower case (`carbon.super` when the name had none).
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// True when the user lives in the super tenant.
    pub fn is_super_tenant(&self) -> bool {
        self.tenant == SUPER_TENANT
    }

    /// True for the subject of another token issuer ([`QualifiedName::opaque`]): such a
    /// caller is not a user of the user store.
    pub fn is_opaque(&self) -> bool {
        self.opaque
    }
}

impl fmt::Display for QualifiedName {
    /// The canonical form, which parses back to the same name: `PRIMARY/` is left out, and
    /// so is `@carbon.super` unless the user part holds an `@` (`bob@mail.com@carbon.super`
    /// written as `bob@mail.com` would read back as user `bob` of tenant `mail.com`).
    /// An opaque name is `opaque/` + its subject, or `opaque@tenant/` + its subject outside
    /// the super tenant: the mark before the first `/` is never a userstore domain, so no
    /// qualified name displays the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.opaque {
            f.write_str(OPAQUE_MARK)?;
            if self.tenant != SUPER_TENANT {
                write!(f, "@{}", self.tenant)?;
            }
            return write!(f, "/{}", self.user);
        }
        if self.domain != PRIMARY_DOMAIN {
            write!(f, "{}/", self.domain)?;
        }
        f.write_str(&self.user)?;
        if self.tenant != SUPER_TENANT || self.user.contains('@') {
            write!(f, "@{}", self.tenant)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPEC A4, A8, F15: the four WSO2 forms and the refusals.
    #[test]
    fn parses_the_four_forms() {
        let cases = [
            ("alex", "alex", "PRIMARY", "carbon.super"),
            ("SECONDARY/alex", "alex", "SECONDARY", "carbon.super"),
            ("alex@tenant.com", "alex", "PRIMARY", "tenant.com"),
            ("SECONDARY/alex@tenant.com", "alex", "SECONDARY", "tenant.com"),
            ("bob@mail.com@tenant.com", "bob@mail.com", "PRIMARY", "tenant.com"),
        ];
        for (input, user, domain, tenant) in cases {
            let name = QualifiedName::parse(input).unwrap();
            assert_eq!((name.user(), name.domain(), name.tenant()), (user, domain, tenant));
        }
    }

    #[test]
    fn refuses_bad_names() {
        for bad in
            ["", "/alex", "SECONDARY/", "alex@", " alex", "alex ", "al\nex", "a/b/c", "DOM AIN/alex", "alex@ten ant"]
        {
            assert!(QualifiedName::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(QualifiedName::parse(&"a".repeat(256)), Err(NameError::TooLong));
    }

    #[test]
    fn canonical_form_is_unambiguous() {
        assert_eq!(QualifiedName::parse("primary/alex@CARBON.SUPER").unwrap().to_string(), "alex");
        assert_ne!(QualifiedName::parse("SECONDARY/alex").unwrap(), QualifiedName::parse("alex").unwrap());
        // Found by fuzzing: an `@` in a super-tenant user must keep its tenant to read back.
        for input in ["bob@mail.com@carbon.super", "bob@mail.com@example.com", "S/a@b@carbon.super", "alex"] {
            let name = QualifiedName::parse(input).unwrap();
            assert_eq!(QualifiedName::parse(&name.to_string()), Ok(name), "{input}");
        }
        assert_eq!(QualifiedName::parse("bob@mail.com@carbon.super").unwrap().to_string(), "bob@mail.com@carbon.super");
    }

    // SPEC A13: opaque subjects are kept whole, never equal a qualified name of the same
    // text, and display distinctly from every qualified name.
    #[test]
    fn opaque_subjects_stay_whole_and_distinct() {
        let subjects =
            ["svc@clients", "alice@example.com", "https://client.example/svc", "repo:acme/app:ref:refs/heads/main"];
        for subject in subjects {
            let name = QualifiedName::opaque(subject).unwrap();
            assert_eq!((name.user(), name.domain(), name.tenant()), (subject, "PRIMARY", "carbon.super"));
            assert!(name.is_opaque());
            assert_eq!(name.to_string(), format!("opaque/{subject}"));
            if let Ok(qualified) = QualifiedName::parse(subject) {
                assert_ne!(name, qualified, "{subject}");
                assert_ne!(name.to_string(), qualified.to_string(), "{subject}");
            }
            // The display form, read as a qualified name, is another name altogether.
            assert_ne!(QualifiedName::parse(&name.to_string()).ok(), Some(name.clone()), "{subject}");
        }
        let qualified = QualifiedName::parse("OPAQUE/svc@clients").unwrap();
        assert_ne!(qualified.to_string(), QualifiedName::opaque("svc@clients").unwrap().to_string());
        let tenant = QualifiedName::opaque_in_tenant("alice", "Example.COM").unwrap();
        assert_eq!((tenant.tenant(), tenant.to_string().as_str()), ("example.com", "opaque@example.com/alice"));
        for bad in ["", " svc", "svc ", "s\nvc", "s\u{85}vc"] {
            assert!(QualifiedName::opaque(bad).is_err(), "{bad:?}");
        }
        assert_eq!(QualifiedName::opaque(&"a".repeat(256)), Err(NameError::TooLong));
        assert_eq!(QualifiedName::opaque_in_tenant("a", "ex ample"), Err(NameError::BadTenant));
        assert_eq!(QualifiedName::opaque_in_tenant("a", ""), Err(NameError::EmptyPart));
    }

    // SPEC F15: the 255-byte limit is on the name as written, not on the defaults it
    // leaves out (found by fuzzing: 240 bytes were refused).
    #[test]
    fn length_limit_is_the_canonical_form() {
        assert!(QualifiedName::parse(&"a".repeat(255)).is_ok());
        assert!(QualifiedName::parse(&format!("{}@example.com", "a".repeat(243))).is_ok());
        assert_eq!(QualifiedName::new(&"a".repeat(250), "PRIMARY", "example.com"), Err(NameError::TooLong));
        assert!(QualifiedName::new(&"a".repeat(255), "primary", "CARBON.SUPER").is_ok());
    }
}
