//! The programs some stories drive besides the service: curl as the legacy
//! API's client, xmllint as the DTD's judge, a real SMTP server, a real OTLP
//! receiver, headless Chromium, wrk, h2load, helm… On a machine with only the Rust
//! toolchain a story whose tool is missing is skipped with one line naming
//! what to install; under CI (`CI` set) it fails instead, so CI never passes
//! by skipping. `.ci/run` installs every one of them.

use std::{
    collections::HashMap,
    path::Path,
    process::{Command, Stdio},
    sync::Mutex,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tool {
    Curl,
    Xmllint,
    Openssl,
    Chromium,
    Wrk,
    H2load,
    Helm,
    KubernetesValidate,
    SmtpServer,
    OtlpReceiver,
    PyJwt,
    PgDump,
    AxeCore,
}

impl Tool {
    /// What provides it, as a person would install it.
    pub fn package(self) -> &'static str {
        match self {
            Tool::Curl => "curl (apt-get install curl)",
            Tool::Xmllint => "xmllint (apt-get install libxml2-utils)",
            Tool::Openssl => "openssl (apt-get install openssl)",
            Tool::Chromium => "headless Chromium (apt-get install chromium chromium-driver)",
            Tool::Wrk => "wrk (apt-get install wrk)",
            Tool::H2load => "h2load (apt-get install nghttp2-client)",
            Tool::Helm => "helm (the static binary .ci/run unpacks from npm)",
            Tool::KubernetesValidate => "kubernetes-validate (pip install kubernetes-validate)",
            Tool::SmtpServer => "aiosmtpd (pip install aiosmtpd)",
            Tool::OtlpReceiver => "an OTLP receiver (pip install grpcio opentelemetry-proto)",
            Tool::PyJwt => "PyJWT (pip install 'pyjwt[crypto]')",
            Tool::PgDump => "pg_dump (apt-get install postgresql-client; .ci/run's postgresql brings it)",
            Tool::AxeCore => "axe-core (npm install --prefix target/ci-tools/axe axe-core@4.14.1)",
        }
    }

    fn present(self) -> bool {
        match self {
            Tool::Curl => runs("curl", &["--version"]),
            Tool::Xmllint => runs("xmllint", &["--version"]),
            Tool::Openssl => runs("openssl", &["version"]),
            Tool::Chromium => Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists(),
            // `wrk --version` prints its usage and exits 1: being there is enough.
            Tool::Wrk => {
                Command::new("wrk").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
            }
            Tool::H2load => runs("h2load", &["--version"]),
            Tool::Helm => runs("helm", &["version", "--short"]),
            Tool::KubernetesValidate => python_imports("kubernetes_validate, yaml"),
            Tool::SmtpServer => python_imports("aiosmtpd"),
            Tool::OtlpReceiver => python_imports("grpc, opentelemetry.proto.collector.trace.v1"),
            Tool::PyJwt => python_imports("jwt, cryptography"),
            Tool::PgDump => runs("pg_dump", &["--version"]),
            Tool::AxeCore => axe_script().is_file(),
        }
    }

    fn available(self) -> bool {
        static SEEN: Mutex<Option<HashMap<Tool, bool>>> = Mutex::new(None);
        let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *seen.get_or_insert_with(HashMap::new).entry(self).or_insert_with(|| self.present())
    }
}

/// Whether every tool is there. A story starts with
/// `if !require(&[Tool::Curl]) { return; }`.
pub fn require(tools: &[Tool]) -> bool {
    let missing: Vec<&str> = tools.iter().filter(|tool| !tool.available()).map(|tool| tool.package()).collect();
    if missing.is_empty() {
        return true;
    }
    let names = missing.join(", ");
    assert!(std::env::var_os("CI").is_none(), "CI must install {names}: .ci/run does");
    eprintln!("skipped: this story needs {names}");
    false
}

/// axe-core's script, where `.ci/run` installs it.
pub fn axe_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-tools/axe/node_modules/axe-core/axe.min.js")
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn python_imports(modules: &str) -> bool {
    runs("python3", &["-c", &format!("import {modules}")])
}
