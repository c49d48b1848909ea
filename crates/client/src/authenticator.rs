//! Turns a bearer token into a [`Caller`]: the signature is checked in-process
//! against the JWKS (fetched with `Auth.GetJwks` and cached), and, when asked,
//! the session's revocation through `Auth.ValidateToken` behind a short cache.
//!
//! The identity service is asked for keys only when a token names a `kid` the
//! cache does not hold, or when the cached set is older than `key_max_age`;
//! one fetch at a time (the others wait for its answer), and never twice within
//! `key_refresh_min_interval` (doubled after each failed fetch, up to 16×), so
//! a flood of tokens with made-up `kid`s costs the identity service at most one
//! call per interval.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use quick_cache::sync::Cache;
use tonic::transport::Channel;

use crate::{
    pb::{self, auth_client::AuthClient},
    token::{self, Caller, Expected, KeySet, Rejection},
};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The two calls the authenticator makes. Implemented for the tonic client;
/// tests substitute their own.
pub trait Backend: Send + Sync + 'static {
    fn get_jwks(&self) -> BoxFuture<'_, Result<Vec<pb::Jwk>, tonic::Status>>;
    fn validate_token<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<pb::ValidateTokenResponse, tonic::Status>>;
}

impl Backend for AuthClient<Channel> {
    fn get_jwks(&self) -> BoxFuture<'_, Result<Vec<pb::Jwk>, tonic::Status>> {
        let mut client = self.clone();
        Box::pin(async move { Ok(AuthClient::get_jwks(&mut client, pb::GetJwksRequest {}).await?.into_inner().keys) })
    }

    fn validate_token<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<pb::ValidateTokenResponse, tonic::Status>> {
        let mut client = self.clone();
        let request = pb::ValidateTokenRequest { access_token: token.to_owned() };
        Box::pin(async move { Ok(AuthClient::validate_token(&mut client, request).await?.into_inner()) })
    }
}

