// Keys fetched from an issuer's JWKS URL (or found through OIDC discovery), SPEC A5, A16,
// F9: fetched at start and in the background (retried with backoff while the provider is
// down) and swapped atomically, so readers never wait on a lock or the network; an unknown
// `kid` triggers at most one refresh per interval, shared by every request that asks
// meanwhile, and learns whether that refresh could run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::Algorithm;

use super::fetch::{read_capped, BodyError};
use super::keys::{keys_from_jwks, KeySet, Refreshed};
use crate::telemetry::{self, Backend};

/// Largest JWKS or discovery document accepted.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// The first retry after a failed fetch; each further one waits twice as long, up to
/// `refresh_every` and at most [`LONGEST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(60);

/// Where the keys come from.
#[derive(Debug, Clone)]
pub(crate) enum KeySource {
    /// A JWKS URL.
    Jwks(String),
    /// `{issuer}/.well-known/openid-configuration`, whose `jwks_uri` names the JWKS.
    Discovery(String),
}

pub(crate) struct RemoteKeys {
    source: KeySource,
    /// The issuer's `algorithms`, for keys published without `alg`.
    allowed: Option<Vec<Algorithm>>,
    client: reqwest::Client,
    keys: ArcSwap<KeySet>,
    last_attempt: Mutex<Option<Instant>>,
    /// When the background task fetches next.
    next_scheduled: Mutex<Option<Instant>>,
    /// Whether the last fetch that finished stored a key set.
    last_fetch_ok: AtomicBool,
    /// Held by the one fetch in flight (inside its own task, so a caller that goes away
    /// cannot cancel it for the others).
    single_flight: Arc<tokio::sync::Mutex<()>>,
    /// Fetches finished (successful or not): a caller that waited while one finished uses
    /// its result instead of fetching again.
    completed: AtomicU64,
    /// Bumped when a fetch drops a `kid` that was there before, so that tokens verified
    /// with a retired key leave the verified-token cache (shared with the bearer handler).
    key_epoch: Arc<AtomicU64>,
    refresh_every: Duration,
    min_interval: Duration,
    background_started: AtomicBool,
}

/// Why keys could not be fetched (logged; a token whose key is not among the keys held
/// then gets 503).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("request failed: {0}")]
    Http(String),
    #[error("bad document: {0}")]
    Document(String),
}

