//! What ships to production, checked without a cluster: the Helm chart lints,
//! renders and validates against the Kubernetes 1.33 schemas, with default and
//! production values; the rendered manifests keep the pods locked down and
//! probed the right way and never inline a secret; the configuration the chart
//! hands the binary is one it accepts (the same as docs/production/identity.toml);
//! and the Dockerfile builds the right thing, statically (no Docker engine here).
//!
//! Needs `helm` and Python's `kubernetes_validate` (installed by .ci/run): the
//! chart tests skip with a notice when they are missing, and fail under `CI`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use figment::providers::Format;
use identity::config::Config;
use serde_json::Value;

const KUBERNETES_VERSION: &str = "1.33.0";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    repo().join("helm/identity")
}

fn production_values() -> PathBuf {
    repo().join("docs/production/values.yaml")
}

fn production_toml() -> PathBuf {
    repo().join("docs/production/identity.toml")
}

// ---------------------------------------------------------------------------
// Tools

/// True when helm and the schema validator are installed (see `common::tools`).
fn chart_tools() -> bool {
    crate::common::tools::require(&[crate::common::tools::Tool::Helm, crate::common::tools::Tool::KubernetesValidate])
}

fn succeed(what: &str, output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

fn helm(args: &[&str]) -> Output {
    Command::new("helm").args(args).output().expect("run helm")
}

fn chart_args<'a>(command: &'a str, chart: &'a str, values: &'a [&'a str]) -> Vec<&'a str> {
    let mut args = vec![command];
    if command == "template" {
        args.extend(["identity", "--namespace", "identity"]);
    }
    args.extend([chart, "--kube-version", KUBERNETES_VERSION]);
    args.extend(values);
    args
}

fn lint(values: &[&str]) {
    let chart = chart();
    let mut args = chart_args("lint", chart.to_str().expect("utf-8 path"), values);
    args.push("--strict");
    succeed("helm lint", helm(&args));
}

/// `helm template`'s output as YAML, and as one JSON value per document.
fn render(values: &[&str]) -> (String, Vec<Value>) {
    let yaml = render_yaml(values);
    let documents = yaml_documents(&yaml);
    (yaml, documents)
}

fn render_yaml(values: &[&str]) -> String {
    let chart = chart();
    succeed("helm template", helm(&chart_args("template", chart.to_str().expect("utf-8 path"), values)))
}

/// The rendering error of values the chart must refuse.
fn refusal(values: &[&str]) -> String {
    let chart = chart();
    let output = helm(&chart_args("template", chart.to_str().expect("utf-8 path"), values));
    assert!(!output.status.success(), "helm template accepted {values:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// PyYAML (a dependency of kubernetes-validate) reads the YAML, so the test
/// needs no YAML crate of its own.
fn yaml_documents(yaml: &str) -> Vec<Value> {
    let script = "import json, sys, yaml\njson.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), yaml.as_bytes()).expect("write YAML");
    let json = succeed("YAML to JSON", child.wait_with_output().expect("python3 output"));
    match serde_json::from_str(&json).expect("JSON") {
        Value::Array(documents) => documents,
        other => panic!("not a list of documents: {other}"),
    }
}

/// kubernetes-validate only warns (and exits 0) on a kind it has no schema for,
/// such as a removed API version: every document must be reported as passed.
/// CRDs (the ServiceMonitor, the Gateway API routes) have no schema there and
/// are checked in Rust.
fn validate_against_kubernetes(documents: &[Value]) {
    let core: Vec<&Value> = documents.iter().filter(|d| !is_custom_resource(d)).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("rendered.yaml");
    let stream: Vec<String> = core.iter().map(|d| d.to_string()).collect();
    std::fs::write(&file, stream.join("\n---\n")).expect("write manifests");
    let output = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", KUBERNETES_VERSION])
        .arg(&file)
        .output()
        .expect("run kubernetes-validate");
    let report = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kubernetes-validate refused the manifests:\n{report}");
    let passed = report.lines().filter(|l| l.starts_with("INFO") && l.contains(" passed for resource ")).count();
    assert_eq!(passed, core.len(), "every manifest must be validated against a 1.33 schema:\n{report}");
    assert!(!report.contains("WARN") && !report.contains("ERROR"), "{report}");
}

fn is_custom_resource(document: &Value) -> bool {
    let api = str_at(document, "/apiVersion");
    api.starts_with("monitoring.coreos.com/") || api.starts_with("gateway.networking.k8s.io/")
}

// ---------------------------------------------------------------------------
// Reading manifests

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn kinds(documents: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = documents.iter().map(|d| str_at(d, "/kind").to_owned()).collect();
    kinds.sort();
    kinds
}

fn container<'a>(pod_spec: &'a Value, name: &str) -> &'a Value {
    pod_spec["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"].as_array()?.iter().find(|e| e["name"] == name)
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a str {
    env(container, name).and_then(|e| e["value"].as_str()).unwrap_or_else(|| panic!("{name} has no literal value"))
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// Whole cores, rounded up as the downward API rounds `limits.cpu` with divisor 1.
fn cpu_cores(quantity: &Value) -> u64 {
    let text = match quantity {
        Value::Number(n) => n.to_string(),
        other => other.as_str().unwrap_or_else(|| panic!("cpu quantity {other}")).to_owned(),
    };
    let cores = match text.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().expect("millicores") / 1000.0,
        None => text.parse::<f64>().expect("cores"),
    };
    cores.ceil() as u64
}

fn memory_mib(quantity: &Value) -> u64 {
    let text = quantity.as_str().unwrap_or_else(|| panic!("memory quantity {quantity}"));
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor = match unit {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "M" => 1e6,
        "G" => 1e9,
        other => panic!("memory unit {other}"),
    };
    (number.parse::<f64>().expect("memory number") * factor / (1024.0 * 1024.0)) as u64
}

// ---------------------------------------------------------------------------
// What every rendering must hold

/// The pods run as nobody, cannot write their image or gain privileges, see no
/// Kubernetes credentials, and say what they need.
fn assert_locked_down(what: &str, pod_spec: &Value) {
    assert_eq!(pod_spec["automountServiceAccountToken"], false, "{what}: service account token mounted");
    assert_eq!(pod_spec["enableServiceLinks"], false, "{what}: service links would inject IDENTITY_* variables");
    assert_eq!(pod_spec["securityContext"]["runAsNonRoot"], true, "{what}");
    assert_eq!(str_at(pod_spec, "/securityContext/seccompProfile/type"), "RuntimeDefault", "{what}");
    assert!(pod_spec.get("hostNetwork").is_none() && pod_spec.get("hostPID").is_none(), "{what}");
    let containers = pod_spec["containers"].as_array().expect("containers");
    assert!(pod_spec.get("initContainers").is_none(), "{what}: init containers escape these checks");
    for c in containers {
        let name = str_at(c, "/name");
        let security = &c["securityContext"];
        assert_eq!(security["runAsNonRoot"], true, "{what}/{name}");
        assert_eq!(security["readOnlyRootFilesystem"], true, "{what}/{name}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{what}/{name}");
        assert_ne!(security["privileged"], true, "{what}/{name}");
        assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]), "{what}/{name}");
        assert!(security["capabilities"].get("add").is_none(), "{what}/{name}");
        assert_eq!(str_at(security, "/seccompProfile/type"), "RuntimeDefault", "{what}/{name}");
        for bound in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(!c["resources"][bound][resource].is_null(), "{what}/{name}: resources.{bound}.{resource}");
            }
        }
    }
}

