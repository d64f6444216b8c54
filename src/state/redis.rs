// The Redis state backend (feature `redis`): every key under one hash tag (one cluster
// slot, so the Lua scripts that make each step atomic stay valid on Redis Cluster; the
// connection itself is to one node: no cluster client yet); a connection manager that
// reconnects; every call bounded by a timeout.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use tokio::sync::Notify;

use crate::telemetry::{self, Backend};

use super::{
    new_epoch, Change, CodeRecord, CodeRedemption, FamilyRevocation, Redemption, RefreshRecord, Snapshot, StateBackend,
    StateError, CODE_REPLAY_SECONDS,
};

/// How many changes the log keeps (approximately) for replicas that fell behind.
const LOG_LENGTH: u32 = 10_000;

/// Appends `ARGV[1]` (a change, JSON) to the log under the next sequence number and
/// announces it; KEYS[1] is the sequence, KEYS[2] the log; ARGV[2] the channel.
const APPEND: &str = r"
local function append(change)
  local seq = redis.call('INCR', KEYS[1])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV_LOG_LENGTH, seq .. '-1', 'c', change)
  redis.call('PUBLISH', ARGV[2], seq)
  return seq
end
";

/// Removes refresh family `number` (every grant in its set, then the set) and returns the
/// removed grants (JSON); `prefix` is `{tag}:`.
const REMOVE_FAMILY: &str = r"
local function remove_family(prefix, number)
  local family = prefix .. 'family:' .. number
  local grants = {}
  for _, digest in ipairs(redis.call('SMEMBERS', family)) do
    local grant = redis.call('HGET', prefix .. 'refresh:' .. digest, 'grant')
    if grant then table.insert(grants, grant) end
    redis.call('DEL', prefix .. 'refresh:' .. digest)
  end
  redis.call('DEL', family)
  return grants
end
";

/// Shared state in Redis (feature `redis`), for several instances of an API.
///
/// Revocations, watermarks and locks go to sorted sets and a hash, each change also to a
/// numbered log (a stream) announced on a channel; refresh grants are hashes that expire
/// with the token, redeemed by a script that marks them used in the same step; failed
/// logins are counters that expire with the lockout window. Every key starts with
/// `{prefix}` (default `{tower-secure}`): one hash tag, one cluster slot.
///
/// ```no_run
/// # async fn run() -> Result<(), tower_secure::state::StateError> {
/// use std::time::Duration;
/// use tower_secure::state::RedisState;
///
/// let state = RedisState::builder("rediss://:secret@cache.internal:6380")
///     .key_prefix("orders-api")
///     .timeout(Duration::from_millis(500))
///     .build()
///     .await?;
/// # let _ = state; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisState {
    /// For the change listener's own connection.
    client: redis::Client,
    connection: ConnectionManager,
    keys: Keys,
    timeout: Duration,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState").field("prefix", &self.keys.tag).finish_non_exhaustive()
    }
}

/// Builds a [`RedisState`]; start with [`RedisState::builder`].
pub struct RedisStateBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisStateBuilder {
    /// Leaves out the URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStateBuilder")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The key names, all under one hash tag.
#[derive(Clone)]
struct Keys {
    tag: String,
}

impl Keys {
    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.tag)
    }
}

impl RedisState {
    /// A backend on the Redis at `url`: `redis://[:password@]host:port[/db]`, or
    /// `rediss://` for TLS (rustls on aws-lc; the system's roots unless
    /// [`ca_certificates_pem`](RedisStateBuilder::ca_certificates_pem) names others).
    pub fn builder(url: impl Into<String>) -> RedisStateBuilder {
        RedisStateBuilder {
            url: url.into(),
            prefix: "tower-secure".to_owned(),
            timeout: Duration::from_secs(1),
            ca_pem: None,
        }
    }
}

