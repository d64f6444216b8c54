// Metrics (SPEC I4): every metric name and label set of the crate, and the only code that
// talks to the `metrics` facade. The ground floor: it imports nothing of the crate, so any
// module may call it. Without the `metrics` feature every type here is empty and every
// function does nothing (inlined away), so call sites carry no `cfg`.
//
// The hot path allocates nothing for labels: a decision increments a counter handle
// registered the first time its (rule, handler, outcome) was seen by this engine; the
// credential caches increment handles registered when their handler was built. Backend
// calls (user stores, state backends, key fetches, introspection) do I/O anyway and build
// their label list per call. Labels are bounded: a rule is named by its `file:line`
// origin, a handler by its registered name, everything else by a fixed word; never a
// user, a token or a request path.
//
// The README's "Metrics" section lists the metrics; keep it in step with `NAMES`.

use std::future::Future;

/// Every metric name, with its type and help text: the README's table, and what
/// [`describe`] tells the recorder.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
const NAMES: &[(&str, Kind, &str)] = &[
    (DECISIONS, Kind::Counter, "Requests decided by the layer, by outcome, authentication handler and rule"),
    (CACHE_LOOKUPS, Kind::Counter, "Look-ups in the verified-credential caches, by cache and result (hit or miss)"),
    (USER_STORE_SECONDS, Kind::Histogram, "Duration of user store calls, by backend and operation"),
    (USER_STORE_ERRORS, Kind::Counter, "User store calls that failed, timed out or were abandoned"),
    (STATE_SECONDS, Kind::Histogram, "Duration of state backend calls, by backend and operation"),
    (STATE_ERRORS, Kind::Counter, "State backend calls that failed, timed out or were abandoned"),
    (KEY_FETCH_SECONDS, Kind::Histogram, "Duration of signing-key fetches (JWKS, OIDC discovery then JWKS)"),
    (KEY_FETCH_ERRORS, Kind::Counter, "Signing-key fetches that failed (unreachable, error status, bad document)"),
    (INTROSPECTION_SECONDS, Kind::Histogram, "Duration of token introspection calls"),
    (INTROSPECTION_ERRORS, Kind::Counter, "Token introspection calls that failed (answered 503)"),
];

const DECISIONS: &str = "tower_secure_decisions_total";
const CACHE_LOOKUPS: &str = "tower_secure_credential_cache_lookups_total";
const USER_STORE_SECONDS: &str = "tower_secure_user_store_duration_seconds";
const USER_STORE_ERRORS: &str = "tower_secure_user_store_errors_total";
const STATE_SECONDS: &str = "tower_secure_state_backend_duration_seconds";
const STATE_ERRORS: &str = "tower_secure_state_backend_errors_total";
const KEY_FETCH_SECONDS: &str = "tower_secure_key_fetch_duration_seconds";
const KEY_FETCH_ERRORS: &str = "tower_secure_key_fetch_errors_total";
const INTROSPECTION_SECONDS: &str = "tower_secure_introspection_duration_seconds";
const INTROSPECTION_ERRORS: &str = "tower_secure_introspection_errors_total";

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Histogram,
}

/// Tells the installed recorder the help text (and unit) of every metric. Called when an
/// engine is built: after the application installed its recorder.
#[inline]
fn describe() {
    #[cfg(feature = "metrics")]
    for &(name, kind, help) in NAMES {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, metrics::Unit::Seconds, help),
        }
    }
}

/// What the layer made of a request: the `outcome` label of [`DECISIONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Let through (an authorized caller, an open resource, a token endpoint).
    Allowed,
    InvalidRequest,
    HeaderTooLarge,
    Unauthenticated,
    InvalidCredentials,
    Forbidden,
    MethodNotAllowed,
    TooManyRequests,
    Unavailable,
    Internal,
}

impl Outcome {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    const COUNT: usize = 10;

    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::InvalidRequest => "invalid_request",
            Self::HeaderTooLarge => "header_too_large",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Forbidden => "forbidden",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::TooManyRequests => "too_many_requests",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

/// The rule a decision was made under: the `rule` label of [`DECISIONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RuleSlot {
    /// A rule of the policy, by id; an id past the policy's rules is the secure default.
    Compiled(usize),
    /// Refused before a rule applied (a non-canonical path, a method no rule allows).
    NoRule,
    /// A token server endpoint, let through to authenticate its own clients.
    TokenEndpoint,
    /// A handler's own `#[secure]` rule refused the caller.
    HandlerRule,
}

/// Labels of the slots after the compiled rules, in [`Decisions::rule_index`]'s order.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
const EXTRA_RULES: [&str; 4] = ["secure_default", "none", "token_endpoint", "#[secure]"];
/// Handler labels after the registered handlers: no handler authenticated the request,
/// and a principal stamped by a handler this engine does not know (none today).
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
const EXTRA_HANDLERS: [&str; 2] = ["none", "other"];

