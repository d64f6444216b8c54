// RFC 7662 token introspection for opaque bearer tokens (SPEC A6, A15, F11, F17): the
// authorization server says whether a token is active; `active` must be JSON `true`, the
// answer must name this API's audience and a trusted issuer. Failures of the server itself
// answer 503, never 200.

use std::time::Duration;

use serde_json::Value;

use super::claims::ClaimRules;
use super::fetch::{read_capped, BodyError};
use crate::config::{ConfigError, IntrospectionConfig, SourceMap};
use crate::error::{AuthError, AuthErrorKind};
use crate::telemetry::{self, Backend};

/// Largest introspection response accepted.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

pub(crate) struct Introspector {
    endpoint: String,
    client_id: String,
    client_secret: String,
    client: reqwest::Client,
    cache_max_seconds: u64,
    /// The answer's `aud` must name one of these (never empty).
    audiences: Vec<String>,
    /// The answer's `iss`, when it has one, must be this (when set).
    issuer: Option<String>,
    /// How an answer for an opaque token names the caller.
    rules: ClaimRules,
}

impl Introspector {
    pub(super) fn new(
        config: &IntrospectionConfig,
        rules: ClaimRules,
        source: &SourceMap,
    ) -> Result<Self, ConfigError> {
        let endpoint = config.endpoint.get_ref().clone();
        let error = |key: &str, message: String| source.error(config.endpoint.span(), key, message);
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(error("endpoint", "must be an http(s) URL".to_owned()));
        }
        let audiences = match &config.audience {
            None => {
                let message = "[oauth2.introspection] needs an audience: the `aud` value this API's tokens carry \
                               (an answer for another audience is refused)";
                return Err(error("audience", message.to_owned()));
            }
            Some(list) if list.get_ref().0.is_empty() || list.get_ref().0.iter().any(String::is_empty) => {
                return Err(source.error(list.span(), "audience", "name the audience (a non-empty value)"));
            }
            Some(list) => list.get_ref().0.clone(),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_seconds.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| error("endpoint", format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            endpoint,
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            client,
            cache_max_seconds: config.cache_max_seconds,
            audiences,
            issuer: config.issuer.clone(),
            rules,
        })
    }

    /// The longest an answer is trusted before the token is introspected again.
    pub(super) fn cache_max_seconds(&self) -> u64 {
        self.cache_max_seconds
    }

    /// The configured audiences (one at least).
    pub(super) fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The configured issuer, if any.
    pub(super) fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The claim rules for answers about opaque tokens.
    pub(super) fn rules(&self) -> &ClaimRules {
        &self.rules
    }

    /// The answer's `aud` (a string or an array of strings) names one of
    /// `audiences`, and its `iss`, when present, is a string `trusted` accepts. A token the
    /// authorization server issued for another API is refused here (RFC 9700 2.3).
    pub(super) fn check_audience_and_issuer(
        &self,
        answer: &Value,
        audiences: &[String],
        trusted: impl Fn(&str) -> bool,
    ) -> Result<(), AuthError> {
        let named = |aud: &Value| aud.as_str().is_some_and(|aud| audiences.iter().any(|a| a == aud));
        let audience_ok = match answer.get("aud") {
            Some(Value::Array(list)) => list.iter().all(Value::is_string) && list.iter().any(named),
            Some(aud) => named(aud),
            None => false,
        };
        if !audience_ok {
            return Err(AuthError::invalid_credentials("introspection answer is for another audience"));
        }
        match answer.get("iss") {
            None => Ok(()),
            Some(Value::String(iss)) if trusted(iss) => Ok(()),
            Some(_) => Err(AuthError::invalid_credentials("introspection answer names another issuer")),
        }
    }

    /// The response of an active token, whose `exp` (when given) lies ahead of `now`.
    /// Recorded in the metrics (feature `metrics`): a failure of the endpoint (503) is an
    /// error, an inactive or refused token is not.
    pub(crate) async fn introspect(&self, token: &str, now: u64) -> Result<Value, AuthError> {
        let failed =
            |answer: &Result<Value, AuthError>| answer.as_ref().is_err_and(|e| e.kind() == AuthErrorKind::Unavailable);
        telemetry::timed(Backend::Introspection, failed, self.introspect_untimed(token, now)).await
    }

    async fn introspect_untimed(&self, token: &str, now: u64) -> Result<Value, AuthError> {
        let unavailable = |reason: &'static str| {
            move |error: reqwest::Error| {
                tracing::error!(target: crate::AUDIT_TARGET, %error, "introspection failed");
                AuthError::unavailable(reason).with_retry_after(1)
            }
        };
        let response = self
            .client
            .post(&self.endpoint)
            // RFC 6749 section 2.3.1: form-encode id and secret before Basic encoding.
            .basic_auth(form_encode(&self.client_id), Some(form_encode(&self.client_secret)))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(unavailable("introspection endpoint unreachable"))?;
        if !response.status().is_success() {
            tracing::error!(target: crate::AUDIT_TARGET, status = %response.status(), "introspection endpoint refused the call");
            return Err(AuthError::unavailable("introspection endpoint error").with_retry_after(1));
        }
        let body = match read_capped(response, MAX_RESPONSE_BYTES).await {
            Ok(body) => body,
            Err(BodyError::Broken(error)) => return Err(unavailable("introspection response broken")(error)),
            Err(BodyError::TooLarge) => {
                return Err(AuthError::unavailable("introspection response too large").with_retry_after(1))
            }
        };
        let answer = match super::json::parse(&body) {
            Ok(answer) => answer,
            // Well-formed JSON that names a member twice could mean either value: refused
            // like a token that says so, not retried like an outage.
            Err(error) if error.is_data() => {
                tracing::warn!(target: crate::AUDIT_TARGET, "introspection response names a member twice");
                return Err(AuthError::invalid_credentials("introspection response names a member twice"));
            }
            Err(_) => {
                tracing::error!(target: crate::AUDIT_TARGET, "introspection response is not JSON");
                return Err(AuthError::unavailable("introspection response is not JSON").with_retry_after(1));
            }
        };
        if answer.get("active") != Some(&Value::Bool(true)) {
            return Err(AuthError::invalid_credentials("token is not active"));
        }
        match answer.get("exp").map(super::claims::seconds) {
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
