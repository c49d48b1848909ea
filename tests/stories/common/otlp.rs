//! A real OTLP/gRPC trace receiver for stories: Python's grpcio serving the
//! collector's TraceService from the official `opentelemetry-proto` package,
//! writing every span it receives as one JSON line.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const SCRIPT: &str = r#"
import json, sys, threading
from concurrent import futures
import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

out = open(sys.argv[1], "a", buffering=1)
lock = threading.Lock()

def value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)

def attributes(kvs):
    return {kv.key: value(kv.value) for kv in kvs}

class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        with lock:
            for resource_spans in request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        out.write(json.dumps({
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "name": span.name,
                            "kind": span.kind,
                            "attributes": attributes(span.attributes),
                            "events": [{"name": e.name, "attributes": attributes(e.attributes)} for e in span.events],
                            "status": span.status.code,
                            "resource": resource,
                        }) + "\n")
        return trace_service_pb2.ExportTraceServiceResponse()

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(), server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print("ready", port, flush=True)
server.wait_for_termination()
"#;

/// One span as the receiver got it.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    pub kind: i32,
    pub attributes: HashMap<String, serde_json::Value>,
    pub events: Vec<serde_json::Value>,
    pub status: i32,
    pub resource: HashMap<String, serde_json::Value>,
}

pub struct OtlpReceiver {
    pub port: u16,
    file: PathBuf,
    child: Child,
}

impl OtlpReceiver {
    pub fn start() -> Self {
        let file = super::scratch_dir("otlp").join("spans.jsonl");
        let mut child = Command::new("python3")
            .args(["-c", SCRIPT, &file.display().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (grpcio and opentelemetry-proto installed by .ci/run)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("receiver output");
        let port = line
            .strip_prefix("ready ")
            .and_then(|port| port.trim().parse().ok())
            .unwrap_or_else(|| panic!("the OTLP receiver did not start: {line:?}"));
        Self { port, file, child }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).expect("a span line")).collect()
    }

    /// The raw export, for scanning for secrets.
    pub fn raw(&self) -> String {
        std::fs::read_to_string(&self.file).unwrap_or_default()
    }

    /// Waits until a span satisfies `wanted`.
    pub fn wait_for(&self, what: &str, wanted: impl Fn(&ReceivedSpan) -> bool) -> ReceivedSpan {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(span) = self.spans().into_iter().find(|span| wanted(span)) {
                return span;
            }
            assert!(Instant::now() < deadline, "no span {what} arrived; got {:#?}", self.spans());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
