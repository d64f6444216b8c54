//! Fuzzes the qualified-name parser shared by Basic user names, certificate CNs and token
//! subjects (`QualifiedName::parse`, `QualifiedName::new`). Input: the name (text); with
//! two NUL bytes, the three parts `user\0domain\0tenant` for `new` as well.
//!
//! * A parsed name round-trips: its canonical form (`Display`) parses to the same name,
//!   so every door (Basic, CN, `sub`, and the `sub` the token endpoint writes) names the
//!   same user the same way (SPEC A4, A8, F15).
//! * The parts are what SPEC says: a non-empty user without `/`, control characters or
//!   edge white space; the domain upper case, letters, digits, `.`, `_`, `-`; the tenant
//!   lower case, letters, digits, `.`, `-`; `PRIMARY` and `carbon.super` by default; the
//!   domain ends at the first `/` and the tenant starts at the last `@` (F15).
//! * `new` with the parsed parts gives the same name; case of domain and tenant does not
//!   matter, case of the user does.
//! * `TooLong` only for names over 255 bytes; an error's message is fixed per kind (F13).
#![forbid(unsafe_code)]
#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use tower_secure::identity::{NameError, QualifiedName, PRIMARY_DOMAIN, SUPER_TENANT};
use tower_secure_fuzz::known;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parts: Vec<&str> = text.split('\0').collect();
    if let [user, domain, tenant] = parts[..] {
        if let Ok(name) = QualifiedName::new(user, domain, tenant) {
            check_name(&name, None);
        }
        return;
    }
    match QualifiedName::parse(text) {
        Ok(name) => {
            check_name(&name, Some(text));
            check_parts(&name, text);
        }
        Err(error) => check_error(error, text),
    }
});

fn check_name(name: &QualifiedName, input: Option<&str>) {
    let (user, domain, tenant) = (name.user(), name.domain(), name.tenant());
    assert!(!user.is_empty() && !user.contains('/'), "{name:?}");
    assert!(!user.chars().any(char::is_control) && user.trim() == user, "{name:?}");
    assert!(
        !domain.is_empty()
            && domain.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"._-".contains(&b)),
        "{name:?}"
    );
    assert!(
        !tenant.is_empty()
            && tenant.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-".contains(&b)),
        "{name:?}"
    );
    assert_eq!(name.is_super_tenant(), tenant == SUPER_TENANT);
    assert_eq!(QualifiedName::new(user, domain, tenant).as_ref(), Ok(name), "new(parts) differs");
    assert_eq!(
        QualifiedName::new(user, &domain.to_ascii_lowercase(), &tenant.to_ascii_uppercase()).as_ref(),
        Ok(name),
        "domain and tenant compare case-insensitively"
    );
    let shown = name.to_string();
    let again = QualifiedName::parse(&shown);
    known::check("name-roundtrip", again.as_ref() == Ok(name), || {
        format!("{input:?} parses to {name:?}, shown as {shown:?}, which parses to {again:?}")
    });
    if let Ok(again) = again {
        let stable = again.to_string() == shown;
        known::check("name-roundtrip", stable, || format!("the canonical form {shown:?} is not stable: {again}"));
    }
}

/// The parts, found the way SPEC describes: domain up to the first `/`, tenant after the
/// last `@` of the rest.
fn check_parts(name: &QualifiedName, text: &str) {
    let (domain, rest) = text.split_once('/').unwrap_or((PRIMARY_DOMAIN, text));
    let (user, tenant) = rest.rsplit_once('@').unwrap_or((rest, SUPER_TENANT));
    assert_eq!(name.user(), user, "{text:?}");
    assert_eq!(name.domain(), domain.to_ascii_uppercase(), "{text:?}");
    assert_eq!(name.tenant(), tenant.to_ascii_lowercase(), "{text:?}");
    assert!(text.len() <= 255, "a name over 255 bytes was accepted");
}

fn check_error(error: NameError, text: &str) {
    known::check("name-length", error != NameError::TooLong || text.len() > 255, || {
        format!("{text:?} ({} bytes) refused as too long", text.len())
    });
    if text.len() > 255 {
        assert_eq!(error, NameError::TooLong, "{text:?}");
    }
    // SPEC F13: the message is fixed per kind of error, whatever the input.
    static MESSAGES: Mutex<Vec<(NameError, String)>> = Mutex::new(Vec::new());
    let message = error.to_string();
    let mut messages = MESSAGES.lock().unwrap_or_else(|e| e.into_inner());
    match messages.iter().find(|(kind, _)| *kind == error) {
        Some((_, first)) => assert_eq!(*first, message, "SPEC F13: the error message varies with the input"),
        None => messages.push((error, message)),
    }
}
