// RFC 7662 token introspection for opaque bearer tokens (SPEC A6, F11, F17): the
// authorization server says whether a token is active; `active` must be JSON `true`.
// Failures of the server itself answer 503, never 200.

use std::time::Duration;

use serde_json::Value;

use crate::config::IntrospectionConfig;
use crate::error::AuthError;

/// Largest introspection response accepted.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

pub(crate) struct Introspector {
    endpoint: String,
    client_id: String,
    client_secret: String,
    client: reqwest::Client,
    pub(crate) cache_max_seconds: u64,
}

impl Introspector {
    pub(crate) fn new(config: &IntrospectionConfig) -> Result<Self, String> {
        let endpoint = config.endpoint.get_ref().clone();
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err("must be an http(s) URL".to_owned());
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_seconds.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            endpoint,
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            client,
            cache_max_seconds: config.cache_max_seconds,
        })
    }

    /// The response of an active token, whose `exp` (when given) lies ahead of `now`.
    pub(crate) async fn introspect(&self, token: &str, now: u64) -> Result<Value, AuthError> {
        let unavailable = |reason: &'static str| {
            move |error: reqwest::Error| {
                tracing::error!(target: "tower_secure::audit", %error, "introspection failed");
                AuthError::unavailable(reason).with_retry_after(1)
            }
        };
        let mut response = self
            .client
            .post(&self.endpoint)
            // RFC 6749 section 2.3.1: form-encode id and secret before Basic encoding.
            .basic_auth(form_encode(&self.client_id), Some(form_encode(&self.client_secret)))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(unavailable("introspection endpoint unreachable"))?;
        if !response.status().is_success() {
            tracing::error!(target: "tower_secure::audit", status = %response.status(), "introspection endpoint refused the call");
            return Err(AuthError::unavailable("introspection endpoint error").with_retry_after(1));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unavailable("introspection response broken"))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(AuthError::unavailable("introspection response too large").with_retry_after(1));
            }
            body.extend_from_slice(&chunk);
        }
        let answer: Value = serde_json::from_slice(&body).map_err(|_| {
            tracing::error!(target: "tower_secure::audit", "introspection response is not JSON");
            AuthError::unavailable("introspection response is not JSON").with_retry_after(1)
        })?;
        if answer.get("active") != Some(&Value::Bool(true)) {
            return Err(AuthError::invalid_credentials("token is not active"));
        }
        match answer.get("exp").map(super::bearer::seconds) {
            None => {}
            Some(Some(exp)) if exp > now => {}
            Some(Some(_)) => return Err(AuthError::invalid_credentials("token expired")),
            Some(None) => return Err(AuthError::invalid_credentials("exp is not a number")),
        }
        Ok(answer)
    }
}

fn form_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