/// The longest a "live" answer of `ValidateToken` may be trusted: the
/// service's own revocation bound (`tokens.revocation_cache_ms`, 1 s by
/// default), so a caller never adds more staleness than a replica already may.
pub const MAX_REVOCATION_TTL: Duration = Duration::from_secs(1);
/// Remembered answers: about 150 bytes each.
pub const MAX_REVOCATION_ENTRIES: usize = 1_000_000;
/// More skew than this hides real expiry.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// What the authenticator expects of tokens and how it treats the identity service.
#[derive(Clone, Debug)]
pub struct Config {
    /// The service's `tokens.issuer` (by default its `public_url`). Required.
    pub issuer: String,
    /// The service's `tokens.audience` (default `identity`).
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf` (default 30 s, at most 5 min).
    pub leeway: Duration,
    /// Fewest time between two JWKS fetches (default 10 s).
    pub key_refresh_min_interval: Duration,
    /// The cached JWKS is fetched again once this old, so a key the service
    /// stopped publishing stops verifying (default 5 min).
    pub key_max_age: Duration,
    /// How long one `GetJwks` or `ValidateToken` call may take (default 2 s).
    pub call_timeout: Duration,
    /// `Some`: every token's session is confirmed live with `ValidateToken`
    /// (default: on, 1 s, 10,000 entries). `None`: a logged-out token passes
    /// until it expires.
    pub revocation: Option<RevocationCheck>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevocationCheck {
    /// How long a "live" answer is trusted (at most [`MAX_REVOCATION_TTL`]).
    /// "Revoked" is final and kept until the token expires.
    pub ttl: Duration,
    /// How many tokens' answers are remembered (at most [`MAX_REVOCATION_ENTRIES`]).
    pub capacity: usize,
}

impl Default for RevocationCheck {
    fn default() -> Self {
        Self { ttl: MAX_REVOCATION_TTL, capacity: 10_000 }
    }
}

impl Config {
    /// The defaults, expecting tokens of `issuer`.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: "identity".to_owned(),
            leeway: Duration::from_secs(30),
            key_refresh_min_interval: Duration::from_secs(10),
            key_max_age: Duration::from_secs(300),
            call_timeout: Duration::from_secs(2),
            revocation: Some(RevocationCheck::default()),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, rule: &'static str| Err(ConfigError { field, rule });
        if self.issuer.is_empty() {
            return bad("issuer", "must name the identity service's token issuer");
        }
        if self.audience.is_empty() {
            return bad("audience", "must not be empty");
        }
        if self.leeway > MAX_LEEWAY {
            return bad("leeway", "must be at most 5 minutes");
        }
        if self.key_refresh_min_interval.is_zero() {
            return bad("key_refresh_min_interval", "must be above zero: it is what shields the identity service");
        }
        if self.key_max_age < self.key_refresh_min_interval {
            return bad("key_max_age", "must be at least `key_refresh_min_interval`");
        }
        if self.call_timeout.is_zero() {
            return bad("call_timeout", "must be above zero");
        }
        if let Some(check) = self.revocation {
            if check.ttl > MAX_REVOCATION_TTL {
                return bad("revocation.ttl", "must be at most 1 s, the identity service's own revocation bound");
            }
            if check.capacity == 0 || check.capacity > MAX_REVOCATION_ENTRIES {
                return bad("revocation.capacity", "must be 1 to 1,000,000");
            }
        }
        Ok(())
    }
}

/// A setting [`Config`] refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: &'static str,
    pub rule: &'static str,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "identity-client: `{}` {}", self.field, self.rule)
    }
}

impl std::error::Error for ConfigError {}

/// Why a request is not let through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The token is not good: UNAUTHENTICATED, HTTP 401.
    Rejected(Rejection),
    /// The identity service could not be asked (keys or revocation): the
    /// token may be fine, so UNAVAILABLE, HTTP 503, and the caller retries.
    Unavailable(&'static str),
}

impl Refusal {
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::Rejected(rejection) => rejection.message(),
            Refusal::Unavailable(what) => what,
        }
    }

    pub fn to_status(&self) -> tonic::Status {
        match self {
            Refusal::Rejected(_) => tonic::Status::unauthenticated(self.message()),
            Refusal::Unavailable(_) => tonic::Status::unavailable(self.message()),
        }
    }
}

impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Self {
        Refusal::Rejected(rejection)
    }
}

const KEYS_UNAVAILABLE: &str = "the identity service's signing keys could not be fetched: try again shortly";
const REVOCATION_UNAVAILABLE: &str = "the identity service could not confirm the session: try again shortly";

/// Checks bearer tokens; cheap to clone (one shared state).
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Box<dyn Backend>,
    config: Config,
    expected: Expected,
    keys: RwLock<Arc<Keys>>,
    /// Held while fetching: the one-fetch-at-a-time gate.
    refresh: tokio::sync::Mutex<Gate>,
    revocations: Option<Cache<String, Seen>>,
}

#[derive(Default)]
struct Keys {
    set: KeySet,
    fetched_at: Option<Instant>,
    /// Bumped by every fetch, so a waiter can tell that one happened meanwhile.
    generation: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    LiveAt(Instant),
    /// Final; kept until the token would have expired anyway.
    Revoked,
}

/// When the next JWKS fetch may go out: the pure rule behind the backoff.
#[derive(Clone, Copy, Debug, Default)]
struct Gate {
    last_attempt: Option<Instant>,
    failures: u32,
}

impl Gate {
    fn may_fetch(&self, now: Instant, min_interval: Duration) -> bool {
        self.last_attempt.is_none_or(|last| now.saturating_duration_since(last) >= self.interval(min_interval))
    }

    /// The minimum interval, doubled per consecutive failure up to 16×.
    fn interval(&self, min_interval: Duration) -> Duration {
        min_interval.saturating_mul(1 << self.failures.min(4))
    }
}

impl Authenticator {
    /// Checks tokens with `backend` (usually `Clients::auth`). Nothing is
    /// fetched yet: the first token fetches the keys.
    pub fn new(backend: impl Backend, config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let expected = Expected {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway_secs: i64::try_from(config.leeway.as_secs()).unwrap_or(i64::MAX),
        };
        let revocations = config.revocation.map(|check| Cache::new(check.capacity));
        Ok(Self {
            inner: Arc::new(Inner {
                backend: Box::new(backend),
                config,
                expected,
                keys: RwLock::new(Arc::new(Keys::default())),
                refresh: tokio::sync::Mutex::new(Gate::default()),
                revocations,
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The caller `token` speaks for, or why not.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, Refusal> {
        let parsed = token::parse(token)?;
        let mut keys = self.keys();
        if keys.fetched_at.is_some_and(|at| at.elapsed() >= self.inner.config.key_max_age) {
            keys = self.refresh_stale(keys).await;
        }
        let caller = match keys.set.get(&parsed.kid) {
            Some(key) => token::verify(&parsed, key, &self.inner.expected, now_secs())?,
            None => {
                let keys = self.refresh_for(keys.generation).await?;
                let key = keys.set.get(&parsed.kid).ok_or(Rejection::UnknownKey)?;
                token::verify(&parsed, key, &self.inner.expected, now_secs())?
            }
        };
        if self.inner.revocations.is_some() {
            self.confirm_live(token, &caller).await?;
        }
        Ok(caller)
    }

    fn keys(&self) -> Arc<Keys> {
        // A poisoned lock only means a writer panicked between two whole-Arc
        // assignments: the value inside is still one complete key set.
        Arc::clone(&self.inner.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// The keys after a fetch for an unknown `kid` seen in generation `seen`,
    /// unless another request fetched meanwhile or the gate is closed.
    async fn refresh_for(&self, seen: u64) -> Result<Arc<Keys>, Refusal> {
        let mut gate = self.inner.refresh.lock().await;
        let keys = self.keys();
        if keys.generation != seen {
            return Ok(keys);
        }
        if !gate.may_fetch(Instant::now(), self.inner.config.key_refresh_min_interval) {
            // Within the interval after a failure the service is presumably still
            // unreachable; after a success the kid is simply not one of its keys.
            return if gate.failures > 0 { Err(Refusal::Unavailable(KEYS_UNAVAILABLE)) } else { Ok(keys) };
        }
        self.fetch(&mut gate).await.ok_or(Refusal::Unavailable(KEYS_UNAVAILABLE))
    }

    /// Fetches an old key set again if nobody else is; on failure the old
    /// keys keep verifying (an outage must not log everyone out).
    async fn refresh_stale(&self, keys: Arc<Keys>) -> Arc<Keys> {
        let Ok(mut gate) = self.inner.refresh.try_lock() else { return keys };
        if self.keys().generation != keys.generation
            || !gate.may_fetch(Instant::now(), self.inner.config.key_refresh_min_interval)
        {
            return self.keys();
        }
        self.fetch(&mut gate).await.unwrap_or(keys)
    }

    async fn fetch(&self, gate: &mut Gate) -> Option<Arc<Keys>> {
        gate.last_attempt = Some(Instant::now());
        let answer = tokio::time::timeout(self.inner.config.call_timeout, self.inner.backend.get_jwks()).await;
        let jwks = match answer {
            Ok(Ok(jwks)) => jwks,
            Ok(Err(status)) => {
                gate.failures = gate.failures.saturating_add(1);
                tracing::warn!(code = ?status.code(), message = status.message(), "GetJwks failed");
                return None;
            }
            Err(_) => {
                gate.failures = gate.failures.saturating_add(1);
                tracing::warn!(timeout = ?self.inner.config.call_timeout, "GetJwks timed out");
                return None;
            }
        };
        gate.failures = 0;
        let mut slot = self.inner.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let keys = Arc::new(Keys {
            set: KeySet::from_jwks(&jwks),
            fetched_at: Some(Instant::now()),
            generation: slot.generation + 1,
        });
        *slot = Arc::clone(&keys);
        tracing::debug!(keys = keys.set.len(), "JWKS fetched");
        Some(keys)
    }

    /// `ValidateToken` for a token whose signature and claims passed, behind
    /// the cache: "live" trusted for the TTL, "revoked" for good.
    async fn confirm_live(&self, token: &str, caller: &Caller) -> Result<(), Refusal> {
        let (Some(cache), Some(check)) = (&self.inner.revocations, self.inner.config.revocation) else {
            return Ok(());
        };
        match cache.get(&caller.token_id) {
            Some(Seen::Revoked) => return Err(Rejection::Revoked.into()),
            Some(Seen::LiveAt(at)) if at.elapsed() < check.ttl => return Ok(()),
            _ => {}
        }
        let asked = Instant::now();
        let answer = tokio::time::timeout(self.inner.config.call_timeout, self.inner.backend.validate_token(token))
            .await
            .map_err(|_| Refusal::Unavailable(REVOCATION_UNAVAILABLE))?
            .map_err(|status| {
                tracing::warn!(code = ?status.code(), message = status.message(), "ValidateToken failed");
                Refusal::Unavailable(REVOCATION_UNAVAILABLE)
            })?;
        if answer.valid {
            // The answer's age counts from the question: never trusted longer than the TTL.
            cache.insert(caller.token_id.clone(), Seen::LiveAt(asked));
            return Ok(());
        }
        let rejection = Rejection::from_reason(answer.invalid_reason());
        if rejection == Rejection::Revoked {
            cache.insert(caller.token_id.clone(), Seen::Revoked);
        }
        Err(rejection.into())
    }
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    };

    use ed25519_dalek::SigningKey;
    use serde_json::json;

    use super::*;
    use crate::token::tests::{claims, jwk, key, sign};

    /// A stand-in identity service: publishes `keys`, answers `validate`, counts calls.
    #[derive(Clone, Default)]
    struct Fake {
        state: Arc<FakeState>,
    }

    #[derive(Default)]
    struct FakeState {
        keys: Mutex<Vec<pb::Jwk>>,
        down: Mutex<bool>,
        revoked: Mutex<bool>,
        jwks_calls: AtomicUsize,
        validate_calls: AtomicUsize,
    }

    impl Fake {
        fn publishing(keys: &[&SigningKey]) -> Self {
            let fake = Fake::default();
            fake.publish(keys);
            fake
        }

        fn publish(&self, keys: &[&SigningKey]) {
            *self.state.keys.lock().unwrap() = keys.iter().map(|k| jwk(k)).collect();
        }

        fn jwks_calls(&self) -> usize {
            self.state.jwks_calls.load(Ordering::SeqCst)
        }

        fn validate_calls(&self) -> usize {
            self.state.validate_calls.load(Ordering::SeqCst)
        }
    }

    impl Backend for Fake {
        fn get_jwks(&self) -> BoxFuture<'_, Result<Vec<pb::Jwk>, tonic::Status>> {
            Box::pin(async move {
                self.state.jwks_calls.fetch_add(1, Ordering::SeqCst);
                // Long enough for a flood of requests to pile up behind the fetch.
                tokio::time::sleep(Duration::from_millis(20)).await;
                if *self.state.down.lock().unwrap() {
                    return Err(tonic::Status::unavailable("down"));
                }
                Ok(self.state.keys.lock().unwrap().clone())
            })
        }

        fn validate_token<'a>(
            &'a self,
            _token: &'a str,
        ) -> BoxFuture<'a, Result<pb::ValidateTokenResponse, tonic::Status>> {
            Box::pin(async move {
                self.state.validate_calls.fetch_add(1, Ordering::SeqCst);
                if *self.state.down.lock().unwrap() {
                    return Err(tonic::Status::unavailable("down"));
                }
                let revoked = *self.state.revoked.lock().unwrap();
                Ok(pb::ValidateTokenResponse {
                    valid: !revoked,
                    invalid_reason: if revoked { pb::TokenInvalidReason::Revoked as i32 } else { 0 },
                    ..Default::default()
                })
            })
        }
    }

    /// A token valid now (the fixtures' claims are dated in 2027).
    fn live_token(signer: &SigningKey) -> String {
        let now = now_secs();
        let mut claims = claims();
        claims["iat"] = json!(now);
        claims["nbf"] = json!(now);
        claims["exp"] = json!(now + 900);
        sign(signer, &claims)
    }

    fn config(min_interval: Duration) -> Config {
        Config {
            audience: crate::token::tests::AUD.to_owned(),
            key_refresh_min_interval: min_interval,
            revocation: None,
            ..Config::new(crate::token::tests::ISS)
        }
    }

    #[tokio::test]
    async fn the_first_token_fetches_the_keys_and_later_ones_reuse_them() {
        let signer = key(1);
        let fake = Fake::publishing(&[&signer]);
        let auth = Authenticator::new(fake.clone(), config(Duration::from_secs(300))).unwrap();
        for _ in 0..5 {
            assert_eq!(auth.authenticate(&live_token(&signer)).await.unwrap().login, "alice");
        }
        assert_eq!(fake.jwks_calls(), 1);
    }

    #[tokio::test]
    async fn a_flood_of_unknown_kids_fetches_once_per_interval() {
        let signer = key(1);
        let fake = Fake::publishing(&[&signer]);
        let auth = Authenticator::new(fake.clone(), config(Duration::from_millis(300))).unwrap();
        auth.authenticate(&live_token(&signer)).await.unwrap();

        let strangers: Vec<String> = (2..=60).map(|seed| live_token(&key(seed))).collect();
        let flood = strangers.iter().map(|token| auth.authenticate(token));
        for outcome in futures_join(flood).await {
            assert_eq!(outcome, Err(Refusal::Rejected(Rejection::UnknownKey)));
        }
        // The flood arrived within the interval after the first fetch: no fetch at all.
        assert_eq!(fake.jwks_calls(), 1);

        tokio::time::sleep(Duration::from_millis(320)).await;
        let flood = strangers.iter().map(|token| auth.authenticate(token));
        assert!(futures_join(flood).await.iter().all(Result::is_err));
        // Once the interval passed, the whole flood shared a single fetch.
        assert_eq!(fake.jwks_calls(), 2);
    }

    #[tokio::test]
    async fn a_rotated_key_is_picked_up_on_its_first_token() {
        let (old, new) = (key(1), key(2));
        let fake = Fake::publishing(&[&old]);
        let auth = Authenticator::new(fake.clone(), config(Duration::from_millis(50))).unwrap();
        auth.authenticate(&live_token(&old)).await.unwrap();
        fake.publish(&[&old, &new]);
        tokio::time::sleep(Duration::from_millis(60)).await;

        assert!(auth.authenticate(&live_token(&new)).await.is_ok());
        assert!(auth.authenticate(&live_token(&old)).await.is_ok());
        assert_eq!(fake.jwks_calls(), 2);
    }

    #[tokio::test]
    async fn an_unreachable_service_is_unavailable_and_backed_off() {
        let signer = key(1);
        let fake = Fake::publishing(&[&signer]);
        *fake.state.down.lock().unwrap() = true;
        let auth = Authenticator::new(fake.clone(), config(Duration::from_millis(100))).unwrap();
        let token = live_token(&signer);

        assert_eq!(auth.authenticate(&token).await, Err(Refusal::Unavailable(KEYS_UNAVAILABLE)));
        // Within the interval the failure is answered again without asking.
        assert_eq!(auth.authenticate(&token).await, Err(Refusal::Unavailable(KEYS_UNAVAILABLE)));
        assert_eq!(fake.jwks_calls(), 1);
        // After one failure the interval doubles: 100 ms is not enough.
        *fake.state.down.lock().unwrap() = false;
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(auth.authenticate(&token).await.is_err());
        assert_eq!(fake.jwks_calls(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(auth.authenticate(&token).await.is_ok());
        assert_eq!(fake.jwks_calls(), 2);
    }

    #[test]
    fn the_gate_doubles_its_interval_per_failure_up_to_sixteen_times() {
        let start = Instant::now();
        let min = Duration::from_secs(10);
        let mut gate = Gate::default();
        assert!(gate.may_fetch(start, min));
        gate.last_attempt = Some(start);
        assert!(!gate.may_fetch(start + Duration::from_secs(9), min));
        assert!(gate.may_fetch(start + min, min));
        for (failures, wait) in [(1, 20), (2, 40), (3, 80), (4, 160), (9, 160)] {
            gate.failures = failures;
            assert!(!gate.may_fetch(start + Duration::from_secs(wait - 1), min), "{failures}");
            assert!(gate.may_fetch(start + Duration::from_secs(wait), min), "{failures}");
        }
    }

    #[tokio::test]
    async fn wrong_issuer_audience_and_expiry_are_refused_after_the_signature() {
        let signer = key(1);
        let auth = Authenticator::new(Fake::publishing(&[&signer]), config(Duration::from_secs(1))).unwrap();
        let now = now_secs();
        for (field, value, rejection) in [
            ("iss", json!("https://other.example"), Rejection::WrongIssuer),
            ("aud", json!("billing"), Rejection::WrongAudience),
            ("exp", json!(now - 31), Rejection::Expired),
        ] {
            let mut claims = claims();
            claims["exp"] = json!(now + 900);
            claims["nbf"] = json!(now);
            claims[field] = value;
            assert_eq!(auth.authenticate(&sign(&signer, &claims)).await, Err(rejection.into()), "{field}");
        }
    }

    #[tokio::test]
    async fn revocation_is_asked_once_per_ttl_and_a_revoked_answer_is_final() {
        let signer = key(1);
        let fake = Fake::publishing(&[&signer]);
        let ttl = Duration::from_millis(100);
        let auth = Authenticator::new(
            fake.clone(),
            Config { revocation: Some(RevocationCheck { ttl, capacity: 10 }), ..config(Duration::from_secs(1)) },
        )
        .unwrap();
        let token = live_token(&signer);
        for _ in 0..5 {
            assert!(auth.authenticate(&token).await.is_ok());
        }
        assert_eq!(fake.validate_calls(), 1);

        *fake.state.revoked.lock().unwrap() = true;
        assert!(auth.authenticate(&token).await.is_ok(), "trusted for the TTL");
        tokio::time::sleep(ttl).await;
        assert_eq!(auth.authenticate(&token).await, Err(Rejection::Revoked.into()));
        *fake.state.revoked.lock().unwrap() = false;
        assert_eq!(auth.authenticate(&token).await, Err(Rejection::Revoked.into()));
        assert_eq!(fake.validate_calls(), 2);

        // A token the cache has not seen, while the service is down: refused, never waved through.
        *fake.state.down.lock().unwrap() = true;
        let mut claims = claims();
        claims["jti"] = json!("jti-2");
        claims["exp"] = json!(now_secs() + 900);
        claims["nbf"] = json!(now_secs());
        let fresh = sign(&signer, &claims);
        assert_eq!(auth.authenticate(&fresh).await, Err(Refusal::Unavailable(REVOCATION_UNAVAILABLE)));
    }

    #[test]
    fn settings_that_would_weaken_the_checks_are_refused() {
        let good = Config::new("https://id.example");
        let cases = [
            Config { issuer: String::new(), ..good.clone() },
            Config { audience: String::new(), ..good.clone() },
            Config { leeway: Duration::from_secs(301), ..good.clone() },
            Config { key_refresh_min_interval: Duration::ZERO, ..good.clone() },
            Config { key_max_age: Duration::from_secs(1), ..good.clone() },
            Config { revocation: Some(RevocationCheck { ttl: Duration::from_secs(2), capacity: 10 }), ..good.clone() },
            Config { revocation: Some(RevocationCheck { ttl: MAX_REVOCATION_TTL, capacity: 0 }), ..good.clone() },
        ];
        for config in cases {
            assert!(config.validate().is_err(), "{config:?}");
        }
        assert!(good.validate().is_ok());
    }

    /// Runs every future concurrently on this task (no extra crate for `join_all`).
    async fn futures_join<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
        let mut set = Vec::new();
        for future in futures {
            set.push(Box::pin(future));
        }
        let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (future, output) in set.iter_mut().zip(outputs.iter_mut()) {
                if output.is_none() {
                    match future.as_mut().poll(cx) {
                        std::task::Poll::Ready(value) => *output = Some(value),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
        })
        .await;
        outputs.into_iter().map(|o| o.expect("every future finished")).collect()
    }
}
