// The in-process state backend: one mutex over plain maps, bounded, for a single instance.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::{
    new_epoch, Change, CodeRecord, CodeRedemption, FamilyRevocation, Redemption, RefreshRecord, Snapshot, StateBackend,
    StateError, CODE_REPLAY_SECONDS,
};

/// How many changes the log keeps for replicas that fell behind (older ones resync).
const LOG_CAPACITY: usize = 10_000;

/// State in this process's memory: the default, with nothing to configure. A restart
/// forgets it, and other instances do not see it; use a shared backend for either.
///
/// Bounded by `capacity` entries per kind. When revocations fill it, expired ones go
/// first; then the client with the most revocations has every token issued to it so far
/// refused (a watermark) and its entries dropped, so nothing revoked comes back. When
/// refresh grants fill it, the one expiring first is forgotten (that token stops working).
///
/// ```
/// use tower_secure::state::MemoryState;
///
/// let state = MemoryState::with_capacity(100_000);
/// # let _ = state;
/// ```
#[derive(Clone)]
pub struct MemoryState {
    inner: Arc<Mutex<Inner>>,
    epoch: Arc<str>,
    capacity: usize,
}

impl std::fmt::Debug for MemoryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryState").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

impl Default for MemoryState {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Default)]
struct Inner {
    sequence: u64,
    log: VecDeque<(u64, Change)>,
    /// `jti` -> (`exp`, client).
    revoked: HashMap<String, (u64, String)>,
    client_watermarks: HashMap<String, u64>,
    global_watermark: u64,
    /// digest -> (grant, used).
    refresh: HashMap<[u8; 32], (RefreshRecord, bool)>,
    /// digest -> (code, used).
    codes: HashMap<[u8; 32], (CodeRecord, bool)>,
    families: u64,
    /// user -> (failures, when the first of them happened).
    failures: HashMap<String, (u32, u64)>,
    locks: HashMap<String, u64>,
}

impl Inner {
    fn record(&mut self, change: Change) {
        self.sequence += 1;
        self.log.push_back((self.sequence, change));
        if self.log.len() > LOG_CAPACITY {
            self.log.pop_front();
        }
    }

    fn watermark(&mut self, client: Option<&str>, before: u64) {
        match client {
            Some(client) => {
                let mark = self.client_watermarks.entry(client.to_owned()).or_default();
                *mark = (*mark).max(before);
            }
            None => self.global_watermark = self.global_watermark.max(before),
        }
        self.record(Change::IssuedBefore { client: client.map(str::to_owned), before });
    }

    /// Removes a family and returns its access tokens.
    fn remove_family(&mut self, family: u64) -> Vec<(String, u64)> {
        let mut access = Vec::new();
        self.refresh.retain(|_, (grant, _)| {
            let member = grant.family == family;
            if member {
                access.push((grant.access_jti.clone(), grant.access_exp));
            }
            !member
        });
        access
    }
}

impl MemoryState {
    /// A backend holding at most 100,000 entries of each kind.
    pub fn new() -> Self {
        Self::with_capacity(100_000)
    }