/// One engine's decision counters: a handle per (rule, handler, outcome), registered
/// with the recorder the first time that combination is decided (a rule's row of handles
/// is allocated then too), so a policy of many rules registers only what it serves.
pub(crate) struct Decisions {
    #[cfg(feature = "metrics")]
    rules: Box<[Box<str>]>,
    #[cfg(feature = "metrics")]
    handlers: Box<[Box<str>]>,
    #[cfg(feature = "metrics")]
    rows: Box<[std::sync::OnceLock<Row>]>,
}

/// One rule's counters: a cell per (handler, outcome), each registered on first use.
#[cfg(feature = "metrics")]
type Row = Box<[std::sync::OnceLock<metrics::Counter>]>;

impl Decisions {
    /// The counters of an engine with these rules (their `file:line` labels, in id order)
    /// and these handlers (their registered names).
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(rules: impl Iterator<Item = String>, handlers: impl Iterator<Item = String>) -> Self {
        describe();
        #[cfg(feature = "metrics")]
        {
            let rules: Box<[Box<str>]> =
                rules.map(String::into_boxed_str).chain(EXTRA_RULES.iter().map(|&r| r.into())).collect();
            let handlers =
                handlers.map(String::into_boxed_str).chain(EXTRA_HANDLERS.iter().map(|&h| h.into())).collect();
            let rows = rules.iter().map(|_| std::sync::OnceLock::new()).collect();
            Self { rules, handlers, rows }
        }
        #[cfg(not(feature = "metrics"))]
        Self {}
    }

    /// Counts one decision. `handler` is the name of the handler that authenticated (or
    /// refused) the request, `None` when none did.
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn record(&self, outcome: Outcome, handler: Option<&str>, rule: RuleSlot) {
        #[cfg(feature = "metrics")]
        {
            let rule = self.rule_index(rule);
            let handler = self.handler_index(handler);
            let per_rule = self.handlers.len() * Outcome::COUNT;
            let row = self.rows[rule].get_or_init(|| (0..per_rule).map(|_| std::sync::OnceLock::new()).collect());
            let counter = row[handler * Outcome::COUNT + outcome as usize].get_or_init(|| {
                metrics::counter!(
                    DECISIONS,
                    "outcome" => outcome.label(),
                    "handler" => self.handlers[handler].to_string(),
                    "rule" => self.rules[rule].to_string()
                )
            });
            counter.increment(1);
        }
    }

    #[cfg(feature = "metrics")]
    fn rule_index(&self, rule: RuleSlot) -> usize {
        let compiled = self.rules.len() - EXTRA_RULES.len();
        match rule {
            RuleSlot::Compiled(id) => id.min(compiled),
            RuleSlot::NoRule => compiled + 1,
            RuleSlot::TokenEndpoint => compiled + 2,
            RuleSlot::HandlerRule => compiled + 3,
        }
    }

    #[cfg(feature = "metrics")]
    fn handler_index(&self, handler: Option<&str>) -> usize {
        let registered = self.handlers.len() - EXTRA_HANDLERS.len();
        match handler {
            None => registered,
            Some(name) => self.handlers[..registered].iter().position(|h| **h == *name).unwrap_or(registered + 1),
        }
    }
}

/// A verified-credential cache: the `cache` label of [`CACHE_LOOKUPS`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum CacheKind {
    /// The `basic` handler's verified passwords (the token server's password grant and
    /// client authentication use one each too).
    Basic,
    /// The `oauth2` handler's verified tokens, introspected ones included.
    Bearer,
}

/// The hit and miss counters of one cache, registered when the cache is built.
pub(crate) struct CacheCounters {
    #[cfg(feature = "metrics")]
    hit: metrics::Counter,
    #[cfg(feature = "metrics")]
    miss: metrics::Counter,
}

impl CacheCounters {
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(cache: CacheKind) -> Self {
        #[cfg(feature = "metrics")]
        {
            // Literal labels: static keys, nothing allocated to register them.
            let (hit, miss) = match cache {
                CacheKind::Basic => (
                    metrics::counter!(CACHE_LOOKUPS, "cache" => "basic", "result" => "hit"),
                    metrics::counter!(CACHE_LOOKUPS, "cache" => "basic", "result" => "miss"),
                ),
                CacheKind::Bearer => (
                    metrics::counter!(CACHE_LOOKUPS, "cache" => "bearer", "result" => "hit"),
                    metrics::counter!(CACHE_LOOKUPS, "cache" => "bearer", "result" => "miss"),
                ),
            };
            Self { hit, miss }
        }
        #[cfg(not(feature = "metrics"))]
        Self {}
    }

    /// Counts one look-up: a hit is an entry that answered (allowing or refusing).
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn record(&self, hit: bool) {
        #[cfg(feature = "metrics")]
        if hit {
            self.hit.increment(1);
        } else {
            self.miss.increment(1);
        }
    }
}

