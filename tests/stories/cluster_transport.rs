//! The gRPC port in a cluster: it speaks TLS when given a certificate (and
//! nothing else), asks for client certificates when given a CA, is reached by
//! a separately run gateway over TLS, and sends long-lived connections away
//! so that clients spread over new replicas.

use crate::common;
use crate::common::tools::Tool;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    Backend,
    http::{GatewayServer, start_gateway},
};
use identity::{config::Config, pb};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A test CA and, signed by it, a certificate for `localhost`/127.0.0.1 that
/// serves and authenticates as a client both, and a client certificate.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// A client certificate from a CA nobody trusts.
    stranger_cert: PathBuf,
    stranger_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = std::process::Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

fn make_ca(dir: &Path, name: &str) {
    let mut args = vec!["req", "-x509", "-nodes", "-days", "1", "-subj"];
    let subject = format!("/CN={name}");
    args.push(&subject);
    args.extend(EC);
    let (key, cert) = (format!("{name}.key"), format!("{name}.pem"));
    args.extend(["-keyout", &key, "-out", &cert]);
    openssl(dir, &args);
}

fn issue(dir: &Path, ca: &str, name: &str, extensions: &str) {
    let (key, csr, cert, ext) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
    std::fs::write(dir.join(&ext), extensions).unwrap();
    let subject = format!("/CN={name}");
    let mut args = vec!["req", "-new", "-nodes", "-subj", &subject, "-keyout", &key, "-out", &csr];
    args.extend(EC);
    openssl(dir, &args);
    let (ca_cert, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &cert,
            "-extfile",
            &ext,
        ],
    );
}

