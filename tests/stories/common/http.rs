//! HTTP helpers for the gateway stories: a server whose gateway address is
//! known, curl as the client, xmllint as the DTD judge, and a small WebDriver
//! client for headless Chromium. Everything talks to 127.0.0.1 only.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use identity::{config::Config, server::Server};

use super::{Backend, TestServer, fresh_database, scratch_dir, test_config};

/// A test server with its HTTP gateway.
pub struct GatewayServer {
    pub server: TestServer,
    pub http_addr: SocketAddr,
    /// `http://127.0.0.1:port` or `https://…` with TLS.
    pub base: String,
    /// The configured `public_url` (base of the DOCTYPE's DTD URL).
    pub public_url: String,
}

impl std::ops::Deref for GatewayServer {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.server
    }
}

impl GatewayServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn dtd_url(&self) -> String {
        format!("{}/password_change_output.dtd", self.public_url.trim_end_matches('/'))
    }
}

static SQLITE: OnceLock<GatewayServer> = OnceLock::new();
static POSTGRES: OnceLock<GatewayServer> = OnceLock::new();

/// The shared gateway server of this test binary for `backend`.
pub fn gateway_server(backend: Backend) -> &'static GatewayServer {
    let cell = match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    };
    cell.get_or_init(|| start_gateway(backend, |config| config))
}

/// Like `common::start`, and reports the gateway's address too.
pub fn start_gateway(backend: Backend, adjust: impl FnOnce(Config) -> Config + Send + 'static) -> GatewayServer {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let dir = scratch_dir("gateway");
            let database_url = fresh_database(backend, &dir).await;
            let config = adjust(test_config(&database_url, &dir));
            let public_url = config.public_url.clone();
            let data_keys = config.data_keys.clone();
            let server = Server::build(config).await.expect("server starts");
            let (stop, stopped) = super::stop_signal();
            let ready = GatewayServer {
                server: TestServer { grpc_addr: server.grpc_addr(), database_url, dir, data_keys, stop: Some(stop) },
                http_addr: server.http_addr(),
                base: server.http_url(),
                public_url,
            };
            ready_tx.send(ready).expect("report readiness");
            server.run(stopped).await.expect("server runs");
        });
    });
    ready_rx.recv_timeout(Duration::from_secs(60)).expect("server started in time")
}

