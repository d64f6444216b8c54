// Access tokens revoked before they expire: written by the token endpoint, read by the
// bearer handler of the same process, so a revoked token is refused at once (SPEC D5).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Revoked access tokens by `jti`, each kept until its `exp`. Cheap to clone (shared).
///
/// Bounded, and failing closed: when `capacity` live entries are reached, the client with
/// the most entries has every token issued to it so far refused (a per-client `not_before`
/// watermark) and its entries dropped. A client revoking its own tokens en masse can only
/// log out itself; no revoked token ever comes back.
#[derive(Clone)]
#[cfg_attr(not(feature = "oauth2-server"), allow(dead_code))]
pub(crate) struct RevokedTokens {
    inner: Arc<Inner>,
}

#[cfg_attr(not(feature = "oauth2-server"), allow(dead_code))]
struct Inner {
    state: Mutex<State>,
    capacity: usize,
    /// Bumped on every revocation; a verification cached under an older generation is
    /// checked again.
    generation: AtomicU64,
}

#[derive(Default)]
struct State {
    /// `jti` -> (`exp`, client id).
    ids: HashMap<String, (u64, Arc<str>)>,
    /// Client id -> tokens issued to it at or before this second count as revoked.
    not_before: HashMap<Arc<str>, u64>,
}

#[cfg_attr(not(feature = "oauth2-server"), allow(dead_code))]
impl RevokedTokens {
    pub(crate) fn new(capacity: usize) -> Self {
        let inner = Inner { state: Mutex::default(), capacity: capacity.max(1), generation: AtomicU64::new(0) };
        Self { inner: Arc::new(inner) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Revokes token `jti` of `client`, which expires at `exp`; `now` is the current time.
    pub(crate) fn revoke(&self, jti: &str, exp: u64, client: &str, now: u64) {
        let mut state = self.state();
        if state.ids.len() >= self.inner.capacity {
            state.ids.retain(|_, (until, _)| *until >= now);
        }
        if state.ids.len() >= self.inner.capacity {
            let heaviest = heaviest_client(&state.ids);
            state.ids.retain(|_, (_, owner)| *owner != heaviest);
            tracing::warn!(target: crate::AUDIT_TARGET, client = %heaviest,
                "revocation list full: every token issued so far to the client with the most revocations is refused");
            state.not_before.insert(heaviest, now);
        }
        let client: Arc<str> =
            state.not_before.get_key_value(client).map_or_else(|| Arc::from(client), |(k, _)| k.clone());
        state.ids.insert(jti.to_owned(), (exp, client));
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Refuses every token issued to `client` up to `now` (a client removed or disabled by
    /// a reload).
    pub(crate) fn revoke_client(&self, client: &str, now: u64) {
        let mut state = self.state();
        state.ids.retain(|_, (_, owner)| &**owner != client);
        state.not_before.insert(Arc::from(client), now);
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// True when a token of `client` issued at `iat` would count as revoked already (issued
    /// in the second its tokens were all revoked).
    pub(crate) fn refuses_issued_at(&self, client: &str, iat: u64) -> bool {
        self.state().not_before.get(client).is_some_and(|&before| iat <= before)
    }

    /// True when token `jti` of `client`, issued at `iat`, has been revoked.
    pub(crate) fn is_revoked(&self, jti: Option<&str>, client: Option<&str>, iat: Option<u64>) -> bool {
        let state = self.state();
        let watermark = client.and_then(|c| state.not_before.get(c));
        if watermark.is_some_and(|&before| iat.is_none_or(|iat| iat <= before)) {
            return true;
        }
        jti.is_some_and(|jti| state.ids.contains_key(jti))
    }

    pub(crate) fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }
}

/// The client holding the most entries.
fn heaviest_client(ids: &HashMap<String, (u64, Arc<str>)>) -> Arc<str> {
    let mut counts: HashMap<&Arc<str>, usize> = HashMap::new();
    for (_, client) in ids.values() {
        *counts.entry(client).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(_, n)| *n).map_or_else(|| Arc::from(""), |(client, _)| client.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPEC D5: a revoked jti is refused; a full list refuses everything issued so far to
    // the client with the most revocations, and nothing of anybody else's.
    #[test]
    fn revocation_and_per_client_watermark() {
        let revoked = RevokedTokens::new(3);
        revoked.revoke("victim-1", 100, "victim", 10);
        assert!(revoked.is_revoked(Some("victim-1"), Some("victim"), Some(5)));
        assert!(!revoked.is_revoked(Some("b"), Some("victim"), Some(5)));
        revoked.revoke("noisy-1", 100, "noisy", 10);
        revoked.revoke("noisy-2", 100, "noisy", 10);
        revoked.revoke("noisy-3", 100, "noisy", 20);
        assert!(revoked.is_revoked(Some("noisy-any"), Some("noisy"), Some(20)), "issued before its watermark");
        assert!(!revoked.is_revoked(Some("noisy-new"), Some("noisy"), Some(21)));
        assert!(revoked.is_revoked(Some("noisy-3"), Some("noisy"), Some(21)), "the new entry is kept");
        assert!(revoked.is_revoked(Some("victim-1"), Some("victim"), Some(5)), "others keep their revocations");
        assert!(!revoked.is_revoked(Some("other"), Some("victim"), Some(5)), "others are not logged out");
        assert_eq!(revoked.generation(), 4);
    }
}
