// Access tokens revoked before they expire: written by the token endpoint, read by the
// bearer handler of the same process, so a revoked token is refused at once (SPEC D5).
// With a shared state backend it is this process's replica of the revocations, kept
// current by the token server's sync task, and stale once that task has not been heard
// from for longer than the staleness bound (SPEC H4, H5).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
    /// Bumped on every revocation; a verification cached under an older generation looks
    /// its token up in the set again.
    generation: AtomicU64,
    /// Set when a shared backend feeds this replica: when it last caught up.
    freshness: Option<Freshness>,
}

/// How current a replica is: milliseconds since `start` of the last sync, the bound, and
/// the verdict the hot path reads (one atomic load: no clock read per request, which costs
/// a system call on some machines), kept by the sync task and a watchdog.
struct Freshness {
    start: Instant,
    synced_ms: AtomicU64,
    max_staleness: Duration,
    stale: AtomicBool,
}

impl Freshness {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }
}

#[derive(Default)]
struct State {
    /// `jti` -> (`exp`, client id).
    ids: HashMap<String, (u64, Arc<str>)>,
    /// Client id -> tokens issued to it at or before this second count as revoked.
    not_before: HashMap<Arc<str>, u64>,
    /// Every token issued at or before this second counts as revoked (a backend that lost
    /// its state, or a global watermark).
    everyone_before: u64,
}

#[cfg_attr(not(feature = "oauth2-server"), allow(dead_code))]
impl RevokedTokens {
    pub(crate) fn new(capacity: usize) -> Self {
        Self::build(capacity, None)
    }

    /// A replica of a shared backend's revocations: stale (refusing with 503) until its
    /// first sync, and again once the last sync is older than `max_staleness`.
    pub(crate) fn replica(capacity: usize, max_staleness: Duration) -> Self {
        let freshness = Freshness {
            start: Instant::now(),
            synced_ms: AtomicU64::new(u64::MAX),
            max_staleness,
            stale: AtomicBool::new(true),
        };
        Self::build(capacity, Some(freshness))
    }

    fn build(capacity: usize, freshness: Option<Freshness>) -> Self {
        let inner =
            Inner { state: Mutex::default(), capacity: capacity.max(1), generation: AtomicU64::new(0), freshness };
        Self { inner: Arc::new(inner) }
    }

    /// The sync task caught up with the backend just now.
    pub(crate) fn mark_synced(&self) {
        if let Some(f) = &self.inner.freshness {
            f.synced_ms.store(f.now_ms(), Ordering::Release);
            f.stale.store(false, Ordering::Release);
        }
    }

    /// The watchdog's check: stale once the last sync is older than the bound (or before
    /// the first). Called every tick, so a replica turns stale at most a tick late.
    pub(crate) fn check_freshness(&self) {
        let Some(f) = &self.inner.freshness else { return };
        let bound = u64::try_from(f.max_staleness.as_millis()).unwrap_or(u64::MAX);
        loop {
            let synced = f.synced_ms.load(Ordering::Acquire);
            let stale = synced == u64::MAX || f.now_ms().saturating_sub(synced) > bound;
            f.stale.store(stale, Ordering::Release);
            // A sync in between may have been overwritten by this verdict: judge again.
            if f.synced_ms.load(Ordering::Acquire) == synced {
                return;
            }
        }
    }

    /// True for a replica that has not caught up within its bound: decisions that depend
    /// on it fail closed (503).
    pub(crate) fn is_stale(&self) -> bool {
        self.inner.freshness.as_ref().is_some_and(|f| f.stale.load(Ordering::Acquire))
    }

    /// Refuses every token issued at or before `before`, whoever it was issued to.
    pub(crate) fn revoke_everyone(&self, before: u64) {
        let mut state = self.state();
        state.everyone_before = state.everyone_before.max(before);
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Revokes token `jti` of `client`, which expires at `exp`; `now` is the current time.
    /// An empty `client` is an owner not known here (a revocation another instance
    /// made): a full list then refuses every token issued so far, not one client's.
    pub(crate) fn revoke(&self, jti: &str, exp: u64, client: &str, now: u64) {
        let mut state = self.state();
        if client.is_empty() && state.ids.contains_key(jti) {
            return; // known already, with its owner
        }
        if state.ids.len() >= self.inner.capacity {
            state.ids.retain(|_, (until, _)| *until >= now);
        }
        if state.ids.len() >= self.inner.capacity {
            let heaviest = heaviest_client(&state.ids);
            state.ids.retain(|_, (_, owner)| *owner != heaviest);
            if heaviest.is_empty() {
                tracing::warn!(target: crate::AUDIT_TARGET,
                    "revocation list full of other instances' revocations: every token issued so far is refused");
                state.everyone_before = state.everyone_before.max(now);
            } else {
                tracing::warn!(target: crate::AUDIT_TARGET, client = %heaviest,
                    "revocation list full: every token issued so far to the client with the most revocations is refused");
                state.not_before.insert(heaviest, now);
            }
        }
        let client: Arc<str> =
            state.not_before.get_key_value(client).map_or_else(|| Arc::from(client), |(k, _)| k.clone());
        state.ids.insert(jti.to_owned(), (exp, client));
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Refuses every token issued to `client` at or before `before` (another instance's
    /// watermark); unlike [`revoke_client`](Self::revoke_client) it keeps the client's
    /// revoked ids, which may name tokens issued later.
    pub(crate) fn raise_client_watermark(&self, client: &str, before: u64) {
        let mut state = self.state();
        let mark = state.not_before.entry(Arc::from(client)).or_default();
        *mark = (*mark).max(before);
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Refuses every token issued to `client` up to `now` (a client removed or disabled by
    /// a reload).
    pub(crate) fn revoke_client(&self, client: &str, now: u64) {
        let mut state = self.state();
        state.ids.retain(|_, (_, owner)| &**owner != client);
        let mark = state.not_before.entry(Arc::from(client)).or_default();
        *mark = (*mark).max(now);
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// True when a token of `client` issued at `iat` would count as revoked already (issued
    /// in the second its tokens were all revoked).
    pub(crate) fn refuses_issued_at(&self, client: &str, iat: u64) -> bool {
        let state = self.state();
        iat <= state.everyone_before || state.not_before.get(client).is_some_and(|&before| iat <= before)
    }

    /// True when token `jti` of `client`, issued at `iat`, has been revoked.
    pub(crate) fn is_revoked(&self, jti: Option<&str>, client: Option<&str>, iat: Option<u64>) -> bool {
        let state = self.state();
        let watermark = client.and_then(|c| state.not_before.get(c)).copied().unwrap_or(0).max(state.everyone_before);
        if watermark > 0 && iat.is_none_or(|iat| iat <= watermark) {
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

    // SPEC H4, H5: the hot path reads a verdict (no clock): stale before the first sync,
    // fresh once synced, stale again when the watchdog finds the last sync too old.
    #[test]
    fn a_replica_turns_stale_only_through_its_verdict() {
        let replica = RevokedTokens::replica(10, Duration::from_millis(30));
        assert!(replica.is_stale(), "nothing synced yet");
        replica.mark_synced();
        assert!(!replica.is_stale());
        replica.check_freshness();
        assert!(!replica.is_stale(), "synced just now");
        std::thread::sleep(Duration::from_millis(60));
        assert!(!replica.is_stale(), "no verdict yet: the hot path reads no clock");
        replica.check_freshness();
        assert!(replica.is_stale(), "older than the bound");
        replica.mark_synced();
        assert!(!replica.is_stale());
        assert!(!RevokedTokens::new(10).is_stale(), "this process's own set is never stale");
    }

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
