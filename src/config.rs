//! One typed configuration, loaded once (defaults, then an optional TOML file,
//! then `IDENTITY_*` environment variables) and validated at start. Nothing
//! else in the service reads the environment.
//!
//! Nested keys use `__` in the environment: `IDENTITY_ARGON2__MEMORY_KIB=19456`.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

use crate::domain::{client_address::TrustedProxy, login::LoginRule};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address (`IDENTITY_GRPC_ADDR`).
    pub grpc_addr: SocketAddr,
    /// Legacy gateway and pages listen address (`IDENTITY_HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// Reserved for the Prometheus `/metrics` listener (`IDENTITY_METRICS_ADDR`), which
    /// is not built yet: setting it only logs a warning.
    pub metrics_addr: Option<SocketAddr>,
    /// `sqlite://path` or `postgres://…` (`IDENTITY_DATABASE_URL`).
    pub database_url: String,
    /// Largest number of pooled database connections.
    pub database_max_connections: u32,
    /// Base of every link in emails and of the legacy DTD URL (`IDENTITY_PUBLIC_URL`).
    pub public_url: String,
    /// Where emails are written as `.eml` files when no SMTP server is set (`IDENTITY_OUTBOX_DIR`).
    pub outbox_dir: PathBuf,
    /// `smtp://host:port`, `smtps://…` or `smtp://…?tls=starttls` (`IDENTITY_SMTP_URL`).
    pub smtp_url: Option<String>,
    /// PEM certificate chain for an https gateway (`IDENTITY_HTTP_TLS_CERT`).
    pub http_tls_cert: Option<PathBuf>,
    /// PEM private key for an https gateway (`IDENTITY_HTTP_TLS_KEY`).
    pub http_tls_key: Option<PathBuf>,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// `text` or `json` log lines.
    pub log_format: LogFormat,
    /// tracing filter directives, e.g. `info,identity=debug`.
    pub log_filter: String,
    /// How long in-flight calls may take to finish after SIGTERM, in seconds.
    pub shutdown_grace_secs: u64,
    /// Peers of the HTTP gateway whose `X-Forwarded-For` is believed (an
    /// ingress, a load balancer). Before the gRPC port had a list of its own
    /// this one governed both; it now governs the gateway only.
    pub trusted_proxies: Vec<TrustedProxy>,
    /// Peers of the gRPC port whose `x-forwarded-for` is believed. Only the
    /// in-process gateway forwards there, over loopback: nobody else may name
    /// the address a call comes from (`IDENTITY_GRPC_TRUSTED_PROXIES`).
    pub grpc_trusted_proxies: Vec<TrustedProxy>,
    pub throttle: ThrottleConfig,
    pub argon2: Argon2Config,
    pub hashing: HashingConfig,
    pub activation: ActivationConfig,
    pub reset: ResetConfig,
    /// Rules for chosen passwords (generated ones satisfy them too).
    pub password_policy: crate::domain::password_policy::PasswordPolicy,
    pub second_factor: SecondFactorConfig,
    pub tokens: TokenConfig,
    pub bootstrap: BootstrapConfig,
    pub platform: PlatformConfig,
    pub captcha: CaptchaConfig,
    pub mail: MailConfig,
    pub gateway: GatewayConfig,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// argon2id parameters for new hashes, and the ceilings above which a stored
/// hash is refused before any memory is allocated.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Argon2Config {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub max_memory_kib: u32,
    pub max_iterations: u32,
    pub max_parallelism: u32,
}