/// Secrets come from Secret references only: no Secret object, no literal
/// value of a secret variable, no password in any URL, key material as volumes.
fn assert_no_inlined_secret(yaml: &str, documents: &[Value]) {
    assert!(documents.iter().all(|d| d["kind"] != "Secret"), "the chart must not create Secrets");
    for secret_var in
        ["IDENTITY_DATABASE_URL", "IDENTITY_SMTP_URL", "IDENTITY_CAPTCHA__HMAC_KEY", "OTEL_EXPORTER_OTLP_HEADERS"]
    {
        for document in documents {
            let Some(spec) = pod_spec(document) else { continue };
            for c in spec["containers"].as_array().into_iter().flatten() {
                if let Some(var) = env(c, secret_var) {
                    assert!(var.get("value").is_none(), "{secret_var} inlined in {}", document["metadata"]["name"]);
                    assert!(
                        var.pointer("/valueFrom/secretKeyRef/name").is_some(),
                        "{secret_var} must come from a Secret"
                    );
                }
            }
        }
    }
    for line in yaml.lines() {
        let credentials_in_url = line
            .split("://")
            .skip(1)
            .any(|rest| rest.split(['/', '?', '"', ' ']).next().unwrap_or_default().contains('@'));
        assert!(!credentials_in_url, "a URL with credentials is inlined: {line}");
        assert!(!line.contains("PRIVATE KEY"), "key material inlined: {line}");
    }
}

fn pod_spec(document: &Value) -> Option<&Value> {
    match document["kind"].as_str() {
        Some("Pod") => document.get("spec"),
        _ => document.pointer("/spec/template/spec"),
    }
}

/// The serving Deployment: native gRPC probes on the right health names,
/// migrations left to the Job, workers and memory sized together, a drain
/// that the kubelet waits for.
fn assert_deployment(documents: &[Value]) -> &Value {
    let deployment = find(documents, "Deployment", "identity");
    let spec = pod_spec(deployment).expect("pod spec");
    assert_locked_down("Deployment", spec);
    let server = container(spec, "identity");
    assert_eq!(server["args"], serde_json::json!(["serve", "--no-migrate"]));

    // The kubelet's probes speak no TLS: with gRPC TLS they ask the health-only port.
    let ports = server["ports"].as_array().expect("ports");
    let named = |name: &str| ports.iter().find(|p| p["name"] == name).map(|p| p["containerPort"].clone());
    let probe_port = named("health").or_else(|| named("grpc")).expect("grpc port");
    let grpc_port = named("grpc").expect("grpc port");
    let probe_service = |probe: &str| {
        let probe = &server[probe];
        assert!(probe.get("httpGet").is_none() && probe.get("exec").is_none() && probe.get("tcpSocket").is_none());
        assert_eq!(probe["grpc"]["port"], probe_port, "{probe}");
        probe["grpc"].get("service").and_then(Value::as_str).unwrap_or_default().to_owned()
    };
    // Readiness follows the database; liveness must not, or an outage restarts every pod.
    assert_eq!(probe_service("readinessProbe"), "");
    assert_eq!(probe_service("livenessProbe"), identity::server::LIVENESS_SERVICE);
    assert_eq!(probe_service("startupProbe"), identity::server::LIVENESS_SERVICE);

    assert_eq!(env_value(server, "IDENTITY_GRPC_ADDR"), format!("0.0.0.0:{grpc_port}"));
    assert_eq!(env_value(server, "IDENTITY_LOG_FORMAT"), "json");
    assert_eq!(env_value(server, "IDENTITY_METRICS_ADDR"), "0.0.0.0:9090");
    assert!(env_value(server, "IDENTITY_PUBLIC_URL").starts_with("http"));

    let grace: u64 = env_value(server, "IDENTITY_SHUTDOWN_GRACE_SECS").parse().expect("grace seconds");
    let pre_stop = server.pointer("/lifecycle/preStop/sleep/seconds").and_then(Value::as_u64).unwrap_or(0);
    let termination = spec["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds");
    assert!(termination > pre_stop + grace + 5, "{termination} s leaves no time to drain {grace} s after {pre_stop} s");

    let workers = env(server, "IDENTITY_HASHING__WORKERS").expect("IDENTITY_HASHING__WORKERS");
    let field = &workers["valueFrom"]["resourceFieldRef"];
    assert_eq!((str_at(field, "/resource"), str_at(field, "/containerName")), ("limits.cpu", "identity"));
    assert_eq!(str_at(field, "/divisor"), "1");
    let argon2_mib = env_value(server, "IDENTITY_ARGON2__MEMORY_KIB").parse::<u64>().expect("KiB").div_ceil(1024);
    let cores = cpu_cores(&server["resources"]["limits"]["cpu"]);
    let memory = memory_mib(&server["resources"]["limits"]["memory"]);
    // Two lanes of workers: logins and batch resets (src/crypto/hash_workers.rs).
    assert!(memory >= 128 + 2 * cores * argon2_mib, "{memory} MiB for 2 x {cores} workers of {argon2_mib} MiB");

    for (name, value) in MALLOC_SETTINGS {
        assert_eq!(env_value(server, name), value, "glibc's malloc keeps freed hash buffers without it");
    }

    let checksum = str_at(deployment, "/spec/template/metadata/annotations/checksum~1config");
    assert!(checksum.len() == 64 && checksum.bytes().all(|b| b.is_ascii_hexdigit()), "checksum/config: {checksum}");
    deployment
}

