//! `grpc`: the gRPC port's transport: TLS, client certificates, and how long
//! one HTTP/2 connection may live.

use std::{net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

/// The gRPC listener's transport (docs/configuration.md, "gRPC transport").
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// PEM certificate chain: set with `tls_key`, the port speaks TLS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM bundle of the CAs that issue client certificates: when set, every
    /// client must present one they signed (mutual TLS).
    pub tls_client_ca: Option<PathBuf>,
    /// After this many seconds a connection is asked to go away (HTTP/2
    /// GOAWAY), so that long-lived clients spread over new replicas; 0: never.
    pub max_connection_age_secs: u64,
    /// How long calls in flight on a connection past its age may take to
    /// finish before it is closed, in seconds; 0: as long as they take.
    pub max_connection_age_grace_secs: u64,
    /// A plaintext listener serving grpc.health.v1 only (the same statuses as
    /// the gRPC port), for probes that cannot speak TLS: the kubelet's gRPC
    /// probes. Unset: none.
    pub health_addr: Option<SocketAddr>,
}

impl GrpcConfig {
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(bad("grpc.tls_cert", "and `grpc.tls_key` must be set together"));
        }
        if self.tls_client_ca.is_some() && !self.tls() {
            return Err(bad(
                "grpc.tls_client_ca",
                "needs `grpc.tls_cert` and `grpc.tls_key`: client certificates are a TLS feature",
            ));
        }
        if self.max_connection_age_grace_secs > 3600 {
            return Err(bad("grpc.max_connection_age_grace_secs", "must be at most 3600"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_needs_a_pair_and_client_certificates_need_tls() {
        assert!(GrpcConfig::default().validate().is_ok());
        let half = GrpcConfig { tls_cert: Some("c.pem".into()), ..GrpcConfig::default() };
        assert!(half.validate().unwrap_err().to_string().contains("grpc.tls_cert"));
        let ca_alone = GrpcConfig { tls_client_ca: Some("ca.pem".into()), ..GrpcConfig::default() };
        assert!(ca_alone.validate().unwrap_err().to_string().contains("grpc.tls_client_ca"));
        let graceless = GrpcConfig { max_connection_age_grace_secs: 7200, ..GrpcConfig::default() };
        assert!(graceless.validate().is_err());
        assert!(GrpcConfig { max_connection_age_secs: 300, ..GrpcConfig::default() }.validate().is_ok());
    }
}