/// A backend the crate calls out to, with the labels its metrics carry.
// Which variants are built, and whether their fields are read, depends on the features
// (`sql`, `ldap`, `redis`, `remote-keys` bring the backends; `metrics` reads the labels).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    /// A user store (`sql`, `ldap`) and its operation (`find_user`, `check_password`).
    UserStore { backend: &'static str, operation: &'static str },
    /// A state backend (`redis`, `sql`) and its operation (the `StateBackend` method, or
    /// `prune`, `epoch`, `create_tables`).
    State { backend: &'static str, operation: &'static str },
    /// A fetch of an issuer's signing keys: `jwks_uri` or `discovery`.
    KeyFetch { source: &'static str },
    /// An RFC 7662 introspection call.
    Introspection,
}

impl Backend {
    /// Records one call: its duration, and an error when it failed.
    #[cfg(feature = "metrics")]
    #[cfg_attr(
        not(any(feature = "sql", feature = "ldap", feature = "redis", feature = "remote-keys")),
        allow(dead_code)
    )]
    fn record(self, elapsed: std::time::Duration, ok: bool) {
        let seconds = elapsed.as_secs_f64();
        match self {
            Self::UserStore { backend, operation } => {
                metrics::histogram!(USER_STORE_SECONDS, "backend" => backend, "operation" => operation).record(seconds);
                if !ok {
                    metrics::counter!(USER_STORE_ERRORS, "backend" => backend, "operation" => operation).increment(1);
                }
            }
            Self::State { backend, operation } => {
                metrics::histogram!(STATE_SECONDS, "backend" => backend, "operation" => operation).record(seconds);
                if !ok {
                    metrics::counter!(STATE_ERRORS, "backend" => backend, "operation" => operation).increment(1);
                }
            }
            Self::KeyFetch { source } => {
                metrics::histogram!(KEY_FETCH_SECONDS, "source" => source).record(seconds);
                if !ok {
                    metrics::counter!(KEY_FETCH_ERRORS, "source" => source).increment(1);
                }
            }
            Self::Introspection => {
                metrics::histogram!(INTROSPECTION_SECONDS).record(seconds);
                if !ok {
                    metrics::counter!(INTROSPECTION_ERRORS).increment(1);
                }
            }
        }
    }
}

/// Runs one backend call and records it: its duration, and an error when `failed` says
/// its answer is one. A call dropped before it answered (a caller's timeout, a request
/// that went away) is recorded too, as an error.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
#[cfg_attr(not(any(feature = "sql", feature = "ldap", feature = "redis", feature = "remote-keys")), allow(dead_code))]
pub(crate) async fn timed<T>(backend: Backend, failed: impl FnOnce(&T) -> bool, call: impl Future<Output = T>) -> T {
    #[cfg(feature = "metrics")]
    {
        let mut pending = Pending { backend, start: std::time::Instant::now(), done: false };
        let answer = call.await;
        pending.done = true;
        backend.record(pending.start.elapsed(), !failed(&answer));
        answer
    }
    #[cfg(not(feature = "metrics"))]
    call.await
}

/// [`timed`] for calls answering a `Result`: an `Err` is an error.
#[inline]
#[cfg_attr(not(any(feature = "sql", feature = "ldap", feature = "redis", feature = "remote-keys")), allow(dead_code))]
pub(crate) async fn timed_result<T, E>(backend: Backend, call: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    timed(backend, Result::is_err, call).await
}

/// A call in flight; recorded as an error if it is dropped before it answered.
#[cfg(feature = "metrics")]
#[cfg_attr(not(any(feature = "sql", feature = "ldap", feature = "redis", feature = "remote-keys")), allow(dead_code))]
struct Pending {
    backend: Backend,
    start: std::time::Instant,
    done: bool,
}

#[cfg(feature = "metrics")]
impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            self.backend.record(self.start.elapsed(), false);
        }
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;

    // SPEC I4: rule and handler labels resolve to their slots; unknown ids and names fall
    // to the secure default and `other`, no handler to `none`.
    #[test]
    fn slots() {
        let decisions = Decisions::new(
            ["a.toml:1".to_owned(), "a.toml:5".to_owned()].into_iter(),
            ["oauth2".to_owned(), "basic".to_owned()].into_iter(),
        );
        let rule = |slot| &*decisions.rules[decisions.rule_index(slot)];
        assert_eq!(rule(RuleSlot::Compiled(1)), "a.toml:5");
        assert_eq!(rule(RuleSlot::Compiled(usize::MAX)), "secure_default");
        assert_eq!(rule(RuleSlot::NoRule), "none");
        assert_eq!(rule(RuleSlot::TokenEndpoint), "token_endpoint");
        assert_eq!(rule(RuleSlot::HandlerRule), "#[secure]");
        let handler = |name| &*decisions.handlers[decisions.handler_index(name)];
        assert_eq!(handler(Some("basic")), "basic");
        assert_eq!(handler(None), "none");
        assert_eq!(handler(Some("api_key")), "other");
        // Every outcome has its own cell.
        assert_eq!(Outcome::Internal as usize, Outcome::COUNT - 1);
        decisions.record(Outcome::Internal, Some("api_key"), RuleSlot::HandlerRule);
    }
}