/// glibc's malloc settings the image and the chart both set (docs/operations.md, "Sizing").
const MALLOC_SETTINGS: [(&str, &str); 2] = [("MALLOC_ARENA_MAX", "2"), ("MALLOC_MMAP_THRESHOLD_", "1048576")];

/// The hook Job migrates before any new pod starts, and only it.
fn assert_migration_job(documents: &[Value]) {
    let job = find(documents, "Job", "identity-migrate");
    let annotations = &job["metadata"]["annotations"];
    let hooks: Vec<&str> = str_at(annotations, "/helm.sh~1hook").split(',').map(str::trim).collect();
    assert!(hooks.contains(&"pre-install") && hooks.contains(&"pre-upgrade"), "{hooks:?}");
    assert!(str_at(annotations, "/helm.sh~1hook-delete-policy").contains("before-hook-creation"));
    let spec = pod_spec(job).expect("pod spec");
    assert_locked_down("migration Job", spec);
    assert_eq!(spec["restartPolicy"], "Never");
    let migrate = container(spec, "migrate");
    assert_eq!(migrate["args"], serde_json::json!(["migrate", "up"]));
    assert!(env(migrate, "IDENTITY_DATABASE_URL").is_some());
    // A first install has no ConfigMap yet when the hook runs.
    let mounts = migrate["volumeMounts"].as_array().into_iter().flatten();
    assert!(mounts.into_iter().all(|m| m["name"] != "config") && env(migrate, "IDENTITY_CONFIG").is_none());
}

/// Services, budget and spread select the serving pods, never the Job's.
fn assert_selectors(documents: &[Value]) {
    let deployment = find(documents, "Deployment", "identity");
    let pods = &deployment["spec"]["template"]["metadata"]["labels"];
    let job_pods = &find(documents, "Job", "identity-migrate")["spec"]["template"]["metadata"]["labels"];
    for label in ["name", "instance", "version", "component", "part-of", "managed-by"] {
        let key = format!("app.kubernetes.io/{label}");
        for document in documents {
            assert!(document["metadata"]["labels"].get(&key).is_some(), "{key} on {}", document["kind"]);
        }
    }
    let server = container(pod_spec(deployment).expect("pod spec"), "identity");
    let port_names: Vec<&Value> = server["ports"].as_array().expect("ports").iter().map(|p| &p["name"]).collect();
    for service in documents.iter().filter(|d| d["kind"] == "Service") {
        assert!(labels_match(&service["spec"]["selector"], pods), "{}", service["metadata"]["name"]);
        assert!(!labels_match(&service["spec"]["selector"], job_pods), "{}", service["metadata"]["name"]);
        for port in service["spec"]["ports"].as_array().expect("ports") {
            assert!(port_names.contains(&&port["targetPort"]), "Service port {port} targets no container port");
        }
    }
    let pdb = find(documents, "PodDisruptionBudget", "identity");
    assert!(labels_match(&pdb["spec"]["selector"]["matchLabels"], pods));
    assert!(!labels_match(&pdb["spec"]["selector"]["matchLabels"], job_pods));
    let spread = pod_spec(deployment).expect("pod spec")["topologySpreadConstraints"].as_array().expect("spread");
    assert!(spread.iter().any(
        |c| c["topologyKey"] == "kubernetes.io/hostname" && labels_match(&c["labelSelector"]["matchLabels"], pods)
    ));
}

/// `helm test` asks the Service for the whole service's health over gRPC, from
/// a pod as locked down as the others.
fn assert_test_pod(documents: &[Value]) {
    let pod = find(documents, "Pod", "identity-test-grpc-health");
    assert_eq!(str_at(pod, "/metadata/annotations/helm.sh~1hook"), "test");
    let spec = pod_spec(pod).expect("pod spec");
    assert_locked_down("helm test Pod", spec);
    assert_eq!(spec["restartPolicy"], "Never");
    let probe = container(spec, "grpc-health");
    let args: Vec<&str> = probe["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    assert!(args.contains(&"-addr=identity.identity.svc:50051"), "{args:?}");
    assert!(args.contains(&"-service="), "readiness (\"\"), not liveness: {args:?}");
    let service = find(documents, "Service", "identity");
    let pods = &pod["metadata"]["labels"];
    assert!(!labels_match(&service["spec"]["selector"], pods), "the Service must not select the test pod");
}

fn assert_rendering(yaml: &str, documents: &[Value]) {
    validate_against_kubernetes(documents);
    assert_deployment(documents);
    assert_migration_job(documents);
    assert_test_pod(documents);
    assert_selectors(documents);
    assert_no_inlined_secret(yaml, documents);
}

// ---------------------------------------------------------------------------
// The configuration the chart hands the binary

/// Stand-ins for what the Secrets hold, as a real deployment's would look.
fn secret_stand_in(var: &str) -> &'static str {
    match var {
        "IDENTITY_DATABASE_URL" => {
            "postgres://identity:pw@db.internal:5432/identity?sslmode=verify-full&sslrootcert=/etc/identity/db-ca/ca.crt"
        }
        "IDENTITY_SMTP_URL" => "smtp://identity:pw@mail.internal:587?tls=starttls",
        "IDENTITY_CAPTCHA__HMAC_KEY" => "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=",
        "IDENTITY_GATEWAY__SESSION_KEYS" => "3q2+796tvu/erb7v3q2+796tvu/erb7v3q2+796tvu8=",
        other => panic!("no stand-in for the secret variable {other}"),
    }
}