impl RemoteKeys {
    pub(crate) fn new(
        source: KeySource,
        allowed: Option<Vec<Algorithm>>,
        refresh_every: Duration,
        min_interval: Duration,
        timeout: Duration,
        key_epoch: Arc<AtomicU64>,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            source,
            allowed,
            client,
            keys: ArcSwap::from_pointee(KeySet::default()),
            last_attempt: Mutex::new(None),
            next_scheduled: Mutex::new(None),
            last_fetch_ok: AtomicBool::new(false),
            single_flight: Arc::new(tokio::sync::Mutex::new(())),
            completed: AtomicU64::new(0),
            key_epoch,
            refresh_every,
            min_interval,
            background_started: AtomicBool::new(false),
        })
    }

    /// The keys fetched last (empty before the first successful fetch).
    pub(crate) fn current(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// Starts the background fetching if it is not running and a tokio runtime is at hand:
    /// at once, then every `refresh_every`; after a failure sooner, with a backoff from
    /// [`FIRST_RETRY`]. The task holds only a weak reference and ends with the
    /// layer.
    pub(crate) fn ensure_background(self: &Arc<Self>) {
        if self.background_started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if self.background_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        let longest_retry = self.refresh_every.clamp(FIRST_RETRY, LONGEST_RETRY);
        runtime.spawn(async move {
            let mut retry = FIRST_RETRY;
            loop {
                let Some(keys) = weak.upgrade() else { break };
                // A fetch anyone made within the last second (or minimum interval) counts.
                let wait = if keys.scheduled_fetch(keys.min_interval.min(FIRST_RETRY)).await {
                    retry = FIRST_RETRY;
                    keys.refresh_every
                } else {
                    let wait = retry;
                    retry = (retry * 2).min(longest_retry);
                    wait
                };
                *keys.next_scheduled.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + wait);
                drop(keys);
                tokio::time::sleep(wait).await;
            }
        });
    }

    /// A fetch of the background schedule, unless a fetch finished while this one waited
    /// or ran less than `gap` ago (then that one's outcome counts). True when keys were
    /// stored.
    async fn scheduled_fetch(self: &Arc<Self>, gap: Duration) -> bool {
        let seen = self.completed.load(Ordering::Acquire);
        let flight = self.single_flight.clone().lock_owned().await;
        let recent = self.last_attempt().is_some_and(|at| at.elapsed() < gap);
        if self.completed.load(Ordering::Acquire) != seen || recent {
            return self.last_fetch_ok.load(Ordering::Acquire);
        }
        self.mark_attempt();
        self.fetch_in_task(flight).await
    }

    /// Fetches the keys unless another fetch happened within the minimum interval;
    /// concurrent callers wait for the one fetch in flight and share its result.
    pub(crate) async fn refresh(self: &Arc<Self>) -> Refreshed {
        let seen = self.completed.load(Ordering::Acquire);
        let flight = self.single_flight.clone().lock_owned().await;
        // No fetch runs while the flight lock is held, so the last outcome is settled.
        if self.completed.load(Ordering::Acquire) != seen {
            return self.last_outcome();
        }
        if self.last_attempt().is_some_and(|at| at.elapsed() < self.min_interval) {
            return Refreshed::RateLimited;
        }
        self.mark_attempt();
        if self.fetch_in_task(flight).await {
            Refreshed::Fetched
        } else {
            Refreshed::Failed
        }
    }

    /// How long until keys can be fetched again: the rest of the minimum interval, or the
    /// next background fetch if that comes first.
    pub(crate) fn retry_after(&self) -> Duration {
        let allowed = self.last_attempt().map_or(Duration::ZERO, |at| self.min_interval.saturating_sub(at.elapsed()));
        let scheduled = *self.next_scheduled.lock().unwrap_or_else(PoisonError::into_inner);
        let scheduled = scheduled.map_or(allowed, |at| at.saturating_duration_since(Instant::now()));
        allowed.min(scheduled)
    }

    fn last_outcome(&self) -> Refreshed {
        if self.last_fetch_ok.load(Ordering::Acquire) {
            Refreshed::Fetched
        } else {
            Refreshed::Failed
        }
    }

    fn last_attempt(&self) -> Option<Instant> {
        *self.last_attempt.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mark_attempt(&self) {
        *self.last_attempt.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Fetches inside a task of its own that holds `flight`, so a caller that goes away
    /// cannot cancel the fetch for the others. True when keys were stored.
    async fn fetch_in_task(self: &Arc<Self>, flight: tokio::sync::OwnedMutexGuard<()>) -> bool {
        let keys = Arc::clone(self);
        let task = tokio::spawn(async move {
            let _flight = flight;
            keys.fetch_and_store().await
        });
        // A panic in the task is already logged by tokio; the keys stay as they were.
        task.await.unwrap_or(false)
    }

    /// One fetch; true when it stored a key set.
    async fn fetch_and_store(&self) -> bool {
        let stored = match self.fetch().await {
            Ok(set) => {
                tracing::info!(target: crate::AUDIT_TARGET, source = ?self.source, keys = set.keys.len(), "fetched signing keys");
                let previous = self.keys.swap(Arc::new(set));
                let current = self.keys.load();
                let retired = previous.keys.iter().any(|old| !current.keys.iter().any(|new| new.kid == old.kid));
                if retired {
                    self.key_epoch.fetch_add(1, Ordering::AcqRel);
                    tracing::info!(target: crate::AUDIT_TARGET, source = ?self.source, "a signing key was retired; cached tokens are verified again");
                }
                true
            }
            Err(error) => {
                tracing::error!(target: crate::AUDIT_TARGET, source = ?self.source, %error, "cannot fetch signing keys; keeping the previous ones");
                false
            }
        };
        self.last_fetch_ok.store(stored, Ordering::Release);
        self.completed.fetch_add(1, Ordering::AcqRel);
        stored
    }

    /// One fetch of the key set, recorded in the metrics (feature `metrics`).
    async fn fetch(&self) -> Result<KeySet, FetchError> {
        let source = match &self.source {
            KeySource::Jwks(_) => "jwks_uri",
            KeySource::Discovery(_) => "discovery",
        };
        telemetry::timed_result(Backend::KeyFetch { source }, self.fetch_untimed()).await
    }

    async fn fetch_untimed(&self) -> Result<KeySet, FetchError> {
        let jwks_uri = match &self.source {
            KeySource::Jwks(uri) => uri.clone(),
            KeySource::Discovery(issuer) => self.discover(issuer).await?,
        };
        let text = self.get(&jwks_uri).await?;
        keys_from_jwks(&text, self.allowed.as_deref()).map_err(FetchError::Document)
    }

    /// OIDC discovery: the document must name this issuer exactly and give a `jwks_uri`.
    async fn discover(&self, issuer: &str) -> Result<String, FetchError> {
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let text = self.get(&url).await?;
        let document: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| FetchError::Document(e.to_string()))?;
        match document.get("issuer") {
            Some(serde_json::Value::String(named)) if named == issuer => {}
            named => {
                let named = named.map_or_else(|| "none".to_owned(), ToString::to_string);
                let message =
                    format!("the discovery document names issuer {named}, the configured issuer is {issuer:?}");
                return Err(FetchError::Document(message));
            }
        }
        document
            .get("jwks_uri")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| FetchError::Document("discovery has no jwks_uri".to_owned()))
    }

    /// GET with the client's timeout, a success status and a size cap.
    async fn get(&self, url: &str) -> Result<String, FetchError> {
        let response = self.client.get(url).send().await.map_err(|e| FetchError::Http(e.to_string()))?;
        if !response.status().is_success() {
            return Err(FetchError::Http(format!("status {}", response.status())));
        }
        let body = read_capped(response, MAX_DOCUMENT_BYTES).await.map_err(|e| match e {
            BodyError::Broken(e) => FetchError::Http(e.to_string()),
            BodyError::TooLarge => FetchError::Document("document over 1 MiB".to_owned()),
        })?;
        String::from_utf8(body).map_err(|_| FetchError::Document("not UTF-8".to_owned()))
    }
}