impl Default for Argon2Config {
    /// OWASP's recommendation: m = 19 MiB, t = 2, p = 1.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            max_memory_kib: 256 * 1024,
            max_iterations: 16,
            max_parallelism: 8,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct HashingConfig {
    /// Hashes computed at once; 0 means one per CPU core.
    pub workers: usize,
    /// Requests allowed to wait for a worker; beyond that, RESOURCE_EXHAUSTED.
    pub queue: usize,
}

impl Default for HashingConfig {
    fn default() -> Self {
        Self { workers: 0, queue: 256 }
    }
}

impl HashingConfig {
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 { self.workers } else { std::thread::available_parallelism().map_or(1, usize::from) }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ActivationConfig {
    /// Lifetime of one-time links, in seconds (default 24 h).
    pub ttl_secs: u64,
}

impl Default for ActivationConfig {
    fn default() -> Self {
        Self { ttl_secs: 24 * 3600 }
    }
}

/// Login throttling ahead of lockout (see docs/decisions.md). Counted per
/// fixed window in the database, so every replica shares the counts. A
/// login attempt holds a slot until it is known to have failed; successes
/// give theirs back.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Failed or in-flight attempts allowed per login per window; below the
    /// lockout threshold, so an attacker needs several windows to lock an account.
    pub login_per_user: u32,
    /// Failed or in-flight attempts allowed per source IP per window.
    pub login_per_ip: u32,
    pub window_secs: u64,
    /// "That login is taken" answers per caller per hour (CreateUser and
    /// ChangeUserLogin with a login of the caller's choosing): logins are
    /// global, so each answer says whether some other tenant holds it.
    pub taken_login_answers_per_hour: u32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self { login_per_user: 4, login_per_ip: 50, window_secs: 60, taken_login_answers_per_hour: 20 }
    }
}

/// Admin password resets.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ResetConfig {
    /// Admin resets allowed per target user per hour; beyond, the target is `THROTTLED`.
    pub admin_resets_per_hour: u32,
    /// Most targets one ResetPasswords call may name.
    pub max_batch: usize,
    /// Self-service reset requests allowed per login per hour.
    pub forgot_per_login_per_hour: u32,
    /// Self-service reset requests allowed per source address per hour.
    pub forgot_per_ip_per_hour: u32,
}

impl Default for ResetConfig {
    fn default() -> Self {
        Self { admin_resets_per_hour: 3, max_batch: 1000, forgot_per_login_per_hour: 3, forgot_per_ip_per_hour: 30 }
    }
}

/// Software tokens (PIN + tokencode).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SecondFactorConfig {
    /// Issuer shown by authenticator apps.
    pub issuer: String,
    /// How long a passcode or new-PIN challenge lives, in seconds.
    pub challenge_ttl_secs: u64,
}

impl Default for SecondFactorConfig {
    fn default() -> Self {
        Self { issuer: "identity".to_owned(), challenge_ttl_secs: 300 }
    }
}

/// Access and refresh tokens.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// `iss` of access tokens (default: the public URL).
    pub issuer: String,
    /// `aud` of access tokens.
    pub audience: String,
    /// Access token lifetime, in seconds (default 15 minutes).
    pub access_ttl_secs: u64,
    /// Refresh token lifetime when unused, in seconds (default 30 days).
    pub refresh_ttl_secs: u64,
    /// Ed25519 private key (PKCS#8 PEM) to sign with instead of keys kept in the database.
    pub signing_key_file: Option<PathBuf>,
    /// How often each replica re-reads the published keys, in seconds.
    pub key_reload_secs: u64,
    /// How long a replica may trust its cached view of a session's revocation, in milliseconds.
    pub revocation_cache_ms: u64,
    /// Access tokens whose signature a replica remembers having checked (0: none).
    pub verified_cache_entries: usize,
}

/// Remembered token signatures: a million is about 1 GiB of memory.
pub const MAX_VERIFIED_CACHE_ENTRIES: usize = 1_000_000;

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: "identity".to_owned(),
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 24 * 3600,
            signing_key_file: None,
            key_reload_secs: 30,
            revocation_cache_ms: 1000,
            verified_cache_entries: 10_000,
        }
    }
}

impl TokenConfig {
    /// The issuer, defaulting to the public URL.
    pub fn issuer_or<'a>(&'a self, public_url: &'a str) -> &'a str {
        if self.issuer.is_empty() { public_url } else { &self.issuer }
    }
}