/// Loads a configuration as `identity` would: defaults, then the file, then
/// these variables. Jail keeps the variables to this closure.
#[allow(clippy::result_large_err)] // figment's Jail closures return figment::Error
fn load_config(file: &Path, vars: &BTreeMap<String, String>) -> Result<Config, String> {
    let mut loaded = None;
    figment::Jail::expect_with(|jail| {
        for (name, value) in vars {
            jail.set_env(name, value);
        }
        loaded = Some(Config::load(Some(file)).map_err(|e| e.to_string()));
        Ok(())
    });
    loaded.expect("the Jail ran")
}

/// The server container's environment and configuration file, as the pod
/// would give them to `identity serve`.
fn config_of_rendering(documents: &[Value], dir: &Path) -> Config {
    let file = dir.join("identity.toml");
    let toml = str_at(find(documents, "ConfigMap", "identity"), "/data/identity.toml");
    std::fs::write(&file, toml).expect("write the ConfigMap's file");
    let deployment = find(documents, "Deployment", "identity");
    let server = container(pod_spec(deployment).expect("pod spec"), "identity");
    let mut vars = BTreeMap::new();
    for var in server["env"].as_array().expect("env") {
        let name = str_at(var, "/name");
        if !name.starts_with("IDENTITY_") || name == "IDENTITY_CONFIG" {
            continue;
        }
        let value = if let Some(value) = var["value"].as_str() {
            value.to_owned()
        } else if var.pointer("/valueFrom/secretKeyRef").is_some() {
            secret_stand_in(name).to_owned()
        } else if str_at(var, "/valueFrom/resourceFieldRef/resource") == "limits.cpu" {
            cpu_cores(&server["resources"]["limits"]["cpu"]).to_string()
        } else {
            panic!("no way to resolve {var}");
        };
        vars.insert(name.to_owned(), value);
    }
    assert_eq!(env_value(server, "IDENTITY_CONFIG"), "/etc/identity/config/identity.toml");
    let mut config = load_config(&file, &vars).unwrap_or_else(|e| panic!("the chart's configuration is refused: {e}"));
    // What `serve --no-migrate` does.
    if server["args"].as_array().is_some_and(|args| args.iter().any(|a| a == "--no-migrate")) {
        config.migrate_on_start = false;
    }
    config
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn the_chart_with_default_values_lints_renders_and_validates() {
    if !chart_tools() {
        return;
    }
    lint(&[]);
    let (yaml, documents) = render(&[]);
    assert_eq!(
        kinds(&documents),
        ["ConfigMap", "Deployment", "Job", "Pod", "PodDisruptionBudget", "Service", "ServiceAccount"]
    );
    assert_rendering(&yaml, &documents);
    let deployment = find(&documents, "Deployment", "identity");
    assert_eq!(deployment["spec"]["replicas"], 1);
    // The chart's own account, without a token; the pre-install Job cannot use it yet.
    let account = find(&documents, "ServiceAccount", "identity");
    assert_eq!(account["automountServiceAccountToken"], false);
    assert_eq!(pod_spec(deployment).expect("pod spec")["serviceAccountName"], "identity");
    let job = pod_spec(find(&documents, "Job", "identity-migrate")).expect("pod spec");
    assert!(job.get("serviceAccountName").is_none(), "{job}");
    // Without SMTP the outbox is an emptyDir: the root filesystem is read-only.
    let server = container(pod_spec(deployment).expect("pod spec"), "identity");
    let outbox = env_value(server, "IDENTITY_OUTBOX_DIR");
    let mounts = server["volumeMounts"].as_array().expect("mounts");
    assert!(mounts.iter().any(|m| m["mountPath"] == outbox && m["readOnly"] != true), "{outbox} is not writable");

    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_of_rendering(&documents, dir.path());
    assert!(config.database_url.starts_with("postgres://"));
    assert!(!config.bootstrap.enabled, "the first-start link must not land in the pod's logs");
    assert!(!config.migrate_on_start);
}

#[test]
fn the_production_values_render_the_documented_deployment() {
    if !chart_tools() {
        return;
    }
    let values = production_values();
    let values = ["--values", values.to_str().expect("utf-8 path")];
    lint(&values);
    let (yaml, documents) = render(&values);
    assert_eq!(
        kinds(&documents),
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Job",
            "NetworkPolicy",
            "Pod",
            "PodDisruptionBudget",
            "Service",
            "Service",
            "ServiceAccount",
            "ServiceMonitor"
        ]
    );
    assert_rendering(&yaml, &documents);

    let deployment = find(&documents, "Deployment", "identity");
    assert!(deployment["spec"].get("replicas").is_none(), "the HPA owns the replica count");
    let hpa = find(&documents, "HorizontalPodAutoscaler", "identity");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "identity");
    assert!(hpa["spec"]["minReplicas"].as_u64() >= Some(2));
    assert_eq!(str_at(hpa, "/spec/metrics/0/resource/name"), "cpu");

    let spec = pod_spec(deployment).expect("pod spec");
    let server = container(spec, "identity");
    assert!(env_value(server, "IDENTITY_PUBLIC_URL").starts_with("https://"));
    assert!(env_value(server, "OTEL_EXPORTER_OTLP_ENDPOINT").starts_with("http"));
    assert!(env_value(server, "OTEL_RESOURCE_ATTRIBUTES").contains("k8s.pod.name=$(K8S_POD_NAME)"));
    // TLS and key files come from Secret volumes.
    for (var, volume) in [("IDENTITY_HTTP_TLS_CERT", "tls"), ("IDENTITY_HTTP_TLS_KEY", "tls")] {
        let path = env_value(server, var);
        let mount =
            server["volumeMounts"].as_array().expect("mounts").iter().find(|m| m["name"] == volume).expect("mount");
        assert!(path.starts_with(str_at(mount, "/mountPath")), "{var}={path}");
        let source = spec["volumes"].as_array().expect("volumes").iter().find(|v| v["name"] == volume).expect("volume");
        assert!(source.pointer("/secret/secretName").is_some(), "{volume} must be a Secret volume");
    }
    assert!(env(server, "IDENTITY_OUTBOX_DIR").is_none(), "SMTP is configured");

    // The ServiceMonitor has no schema in kubernetes-validate: its shape is checked here.
    let monitor = find(&documents, "ServiceMonitor", "identity");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let service = find(&documents, "Service", "identity");
    assert!(labels_match(&monitor["spec"]["selector"]["matchLabels"], &service["metadata"]["labels"]));
    assert_eq!(monitor["spec"]["namespaceSelector"]["matchNames"], serde_json::json!(["identity"]));
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!((str_at(endpoint, "/port"), str_at(endpoint, "/path")), ("metrics", "/metrics"));
    let ports = service["spec"]["ports"].as_array().expect("ports");
    assert!(ports.iter().any(|p| p["name"] == "metrics" && p["port"] == 9090));

    // The metrics port is open to the scrapers only; egress is limited.
    let policy = find(&documents, "NetworkPolicy", "identity");
    assert!(labels_match(&policy["spec"]["podSelector"]["matchLabels"], &spec_labels(deployment)));
    let rules = policy["spec"]["ingress"].as_array().expect("ingress rules");
    let metrics_rule = rules.iter().find(|r| r["ports"][0]["port"] == "metrics").expect("metrics rule");
    assert!(metrics_rule["from"].as_array().is_some_and(|from| !from.is_empty()));
    assert!(policy["spec"]["policyTypes"].as_array().expect("types").iter().any(|t| t == "Egress"));

    let gateway = find(&documents, "Service", "identity-gateway");
    assert_eq!(gateway["spec"]["externalTrafficPolicy"], "Local", "throttles need the client's address");
    assert_eq!(gateway["spec"]["ports"].as_array().map(Vec::len), Some(1), "only the gateway is public");
}