/// One HTTP exchange as curl saw it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Runs curl with `args` (plus `-s -S -k`, headers to stdout, a time limit).
pub fn curl(args: &[&str]) -> HttpResponse {
    let output = Command::new("curl")
        .args(["-s", "-S", "-k", "--max-time", "60", "-H", "Expect:", "-D", "-"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(output.status.success(), "curl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    parse_http(&String::from_utf8_lossy(&output.stdout))
}

/// Runs a shell command line (a curl command copied from the docs) and returns its stdout.
pub fn shell(command_line: &str) -> String {
    let output = Command::new("bash").args(["-c", command_line]).output().expect("bash runs");
    assert!(output.status.success(), "{command_line} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn parse_http(raw: &str) -> HttpResponse {
    let mut rest = raw;
    loop {
        let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
        let mut lines = head.lines();
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        if (100..200).contains(&status) {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        return HttpResponse { status, headers, body: body.to_owned() };
    }
}

/// `xmllint --valid` on `xml`, whose DOCTYPE names `dtd_url`; an XML catalog
/// maps that URL to `dtd` (as fetched from the gateway), so nothing leaves the machine.
pub fn assert_valid_xml(xml: &str, dtd_url: &str, dtd: &str) {
    let dir = scratch_dir("xmllint");
    std::fs::write(dir.join("doc.xml"), xml).unwrap();
    std::fs::write(dir.join("output.dtd"), dtd).unwrap();
    let catalog = format!(
        "<?xml version=\"1.0\"?>\n<catalog xmlns=\"urn:oasis:names:tc:entity:xmlns:xml:catalog\">\n  \
         <system systemId=\"{dtd_url}\" uri=\"file://{}\"/>\n</catalog>\n",
        dir.join("output.dtd").display()
    );
    std::fs::write(dir.join("catalog.xml"), catalog).unwrap();
    let output = Command::new("xmllint")
        .args(["--valid", "--noout", "--nonet"])
        .arg(dir.join("doc.xml"))
        .env("XML_CATALOG_FILES", dir.join("catalog.xml"))
        .output()
        .expect("xmllint runs (apt package libxml2-utils)");
    assert!(output.status.success(), "not valid against the DTD:\n{}\n{xml}", String::from_utf8_lossy(&output.stderr));
}

/// The text of every `<NAME>…</NAME>` in `xml`, in order.
pub fn elements(xml: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let end = after.find(&close).expect("closed element");
        found.push(after[..end].to_owned());
        rest = &after[end + close.len()..];
    }
    found
}

/// The value of a PASSWORD element: its CDATA sections joined.
pub fn cdata(text: &str) -> String {
    let mut value = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<![CDATA[") {
        let after = &rest[start + 9..];
        let end = after.find("]]>").expect("closed CDATA");
        value.push_str(&after[..end]);
        rest = &after[end + 3..];
    }
    value
}

// ---- headless Chromium through chromedriver (W3C WebDriver over curl) -----

/// A headless Chromium session; the driver and browser end when dropped.
pub struct Browser {
    driver: Child,
    endpoint: String,
    session: String,
    _profile: PathBuf,
}

impl Browser {
    pub fn start() -> Browser {
        Self::start_with(serde_json::json!({}))
    }

    /// A browser that refuses every cookie, as a locked-down one would.
    pub fn refusing_cookies() -> Browser {
        Self::start_with(serde_json::json!({ "profile.default_content_setting_values.cookies": 2 }))
    }

    fn start_with(prefs: serde_json::Value) -> Browser {
        let port = super::free_port();
        let profile = scratch_dir("chromium-profile");
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut browser = Browser { driver, endpoint, session: String::new(), _profile: profile.clone() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while webdriver(&browser.endpoint, "GET", "/status", None).is_none() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = serde_json::json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args, "prefs": prefs },
                "timeouts": { "pageLoad": 30000, "script": 30000, "implicit": 0 },
            }}
        });
        let created = webdriver(&browser.endpoint, "POST", "/session", Some(capabilities)).expect("a browser session");
        browser.session = created["value"]["sessionId"].as_str().expect("session id").to_owned();
        browser
    }

    fn command(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let path = format!("/session/{}{path}", self.session);
        let answer = webdriver(&self.endpoint, method, &path, body).expect("chromedriver answers");
        assert!(answer["value"].get("error").is_none(), "WebDriver {method} {path}: {answer}");
        answer["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(serde_json::json!({ "url": url })));
    }

    /// The element matching `css`, waiting up to 10 s for it.
    pub fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let path = format!("/session/{}/element", self.session);
            let body = serde_json::json!({ "using": "css selector", "value": css });
            let answer = webdriver(&self.endpoint, "POST", &path, Some(body)).expect("chromedriver answers");
            if let Some(id) = answer["value"].as_object().and_then(|o| o.values().next()).and_then(|v| v.as_str())
                && answer["value"].get("error").is_none()
            {
                return id.to_owned();
            }
            assert!(Instant::now() < deadline, "no element {css}: {answer}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn click(&self, element: &str) {
        self.command("POST", &format!("/element/{element}/click"), Some(serde_json::json!({})));
    }

    pub fn type_text(&self, element: &str, text: &str) {
        self.command("POST", &format!("/element/{element}/value"), Some(serde_json::json!({ "text": text })));
    }

    pub fn text(&self, element: &str) -> String {
        self.command("GET", &format!("/element/{element}/text"), None).as_str().unwrap_or_default().to_owned()
    }

    pub fn source(&self) -> String {
        self.command("GET", "/source", None).as_str().unwrap_or_default().to_owned()
    }

    pub fn url(&self) -> String {
        self.command("GET", "/url", None).as_str().unwrap_or_default().to_owned()
    }

    pub fn back(&self) {
        self.command("POST", "/back", Some(serde_json::json!({})));
    }

    /// The inner size of the window, in CSS pixels (a phone is 360 wide).
    pub fn resize(&self, width: u32, height: u32) {
        self.command("POST", "/window/rect", Some(serde_json::json!({ "width": width, "height": height })));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn execute(&self, script: &str, args: serde_json::Value) -> serde_json::Value {
        self.command("POST", "/execute/sync", Some(serde_json::json!({ "script": script, "args": args })))
    }

    /// Runs `script`, which calls its last argument with the result.
    pub fn execute_async(&self, script: &str) -> serde_json::Value {
        self.command("POST", "/execute/async", Some(serde_json::json!({ "script": script, "args": [] })))
    }

    /// Two clicks in a row, as a person double-clicks (W3C pointer actions).
    pub fn double_click(&self, element: &str) {
        let origin = serde_json::json!({ "element-6066-11e4-a52e-4f735466cecf": element });
        let click = [
            serde_json::json!({ "type": "pointerDown", "button": 0 }),
            serde_json::json!({ "type": "pointerUp", "button": 0 }),
        ];
        let mut actions = vec![serde_json::json!({ "type": "pointerMove", "origin": origin, "x": 0, "y": 0 })];
        actions.extend(click.iter().cloned());
        actions.extend(click.iter().cloned());
        let body = serde_json::json!({ "actions": [{
            "type": "pointer", "id": "mouse", "parameters": { "pointerType": "mouse" }, "actions": actions,
        }]});
        self.command("POST", "/actions", Some(body));
    }

    /// The cookies the browser holds for the current page.
    pub fn cookies(&self) -> Vec<serde_json::Value> {
        self.command("GET", "/cookie", None).as_array().cloned().unwrap_or_default()
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let encoded = self.command("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD.decode(encoded.as_str().unwrap_or_default()).expect("PNG");
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = webdriver(&self.endpoint, "DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One WebDriver call; `None` when the driver cannot be reached.
fn webdriver(endpoint: &str, method: &str, path: &str, body: Option<serde_json::Value>) -> Option<serde_json::Value> {
    use std::io::Write;
    let mut command = Command::new("curl");
    command.args(["-s", "--max-time", "60", "-X", method, &format!("{endpoint}{path}")]);
    // The body goes through stdin: an injected script (axe-core) is larger than a command line may be.
    if body.is_some() {
        command.args(["-H", "Content-Type: application/json", "--data-binary", "@-"]);
    }
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().ok()?;
    let mut stdin = child.stdin.take()?;
    if let Some(body) = &body {
        stdin.write_all(body.to_string().as_bytes()).ok()?;
    }
    drop(stdin);
    let output = child.wait_with_output().ok()?;
    if !output.status.success() {
        return None;
    }
    serde_json::from_slice(&output.stdout).ok()
}

pub fn html_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&")
}

/// The text of `<output id="password" …>…</output>` on the page.
pub fn shown_password(html: &str) -> String {
    let start = html.find("id=\"password\"").expect("a password on the page");
    let open_end = start + html[start..].find('>').unwrap() + 1;
    let close = open_end + html[open_end..].find("</output>").unwrap();
    html_unescape(&html[open_end..close])
}