/// The embedded proof-of-work captcha of self-service password reset (see docs/decisions.md).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CaptchaConfig {
    /// Leading zero bits asked of SHA-256(challenge ":" nonce): about 2^bits hashes per solution.
    /// The base, asked while forgot-password is quiet.
    pub difficulty_bits: u32,
    /// The most bits asked while forgot-password is hammered.
    pub max_difficulty_bits: u32,
    /// Forgot-password requests per minute (every replica together) above which
    /// each doubling of the rate asks one bit more.
    pub busy_requests_per_minute: u64,
    /// How long a challenge may be solved and used, in seconds.
    pub ttl_secs: u64,
    /// Key signing the challenges, base64 (standard or url-safe), at least 32 bytes once
    /// decoded. Replicas behind one load balancer must share it; unset: a random key per
    /// process, made at start (challenges then fail on another replica or after a restart).
    pub hmac_key: Option<String>,
}

impl Default for CaptchaConfig {
    fn default() -> Self {
        Self {
            difficulty_bits: 18,
            max_difficulty_bits: 22,
            busy_requests_per_minute: 60,
            ttl_secs: 300,
            hmac_key: None,
        }
    }
}

impl CaptchaConfig {
    /// The decoded `hmac_key`, when set and valid.
    pub fn key_bytes(&self) -> Option<Vec<u8>> {
        use base64::{
            Engine,
            alphabet::{STANDARD, URL_SAFE},
            engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
        };
        let text = self.hmac_key.as_deref()?.trim();
        let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
        let key = GeneralPurpose::new(&STANDARD, config)
            .decode(text)
            .or_else(|_| GeneralPurpose::new(&URL_SAFE, config).decode(text))
            .ok()?;
        (key.len() >= 32).then_some(key)
    }
}

impl std::fmt::Debug for CaptchaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptchaConfig")
            .field("difficulty_bits", &self.difficulty_bits)
            .field("max_difficulty_bits", &self.max_difficulty_bits)
            .field("busy_requests_per_minute", &self.busy_requests_per_minute)
            .field("ttl_secs", &self.ttl_secs)
            .field("hmac_key", &self.hmac_key.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Delivery of the email outbox: sender, polling and retries (see `mail::dispatcher`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// Sender, `address` or `Name <address>`; empty: `identity@<public_url host>`.
    pub from: String,
    /// How often each replica looks for emails due, in milliseconds.
    pub poll_interval_ms: u64,
    /// Wait before the first retry after a transient failure, in milliseconds; doubles each attempt.
    pub retry_base_ms: u64,
    /// Longest wait between two attempts, in milliseconds.
    pub retry_max_ms: u64,
    /// Delivery attempts before an email is marked failed.
    pub max_attempts: u32,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            from: String::new(),
            poll_interval_ms: 1000,
            retry_base_ms: 2000,
            retry_max_ms: 900_000,
            max_attempts: 25,
        }
    }
}

impl MailConfig {
    /// The From mailbox: `from`, or `identity@` the host of `public_url`.
    pub fn sender(&self, public_url: &str) -> Result<lettre::message::Mailbox, String> {
        let text = match self.from.trim() {
            "" => {
                let url = url::Url::parse(public_url).map_err(|e| format!("cannot default from `public_url`: {e}"))?;
                let host = url.host_str().ok_or("cannot default: `public_url` has no host")?;
                format!("identity@{host}")
            }
            from => from.to_owned(),
        };
        text.parse().map_err(|e| format!("`{text}` is not an email address: {e}"))
    }
}

/// The HTTP gateway: the legacy XML API and the pages people reach from emails.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Legacy API calls (`/msp/password_change.php`) allowed per API user per window.
    pub rate_limit_per_user: u32,
    /// Length of the legacy API's rate-limit window, in seconds.
    pub rate_limit_window_secs: u64,
    /// Largest query string or request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Longest time one HTTP request may take, in seconds.
    pub request_timeout_secs: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            rate_limit_per_user: 300,
            rate_limit_window_secs: 3600,
            max_body_bytes: 128 * 1024,
            request_timeout_secs: 30,
        }
    }
}

