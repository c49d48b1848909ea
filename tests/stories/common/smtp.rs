//! A real SMTP server for stories: Python's aiosmtpd on loopback, saving each
//! message it accepts as a file. Recipients containing "reject" get a 550.
//! A sink can be stopped and started again on the same port and folder, and
//! made slow: it then stores each message at once but answers 250 only after
//! the delay, so a sender killed meanwhile has delivered without knowing it.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const SCRIPT: &str = r#"
import asyncio, itertools, os, sys, threading, time
from aiosmtpd.controller import Controller

port, folder = int(sys.argv[1]), sys.argv[2]
received = itertools.count()

class Sink:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if "reject" in address:
            return "550 5.1.1 Recipient rejected by the test sink"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        name = "%020d-%06d" % (time.time_ns(), next(received))
        temporary = os.path.join(folder, "." + name)
        with open(temporary, "wb") as f:
            f.write(envelope.original_content)
        os.rename(temporary, os.path.join(folder, name + ".eml"))
        try:
            with open(os.path.join(folder, ".delay_ms")) as f:
                await asyncio.sleep(int(f.read()) / 1000)
        except FileNotFoundError:
            pass
        return "250 Message accepted"

controller = Controller(Sink(), hostname="127.0.0.1", port=port)
controller.start()
print("ready", flush=True)
threading.Event().wait()
"#;

pub struct SmtpSink {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl SmtpSink {
    /// A sink on a free loopback port.
    pub fn start() -> Self {
        Self::start_on(super::free_port())
    }

    /// A sink on `port`, once it accepts connections.
    pub fn start_on(port: u16) -> Self {
        let mut sink = Self { port, dir: super::scratch_dir("smtp"), child: None };
        sink.resume();
        sink
    }

    /// The server goes away: connections are refused until [`SmtpSink::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Listens again on the same port, keeping what was received.
    pub fn resume(&mut self) {
        self.stop();
        let (port, dir) = (self.port, &self.dir);
        let mut child = Command::new("python3")
            .args(["-c", SCRIPT, &port.to_string(), &dir.display().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (aiosmtpd installed by .ci/run)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout).read_line(&mut line).expect("read the sink's readiness");
        if line.trim() != "ready" {
            let _ = child.kill();
            panic!("the SMTP sink did not start on port {port} (is aiosmtpd installed?)");
        }
        self.child = Some(child);
    }

    /// Each message is stored on arrival, then answered after `delay`.
    pub fn set_delay(&self, delay: Duration) {
        std::fs::write(self.dir.join(".delay_ms"), delay.as_millis().to_string()).expect("write the sink's delay");
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, raw, in arrival order.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .expect("read the sink folder")
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .collect();
        files.sort();
        files.iter().map(|path| std::fs::read_to_string(path).expect("read a received message")).collect()
    }

    /// The messages received once there are at least `count`, or when `timeout` has passed.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count || Instant::now() >= deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}