impl RedisStateBuilder {
    /// The keys' prefix, inside a hash tag: `{orders-api}:revoked`, ... Instances that
    /// share state use the same prefix; separate APIs on one Redis use different ones.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Bounds connecting and every call (default 1 s): a slower answer is a failure.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The CA certificates (PEM) a `rediss://` server's certificate must chain to, instead
    /// of the system's roots.
    pub fn ca_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Connects (Redis must answer now) and returns the backend. Errors never show the URL.
    pub async fn build(self) -> Result<RedisState, StateError> {
        let plain = |c: char| c.is_ascii_alphanumeric() || "._-:".contains(c);
        if self.prefix.is_empty() || !self.prefix.chars().all(plain) {
            return Err(StateError("Redis: a key prefix is letters, digits, '.', '_', '-' and ':'".to_owned()));
        }
        let fail = |what: &str, e: redis::RedisError| StateError(format!("Redis: {what}: {e}"));
        // rediss:// runs on rustls with aws-lc, the crate's one crypto backend.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let client = match self.ca_pem {
            Some(pem) => {
                let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
                redis::Client::build_with_tls(self.url.as_str(), certificates)
            }
            None => redis::Client::open(self.url.as_str()),
        }
        .map_err(|e| fail("bad URL or CA certificates", e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let connect = ConnectionManager::new_with_config(client.clone(), config);
        let connection = match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => return Err(fail("cannot connect", e)),
            Err(_) => return Err(StateError("Redis: cannot connect: timed out".to_owned())),
        };
        let keys = Keys { tag: format!("{{{}}}", self.prefix) };
        let state = RedisState { client, connection, keys, timeout: self.timeout };
        state.epoch().await?;
        Ok(state)
    }
}

/// A script with the log appender (its length put in) and the family remover.
fn script(body: &str) -> Script {
    Script::new(&format!("{}{REMOVE_FAMILY}{body}", APPEND.replace("ARGV_LOG_LENGTH", &LOG_LENGTH.to_string())))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StateError> {
    serde_json::to_string(value).map_err(|e| StateError(format!("Redis: cannot encode: {e}")))
}

fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The access tokens of refresh grants (JSON), for a replay or a revoked family.
fn access_of(grants: &[String]) -> Result<Vec<(String, u64)>, StateError> {
    grants
        .iter()
        .map(|g| {
            let grant: RefreshRecord =
                serde_json::from_str(g).map_err(|e| StateError(format!("Redis: a stored grant is not valid: {e}")))?;
            Ok((grant.access_jti, grant.access_exp))
        })
        .collect()
}

fn number(text: &str) -> Result<u64, StateError> {
    text.parse().map_err(|_| StateError(format!("Redis: expected a number, got {text:?}")))
}

impl RedisState {
    /// Runs a script with the sequence and log as its first keys, bounded by the timeout;
    /// `operation` names it in the metrics (the trait method, or `epoch`).
    async fn run(
        &self,
        operation: &'static str,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Vec<String>, StateError> {
        let mut invocation = script.key(self.keys.key("seq"));
        invocation.key(self.keys.key("log"));
        for key in keys {
            invocation.key(key);
        }
        invocation.arg("");
        invocation.arg(self.keys.key("changes"));
        for arg in args {
            invocation.arg(arg);
        }
        let mut connection = self.connection.clone();
        let call = invocation.invoke_async::<Vec<String>>(&mut connection);
        let bounded = async {
            match tokio::time::timeout(self.timeout, call).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(e)) => Err(StateError(format!("Redis: {e}"))),
                Err(_) => Err(StateError("Redis: timed out".to_owned())),
            }
        };
        telemetry::timed_result(Backend::State { backend: "redis", operation }, bounded).await
    }

    /// The epoch, created when the backend has none (a new or emptied Redis).
    async fn epoch(&self) -> Result<String, StateError> {
        let script = script(
            "redis.call('SET', KEYS[3], ARGV[3], 'NX')
             return {redis.call('GET', KEYS[3])}",
        );
        let answer = self.run("epoch", &script, &[self.keys.key("epoch")], &[new_epoch()?]).await?;
        answer.into_iter().next().ok_or_else(|| StateError("Redis: no epoch".to_owned()))
    }
}