/// The first subscription created when `serve` finds an empty database.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapConfig {
    pub enabled: bool,
    pub subscription_prefix: String,
    pub subscription_name: String,
    /// Empty: generated by the login rule.
    pub manager_login: String,
    pub manager_email: String,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            subscription_prefix: "admin".to_owned(),
            subscription_name: "First subscription".to_owned(),
            manager_login: String::new(),
            manager_email: "manager@localhost.localdomain".to_owned(),
        }
    }
}

/// The platforms (regions) this deployment knows, and which one it serves.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct PlatformConfig {
    /// Id of the platform this deployment serves; must be listed in `platforms`.
    pub current: String,
    pub platforms: Vec<PlatformEntry>,
    /// Separator between the subscription prefix and the platform code in generated logins.
    pub login_separator: char,
    /// Length of the random tail of generated logins.
    pub login_tail_length: usize,
    /// How long a computed status is reused, in milliseconds (status is cheap to poll).
    pub status_cache_ms: u64,
    /// The oldest undelivered email may wait this long before email counts as degraded.
    pub email_backlog_max_wait_secs: u64,
    /// Report NOT_SERVING on the health service during a maintenance window
    /// that covers logins (components empty or including `logins`).
    pub not_serving_during_maintenance: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PlatformEntry {
    pub id: String,
    /// Lower-case letters and digits, embedded in generated logins.
    pub code: String,
    pub login_url: String,
    pub api_url: String,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            current: "LOCAL".to_owned(),
            platforms: vec![PlatformEntry {
                id: "LOCAL".to_owned(),
                code: "l1".to_owned(),
                login_url: "http://127.0.0.1:8080/".to_owned(),
                api_url: "http://127.0.0.1:50051/".to_owned(),
            }],
            login_separator: '_',
            login_tail_length: 6,
            status_cache_ms: 1000,
            email_backlog_max_wait_secs: 60,
            not_serving_during_maintenance: false,
        }
    }
}

impl PlatformConfig {
    pub fn current_entry(&self) -> &PlatformEntry {
        self.platforms.iter().find(|p| p.id == self.current).unwrap_or(&self.platforms[0])
    }

    pub fn login_rule(&self) -> LoginRule {
        LoginRule { separator: self.login_separator, tail_length: self.login_tail_length }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_addr: None,
            database_url: "sqlite://./data/identity.db".to_owned(),
            database_max_connections: 16,
            public_url: "http://127.0.0.1:8080".to_owned(),
            outbox_dir: PathBuf::from("./data/outbox"),
            smtp_url: None,
            http_tls_cert: None,
            http_tls_key: None,
            migrate_on_start: true,
            log_format: LogFormat::Text,
            log_filter: "info".to_owned(),
            shutdown_grace_secs: 20,
            trusted_proxies: loopback(),
            grpc_trusted_proxies: loopback(),
            throttle: ThrottleConfig::default(),
            argon2: Argon2Config::default(),
            hashing: HashingConfig::default(),
            activation: ActivationConfig::default(),
            reset: ResetConfig::default(),
            password_policy: crate::domain::password_policy::PasswordPolicy::default(),
            second_factor: SecondFactorConfig::default(),
            tokens: TokenConfig::default(),
            bootstrap: BootstrapConfig::default(),
            platform: PlatformConfig::default(),
            captcha: CaptchaConfig::default(),
            mail: MailConfig::default(),
            gateway: GatewayConfig::default(),
        }
    }
}

fn loopback() -> Vec<TrustedProxy> {
    vec![IpAddr::from([127, 0, 0, 1]).into(), IpAddr::from(std::net::Ipv6Addr::LOCALHOST).into()]
}

/// A configuration problem, naming the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

fn bad(key: &str, message: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("`{key}` {message}"))
}

