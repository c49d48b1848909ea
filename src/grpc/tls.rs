//! TLS of the gRPC port and of the gateway's calls to it: PEM files from the
//! configuration become tonic's rustls (ring) settings, with errors that name
//! the configuration key.

use std::path::Path;

use anyhow::Context;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::{GatewayConfig, GrpcConfig};

fn read(path: &Path, key: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {} ({key})", path.display()))?;
    anyhow::ensure!(
        String::from_utf8_lossy(&bytes).contains("-----BEGIN "),
        "{} ({key}) holds no PEM block",
        path.display()
    );
    Ok(bytes)
}

/// The gRPC port's TLS, or `None` when it speaks plaintext. With a client CA,
/// a client without a certificate that CA signed is refused in the handshake.
pub fn server_tls(config: &GrpcConfig) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else { return Ok(None) };
    let identity = Identity::from_pem(read(cert, "grpc.tls_cert")?, read(key, "grpc.tls_key")?);
    let mut tls = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca, "grpc.tls_client_ca")?)).client_auth_optional(false);
    }
    Ok(Some(tls))
}

/// How the gateway reaches `url`: TLS for `https://` (trusting
/// `gateway.grpc_ca` only, presenting the client certificate when
/// configured), nothing for `http://`.
pub fn client_tls(config: &GatewayConfig, url: &str) -> anyhow::Result<Option<ClientTlsConfig>> {
    if !url.starts_with("https://") {
        return Ok(None);
    }
    let ca = config.grpc_ca.as_ref().with_context(|| {
        format!(
            "the gRPC service at {url} speaks TLS: set `gateway.grpc_ca` to the CA bundle that issued its certificate"
        )
    })?;
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "gateway.grpc_ca")?));
    if let Some(domain) = &config.grpc_tls_domain {
        tls = tls.domain_name(domain.clone());
    }
    if let (Some(cert), Some(key)) = (&config.grpc_client_cert, &config.grpc_client_key) {
        tls = tls.identity(Identity::from_pem(
            read(cert, "gateway.grpc_client_cert")?,
            read(key, "gateway.grpc_client_key")?,
        ));
    }
    Ok(Some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_urls_need_no_tls_and_https_needs_a_ca() {
        let config = GatewayConfig::default();
        assert!(client_tls(&config, "http://127.0.0.1:50051").unwrap().is_none());
        let missing = client_tls(&config, "https://identity:50051").unwrap_err().to_string();
        assert!(missing.contains("gateway.grpc_ca"), "{missing}");
        assert!(server_tls(&GrpcConfig::default()).unwrap().is_none());
        let unreadable = GrpcConfig {
            tls_cert: Some("/nonexistent/cert.pem".into()),
            tls_key: Some("/nonexistent/key.pem".into()),
            ..GrpcConfig::default()
        };
        assert!(server_tls(&unreadable).unwrap_err().to_string().contains("grpc.tls_cert"));
    }
}
