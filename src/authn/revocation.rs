// Access tokens revoked before they expire: written by the token endpoint, read by the
// bearer handler of the same process, so a revoked token is refused at once (SPEC D5).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Revoked access tokens by `jti`, each kept until its `exp`. Cheap to clone (shared).
///
/// Bounded: when `capacity` live entries are reached, every token issued up to that
/// moment is refused instead (a `not_before` watermark), so a full list never lets a
/// revoked token back in.
#[derive(Clone)]
#[cfg_attr(not(feature = "oauth2-server"), allow(dead_code))]
pub(crate) struct RevokedTokens {
    inner: Arc<Inner>,
}

#[cfg_attr(not(feature = "oauth2-server"), allow(dead_code))]
struct Inner {
    ids: Mutex<HashMap<String, u64>>,
    capacity: usize,
    /// Tokens with `iat` at or before this (seconds since the epoch) count as revoked.
    not_before: AtomicU64,
    /// Bumped on every revocation; a verification cached under an older generation is
    /// checked again.
    generation: AtomicU64,
}

#[cfg_attr(not(feature = "oauth2-server"), allow(dead_code))]
impl RevokedTokens {
    pub(crate) fn new(capacity: usize) -> Self {
        let inner = Inner {
            ids: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            not_before: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Revokes the token `jti`, which expires at `exp`; `now` is the current time.
    pub(crate) fn revoke(&self, jti: &str, exp: u64, now: u64) {
        let mut ids = self.inner.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if ids.len() >= self.inner.capacity {
            ids.retain(|_, until| *until >= now);
        }
        if ids.len() >= self.inner.capacity {
            // Fail closed: forget the list and refuse everything issued so far.
            ids.clear();
            self.inner.not_before.fetch_max(now, Ordering::AcqRel);
            tracing::error!(target: "tower_secure::audit", "revocation list full: every token issued so far is refused");
        } else {
            ids.insert(jti.to_owned(), exp);
        }
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// True when a token with this `jti` and `iat` has been revoked.
    pub(crate) fn is_revoked(&self, jti: Option<&str>, iat: Option<u64>) -> bool {
        let not_before = self.inner.not_before.load(Ordering::Acquire);
        if not_before > 0 && iat.is_none_or(|iat| iat <= not_before) {
            return true;
        }
        jti.is_some_and(|jti| self.inner.ids.lock().unwrap_or_else(PoisonError::into_inner).contains_key(jti))
    }

    pub(crate) fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPEC D5: a revoked jti is refused; a full list refuses everything issued so far.
    #[test]
    fn revocation_and_watermark() {
        let revoked = RevokedTokens::new(2);
        revoked.revoke("a", 100, 10);
        assert!(revoked.is_revoked(Some("a"), Some(5)));
        assert!(!revoked.is_revoked(Some("b"), Some(5)));
        revoked.revoke("b", 100, 10);
        revoked.revoke("c", 100, 20);
        assert!(revoked.is_revoked(Some("zzz"), Some(20)), "issued before the watermark");
        assert!(!revoked.is_revoked(Some("zzz"), Some(21)));
        assert_eq!(revoked.generation(), 3);
    }
}