impl Config {
    /// Defaults, then `file` (if given), then `IDENTITY_*` environment variables.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!("config file {} does not exist", path.display())));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("IDENTITY_").split("__").ignore(&["config"]));
        let config: Config = figment.extract().map_err(|error| {
            let errors: Vec<String> = error.into_iter().map(|e| e.to_string()).collect();
            ConfigError(errors.join("; "))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The peers the gRPC port believes: `grpc_trusted_proxies`, plus the
    /// address the port is bound to when that is a specific non-loopback one,
    /// since the in-process gateway then connects from it.
    pub fn grpc_proxies(&self) -> Vec<TrustedProxy> {
        let mut proxies = self.grpc_trusted_proxies.clone();
        let own = self.grpc_addr.ip();
        if !own.is_unspecified() && !own.is_loopback() && !proxies.iter().any(|proxy| proxy.contains(&own)) {
            proxies.push(own.into());
        }
        proxies
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return Err(bad("database_url", "must start with sqlite:, postgres:// or postgresql://"));
        }
        if self.database_max_connections == 0 {
            return Err(bad("database_max_connections", "must be at least 1"));
        }
        check_http_url("public_url", &self.public_url)?;
        if let Some(smtp) = &self.smtp_url {
            let url = url::Url::parse(smtp).map_err(|e| bad("smtp_url", format!("is not a URL: {e}")))?;
            if !matches!(url.scheme(), "smtp" | "smtps") || url.host_str().is_none() {
                return Err(bad("smtp_url", "must look like smtp://host:port or smtps://host:port"));
            }
            let tls = url.scheme() == "smtps" || url.query_pairs().any(|(k, v)| k == "tls" && v == "starttls");
            if !tls && (!url.username().is_empty() || url.password().is_some()) {
                return Err(bad(
                    "smtp_url",
                    "carries credentials without TLS, which would send them in clear text: add `?tls=starttls` \
                     or use smtps://",
                ));
            }
        }
        if self.http_tls_cert.is_some() != self.http_tls_key.is_some() {
            return Err(bad("http_tls_cert", "and `http_tls_key` must be set together"));
        }
        let a = &self.argon2;
        if a.parallelism == 0 || a.parallelism > a.max_parallelism {
            return Err(bad("argon2.parallelism", format!("must be 1 to {}", a.max_parallelism)));
        }
        if a.memory_kib < 8 * a.parallelism || a.memory_kib > a.max_memory_kib {
            return Err(bad("argon2.memory_kib", format!("must be {} to {}", 8 * a.parallelism, a.max_memory_kib)));
        }
        if a.iterations == 0 || a.iterations > a.max_iterations {
            return Err(bad("argon2.iterations", format!("must be 1 to {}", a.max_iterations)));
        }
        if self.hashing.queue == 0 {
            return Err(bad("hashing.queue", "must be at least 1"));
        }
        if self.activation.ttl_secs < 60 {
            return Err(bad("activation.ttl_secs", "must be at least 60"));
        }
        if !(30..=3600).contains(&self.second_factor.challenge_ttl_secs) {
            return Err(bad("second_factor.challenge_ttl_secs", "must be 30 to 3600"));
        }
        if self.second_factor.issuer.trim().is_empty() || self.second_factor.issuer.contains(':') {
            return Err(bad("second_factor.issuer", "must be a name without ':'"));
        }
        let policy = &self.password_policy;
        if !(8..=128).contains(&policy.min_length) {
            return Err(bad("password_policy.min_length", "must be 8 to 128"));
        }
        if policy.max_length < policy.min_length || policy.max_length > 1024 {
            return Err(bad("password_policy.max_length", "must be at least `min_length` and at most 1024"));
        }
        if policy.min_strength > 4 {
            return Err(bad("password_policy.min_strength", "must be a zxcvbn score, 0 to 4"));
        }
        if self.reset.admin_resets_per_hour == 0 {
            return Err(bad("reset.admin_resets_per_hour", "must be at least 1"));
        }
        if self.reset.forgot_per_login_per_hour == 0 || self.reset.forgot_per_ip_per_hour == 0 {
            return Err(bad(
                "reset.forgot_per_login_per_hour",
                "and `reset.forgot_per_ip_per_hour` must be at least 1",
            ));
        }
        if !(1..=100_000).contains(&self.reset.max_batch) {
            return Err(bad("reset.max_batch", "must be 1 to 100000"));
        }
        if self.throttle.login_per_user == 0 || self.throttle.login_per_ip == 0 {
            return Err(bad("throttle.login_per_user", "and `throttle.login_per_ip` must be at least 1"));
        }
        if self.throttle.taken_login_answers_per_hour == 0 {
            return Err(bad("throttle.taken_login_answers_per_hour", "must be at least 1"));
        }
        if !(1..=86_400).contains(&self.throttle.window_secs) {
            return Err(bad("throttle.window_secs", "must be 1 to 86400"));
        }
        let t = &self.tokens;
        if !(10..=86_400).contains(&t.access_ttl_secs) {
            return Err(bad("tokens.access_ttl_secs", "must be 10 to 86400"));
        }
        if t.refresh_ttl_secs < t.access_ttl_secs {
            return Err(bad("tokens.refresh_ttl_secs", "must be at least `tokens.access_ttl_secs`"));
        }
        if t.audience.is_empty() {
            return Err(bad("tokens.audience", "must not be empty"));
        }
        if t.key_reload_secs == 0 {
            return Err(bad("tokens.key_reload_secs", "must be at least 1"));
        }
        // The cache sizes its tables up front: an absurd figure would fail at start, not politely.
        if t.verified_cache_entries > MAX_VERIFIED_CACHE_ENTRIES {
            return Err(bad(
                "tokens.verified_cache_entries",
                format!("must be at most {MAX_VERIFIED_CACHE_ENTRIES} (about 1 KiB each; 0 turns the cache off)"),
            ));
        }
        self.validate_platforms()?;
        let c = &self.captcha;
        if !(1..=32).contains(&c.difficulty_bits) {
            return Err(bad("captcha.difficulty_bits", "must be 1 to 32"));
        }
        if !(c.difficulty_bits..=32).contains(&c.max_difficulty_bits) {
            return Err(bad("captcha.max_difficulty_bits", "must be `captcha.difficulty_bits` to 32"));
        }
        if c.busy_requests_per_minute == 0 {
            return Err(bad("captcha.busy_requests_per_minute", "must be at least 1"));
        }
        if !(30..=3600).contains(&c.ttl_secs) {
            return Err(bad("captcha.ttl_secs", "must be 30 to 3600"));
        }
        if c.hmac_key.is_some() && c.key_bytes().is_none() {
            return Err(bad("captcha.hmac_key", "must be base64 (standard or url-safe) of at least 32 bytes"));
        }
        self.validate_mail()?;
        self.validate_gateway()?;
        if self.bootstrap.enabled {
            crate::domain::login::parse_login_prefix(&self.bootstrap.subscription_prefix)
                .map_err(|e| bad("bootstrap.subscription_prefix", e))?;
            crate::domain::login::parse_email(&self.bootstrap.manager_email)
                .map_err(|e| bad("bootstrap.manager_email", e))?;
        }
        Ok(())
    }

    fn validate_gateway(&self) -> Result<(), ConfigError> {
        let g = &self.gateway;
        if g.rate_limit_per_user == 0 {
            return Err(bad("gateway.rate_limit_per_user", "must be at least 1"));
        }
        if !(1..=86_400).contains(&g.rate_limit_window_secs) {
            return Err(bad("gateway.rate_limit_window_secs", "must be 1 to 86400"));
        }
        if !(1024..=16 * 1024 * 1024).contains(&g.max_body_bytes) {
            return Err(bad("gateway.max_body_bytes", "must be 1024 to 16777216"));
        }
        if !(1..=600).contains(&g.request_timeout_secs) {
            return Err(bad("gateway.request_timeout_secs", "must be 1 to 600"));
        }
        Ok(())
    }

    fn validate_mail(&self) -> Result<(), ConfigError> {
        let m = &self.mail;
        m.sender(&self.public_url).map_err(|e| bad("mail.from", e))?;
        if !(10..=3_600_000).contains(&m.poll_interval_ms) {
            return Err(bad("mail.poll_interval_ms", "must be 10 to 3600000"));
        }
        if m.retry_base_ms < 10 {
            return Err(bad("mail.retry_base_ms", "must be at least 10"));
        }
        if m.retry_max_ms < m.retry_base_ms {
            return Err(bad("mail.retry_max_ms", "must be at least `mail.retry_base_ms`"));
        }
        if m.max_attempts == 0 {
            return Err(bad("mail.max_attempts", "must be at least 1"));
        }
        Ok(())
    }

    fn validate_platforms(&self) -> Result<(), ConfigError> {
        let p = &self.platform;
        if p.platforms.is_empty() {
            return Err(bad("platform.platforms", "must list at least one platform"));
        }
        if !p.platforms.iter().any(|entry| entry.id == p.current) {
            return Err(bad(
                "platform.current",
                format!("names `{}`, which is not in `platform.platforms`", p.current),
            ));
        }
        if !(p.login_separator == '_' || p.login_separator == '-' || p.login_separator == '.') {
            return Err(bad("platform.login_separator", "must be one of '_', '-', '.'"));
        }
        if !(4..=16).contains(&p.login_tail_length) {
            return Err(bad("platform.login_tail_length", "must be 4 to 16"));
        }
        for (i, entry) in p.platforms.iter().enumerate() {
            let code_ok = (1..=8).contains(&entry.code.len())
                && entry.code.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if !code_ok {
                return Err(bad(
                    &format!("platform.platforms[{i}].code"),
                    "must be 1 to 8 lower-case letters and digits",
                ));
            }
            check_http_url(&format!("platform.platforms[{i}].login_url"), &entry.login_url)?;
            check_http_url(&format!("platform.platforms[{i}].api_url"), &entry.api_url)?;
            if p.platforms[..i].iter().any(|other| other.id == entry.id || other.code == entry.code) {
                return Err(bad(&format!("platform.platforms[{i}]"), "repeats the id or code of an earlier platform"));
            }
        }
        Ok(())
    }
}

fn check_http_url(key: &str, value: &str) -> Result<(), ConfigError> {
    let url = url::Url::parse(value).map_err(|e| bad(key, format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(key, "must be an http:// or https:// URL"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_use_owasp_argon2() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!((config.argon2.memory_kib, config.argon2.iterations, config.argon2.parallelism), (19456, 2, 1));
        assert_eq!(config.grpc_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(config.database_url, "sqlite://./data/identity.db");
    }

    #[test]
    fn errors_name_the_bad_key() {
        let config = Config { public_url: "ftp://example.com".to_owned(), ..Config::default() };
        assert!(config.validate().unwrap_err().to_string().contains("`public_url`"));

        let mut config = Config::default();
        config.argon2.memory_kib = 4;
        assert!(config.validate().unwrap_err().to_string().contains("`argon2.memory_kib`"));

        let mut config = Config::default();
        config.platform.current = "EU9".to_owned();
        assert!(config.validate().unwrap_err().to_string().contains("`platform.current`"));

        let config = Config { http_tls_cert: Some("cert.pem".into()), ..Config::default() };
        assert!(config.validate().unwrap_err().to_string().contains("`http_tls_cert`"));

        let mut config = Config::default();
        config.gateway.rate_limit_per_user = 0;
        assert!(config.validate().unwrap_err().to_string().contains("`gateway.rate_limit_per_user`"));
        config.gateway = GatewayConfig { max_body_bytes: 10, ..GatewayConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("`gateway.max_body_bytes`"));

        let mut config = Config::default();
        config.tokens.verified_cache_entries = MAX_VERIFIED_CACHE_ENTRIES + 1;
        assert!(config.validate().unwrap_err().to_string().contains("`tokens.verified_cache_entries`"));
        config.tokens.verified_cache_entries = 0;
        assert!(config.validate().is_ok(), "0 turns the cache off");
    }

    #[test]
    fn mail_settings_are_checked_and_the_sender_defaults_to_the_public_host() {
        let config = Config { public_url: "https://id.example.com/base".to_owned(), ..Config::default() };
        assert_eq!(config.mail.sender(&config.public_url).unwrap().to_string(), "identity@id.example.com");

        let mut config = Config::default();
        config.mail.from = "Identity <no-reply@example.com>".to_owned();
        assert_eq!(config.mail.sender(&config.public_url).unwrap().email.to_string(), "no-reply@example.com");
        config.mail.from = "not an address".to_owned();
        assert!(config.validate().unwrap_err().to_string().contains("`mail.from`"));

        let mut config = Config::default();
        config.mail.retry_max_ms = config.mail.retry_base_ms - 1;
        assert!(config.validate().unwrap_err().to_string().contains("`mail.retry_max_ms`"));
        config.mail = MailConfig { max_attempts: 0, ..MailConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("`mail.max_attempts`"));
    }

    #[test]
    fn a_file_then_the_environment_override_the_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("identity.toml", "grpc_addr = \"127.0.0.1:6000\"\n[argon2]\nmemory_kib = 1024\n")?;
            jail.set_env("IDENTITY_GRPC_ADDR", "127.0.0.1:7000");
            jail.set_env("IDENTITY_ARGON2__ITERATIONS", "3");
            let config = Config::load(Some(std::path::Path::new("identity.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.grpc_addr.to_string(), "127.0.0.1:7000");
            assert_eq!((config.argon2.memory_kib, config.argon2.iterations), (1024, 3));
            Ok(())
        });
    }

    #[test]
    fn unknown_and_mistyped_keys_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("IDENTITY_GRPC_ADRR", "127.0.0.1:7000");
            let error = Config::load(None).unwrap_err().to_string().to_lowercase();
            assert!(error.contains("grpc_adrr"), "{error}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("IDENTITY_GRPC_ADDR", "not-an-address");
            let error = Config::load(None).unwrap_err().to_string().to_lowercase();
            assert!(error.contains("grpc_addr"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn smtp_credentials_need_tls() {
        for url in ["smtp://user:pw@mail.example.com:587", "smtp://user@mail.example.com"] {
            let config = Config { smtp_url: Some(url.to_owned()), ..Config::default() };
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains("`smtp_url`") && error.contains("tls=starttls"), "{url}: {error}");
        }
        for url in
            ["smtp://user:pw@mail.example.com:587?tls=starttls", "smtps://user:pw@mail.example.com", "smtp://relay:25"]
        {
            let config = Config { smtp_url: Some(url.to_owned()), ..Config::default() };
            assert!(config.validate().is_ok(), "{url}");
        }
    }

    #[test]
    fn the_grpc_port_trusts_loopback_and_its_own_address_only() {
        let config = Config::default();
        let listed: Vec<String> = config.grpc_proxies().iter().map(ToString::to_string).collect();
        assert_eq!(listed, ["127.0.0.1", "::1"]);
        // A wider gateway list does not widen the gRPC port's.
        let config = Config { trusted_proxies: vec!["10.244.0.0/16".parse().unwrap()], ..Config::default() };
        assert!(!config.grpc_proxies().iter().any(|proxy| proxy.contains(&"10.244.1.1".parse().unwrap())));
        // Bound to a specific address, the in-process gateway connects from it.
        let config = Config { grpc_addr: "10.1.2.3:50051".parse().unwrap(), ..Config::default() };
        let listed: Vec<String> = config.grpc_proxies().iter().map(ToString::to_string).collect();
        assert_eq!(listed, ["127.0.0.1", "::1", "10.1.2.3"]);
        let config = Config { grpc_addr: "0.0.0.0:50051".parse().unwrap(), ..Config::default() };
        assert_eq!(config.grpc_proxies().len(), 2);
    }

    #[test]
    fn trusted_proxies_take_addresses_and_ranges() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("IDENTITY_TRUSTED_PROXIES", "[10.244.0.0/16, 127.0.0.1]");
            let config = Config::load(None).map_err(|e| e.to_string())?;
            let listed: Vec<String> = config.trusted_proxies.iter().map(ToString::to_string).collect();
            assert_eq!(listed, ["10.244.0.0/16", "127.0.0.1"]);
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("IDENTITY_TRUSTED_PROXIES", "[10.0.0.0/40]");
            let error = Config::load(None).unwrap_err().to_string();
            assert!(error.to_lowercase().contains("trusted_proxies") && error.contains("10.0.0.0/40"), "{error}");
            Ok(())
        });
    }
}