fn spec_labels(deployment: &Value) -> Value {
    deployment["spec"]["template"]["metadata"]["labels"].clone()
}

#[test]
fn the_production_toml_is_accepted_and_matches_the_chart() {
    let toml = production_toml();
    // On its own (secrets absent), the file describes a production deployment.
    let alone = load_config(&toml, &BTreeMap::new()).unwrap_or_else(|e| panic!("{}: {e}", toml.display()));
    assert!(alone.database_url.starts_with("postgres://"));
    assert!(alone.public_url.starts_with("https://"));
    assert!(alone.smtp_url.is_some() && alone.http_tls_cert.is_some() && alone.http_tls_key.is_some());
    assert!(alone.metrics_addr.is_some() && !alone.migrate_on_start && !alone.bootstrap.enabled);
    assert_eq!(alone.log_format, identity::config::LogFormat::Json);
    assert!(alone.trusted_proxies.contains(&"127.0.0.1".parse().expect("ip")), "the gateway calls over loopback");

    if !chart_tools() {
        return;
    }
    let values = production_values();
    let (_, documents) = render(&["--values", values.to_str().expect("utf-8 path")]);
    let dir = tempfile::tempdir().expect("temp dir");
    let from_chart = config_of_rendering(&documents, dir.path());
    let secrets: BTreeMap<String, String> =
        ["IDENTITY_DATABASE_URL", "IDENTITY_SMTP_URL", "IDENTITY_CAPTCHA__HMAC_KEY", "IDENTITY_GATEWAY__SESSION_KEYS"]
            .into_iter()
            .map(|var| (var.to_owned(), secret_stand_in(var).to_owned()))
            .collect();
    let from_file = load_config(&toml, &secrets).expect("the production TOML with its secrets");
    assert_eq!(from_chart, from_file, "docs/production/values.yaml and identity.toml describe different deployments");
}

#[test]
fn a_configuration_change_rolls_the_pods() {
    if !chart_tools() {
        return;
    }
    let checksum = |values: &[&str]| {
        let yaml = render_yaml(values);
        let mut annotations = yaml.lines().filter_map(|l| l.trim().strip_prefix("checksum/config: "));
        let checksum = annotations.next().expect("a checksum/config annotation").to_owned();
        assert!(annotations.next().is_none(), "one pod template only");
        checksum
    };
    let before = checksum(&[]);
    assert_eq!(before, checksum(&[]));
    assert_ne!(before, checksum(&["--set-string", "config=log_filter = \"debug\""]));
}

#[test]
fn the_chart_refuses_values_that_would_break_the_service() {
    if !chart_tools() {
        return;
    }
    let error = refusal(&["--set", "resources.limits.cpu=8"]);
    assert!(error.contains("below the memory model") && error.contains("8 hashing workers"), "{error}");
    let error = refusal(&["--set", "resources.limits.cpu=null"]);
    assert!(error.contains("resources.limits.cpu is required"), "{error}");
    let error = refusal(&["--set", "replicaCount=2"]);
    assert!(error.contains("captcha.existingSecret"), "{error}");
    let error = refusal(&["--set", "replicaCount=2", "--set", "captcha.existingSecret=c"]);
    assert!(error.contains("sessionKeys.existingSecret"), "{error}");
    let error = refusal(&["--set-string", "config=public_url = \"https://elsewhere\""]);
    assert!(error.contains("`public_url`"), "{error}");
    let error = refusal(&["--set", "dataKeys.existingSecret="]);
    assert!(error.contains("dataKeys.existingSecret"), "the data keys never default to the database: {error}");
    let error = refusal(&["--set-string", "config=[data_keys]\ndir = \"/tmp\""]);
    assert!(error.contains("`data_keys`"), "{error}");
    let error = refusal(&["--set", "terminationGracePeriodSeconds=20"]);
    assert!(error.contains("terminationGracePeriodSeconds"), "{error}");
    let error = refusal(&["--set", "replicas=3"]);
    assert!(error.contains("replicas"), "the values schema refuses unknown keys: {error}");
}

