// Qualified user names: `[DOMAIN/]user[@tenant]`, shared by Basic usernames, certificate
// CNs and token subjects (SPEC A4, A8, F15) so every door parses names the same way.

use std::fmt;

/// The userstore domain a name without a `DOMAIN/` prefix belongs to.
pub const PRIMARY_DOMAIN: &str = "PRIMARY";
/// The tenant a name without an `@tenant` suffix belongs to (WSO2's super tenant).
pub const SUPER_TENANT: &str = "carbon.super";

const MAX_NAME_BYTES: usize = 255;

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
        Ok(Self { user: user.to_owned(), domain: domain.to_ascii_uppercase(), tenant: tenant.to_ascii_lowercase() })
    }

    /// The user part, without domain or tenant.
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
}

impl fmt::Display for QualifiedName {
    /// The canonical form, which parses back to the same name: `PRIMARY/` is left out, and
    /// so is `@carbon.super` unless the user part holds an `@` (`bob@mail.com@carbon.super`
    /// written as `bob@mail.com` would read back as user `bob` of tenant `mail.com`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
