//! The real `identity serve` binary as a child process, for what an
//! in-process server cannot show: `kill -9`, SIGTERM, restarts on the same
//! ports and database, several replicas side by side.
//!
//! The child ignores SIGXFSZ (set by `sh` before it execs the binary), so a
//! file-size limit put on it while it runs (`prlimit`) makes its writes fail
//! with EFBIG instead of killing it: that is how tests take its disk away.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use super::TestServer;

/// How long a start may take (migrations included) before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct ServerProcess {
    database_url: String,
    env: Vec<(String, String)>,
    pub dir: PathBuf,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    log_path: PathBuf,
    child: Option<Child>,
}

impl ServerProcess {
    /// Starts `identity serve` on `database_url` with free loopback ports, a
    /// scratch directory of its own, no bootstrap, and the stories' settings
    /// (cheap argon2, login throttles out of the way); `env` adds or
    /// overrides `IDENTITY_*` variables. Returns once health says SERVING.
    pub fn spawn(database_url: &str, env: &[(&str, &str)]) -> ServerProcess {
        let dir = super::scratch_dir("process");
        let outbox = env.iter().find(|(key, _)| *key == "IDENTITY_OUTBOX_DIR").map(|(_, dir)| PathBuf::from(dir));
        super::register_outbox_dir(outbox.unwrap_or_else(|| dir.join("outbox")));
        let grpc_addr = SocketAddr::from(([127, 0, 0, 1], super::free_port()));
        let http_addr = SocketAddr::from(([127, 0, 0, 1], super::free_port()));
        let mut process = ServerProcess {
            database_url: database_url.to_owned(),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            log_path: dir.join("server.log"),
            dir,
            grpc_addr,
            http_addr,
            child: None,
        };
        process.start_child().unwrap_or_else(|failure| panic!("{failure}"));
        process
    }

    /// A handle for the shared helpers (`tenant`, `member`, `reset_results`…).
    pub fn test_server(&self) -> TestServer {
        TestServer {
            grpc_addr: self.grpc_addr,
            database_url: self.database_url.clone(),
            dir: self.dir.clone(),
            data_keys: Default::default(),
            stop: None,
        }
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The running child's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// SIGKILL: no shutdown, no final flush, nothing.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit (graceful shutdown); a child still
    /// running after 30 s is killed and the test fails.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        let sent =
            std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait for the server") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server ignored SIGTERM for 30 s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the binary again: same ports, database, directory and settings.
    pub fn restart(&mut self) {
        self.try_restart().unwrap_or_else(|failure| panic!("{failure}"));
    }

    /// Like [`ServerProcess::restart`], for starts that are expected to fail:
    /// the error says why, with the log.
    pub fn try_restart(&mut self) -> Result<(), String> {
        self.kill9();
        self.append_log("---- restart ----");
        self.start_child()
    }

    /// Everything the child wrote on stdout and stderr, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn append_log(&self, line: &str) {
        let mut file = OpenOptions::new().create(true).append(true).open(&self.log_path).expect("open the log");
        writeln!(file, "{line}").expect("write the log");
    }

    fn start_child(&mut self) -> Result<(), String> {
        let grpc_addr = self.grpc_addr.to_string();
        let http_addr = self.http_addr.to_string();
        let public_url = self.http_url();
        let outbox = self.dir.join("outbox").display().to_string();
        // The child runs in its own folder: on PostgreSQL (no SQLite file to keep the
        // keys beside) it must share the data keys of the other processes on the database.
        let data_keys = std::env::current_dir().unwrap_or_default().join("data/data-keys").display().to_string();
        let mut env: Vec<(&str, &str)> = vec![
            ("IDENTITY_DATABASE_URL", &self.database_url),
            ("IDENTITY_GRPC_ADDR", &grpc_addr),
            ("IDENTITY_HTTP_ADDR", &http_addr),
            ("IDENTITY_PUBLIC_URL", &public_url),
            ("IDENTITY_OUTBOX_DIR", &outbox),
            ("IDENTITY_BOOTSTRAP__ENABLED", "false"),
            ("IDENTITY_LOG_FILTER", "info"),
            ("NO_COLOR", "1"),
            ("IDENTITY_SHUTDOWN_GRACE_SECS", "2"),
            // As in test_config(): stories hammer single accounts on purpose.
            ("IDENTITY_THROTTLE__LOGIN_PER_USER", "10000"),
            ("IDENTITY_THROTTLE__LOGIN_PER_IP", "100000"),
            ("IDENTITY_CAPTCHA__DIFFICULTY_BITS", "8"),
        ];
        if !self.database_url.starts_with("sqlite:") {
            env.push(("IDENTITY_DATA_KEYS__DIR", &data_keys));
        }
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        // `sh` ignores SIGXFSZ and execs: the binary keeps the pid and the disposition.
        let command = super::cli_command(&[], &env);
        let binary = command.get_program().to_owned();
        let mut command = rebuild_through_sh(command, &binary);
        command.current_dir(&self.dir).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| format!("cannot run the identity binary: {e}"))?;
        let log = Arc::new(Mutex::new(
            OpenOptions::new().create(true).append(true).open(&self.log_path).expect("open the log"),
        ));
        // Pipes, not the log file itself: a file-size limit on the child must not hit its log.
        copy_lines(child.stdout.take().expect("piped stdout"), Arc::clone(&log));
        copy_lines(child.stderr.take().expect("piped stderr"), log);
        self.child = Some(child);
        self.wait_until_serving()
    }

    fn wait_until_serving(&mut self) -> Result<(), String> {
        let url = self.grpc_url();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("a child");
            if let Some(status) = child.try_wait().expect("poll the child") {
                self.child = None;
                return Err(format!("the server exited during start ({status}); log:\n{}", self.log()));
            }
            if health(&url) == Some(ServingStatus::Serving) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill9();
                return Err(format!("the server was not SERVING after {START_TIMEOUT:?}; log:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The same command, run as `sh -c 'trap "" XFSZ; exec "$0" "$@"' binary args…`.
fn rebuild_through_sh(command: std::process::Command, binary: &std::ffi::OsStr) -> std::process::Command {
    let mut through_sh = std::process::Command::new("sh");
    through_sh.args(["-c", r#"trap "" XFSZ; exec "$0" "$@""#]).arg(binary).arg("serve");
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => through_sh.env(key, value),
            None => through_sh.env_remove(key),
        };
    }
    through_sh
}

fn copy_lines(pipe: impl std::io::Read + Send + 'static, log: Arc<Mutex<File>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            let mut file = log.lock().expect("log lock");
            let _ = writeln!(file, "{line}");
        }
    });
}

/// The overall health status, or None when the server does not answer.
/// Runs on a thread of its own: callers may be inside a runtime already.
fn health(url: &str) -> Option<ServingStatus> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let channel = tonic::transport::Channel::from_shared(url)
                .ok()?
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(2))
                .connect()
                .await
                .ok()?;
            let response =
                HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.ok()?;
            Some(response.into_inner().status())
        })
    })
    .join()
    .ok()
    .flatten()
}
