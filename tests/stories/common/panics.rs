//! Panics of the in-process servers: a hook records every panic outside the
//! test code itself (a handler, a layer or a dependency), so a story can
//! assert that hostile input never made the service panic.

use std::sync::{Mutex, Once};

use super::TestServer;

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static PANIC_HOOK: Once = Once::new();

/// Installs the recording hook once per test binary.
pub fn watch_panics() {
    PANIC_HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.location().is_some_and(|at| at.file().starts_with("tests/")) {
                PANICS.lock().unwrap_or_else(|e| e.into_inner()).push(info.to_string());
            }
            default(info);
        }));
    });
}

pub fn assert_no_panics() {
    let panics = PANICS.lock().unwrap_or_else(|e| e.into_inner());
    assert!(panics.is_empty(), "the service panicked: {panics:?}");
}

/// The server still answers its health service, and nothing panicked.
pub async fn assert_healthy(server: &TestServer) {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let status = HealthClient::new(server.channel().await)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .expect("health answers")
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);
    assert_no_panics();
}