#[async_trait]
impl StateBackend for RedisState {
    async fn revoke(&self, jti: &str, _client: &str, exp: u64) -> Result<(), StateError> {
        let change = json(&Change::Revoked { jti: jti.to_owned(), exp })?;
        let script = script(
            "local old = redis.call('ZSCORE', KEYS[3], ARGV[3])
             if not old or tonumber(old) < tonumber(ARGV[4]) then redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3]) end
             return {tostring(append(ARGV[5]))}",
        );
        let keys = [self.keys.key("revoked")];
        self.run("revoke", &script, &keys, &[jti.to_owned(), exp.to_string(), change]).await.map(drop)
    }

    async fn revoke_issued_before(&self, client: Option<&str>, before: u64) -> Result<(), StateError> {
        let change = json(&Change::IssuedBefore { client: client.map(str::to_owned), before })?;
        // Client ids never hold `*`: it names the watermark of every client.
        let field = client.unwrap_or("*").to_owned();
        let script = script(
            "local old = redis.call('HGET', KEYS[3], ARGV[3])
             if old and tonumber(old) >= tonumber(ARGV[4]) then return {'0'} end
             redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
             return {tostring(append(ARGV[5]))}",
        );
        let keys = [self.keys.key("watermarks")];
        self.run("revoke_issued_before", &script, &keys, &[field, before.to_string(), change]).await.map(drop)
    }

    async fn new_family(&self) -> Result<u64, StateError> {
        let script = script("return {tostring(redis.call('INCR', KEYS[3]))}");
        let answer = self.run("new_family", &script, &[self.keys.key("families")], &[]).await?;
        number(answer.first().map_or("", String::as_str))
    }

    async fn put_refresh(&self, digest: &[u8; 32], record: &RefreshRecord) -> Result<(), StateError> {
        let digest = hex(digest);
        let script = script(
            "redis.call('HSET', KEYS[3], 'grant', ARGV[3], 'used', '0', 'client', ARGV[4], 'expires', ARGV[5], 'family', ARGV[6])
             redis.call('EXPIREAT', KEYS[3], ARGV[5])
             redis.call('SADD', KEYS[4], ARGV[7])
             redis.call('EXPIREAT', KEYS[4], ARGV[5])
             redis.call('SADD', KEYS[5], ARGV[7])
             return {'1'}",
        );
        let keys = [
            self.keys.key(&format!("refresh:{digest}")),
            self.keys.key(&format!("family:{}", record.family)),
            self.keys.key(&format!("client:{}", record.client_id)),
        ];
        let args =
            [json(record)?, record.client_id.clone(), record.expires.to_string(), record.family.to_string(), digest];
        self.run("put_refresh", &script, &keys, &args).await.map(drop)
    }

    async fn redeem_refresh(&self, digest: &[u8; 32], client_id: &str, now: u64) -> Result<Redemption, StateError> {
        // A replay removes the family: every token of it, found through the family's set
        // (keys of the same hash tag, named from the stored family number).
        let script = script(
            "local h = redis.call('HMGET', KEYS[3], 'grant', 'used', 'client', 'expires', 'family')
             if not h[1] or h[3] ~= ARGV[3] or tonumber(h[4]) <= tonumber(ARGV[4]) then return {'invalid'} end
             if h[2] == '1' then
               local out = remove_family(ARGV[5], h[5])
               table.insert(out, 1, 'replayed')
               return out
             end
             redis.call('HSET', KEYS[3], 'used', '1')
             return {'fresh', h[1]}",
        );
        let keys = [self.keys.key(&format!("refresh:{}", hex(digest)))];
        let args = [client_id.to_owned(), now.to_string(), format!("{}:", self.keys.tag)];
        let answer = self.run("redeem_refresh", &script, &keys, &args).await?;
        match answer.split_first() {
            Some((kind, rest)) if kind == "fresh" => {
                let grant = rest.first().ok_or_else(|| StateError("Redis: redeem without a grant".to_owned()))?;
                let grant = serde_json::from_str(grant).map_err(|e| StateError(format!("Redis: bad grant: {e}")))?;
                Ok(Redemption::Fresh(grant))
            }
            Some((kind, rest)) if kind == "replayed" => Ok(Redemption::Replayed(access_of(rest)?)),
            _ => Ok(Redemption::Invalid),
        }
    }

    async fn peek_refresh(&self, digest: &[u8; 32], now: u64) -> Result<Option<RefreshRecord>, StateError> {
        let script = script(
            "local h = redis.call('HMGET', KEYS[3], 'grant', 'used', 'expires')
             if not h[1] or h[2] == '1' or tonumber(h[3]) <= tonumber(ARGV[3]) then return {} end
             return {h[1]}",
        );
        let keys = [self.keys.key(&format!("refresh:{}", hex(digest)))];
        let answer = self.run("peek_refresh", &script, &keys, &[now.to_string()]).await?;
        answer
            .first()
            .map(|g| serde_json::from_str(g).map_err(|e| StateError(format!("Redis: bad grant: {e}"))))
            .transpose()
    }

    async fn revoke_refresh_family(&self, digest: &[u8; 32], client_id: &str) -> Result<FamilyRevocation, StateError> {
        let script = script(
            "local h = redis.call('HMGET', KEYS[3], 'client', 'family')
             if not h[1] then return {'unknown'} end
             if h[1] ~= ARGV[3] then return {'other'} end
             local out = remove_family(ARGV[4], h[2])
             table.insert(out, 1, 'revoked')
             return out",
        );
        let keys = [self.keys.key(&format!("refresh:{}", hex(digest)))];
        let answer = self
            .run("revoke_refresh_family", &script, &keys, &[client_id.to_owned(), format!("{}:", self.keys.tag)])
            .await?;
        match answer.split_first() {
            Some((kind, rest)) if kind == "revoked" => Ok(FamilyRevocation::Revoked(access_of(rest)?)),
            Some((kind, _)) if kind == "other" => Ok(FamilyRevocation::OtherClient),
            _ => Ok(FamilyRevocation::Unknown),
        }
    }

    async fn revoke_client_refresh(&self, client_id: &str) -> Result<(), StateError> {
        let script = script(
            "for _, digest in ipairs(redis.call('SMEMBERS', KEYS[3])) do
               redis.call('DEL', ARGV[3] .. 'refresh:' .. digest)
             end
             redis.call('DEL', KEYS[3])
             return {'1'}",
        );
        let keys = [self.keys.key(&format!("client:{client_id}"))];
        self.run("revoke_client_refresh", &script, &keys, &[format!("{}:", self.keys.tag)]).await.map(drop)
    }

    async fn put_code(&self, digest: &[u8; 32], record: &CodeRecord) -> Result<(), StateError> {
        let script = script(
            "redis.call('HSET', KEYS[3], 'code', ARGV[3], 'used', '0', 'client', ARGV[4], 'expires', ARGV[5], 'family', ARGV[6])
             redis.call('EXPIREAT', KEYS[3], ARGV[7])
             return {'1'}",
        );
        let keys = [self.keys.key(&format!("code:{}", hex(digest)))];
        let forget = record.expires.saturating_add(CODE_REPLAY_SECONDS);
        let args = [
            json(record)?,
            record.client_id.clone(),
            record.expires.to_string(),
            record.family.to_string(),
            forget.to_string(),
        ];
        self.run("put_code", &script, &keys, &args).await.map(drop)
    }

    async fn redeem_code(&self, digest: &[u8; 32], client_id: &str, now: u64) -> Result<CodeRedemption, StateError> {
        let script = script(
            "local h = redis.call('HMGET', KEYS[3], 'code', 'used', 'client', 'expires', 'family')
             if not h[1] or h[3] ~= ARGV[3] then return {'invalid'} end
             if h[2] == '1' then
               local out = remove_family(ARGV[5], h[5])
               table.insert(out, 1, 'replayed')
               return out
             end
             if tonumber(h[4]) <= tonumber(ARGV[4]) then return {'invalid'} end
             redis.call('HSET', KEYS[3], 'used', '1')
             return {'fresh', h[1]}",
        );
        let keys = [self.keys.key(&format!("code:{}", hex(digest)))];
        let args = [client_id.to_owned(), now.to_string(), format!("{}:", self.keys.tag)];
        let answer = self.run("redeem_code", &script, &keys, &args).await?;
        match answer.split_first() {
            Some((kind, rest)) if kind == "fresh" => {
                let code = rest.first().ok_or_else(|| StateError("Redis: redeem without a code".to_owned()))?;
                let code = serde_json::from_str(code).map_err(|e| StateError(format!("Redis: bad code: {e}")))?;
                Ok(CodeRedemption::Fresh(code))
            }
            Some((kind, rest)) if kind == "replayed" => Ok(CodeRedemption::Replayed(access_of(rest)?)),
            _ => Ok(CodeRedemption::Invalid),
        }
    }

    async fn record_failure(
        &self,
        user: &str,
        max_failures: u32,
        lockout_seconds: u64,
        now: u64,
    ) -> Result<Option<u64>, StateError> {
        let until = now.saturating_add(lockout_seconds);
        let change = json(&Change::Locked { user: user.to_owned(), until })?;
        let script = script(
            "local n = redis.call('INCR', KEYS[3])
             if n == 1 then redis.call('EXPIRE', KEYS[3], ARGV[4]) end
             if n ~= tonumber(ARGV[3]) then return {'0'} end
             redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6])
             append(ARGV[7])
             return {ARGV[5]}",
        );
        let keys = [self.keys.key(&format!("failures:{user}")), self.keys.key("locks")];
        let args = [
            max_failures.max(1).to_string(),
            lockout_seconds.max(1).to_string(),
            until.to_string(),
            user.to_owned(),
            change,
        ];
        let answer = self.run("record_failure", &script, &keys, &args).await?;
        let locked = number(answer.first().map_or("", String::as_str))?;
        Ok((locked != 0).then_some(locked))
    }

    async fn clear_failures(&self, user: &str) -> Result<(), StateError> {
        let script = script("redis.call('DEL', KEYS[3]) return {'1'}");
        self.run("clear_failures", &script, &[self.keys.key(&format!("failures:{user}"))], &[]).await.map(drop)
    }

    async fn locked_until(&self, user: &str, now: u64) -> Result<Option<u64>, StateError> {
        let script = script("local s = redis.call('ZSCORE', KEYS[3], ARGV[3]) if s then return {s} end return {}");
        let answer = self.run("locked_until", &script, &[self.keys.key("locks")], &[user.to_owned()]).await?;
        let until = answer.first().map(|s| number(s)).transpose()?;
        Ok(until.filter(|&until| until > now))
    }

    async fn snapshot(&self, now: u64) -> Result<Snapshot, StateError> {
        // One script: the sets and the sequence as of one instant. Layout of the answer:
        // epoch, sequence, n, n x (jti, exp), m, m x (field, before), k x (user, until).
        let script = script(
            "redis.call('SET', KEYS[3], ARGV[3], 'NX')
             redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[4])
             redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', ARGV[4])
             local out = {redis.call('GET', KEYS[3]), tostring(redis.call('GET', KEYS[1]) or '0')}
             local revoked = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
             table.insert(out, tostring(#revoked / 2))
             for _, v in ipairs(revoked) do table.insert(out, v) end
             local marks = redis.call('HGETALL', KEYS[5])
             table.insert(out, tostring(#marks / 2))
             for _, v in ipairs(marks) do table.insert(out, v) end
             for _, v in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1, 'WITHSCORES')) do table.insert(out, v) end
             return out",
        );
        let keys =
            [self.keys.key("epoch"), self.keys.key("revoked"), self.keys.key("watermarks"), self.keys.key("locks")];
        let answer = self.run("snapshot", &script, &keys, &[new_epoch()?, now.to_string()]).await?;
        let odd = || StateError("Redis: a snapshot of an unexpected shape".to_owned());
        let mut items = answer.into_iter();
        let epoch = items.next().ok_or_else(odd)?;
        let sequence = number(&items.next().ok_or_else(odd)?)?;
        let mut snapshot = Snapshot { epoch, sequence, ..Snapshot::default() };
        let revoked = number(&items.next().ok_or_else(odd)?)?;
        for _ in 0..revoked {
            let (jti, exp) = (items.next().ok_or_else(odd)?, items.next().ok_or_else(odd)?);
            snapshot.revoked.insert(jti, number(&exp)?);
        }
        let marks = number(&items.next().ok_or_else(odd)?)?;
        for _ in 0..marks {
            let (field, before) = (items.next().ok_or_else(odd)?, number(&items.next().ok_or_else(odd)?)?);
            if field == "*" {
                snapshot.global_watermark = before;
            } else {
                snapshot.client_watermarks.insert(field, before);
            }
        }
        while let Some(user) = items.next() {
            snapshot.locks.insert(user, number(&items.next().ok_or_else(odd)?)?);
        }
        Ok(snapshot)
    }

    async fn changes_since(&self, epoch: &str, sequence: u64) -> Result<Option<Vec<(u64, Change)>>, StateError> {
        // `{'resync'}` when the epoch differs or the log no longer reaches back; otherwise
        // the changes as (sequence, JSON) pairs.
        let script = script(
            "if redis.call('GET', KEYS[3]) ~= ARGV[3] then return {'resync'} end
             local last = tonumber(redis.call('GET', KEYS[1]) or '0')
             local wanted = tonumber(ARGV[4]) + 1
             if last < wanted then return {'ok'} end
             local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
             if not oldest or tonumber(string.match(oldest[1], '^(%d+)')) > wanted then return {'resync'} end
             local out = {'ok'}
             for _, entry in ipairs(redis.call('XRANGE', KEYS[2], wanted .. '-0', '+')) do
               table.insert(out, string.match(entry[1], '^(%d+)'))
               table.insert(out, entry[2][2])
             end
             return out",
        );
        let answer = self
            .run("changes_since", &script, &[self.keys.key("epoch")], &[epoch.to_owned(), sequence.to_string()])
            .await?;
        let Some((kind, rest)) = answer.split_first() else { return Ok(None) };
        if kind != "ok" {
            return Ok(None);
        }
        rest.chunks(2)
            .map(|pair| match pair {
                [number_text, change] => {
                    let change = serde_json::from_str(change)
                        .map_err(|e| StateError(format!("Redis: a logged change is not valid: {e}")))?;
                    Ok((number(number_text)?, change))
                }
                _ => Err(StateError("Redis: a log of an unexpected shape".to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn change_notifier(&self) -> Option<Arc<Notify>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let notify = Arc::new(Notify::new());
        let listener = listen(self.client.clone(), self.keys.key("changes"), Arc::downgrade(&notify), self.timeout);
        runtime.spawn(listener);
        Some(notify)
    }

    fn is_shared(&self) -> bool {
        true
    }
}

/// Subscribes to the channel every appended change is announced on, and raises `notify`
/// for each announcement, and once after each (re)subscription. Reconnects after a second
/// when the connection fails; ends once nobody holds `notify`.
async fn listen(client: redis::Client, channel: String, notify: Weak<Notify>, timeout: Duration) {
    while notify.strong_count() > 0 {
        let subscribed = tokio::time::timeout(timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let Ok(Ok(mut pubsub)) = subscribed else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let mut messages = pubsub.on_message();
        let mut announced = true; // subscribed: catch up with what was missed
        loop {
            if announced {
                let Some(strong) = notify.upgrade() else { return };
                strong.notify_one();
            }
            // Wake now and then to notice that nobody listens any more.
            match tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
                Ok(Some(_)) => announced = true,
                Ok(None) => break,
                Err(_) if notify.strong_count() == 0 => return,
                Err(_) => announced = false,
            }
        }
    }
}
