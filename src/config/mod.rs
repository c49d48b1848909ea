//! One typed configuration, loaded once (defaults, then an optional TOML file,
//! then `IDENTITY_*` environment variables) and validated at start. Nothing
//! else in the service reads the environment.
//!
//! Nested keys use `__` in the environment: `IDENTITY_ARGON2__MEMORY_KIB=19456`.
//! Each section (a nested table) lives in a module of its own with its
//! defaults and its checks; this one holds the top-level keys and the loading.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

mod captcha;
mod data_keys;
mod gateway;
mod grpc;
mod hashing;
mod mail;
mod platform;
mod recovery;
mod retention;
mod throttle;
mod tokens;

pub use self::{
    captcha::CaptchaConfig,
    data_keys::DataKeysConfig,
    gateway::GatewayConfig,
    grpc::GrpcConfig,
    hashing::{Argon2Config, HashingConfig},
    mail::MailConfig,
    platform::{BootstrapConfig, PlatformConfig, PlatformEntry},
    recovery::{ActivationConfig, ResetConfig},
    retention::RetentionConfig,
    throttle::ThrottleConfig,
    tokens::{MAX_VERIFIED_CACHE_ENTRIES, SecondFactorConfig, TokenConfig},
};
use crate::domain::client_address::TrustedProxy;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address (`IDENTITY_GRPC_ADDR`).
    pub grpc_addr: SocketAddr,
    /// Legacy gateway and pages listen address (`IDENTITY_HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// Where Prometheus scrapes `/metrics` (`IDENTITY_METRICS_ADDR`); unset: no
    /// metrics listener. A port of its own, never the public gateway's.
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
    /// The gRPC port's TLS, client certificates and connection age.
    pub grpc: GrpcConfig,
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
    pub data_keys: DataKeysConfig,
    pub mail: MailConfig,
    pub gateway: GatewayConfig,
    pub retention: RetentionConfig,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
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
            grpc: GrpcConfig::default(),
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
            data_keys: DataKeysConfig::default(),
            mail: MailConfig::default(),
            gateway: GatewayConfig::default(),
            retention: RetentionConfig::default(),
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

/// A key given as base64 (standard or url-safe, padded or not), when it decodes
/// to at least `min_len` bytes.
fn decode_key(text: &str, min_len: usize) -> Option<Vec<u8>> {
    use base64::{
        Engine,
        alphabet::{STANDARD, URL_SAFE},
        engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    };
    let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let key = GeneralPurpose::new(&STANDARD, config)
        .decode(text)
        .or_else(|_| GeneralPurpose::new(&URL_SAFE, config).decode(text))
        .ok()?;
    (key.len() >= min_len).then_some(key)
}

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
        self.argon2.validate()?;
        self.hashing.validate()?;
        self.activation.validate()?;
        self.second_factor.validate()?;
        self.reset.validate()?;
        self.throttle.validate()?;
        self.tokens.validate()?;
        self.platform.validate()?;
        self.captcha.validate()?;
        self.data_keys.validate()?;
        self.mail.validate(&self.public_url)?;
        self.gateway.validate()?;
        self.retention.validate()?;
        self.grpc.validate()?;
        self.bootstrap.validate()
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

        for share in [0, 101] {
            let mut config = Config::default();
            config.hashing.batch_share_percent = share;
            assert!(config.validate().unwrap_err().to_string().contains("`hashing.batch_share_percent`"), "{share}");
        }
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
