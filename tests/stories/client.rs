//! Another team's service trusts our tokens through `identity-client`: the
//! crate's example service (`crates/client/examples/guarded_service.rs`), run
//! as its own process against a real identity server, lets a Manager's token
//! through with the typed caller, refuses missing and forged tokens with 401,
//! and refuses the token once its session is logged out.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use identity::pb;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{self, Backend, TestServer, bearer};

/// How long the example trusts a "live" revocation answer.
const REVOCATION_TTL_MS: u64 = 200;

on_both_backends!(a_service_checks_tokens_in_process_and_honours_logout);

async fn a_service_checks_tokens_in_process_and_honours_logout(backend: Backend) {
    let Some(exe) = example_binary() else { return };
    let server = common::server(backend);
    let tenant = common::tenant(server);
    let session = common::login(server, &tenant.manager_login, &tenant.manager_password).await;
    let example = Example::start(&exe, server).await;
    let token = session.access_token;

    // Accepted: the handler answers with the caller the layer verified.
    let reply = example.get("/whoami", Some(&format!("Bearer {token}"))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.body.contains(&format!("login={}\n", tenant.manager_login)), "{reply:?}");
    assert!(reply.body.contains("role=ROLE_MANAGER\n"), "{reply:?}");
    assert!(reply.body.contains("user_id=") && reply.body.contains("subscription_id="), "{reply:?}");

    // Refused: no token, another scheme, a forged role, garbage.
    let missing = example.get("/whoami", None).await;
    assert_eq!(missing.status, 401, "{missing:?}");
    assert!(missing.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer")), "{missing:?}");
    let basic = example.get("/whoami", Some("Basic YWxpY2U6cGFzcw==")).await;
    assert_eq!(basic.status, 401, "{basic:?}");
    let forged = forge_role(&token, "PLATFORM_OPERATOR");
    let reply = example.get("/whoami", Some(&format!("Bearer {forged}"))).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert!(reply.header("www-authenticate").is_some_and(|c| c.contains("signature does not verify")), "{reply:?}");
    let reply = example.get("/whoami", Some("Bearer not.a.token")).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(example.get("/healthz", None).await.status, 200, "health needs no token");

    // Revoked: after logout the token's signature is still good, but the
    // revocation check refuses it once the example's cached answer has aged.
    common::auth_client(server).await.logout(bearer(pb::LogoutRequest {}, &token)).await.unwrap();
    let logged_out = Instant::now();
    let refused = loop {
        let reply = example.get("/whoami", Some(&format!("Bearer {token}"))).await;
        if reply.status == 401 {
            break reply;
        }
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(
            logged_out.elapsed() < Duration::from_millis(REVOCATION_TTL_MS + 2_000),
            "a logged-out token still passes after the revocation TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(refused.header("www-authenticate").is_some_and(|c| c.contains("session has ended")), "{refused:?}");
}

/// The example of this build: `cargo test --workspace` builds the client
/// crate's examples. None when only this package was built.
fn example_binary() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_BIN_EXE_identity")).with_file_name("examples").join("guarded_service");
    if path.is_file() {
        return Some(path);
    }
    assert!(std::env::var_os("CI").is_none(), "CI runs `cargo test --workspace`, which builds the client's examples");
    eprintln!("the guarded_service example is not built: skipping (run `cargo test --workspace`)");
    None
}

/// The same token with another role, its signature left as it was.
fn forge_role(token: &str, role: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["role"] = role.into();
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// The example service as a child process, killed when the story ends.
struct Example {
    child: Child,
    addr: SocketAddr,
}

impl Example {
    async fn start(exe: &Path, server: &TestServer) -> Self {
        let config = common::test_config("", Path::new(""));
        let issuer = config.tokens.issuer_or(&config.public_url).to_owned();
        let addr: SocketAddr = format!("127.0.0.1:{}", common::free_port()).parse().unwrap();
        let child = Command::new(exe)
            .args(["--identity", &server.url(), "--issuer", &issuer, "--audience", &config.tokens.audience])
            .args(["--listen", &addr.to_string(), "--revocation-ttl-ms", &REVOCATION_TTL_MS.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("start the guarded_service example");
        let example = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "the example never listened on {addr}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        example
    }

    /// One HTTP/1.1 GET, written by hand: the reply's status, headers and body.
    async fn get(&self, path: &str, authorization: Option<&str>) -> Reply {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let authorization = authorization.map(|value| format!("authorization: {value}\r\n")).unwrap_or_default();
        let request = format!("GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n{authorization}\r\n", self.addr);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let status = lines.next().and_then(|line| line.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap();
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        Reply { status, headers, body: body.to_owned() }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}