#[test]
fn the_optional_alert_rules_and_dashboard_render_the_files_the_tests_check() {
    if !chart_tools() {
        return;
    }
    let values = ["--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.grafanaDashboard.enabled=true"];
    lint(&values);
    let (yaml, documents) = render(&values);
    assert_eq!(
        kinds(&documents),
        [
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "Job",
            "Pod",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Service",
            "ServiceAccount"
        ]
    );
    assert_rendering(&yaml, &documents);
    let files = chart().join("files");

    // The PrometheusRule has no schema in kubernetes-validate: its shape is checked here,
    // and its rules are files/alerts.yaml unchanged (the file telemetry:: checks against /metrics).
    let rule = find(&documents, "PrometheusRule", "identity");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    let alerts = std::fs::read_to_string(files.join("alerts.yaml")).expect("alerts.yaml");
    assert_eq!(rule["spec"], yaml_documents(&alerts)[0], "the rules are files/alerts.yaml");
    let groups = rule["spec"]["groups"].as_array().expect("rule groups");
    let rules: Vec<&Value> = groups.iter().flat_map(|g| g["rules"].as_array().expect("rules")).collect();
    assert!(rules.len() >= 10, "{} rules", rules.len());
    for rule in &rules {
        let name = str_at(rule, "/alert");
        assert!(name.starts_with("Identity"), "{rule}");
        assert!(!str_at(rule, "/expr").trim().is_empty(), "{name} has an expression");
        assert!(["warning", "critical"].contains(&str_at(rule, "/labels/severity")), "{name} has a severity");
        assert!(!str_at(rule, "/annotations/summary").is_empty(), "{name} has a summary");
    }

    let dashboard = find(&documents, "ConfigMap", "identity-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1", "the Grafana sidecar's label");
    let shipped: Value =
        serde_json::from_str(&std::fs::read_to_string(files.join("dashboard.json")).expect("dashboard.json"))
            .expect("dashboard.json is JSON");
    let rendered: Value = serde_json::from_str(str_at(dashboard, "/data/identity.json")).expect("rendered JSON");
    assert_eq!(rendered, shipped);
    let panels = shipped["panels"].as_array().expect("panels");
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty() && targets.iter().all(|t| !str_at(t, "/expr").is_empty()), "{panel}");
    }

    let error = refusal(&["--set", "metrics.enabled=false", "--set", "metrics.prometheusRule.enabled=true"]);
    assert!(error.contains("metrics.prometheusRule.enabled needs metrics.enabled"), "{error}");
}

/// Values of a cluster with an ingress controller, a Gateway API
/// implementation, OpenShift's restricted SCC and an account of its own.
const ORDINARY_CLUSTER_VALUES: &str = r#"
ingress:
  enabled: true
  className: nginx
  annotations:
    nginx.ingress.kubernetes.io/proxy-body-size: 1m
  hosts: [id.example.com]
  tls: [{secretName: id-example-com-tls, hosts: [id.example.com]}]
gatewayApi:
  httpRoute:
    enabled: true
    parentRefs: [{name: public, namespace: gateways, sectionName: https}]
    hostnames: [id.example.com]
  grpcRoute:
    enabled: true
    parentRefs: [{name: public, namespace: gateways, sectionName: grpc}]
    hostnames: [grpc.id.example.com]
serviceAccount:
  create: false
  name: identity-runner
openshift: true
grpcTls:
  existingSecret: identity-grpc-tls
  requireClientCert: true
"#;

#[test]
fn the_chart_fits_ordinary_clusters_with_every_option_on() {
    if !chart_tools() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, ORDINARY_CLUSTER_VALUES).expect("write values");
    let values = ["--values", file.to_str().expect("utf-8 path")];
    lint(&values);
    let (yaml, documents) = render(&values);
    assert_eq!(
        kinds(&documents),
        [
            "ConfigMap",
            "Deployment",
            "GRPCRoute",
            "HTTPRoute",
            "Ingress",
            "Job",
            "Pod",
            "PodDisruptionBudget",
            "Service"
        ]
    );
    assert_rendering(&yaml, &documents);
    let service = find(&documents, "Service", "identity");
    let port = |name: &str| {
        service["spec"]["ports"].as_array().expect("ports").iter().find(|p| p["name"] == name).expect("port")["port"]
            .clone()
    };

    // The Ingress sends every path of its host to the gateway port.
    let ingress = find(&documents, "Ingress", "identity");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(str_at(ingress, "/spec/rules/0/host"), "id.example.com");
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0];
    assert_eq!((str_at(backend, "/path"), str_at(backend, "/pathType")), ("/", "Prefix"));
    assert_eq!(str_at(backend, "/backend/service/name"), "identity");
    assert_eq!(str_at(backend, "/backend/service/port/name"), "http");
    assert_eq!(str_at(ingress, "/spec/tls/0/secretName"), "id-example-com-tls");

    // The routes have no schema in kubernetes-validate: their shape is checked here.
    for (kind, port_name, section, host) in
        [("HTTPRoute", "http", "https", "id.example.com"), ("GRPCRoute", "grpc", "grpc", "grpc.id.example.com")]
    {
        let route = find(&documents, kind, "identity");
        assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1", "{kind}");
        let parent = &route["spec"]["parentRefs"][0];
        assert_eq!((str_at(parent, "/name"), str_at(parent, "/namespace")), ("public", "gateways"), "{kind}");
        assert_eq!(str_at(parent, "/sectionName"), section, "{kind}");
        assert_eq!(route["spec"]["hostnames"], serde_json::json!([host]), "{kind}");
        let rules = route["spec"]["rules"].as_array().expect("rules");
        assert_eq!(rules.len(), 1, "{kind}");
        let backends = rules[0]["backendRefs"].as_array().expect("backendRefs");
        assert_eq!(backends.len(), 1, "{kind}");
        assert_eq!(str_at(&backends[0], "/name"), "identity", "{kind}");
        assert_eq!(backends[0]["port"], port(port_name), "{kind} targets the {port_name} port");
        assert!(route["metadata"]["labels"].get("app.kubernetes.io/instance").is_some(), "{kind}");
    }
    // gRPC over mutual TLS: the kubelet's probes (no TLS) ask the health-only
    // port, the in-process gateway and `helm test` present the certificate.
    let deployment = find(&documents, "Deployment", "identity");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["grpc"]["port"], 50052, "{probe}");
    }
    let env: BTreeMap<&str, &str> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    assert_eq!(env.get("IDENTITY_GRPC__HEALTH_ADDR"), Some(&"0.0.0.0:50052"));
    assert_eq!(env.get("IDENTITY_GRPC__TLS_CLIENT_CA"), Some(&"/etc/identity/grpc-tls/ca.crt"));
    assert_eq!(env.get("IDENTITY_GATEWAY__GRPC_CLIENT_CERT"), Some(&"/etc/identity/grpc-tls/tls.crt"));
    assert_eq!(env.get("IDENTITY_GATEWAY__GRPC_TLS_DOMAIN"), Some(&"identity"));
    assert_eq!(env.get("IDENTITY_GRPC__MAX_CONNECTION_AGE_SECS"), Some(&"300"));
    let test_pod = find(&documents, "Pod", "identity-test-grpc-health");
    let args = test_pod["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("-tls-ca-cert=") && args.contains("-tls-client-cert="), "{args}");

    let http = find(&documents, "HTTPRoute", "identity");
    assert_eq!(str_at(http, "/spec/rules/0/matches/0/path/type"), "PathPrefix");
    assert_eq!(str_at(http, "/spec/rules/0/matches/0/path/value"), "/");

    // OpenShift assigns the user and group: no pod names them, and every other
    // restriction stays (assert_locked_down above).
    for document in &documents {
        let Some(spec) = pod_spec(document) else { continue };
        let contexts = std::iter::once(&spec["securityContext"])
            .chain(spec["containers"].as_array().expect("containers").iter().map(|c| &c["securityContext"]));
        for context in contexts {
            for key in ["runAsUser", "runAsGroup", "fsGroup"] {
                assert!(context.get(key).is_none(), "{key} in {}: {context}", document["kind"]);
            }
        }
        // An existing account: every pod, the pre-install Job included, runs as it.
        assert_eq!(spec["serviceAccountName"], "identity-runner", "{}", document["kind"]);
        assert_eq!(spec["automountServiceAccountToken"], false, "{}", document["kind"]);
    }
}