fn pki() -> Pki {
    let dir = common::scratch_dir("grpc-tls");
    make_ca(&dir, "ca");
    make_ca(&dir, "rogue-ca");
    issue(
        &dir,
        "ca",
        "server",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
    );
    issue(&dir, "ca", "client", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n");
    issue(&dir, "rogue-ca", "stranger", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n");
    Pki {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
        stranger_cert: dir.join("stranger.pem"),
        stranger_key: dir.join("stranger.key"),
    }
}

/// TLS on the gRPC port; the in-process gateway trusts the test CA and, with
/// `mutual`, presents the server's certificate as its client certificate.
fn tls_config(mut config: Config, pki: &Pki, mutual: bool) -> Config {
    config.grpc.tls_cert = Some(pki.server_cert.clone());
    config.grpc.tls_key = Some(pki.server_key.clone());
    config.gateway.grpc_ca = Some(pki.ca.clone());
    config.gateway.grpc_tls_domain = Some("localhost".to_owned());
    if mutual {
        config.grpc.tls_client_ca = Some(pki.ca.clone());
        config.gateway.grpc_client_cert = Some(pki.server_cert.clone());
        config.gateway.grpc_client_key = Some(pki.server_key.clone());
    }
    config
}

async fn jwks_over(channel: Channel) -> Result<usize, tonic::Status> {
    let keys = pb::auth_client::AuthClient::new(channel).get_jwks(pb::GetJwksRequest {}).await?.into_inner().keys;
    Ok(keys.len())
}

/// A TLS channel to the gRPC port, trusting the test CA, optionally with a client certificate.
async fn tls_channel(gw: &GatewayServer, ca: &Path, client: Option<(&Path, &Path)>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name("localhost");
    if let Some((cert, key)) = client {
        tls = tls.identity(Identity::from_pem(std::fs::read(cert).unwrap(), std::fs::read(key).unwrap()));
    }
    let url = format!("https://localhost:{}", gw.server.grpc_addr.port());
    let endpoint = Channel::from_shared(url).unwrap().tls_config(tls).map_err(|e| e.to_string())?;
    endpoint.connect_timeout(Duration::from_secs(5)).connect().await.map_err(|e| format!("{e:?}"))
}

/// Polls `url` with curl until it answers 200; its body.
async fn get_until_ok(url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = std::process::Command::new("curl").args(["-s", "-f", "--max-time", "5", url]).output().unwrap();
        if output.status.success() {
            return String::from_utf8_lossy(&output.stdout).into_owned();
        }
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_port_speaks_tls_and_nothing_else() {
    if !common::tools::require(&[Tool::Openssl, Tool::Curl]) {
        return;
    }
    let _shared = common::shared_machine().await;
    let pki = Arc::new(pki());
    let health_port = common::free_port();
    let gw = start_gateway(Backend::Sqlite, {
        let pki = Arc::clone(&pki);
        move |mut config| {
            config.grpc.health_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], health_port)));
            tls_config(config, &pki, false)
        }
    });
    let channel = tls_channel(&gw, &pki.ca, None).await.expect("a TLS client connects");
    assert!(jwks_over(channel).await.unwrap() > 0, "a TLS call succeeds");

    let plain = Channel::from_shared(gw.server.url()).unwrap().connect_timeout(Duration::from_secs(5));
    let refused = match plain.connect().await {
        Err(_) => true,
        Ok(channel) => jwks_over(channel).await.is_err(),
    };
    assert!(refused, "a plaintext call fails");

    // Probes that speak no TLS (the kubelet's) have a health-only port of their own.
    let probe = Channel::from_shared(format!("http://127.0.0.1:{health_port}")).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(probe.clone());
    let check = |service: &str| tonic_health::pb::HealthCheckRequest { service: service.to_owned() };
    let live = health.check(check("liveness")).await.unwrap().into_inner();
    assert_eq!(live.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);
    assert!(jwks_over(probe).await.is_err(), "the health port serves health only");

    // The in-process gateway reaches the port over TLS too.
    let jwks = get_until_ok(&format!("{}/.well-known/jwks.json", gw.base)).await;
    assert!(jwks.contains("\"kty\":\"OKP\""), "{jwks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_client_without_a_trusted_certificate() {
    if !common::tools::require(&[Tool::Openssl, Tool::Curl]) {
        return;
    }
    let _shared = common::shared_machine().await;
    let pki = Arc::new(pki());
    let gw = start_gateway(Backend::Sqlite, {
        let pki = Arc::clone(&pki);
        move |config| tls_config(config, &pki, true)
    });
    let with_cert = tls_channel(&gw, &pki.ca, Some((&pki.client_cert, &pki.client_key))).await.unwrap();
    assert!(jwks_over(with_cert).await.unwrap() > 0, "a client with a certificate the CA signed gets in");

    for (what, client) in [("no certificate", None), ("a stranger's", Some((&*pki.stranger_cert, &*pki.stranger_key)))]
    {
        let refused = match tls_channel(&gw, &pki.ca, client).await {
            Err(_) => true,
            Ok(channel) => jwks_over(channel).await.is_err(),
        };
        assert!(refused, "a client with {what} certificate is refused");
    }
    let jwks = get_until_ok(&format!("{}/.well-known/jwks.json", gw.base)).await;
    assert!(jwks.contains("\"kty\":\"OKP\""), "the in-process gateway presents its certificate: {jwks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separately_run_gateway_reaches_the_grpc_port_over_mutual_tls() {
    if !common::tools::require(&[Tool::Openssl, Tool::Curl]) {
        return;
    }
    let _shared = common::shared_machine().await;
    let pki = Arc::new(pki());
    let gw = start_gateway(Backend::Sqlite, {
        let pki = Arc::clone(&pki);
        move |config| tls_config(config, &pki, true)
    });
    let port = common::free_port();
    let grpc = format!("https://localhost:{}", gw.server.grpc_addr.port());
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let (ca, cert, key) = (path(&pki.ca), path(&pki.client_cert), path(&pki.client_key));
    let mut child = common::cli_command(
        &["gateway", "--grpc", &grpc],
        &[
            ("IDENTITY_HTTP_ADDR", &format!("127.0.0.1:{port}")),
            ("IDENTITY_GATEWAY__GRPC_CA", &ca),
            ("IDENTITY_GATEWAY__GRPC_CLIENT_CERT", &cert),
            ("IDENTITY_GATEWAY__GRPC_CLIENT_KEY", &key),
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("start `identity gateway`");
    let jwks = get_until_ok(&format!("http://127.0.0.1:{port}/.well-known/jwks.json")).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(jwks.contains("\"kty\":\"OKP\""), "{jwks}");

    // Without the CA, the gateway refuses to start against an https URL.
    let output = common::identity_cli(
        &["gateway", "--grpc", &grpc],
        &[("IDENTITY_HTTP_ADDR", &format!("127.0.0.1:{}", common::free_port()))],
        None,
    );
    assert!(!output.status.success());
    assert!(common::stderr(&output).contains("gateway.grpc_ca"), "{}", common::stderr(&output));
}

/// Forwards loopback connections to `upstream` and counts them.
async fn counting_proxy(upstream: std::net::SocketAddr) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (port, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lived_connections_are_sent_away_to_rebalance() {
    let _shared = common::shared_machine().await;
    let server = common::start(Backend::Sqlite, |mut config| {
        config.grpc.max_connection_age_secs = 1;
        config.grpc.max_connection_age_grace_secs = 5;
        config
    });
    let (port, accepted) = counting_proxy(server.grpc_addr).await;
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.unwrap();
    let mut answered = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3500) {
        // A call that meets a connection just sent away is the client's to
        // retry, as a balanced client would; what matters is that calls go on.
        if jwks_over(channel.clone()).await.is_ok() {
            answered += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered >= 25, "calls go on across reconnections: {answered}");
    let connections = accepted.load(Ordering::SeqCst);
    assert!(connections >= 3, "one long-lived client reconnects every second: {connections} connections");
}
