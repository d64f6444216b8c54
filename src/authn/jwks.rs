// Keys fetched from an issuer's JWKS URL (or found through OIDC discovery), SPEC A5, F9:
// fetched in the background and swapped atomically, so readers never wait on a lock or the
// network; an unknown `kid` triggers at most one refresh per interval, shared by every
// request that asks meanwhile.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::bearer::{keys_from_jwks, VerificationKey};

/// Largest JWKS or discovery document accepted.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

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
    client: reqwest::Client,
    keys: ArcSwap<Vec<VerificationKey>>,
    fetched_once: AtomicBool,
    last_attempt: Mutex<Option<Instant>>,
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

/// Why keys could not be fetched (logged; the caller sees 503 only while no key set was
/// ever fetched, 401 for an unknown `kid` afterwards).
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
            client,
            keys: ArcSwap::from_pointee(Vec::new()),
            fetched_once: AtomicBool::new(false),
            last_attempt: Mutex::new(None),
            single_flight: Arc::new(tokio::sync::Mutex::new(())),
            completed: AtomicU64::new(0),
            key_epoch,
            refresh_every,
            min_interval,
            background_started: AtomicBool::new(false),
        })
    }

    /// The keys fetched last (empty before the first successful fetch).
    pub(crate) fn current(&self) -> Arc<Vec<VerificationKey>> {
        self.keys.load_full()
    }

    /// True once a key set has been fetched.
    pub(crate) fn ever_fetched(&self) -> bool {
        self.fetched_once.load(Ordering::Acquire)
    }

    /// Starts the periodic refresh if it is not running and a tokio runtime is at hand.
    /// The task holds only a weak reference and ends with the layer.
    pub(crate) fn ensure_background(self: &Arc<Self>) {
        if self.background_started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if self.background_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = self.refresh_every;
        runtime.spawn(async move {
            loop {
                match weak.upgrade() {
                    Some(keys) => keys.refresh().await,
                    None => break,
                }
                tokio::time::sleep(every).await;
            }
        });
    }

    /// Fetches the keys unless another fetch happened within the minimum interval;
    /// concurrent callers wait for the one fetch in flight and share its result.
    pub(crate) async fn refresh(self: &Arc<Self>) {
        let seen = self.completed.load(Ordering::Acquire);
        let flight = self.single_flight.clone().lock_owned().await;
        if self.completed.load(Ordering::Acquire) != seen {
            return;
        }
        {
            let mut last = self.last_attempt.lock().unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < self.min_interval) {
                return;
            }
            *last = Some(Instant::now());
        }
        let keys = Arc::clone(self);
        let task = tokio::spawn(async move {
            let _flight = flight;
            keys.fetch_and_store().await;
        });
        // A panic in the task is already logged by tokio; the keys stay as they were.
        let _ = task.await;
    }

    async fn fetch_and_store(&self) {
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(target: "tower_secure::audit", source = ?self.source, keys = keys.len(), "fetched signing keys");
                let previous = self.keys.swap(Arc::new(keys));
                let current = self.keys.load();
                let retired = previous.iter().any(|old| !current.iter().any(|new| new.kid == old.kid));
                if retired {
                    self.key_epoch.fetch_add(1, Ordering::AcqRel);
                    tracing::info!(target: "tower_secure::audit", source = ?self.source, "a signing key was retired; cached tokens are verified again");
                }
                self.fetched_once.store(true, Ordering::Release);
            }
            Err(error) => {
                tracing::error!(target: "tower_secure::audit", source = ?self.source, %error, "cannot fetch signing keys; keeping the previous ones");
            }
        }
        self.completed.fetch_add(1, Ordering::AcqRel);
    }

    async fn fetch(&self) -> Result<Vec<VerificationKey>, FetchError> {
        let jwks_uri = match &self.source {
            KeySource::Jwks(uri) => uri.clone(),
            KeySource::Discovery(issuer) => self.discover(issuer).await?,
        };
        let text = self.get(&jwks_uri).await?;
        keys_from_jwks(&text).map_err(FetchError::Document)
    }

    /// OIDC discovery: the document must name this issuer exactly and give a `jwks_uri`.
    async fn discover(&self, issuer: &str) -> Result<String, FetchError> {
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let text = self.get(&url).await?;
        let document: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| FetchError::Document(e.to_string()))?;
        if document.get("issuer").and_then(serde_json::Value::as_str) != Some(issuer) {
            return Err(FetchError::Document("discovery names another issuer".to_owned()));
        }
        document
            .get("jwks_uri")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| FetchError::Document("discovery has no jwks_uri".to_owned()))
    }

    /// GET with the client's timeout, a success status and a size cap.
    async fn get(&self, url: &str) -> Result<String, FetchError> {
        let mut response = self.client.get(url).send().await.map_err(|e| FetchError::Http(e.to_string()))?;
        if !response.status().is_success() {
            return Err(FetchError::Http(format!("status {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| FetchError::Http(e.to_string()))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(FetchError::Document("document over 1 MiB".to_owned()));
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| FetchError::Document("not UTF-8".to_owned()))
    }
}