#[test]
fn security_context_keys_can_be_overridden_or_dropped() {
    if !chart_tools() {
        return;
    }
    let values = [
        "--set",
        "podSecurityContext.runAsUser=null",
        "--set",
        "podSecurityContext.fsGroup=1000",
        "--set",
        "securityContext.runAsUser=null",
    ];
    let (_, documents) = render(&values);
    validate_against_kubernetes(&documents);
    let spec = pod_spec(find(&documents, "Deployment", "identity")).expect("pod spec");
    assert!(spec["securityContext"].get("runAsUser").is_none(), "{}", spec["securityContext"]);
    assert_eq!(spec["securityContext"]["fsGroup"], 1000);
    assert_eq!(spec["securityContext"]["runAsGroup"], 65532, "keys not overridden keep their default");
    let server = container(spec, "identity");
    assert!(server["securityContext"].get("runAsUser").is_none(), "{}", server["securityContext"]);
    assert_locked_down("Deployment", spec);
}

#[test]
fn the_chart_refuses_routes_without_a_gateway() {
    if !chart_tools() {
        return;
    }
    for route in ["httpRoute", "grpcRoute"] {
        let enabled = format!("gatewayApi.{route}.enabled=true");
        let error = refusal(&["--set", &enabled]);
        assert!(error.contains(&format!("gatewayApi.{route}.parentRefs")), "{error}");
    }
    let error = refusal(&["--set", "serviceAccountName=x"]);
    assert!(error.contains("serviceAccountName"), "replaced by serviceAccount.name: {error}");
}

/// The upgrade Job migrates while the previous release still serves: those
/// replicas must stay ready, or every upgrade with a schema step is an outage.
#[tokio::test]
async fn replicas_of_the_previous_release_stay_ready_once_the_next_release_migrated() {
    use sea_orm::ConnectionTrait;
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("identity.db").display());
    let store = identity::store::Store::connect(&url, 2).await.expect("open the database");
    assert!(!store.is_migrated().await.expect("schema status"), "an empty database is behind");
    store.migrate_up().await.expect("migrate");
    assert!(store.is_migrated().await.expect("schema status"));

    let db = store.connection();
    let next = "m20991231_000001_next_release";
    db.execute_unprepared(&format!("INSERT INTO seaql_migrations (version, applied_at) VALUES ('{next}', 0)"))
        .await
        .expect("record a step of the next release");
    assert!(store.is_migrated().await.expect("schema status"), "a schema ahead of this release is not behind");

    db.execute_unprepared(&format!("DELETE FROM seaql_migrations WHERE version <> '{next}'"))
        .await
        .expect("forget this release's steps");
    assert!(!store.is_migrated().await.expect("schema status"), "a step of this release is missing");
}

// ---------------------------------------------------------------------------
// The container image, read statically

/// One Dockerfile instruction: its keyword and the rest, continuations joined.
fn dockerfile_instructions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                let (keyword, rest) = current.trim().split_once(char::is_whitespace).expect("an instruction");
                instructions.push((keyword.to_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    instructions
}

/// The instructions of each stage, in order.
fn stages(instructions: &[(String, String)]) -> Vec<Vec<(String, String)>> {
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for instruction in instructions {
        if instruction.0 == "FROM" {
            stages.push(Vec::new());
        }
        stages.last_mut().expect("FROM comes first").push(instruction.clone());
    }
    stages
}

fn json_array(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("exec form expected, got {text}: {e}"))
}

