// Refresh tokens (SPEC D1): opaque, stored by SHA-256 digest, single use. Using one
// rotates it; presenting a used one again revokes its whole family (RFC 9700 4.14).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::identity::QualifiedName;

/// What a refresh token stands for.
#[derive(Debug, Clone)]
pub(super) struct RefreshGrant {
    pub(super) client_id: String,
    pub(super) user: QualifiedName,
    pub(super) scopes: Vec<String>,
    pub(super) expires: u64,
    /// Tokens rotated from one password grant share a family.
    pub(super) family: u64,
    /// The access token issued with this refresh token: `jti` and `exp`.
    pub(super) access: (String, u64),
    used: bool,
}

/// The outcome of presenting a refresh token.
pub(super) enum Redeemed {
    /// Unused and now marked used.
    Fresh(RefreshGrant),
    /// Unknown, expired, or issued to another client.
    Invalid,
    /// Used before: the family is gone; these access tokens (`jti`, `exp`) must be revoked.
    Replayed(Vec<(String, u64)>),
}

pub(super) struct RefreshTokens {
    grants: Mutex<Store>,
    capacity: usize,
}

#[derive(Default)]
struct Store {
    by_digest: HashMap<[u8; 32], RefreshGrant>,
    /// Digests in issue order, oldest first, for eviction; may name tokens already gone.
    order: VecDeque<[u8; 32]>,
    next_family: u64,
}

impl Store {
    /// Makes room for one more token: forgets the oldest ones (a forgotten refresh token
    /// no longer works), in O(1) amortised.
    fn make_room(&mut self, capacity: usize) {
        while self.by_digest.len() >= capacity {
            let Some(oldest) = self.order.pop_front() else { break };
            if self.by_digest.remove(&oldest).is_some() {
                tracing::debug!(target: crate::AUDIT_TARGET, "refresh token store full: the oldest token forgotten");
            }
        }
        // Entries of tokens removed otherwise (revocation, replay) are dropped now and then.
        if self.order.len() > 2 * capacity {
            let live = &self.by_digest;
            self.order.retain(|digest| live.contains_key(digest));
        }
    }
}

impl RefreshTokens {
    pub(super) fn new(capacity: usize) -> Self {
        Self { grants: Mutex::new(Store::default()), capacity: capacity.max(1) }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.grants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn new_family(&self) -> u64 {
        let mut store = self.store();
        store.next_family += 1;
        store.next_family
    }

    /// Stores a grant and returns its token; a full store forgets its oldest token first.
    /// `None` only when the OS has no randomness.
    pub(super) fn issue(
        &self,
        client_id: &str,
        user: &QualifiedName,
        scopes: &[String],
        expires: u64,
        family: u64,
        access: (String, u64),
    ) -> Option<String> {
        let token = random_token()?;
        let grant = RefreshGrant {
            client_id: client_id.to_owned(),
            user: user.clone(),
            scopes: scopes.to_vec(),
            expires,
            family,
            access,
            used: false,
        };
        let mut store = self.store();
        store.make_room(self.capacity);
        let digest = digest(&token);
        store.by_digest.insert(digest, grant);
        store.order.push_back(digest);
        Some(token)
    }

    /// Marks a token used and returns its grant, if it is valid for this client.
    pub(super) fn redeem(&self, token: &str, client_id: &str, now: u64) -> Redeemed {
        let mut store = self.store();
        let Some(grant) = store.by_digest.get_mut(&digest(token)) else { return Redeemed::Invalid };
        if grant.client_id != client_id || grant.expires <= now {
            return Redeemed::Invalid;
        }
        if grant.used {
            let family = grant.family;
            return Redeemed::Replayed(remove_family(&mut store, family));
        }
        grant.used = true;
        Redeemed::Fresh(grant.clone())
    }

    /// The grant of an unused, unexpired token (for introspection).
    pub(super) fn peek(&self, token: &str, now: u64) -> Option<RefreshGrant> {
        let store = self.store();
        store.by_digest.get(&digest(token)).filter(|g| !g.used && g.expires > now).cloned()
    }

    /// Forgets every token of a client (removed or disabled).
    pub(super) fn revoke_client(&self, client_id: &str) {
        self.store().by_digest.retain(|_, grant| grant.client_id != client_id);
    }

    /// Revokes a token's family (RFC 7009: revoking a refresh token ends its grant) when it
    /// belongs to `client_id`. `None`: not a refresh token of this server. `Some(Err)`: it
    /// belongs to another client.
    pub(super) fn revoke(&self, token: &str, client_id: &str) -> Option<Result<Vec<(String, u64)>, ()>> {
        let mut store = self.store();
        let grant = store.by_digest.get(&digest(token))?;
        if grant.client_id != client_id {
            return Some(Err(()));
        }
        let family = grant.family;
        Some(Ok(remove_family(&mut store, family)))
    }
}

/// Removes every token of a family and returns their access tokens.
fn remove_family(store: &mut Store, family: u64) -> Vec<(String, u64)> {
    let mut access = Vec::new();
    store.by_digest.retain(|_, grant| {
        let member = grant.family == family;
        if member {
            access.push(grant.access.clone());
        }
        !member
    });
    access
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// 256 random bits, base64url. `None` only if the OS random source fails.
pub(super) fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alex() -> QualifiedName {
        QualifiedName::parse("alex").unwrap()
    }

    // SPEC D1: single use; a replay ends the family; another client's token is invalid.
    #[test]
    fn rotation_and_replay() {
        let tokens = RefreshTokens::new(10);
        let family = tokens.new_family();
        let first = tokens.issue("c", &alex(), &[], 100, family, ("j1".into(), 50)).unwrap();
        assert!(matches!(tokens.redeem(&first, "other", 1), Redeemed::Invalid));
        assert!(matches!(tokens.redeem(&first, "c", 1), Redeemed::Fresh(_)));
        let second = tokens.issue("c", &alex(), &[], 100, family, ("j2".into(), 50)).unwrap();
        match tokens.redeem(&first, "c", 2) {
            Redeemed::Replayed(access) => assert_eq!(access.len(), 2),
            _ => panic!("a replay must end the family"),
        }
        assert!(matches!(tokens.redeem(&second, "c", 3), Redeemed::Invalid));
        assert!(matches!(tokens.redeem("unknown", "c", 3), Redeemed::Invalid));
    }

    // SPEC D1, F18: a full store forgets its oldest token, keeps the newest, and stays bounded.
    #[test]
    fn full_store_forgets_the_oldest_and_expired_tokens_are_refused() {
        let tokens = RefreshTokens::new(2);
        let first = tokens.issue("c", &alex(), &[], 10, 1, ("j".into(), 5)).unwrap();
        let second = tokens.issue("c", &alex(), &[], 10, 2, ("k".into(), 5)).unwrap();
        let third = tokens.issue("c", &alex(), &[], 10, 3, ("l".into(), 5)).unwrap();
        assert!(matches!(tokens.redeem(&first, "c", 1), Redeemed::Invalid), "the oldest is forgotten");
        assert!(matches!(tokens.redeem(&second, "c", 1), Redeemed::Fresh(_)));
        assert!(matches!(tokens.redeem(&third, "c", 10), Redeemed::Invalid), "expired");
        for family in 4..1000 {
            let token = tokens.issue("c", &alex(), &[], 10, family, ("m".into(), 5)).unwrap();
            assert!(matches!(tokens.revoke(&token, "c"), Some(Ok(_))));
        }
        let store = tokens.store();
        assert!(store.by_digest.len() <= 2 && store.order.len() <= 5, "bounded: {}", store.order.len());
    }
}
