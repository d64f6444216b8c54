// Token introspection without the `remote-keys` feature: an `[oauth2.introspection]`
// table is a load error, so an `Introspector` is never built and its methods never run.

use serde_json::Value;

use super::claims::ClaimRules;
use crate::config::{ConfigError, IntrospectionConfig, SourceMap};
use crate::error::AuthError;

/// Never built: it has no values.
pub(crate) enum Introspector {}

impl Introspector {
    pub(super) fn new(
        config: &IntrospectionConfig,
        _rules: ClaimRules,
        source: &SourceMap,
    ) -> Result<Self, ConfigError> {
        let message = "[oauth2.introspection] needs tower-secure's `remote-keys` feature";
        Err(source.error(config.endpoint.span(), "endpoint", message))
    }

    pub(super) fn cache_max_seconds(&self) -> u64 {
        match *self {}
    }

    pub(super) fn audiences(&self) -> &[String] {
        match *self {}
    }

    pub(super) fn issuer(&self) -> Option<&str> {
        match *self {}
    }

    pub(super) fn rules(&self) -> &ClaimRules {
        match *self {}
    }

    pub(super) fn check_audience_and_issuer(
        &self,
        _answer: &Value,
        _audiences: &[String],
        _trusted: impl Fn(&str) -> bool,
    ) -> Result<(), AuthError> {
        match *self {}
    }

    pub(crate) async fn introspect(&self, _token: &str, _now: u64) -> Result<Value, AuthError> {
        match *self {}
    }
}