#[test]
fn the_dockerfile_builds_locked_and_runs_the_binary_unprivileged() {
    let instructions = dockerfile_instructions();
    let stages = stages(&instructions);
    assert!(stages.len() >= 2, "a build stage and a runtime stage");
    let build = &stages[0];
    assert_eq!(build[0].1, "rust:1.95-bookworm AS build");
    let cargo = build.iter().find(|(k, rest)| k == "RUN" && rest.contains("cargo build")).expect("cargo build");
    for flag in ["--locked", "--release"] {
        assert!(cargo.1.contains(flag), "cargo build without {flag}");
    }

    let runtime = stages.last().expect("runtime stage");
    assert_eq!(runtime[0].1, "gcr.io/distroless/cc-debian12:nonroot");
    let last = |keyword: &str| runtime.iter().rev().find(|(k, _)| k == keyword).map(|(_, rest)| rest.as_str());
    let user = last("USER").expect("USER in the runtime stage");
    assert!(user == "nonroot" || user == "65532", "runs as {user}");
    assert_eq!(json_array(last("ENTRYPOINT").expect("ENTRYPOINT")), ["/usr/local/bin/identity"]);
    assert_eq!(json_array(last("CMD").expect("CMD")), ["serve"]);
    let copied = runtime
        .iter()
        .any(|(k, rest)| k == "COPY" && rest.starts_with("--from=build") && rest.ends_with(" /usr/local/bin/identity"));
    assert!(copied, "the runtime stage must copy the built binary to the entrypoint path");
    let env: String =
        runtime.iter().filter(|(k, _)| k == "ENV").map(|(_, rest)| rest.as_str()).collect::<Vec<_>>().join(" ");
    for binding in ["IDENTITY_GRPC_ADDR=0.0.0.0:50051", "IDENTITY_HTTP_ADDR=0.0.0.0:8080"] {
        assert!(env.split_whitespace().any(|e| e == binding), "{binding} missing: the binary defaults to loopback");
    }
    for binding in MALLOC_SETTINGS.map(|(name, value)| format!("{name}={value}")) {
        assert!(env.split_whitespace().any(|e| e == binding), "{binding} missing: memory grows without it");
    }
    let exposed: Vec<&str> =
        runtime.iter().filter(|(k, _)| k == "EXPOSE").flat_map(|(_, rest)| rest.split_whitespace()).collect();
    assert_eq!(exposed, ["50051", "8080", "9090"]);
}

#[test]
fn the_dockerfile_copies_existing_sources_the_context_keeps() {
    let ignore = DockerIgnore::read(&repo().join(".dockerignore"));
    for never in ["target/release/identity", ".git/HEAD", "data/identity.db", "data/outbox/x.eml", "src/key.pem"] {
        assert!(ignore.excludes(never), ".dockerignore must exclude {never}");
    }
    let mut copied = Vec::new();
    for (keyword, rest) in dockerfile_instructions() {
        if keyword != "COPY" || rest.starts_with("--from") {
            continue;
        }
        let mut parts: Vec<&str> = rest.split_whitespace().filter(|p| !p.starts_with("--")).collect();
        parts.pop(); // the destination
        for source in parts {
            let path = repo().join(source);
            assert!(path.exists(), "COPY {source}: not in the repository");
            for file in files_under(&path) {
                let relative = file.strip_prefix(repo()).expect("inside the repo").to_string_lossy().into_owned();
                assert!(!ignore.excludes(&relative), "COPY {source}: .dockerignore excludes {relative}");
            }
            copied.push(source.trim_end_matches('/').to_owned());
        }
    }
    // Cargo reads every workspace member's manifest; build.rs and crates/client/build.rs compile the protos.
    let members: Vec<String> = figment::Figment::from(figment::providers::Toml::file(repo().join("Cargo.toml")))
        .extract_inner("workspace.members")
        .expect("workspace members");
    let needed = ["Cargo.toml", "Cargo.lock", "build.rs", "proto", "src"].map(String::from);
    for path in needed.iter().chain(members.iter().filter(|m| *m != ".")) {
        assert!(copied.contains(path), "the build needs {path}, which the Dockerfile does not COPY");
    }
}

fn files_under(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).expect("read dir") {
        files.extend(files_under(&entry.expect("dir entry").path()));
    }
    files
}

/// Docker's .dockerignore rules, as far as this repository uses them: `*`, `?`
/// and `**` globs over `/`-separated paths, `!` exceptions, the last matching
/// line wins, and excluding a directory excludes what it holds.
struct DockerIgnore {
    patterns: Vec<(bool, Vec<String>)>,
}

impl DockerIgnore {
    fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).expect(".dockerignore");
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (negated, pattern) = l.strip_prefix('!').map_or((false, l), |p| (true, p));
                let pattern = pattern.trim_start_matches("./").trim_matches('/');
                (negated, pattern.split('/').map(str::to_owned).collect())
            })
            .collect();
        Self { patterns }
    }

    fn excludes(&self, path: &str) -> bool {
        let segments: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for (negated, pattern) in &self.patterns {
            // The path itself or a directory above it.
            if (1..=segments.len()).any(|n| glob(pattern, &segments[..n])) {
                excluded = !negated;
            }
        }
        excluded
    }
}

fn glob(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => (0..=path.len()).any(|skip| glob(rest, &path[skip..])),
        Some((first, rest)) => path
            .split_first()
            .is_some_and(|(segment, tail)| segment_matches(first.as_bytes(), segment.as_bytes()) && glob(rest, tail)),
    }
}

fn segment_matches(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| segment_matches(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && segment_matches(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && segment_matches(rest, &text[1..]),
    }
}

#[test]
fn the_dockerignore_matcher_follows_docker_rules() {
    let ignore =
        DockerIgnore { patterns: vec![(false, vec!["**".into(), "*.db".into()]), (true, vec!["keep.db".into()])] };
    assert!(ignore.excludes("a/b/x.db") && ignore.excludes("x.db"));
    assert!(!ignore.excludes("keep.db") && !ignore.excludes("x.dbx"));
    let ignore = DockerIgnore { patterns: vec![(false, vec!["target".into()]), (false, vec!["s?c".into()])] };
    assert!(ignore.excludes("target/debug/identity") && ignore.excludes("src"));
    assert!(!ignore.excludes("targets/x") && !ignore.excludes("a/target"));
}