    /// A backend holding at most `capacity` entries of each kind.
    pub fn with_capacity(capacity: usize) -> Self {
        // Without OS randomness the epoch is fixed: it only has to differ between backends
        // that lost their data, and memory is never shared.
        let epoch = new_epoch().unwrap_or_else(|_| "memory".to_owned());
        Self { inner: Arc::default(), epoch: Arc::from(epoch), capacity: capacity.max(1) }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Revokes `jti` of `client` (kept for the bound: see the type's documentation).
    fn revoke_at(&self, jti: &str, client: &str, exp: u64, now: u64) {
        let mut inner = self.inner();
        if inner.revoked.len() >= self.capacity {
            inner.revoked.retain(|_, (until, _)| *until >= now);
        }
        if inner.revoked.len() >= self.capacity {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for (_, owner) in inner.revoked.values() {
                *counts.entry(owner.as_str()).or_default() += 1;
            }
            let heaviest = counts.into_iter().max_by_key(|(_, n)| *n).map(|(c, _)| c.to_owned()).unwrap_or_default();
            inner.revoked.retain(|_, (_, owner)| *owner != heaviest);
            tracing::warn!(target: crate::AUDIT_TARGET, client = %heaviest,
                "revocation list full: every token issued so far to the client with the most revocations is refused");
            inner.watermark(Some(&heaviest), now);
        }
        inner.revoked.insert(jti.to_owned(), (exp, client.to_owned()));
        inner.record(Change::Revoked { jti: jti.to_owned(), exp });
    }
}

#[async_trait]
impl StateBackend for MemoryState {
    async fn revoke(&self, jti: &str, client: &str, exp: u64) -> Result<(), StateError> {
        self.revoke_at(jti, client, exp, crate::unix_seconds());
        Ok(())
    }

    async fn revoke_issued_before(&self, client: Option<&str>, before: u64) -> Result<(), StateError> {
        self.inner().watermark(client, before);
        Ok(())
    }

    async fn new_family(&self) -> Result<u64, StateError> {
        let mut inner = self.inner();
        inner.families += 1;
        Ok(inner.families)
    }

    async fn put_refresh(&self, digest: &[u8; 32], record: &RefreshRecord) -> Result<(), StateError> {
        let mut inner = self.inner();
        if inner.refresh.len() >= self.capacity {
            let first = inner.refresh.iter().min_by_key(|(_, (grant, _))| grant.expires).map(|(digest, _)| *digest);
            if let Some(first) = first {
                inner.refresh.remove(&first);
                tracing::debug!(target: crate::AUDIT_TARGET, "refresh tokens full: the one expiring first forgotten");
            }
        }
        inner.refresh.insert(*digest, (record.clone(), false));
        Ok(())
    }

    async fn redeem_refresh(&self, digest: &[u8; 32], client_id: &str, now: u64) -> Result<Redemption, StateError> {
        let mut inner = self.inner();
        let Some((grant, used)) = inner.refresh.get_mut(digest) else { return Ok(Redemption::Invalid) };
        if grant.client_id != client_id || grant.expires <= now {
            return Ok(Redemption::Invalid);
        }
        if *used {
            let family = grant.family;
            return Ok(Redemption::Replayed(inner.remove_family(family)));
        }
        *used = true;
        Ok(Redemption::Fresh(grant.clone()))
    }

    async fn peek_refresh(&self, digest: &[u8; 32], now: u64) -> Result<Option<RefreshRecord>, StateError> {
        let inner = self.inner();
        let found = inner.refresh.get(digest).filter(|(grant, used)| !used && grant.expires > now);
        Ok(found.map(|(grant, _)| grant.clone()))
    }

    async fn revoke_refresh_family(&self, digest: &[u8; 32], client_id: &str) -> Result<FamilyRevocation, StateError> {
        let mut inner = self.inner();
        let Some((grant, _)) = inner.refresh.get(digest) else { return Ok(FamilyRevocation::Unknown) };
        if grant.client_id != client_id {
            return Ok(FamilyRevocation::OtherClient);
        }
        let family = grant.family;
        Ok(FamilyRevocation::Revoked(inner.remove_family(family)))
    }

    async fn revoke_client_refresh(&self, client_id: &str) -> Result<(), StateError> {
        self.inner().refresh.retain(|_, (grant, _)| grant.client_id != client_id);
        Ok(())
    }

    async fn put_code(&self, digest: &[u8; 32], record: &CodeRecord) -> Result<(), StateError> {
        let mut inner = self.inner();
        if inner.codes.len() >= self.capacity {
            let now = crate::unix_seconds();
            inner.codes.retain(|_, (code, _)| code.expires.saturating_add(CODE_REPLAY_SECONDS) > now);
        }
        if inner.codes.len() >= self.capacity {
            let first = inner.codes.iter().min_by_key(|(_, (code, _))| code.expires).map(|(digest, _)| *digest);
            if let Some(first) = first {
                inner.codes.remove(&first);
            }
        }
        inner.codes.insert(*digest, (record.clone(), false));
        Ok(())
    }

    async fn redeem_code(&self, digest: &[u8; 32], client_id: &str, now: u64) -> Result<CodeRedemption, StateError> {
        let mut inner = self.inner();
        let Some((code, used)) = inner.codes.get_mut(digest) else { return Ok(CodeRedemption::Invalid) };
        if code.client_id != client_id {
            return Ok(CodeRedemption::Invalid);
        }
        if *used {
            let family = code.family;
            return Ok(CodeRedemption::Replayed(inner.remove_family(family)));
        }
        if code.expires <= now {
            return Ok(CodeRedemption::Invalid);
        }
        *used = true;
        Ok(CodeRedemption::Fresh(code.clone()))
    }

    async fn record_failure(
        &self,
        user: &str,
        max_failures: u32,
        lockout_seconds: u64,
        now: u64,
    ) -> Result<Option<u64>, StateError> {
        let mut inner = self.inner();
        if inner.failures.len() >= self.capacity {
            inner.failures.retain(|_, (_, first)| first.saturating_add(lockout_seconds) > now);
        }
        let entry = inner.failures.entry(user.to_owned()).or_insert((0, now));
        if entry.1.saturating_add(lockout_seconds) <= now {
            *entry = (0, now);
        }
        entry.0 += 1;
        if entry.0 != max_failures.max(1) {
            return Ok(None);
        }
        let until = now.saturating_add(lockout_seconds);
        inner.locks.insert(user.to_owned(), until);
        inner.record(Change::Locked { user: user.to_owned(), until });
        Ok(Some(until))
    }

    async fn clear_failures(&self, user: &str) -> Result<(), StateError> {
        self.inner().failures.remove(user);
        Ok(())
    }

    async fn locked_until(&self, user: &str, now: u64) -> Result<Option<u64>, StateError> {
        Ok(self.inner().locks.get(user).copied().filter(|&until| until > now))
    }

    async fn snapshot(&self, now: u64) -> Result<Snapshot, StateError> {
        let mut inner = self.inner();
        inner.revoked.retain(|_, (exp, _)| *exp >= now);
        inner.locks.retain(|_, until| *until > now);
        Ok(Snapshot {
            epoch: self.epoch.to_string(),
            sequence: inner.sequence,
            revoked: inner.revoked.iter().map(|(jti, (exp, _))| (jti.clone(), *exp)).collect(),
            client_watermarks: inner.client_watermarks.clone(),
            global_watermark: inner.global_watermark,
            locks: inner.locks.clone(),
        })
    }

    async fn changes_since(&self, epoch: &str, sequence: u64) -> Result<Option<Vec<(u64, Change)>>, StateError> {
        if epoch != &*self.epoch {
            return Ok(None);
        }
        let inner = self.inner();
        let oldest = inner.log.front().map_or(inner.sequence + 1, |(n, _)| *n);
        if sequence + 1 < oldest {
            return Ok(None);
        }
        Ok(Some(inner.log.iter().filter(|(n, _)| *n > sequence).cloned().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(expires: u64) -> RefreshRecord {
        RefreshRecord {
            client_id: "c".to_owned(),
            user: "alex".to_owned(),
            scopes: vec![],
            issued_at: 0,
            expires,
            family: expires,
            access_jti: format!("j{expires}"),
            access_exp: 5,
        }
    }

    // SPEC D5, F18: a full revocation list refuses everything issued so far to the client
    // with the most revocations (a watermark, in the log too), and nothing of anybody else's.
    #[tokio::test]
    async fn full_revocations_fail_closed_per_client() {
        let state = MemoryState::with_capacity(3);
        state.revoke_at("victim-1", "victim", 100, 10);
        state.revoke_at("noisy-1", "noisy", 100, 10);
        state.revoke_at("noisy-2", "noisy", 100, 10);
        state.revoke_at("noisy-3", "noisy", 100, 20);
        let snapshot = state.snapshot(10).await.unwrap();
        assert!(snapshot.is_revoked(Some("noisy-any"), Some("noisy"), 20), "issued before its watermark");
        assert!(!snapshot.is_revoked(Some("noisy-new"), Some("noisy"), 21));
        assert!(snapshot.is_revoked(Some("noisy-3"), Some("noisy"), 21), "the new entry is kept");
        assert!(snapshot.is_revoked(Some("victim-1"), Some("victim"), 5), "others keep their revocations");
        assert!(!snapshot.is_revoked(Some("other"), Some("victim"), 5), "others are not logged out");
        let changes = state.changes_since(&snapshot.epoch, 0).await.unwrap().unwrap();
        assert!(changes
            .iter()
            .any(|(_, c)| matches!(c, Change::IssuedBefore { client: Some(c), before: 20 } if c == "noisy")));
    }

    // SPEC D1, F18: full refresh grants forget the one expiring first and stay bounded.
    #[tokio::test]
    async fn full_refresh_grants_forget_the_one_expiring_first() {
        let state = MemoryState::with_capacity(2);
        for (n, expires) in [(1u8, 30), (2, 10), (3, 20)] {
            state.put_refresh(&[n; 32], &grant(expires)).await.unwrap();
        }
        assert_eq!(state.redeem_refresh(&[2; 32], "c", 1).await.unwrap(), Redemption::Invalid, "forgotten");
        assert!(matches!(state.redeem_refresh(&[1; 32], "c", 1).await.unwrap(), Redemption::Fresh(_)));
        assert!(matches!(state.redeem_refresh(&[3; 32], "c", 1).await.unwrap(), Redemption::Fresh(_)));
        for n in 10..200u8 {
            state.put_refresh(&[n; 32], &grant(u64::from(n) + 100)).await.unwrap();
        }
        assert!(state.inner().refresh.len() <= 2);
    }
}
