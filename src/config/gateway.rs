//! `gateway`: limits of the HTTP gateway, its browser sessions and its theme.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

/// The HTTP gateway: the legacy XML API and the pages people reach from emails.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
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
    /// PEM bundle of the CAs that issued the gRPC service's certificate: the
    /// gateway reaches an `https://` gRPC URL (and the in-process gateway a
    /// gRPC port with `grpc.tls_cert`) trusting these only.
    pub grpc_ca: Option<PathBuf>,
    /// The name the gRPC service's certificate is checked against, when the
    /// URL's host is not in it (the in-process gateway dials 127.0.0.1).
    pub grpc_tls_domain: Option<String>,
    /// PEM client certificate and key the gateway presents to a gRPC port
    /// that requires one (`grpc.tls_client_ca`).
    pub grpc_client_cert: Option<PathBuf>,
    pub grpc_client_key: Option<PathBuf>,
    /// Keys of the pages' cookies, base64 (standard or url-safe), each at least 32
    /// bytes decoded, comma-separated: the first seals new cookies, every one opens
    /// them (rotation: put the new key first, drop the old one after
    /// `session_absolute_secs`). Replicas must share them; unset: a random key per
    /// process (sessions then end at a restart and fail on another replica).
    pub session_keys: Option<String>,
    /// A browser session ends after this many seconds without a request.
    pub session_idle_secs: u64,
    /// A browser session ends this many seconds after sign-in, however busy.
    pub session_absolute_secs: u64,
    /// A directory whose `templates/*.html`, `style.css` and `messages.toml`
    /// replace the built-in ones of the same name (a theme, or a translation).
    pub theme_dir: Option<PathBuf>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            rate_limit_per_user: 300,
            rate_limit_window_secs: 3600,
            max_body_bytes: 128 * 1024,
            request_timeout_secs: 30,
            grpc_ca: None,
            grpc_tls_domain: None,
            grpc_client_cert: None,
            grpc_client_key: None,
            session_keys: None,
            session_idle_secs: 30 * 60,
            session_absolute_secs: 12 * 3600,
            theme_dir: None,
        }
    }
}

impl GatewayConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.rate_limit_per_user == 0 {
            return Err(bad("gateway.rate_limit_per_user", "must be at least 1"));
        }
        if !(1..=86_400).contains(&self.rate_limit_window_secs) {
            return Err(bad("gateway.rate_limit_window_secs", "must be 1 to 86400"));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(bad("gateway.max_body_bytes", "must be 1024 to 16777216"));
        }
        if !(1..=600).contains(&self.request_timeout_secs) {
            return Err(bad("gateway.request_timeout_secs", "must be 1 to 600"));
        }
        if self.grpc_client_cert.is_some() != self.grpc_client_key.is_some() {
            return Err(bad("gateway.grpc_client_cert", "and `gateway.grpc_client_key` must be set together"));
        }
        if self.grpc_client_cert.is_some() && self.grpc_ca.is_none() {
            return Err(bad("gateway.grpc_client_cert", "is sent over TLS only: set `gateway.grpc_ca` too"));
        }
        if !(60..=86_400).contains(&self.session_idle_secs) {
            return Err(bad("gateway.session_idle_secs", "must be 60 to 86400"));
        }
        if !(self.session_idle_secs..=30 * 86_400).contains(&self.session_absolute_secs) {
            return Err(bad("gateway.session_absolute_secs", "must be `gateway.session_idle_secs` to 2592000"));
        }
        if self.session_keys.is_some() && self.session_key_bytes().is_none() {
            return Err(bad(
                "gateway.session_keys",
                "must be comma-separated base64 keys of at least 32 bytes each (openssl rand -base64 32)",
            ));
        }
        Ok(())
    }

    /// The decoded `session_keys`, newest first; None when unset or when one is invalid.
    pub fn session_key_bytes(&self) -> Option<Vec<Vec<u8>>> {
        let keys: Option<Vec<Vec<u8>>> =
            self.session_keys.as_deref()?.split(',').map(|key| super::decode_key(key.trim(), 32)).collect();
        keys.filter(|keys| !keys.is_empty())
    }
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("rate_limit_per_user", &self.rate_limit_per_user)
            .field("rate_limit_window_secs", &self.rate_limit_window_secs)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("session_keys", &self.session_keys.as_ref().map(|_| "***"))
            .field("session_idle_secs", &self.session_idle_secs)
            .field("session_absolute_secs", &self.session_absolute_secs)
            .field("theme_dir", &self.theme_dir)
            .finish()
    }
}
