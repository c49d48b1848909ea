//! A TCP proxy on loopback that a test can cut and restore: the database (or
//! any upstream) becomes unreachable while the server keeps running.

use std::sync::{Arc, Mutex};

use tokio::{net::TcpListener, task::JoinHandle};

pub struct Proxy {
    pub port: u16,
    upstream: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        let proxy = Proxy { port: super::free_port(), upstream, tasks: Arc::default() };
        proxy.open().await;
        proxy
    }

    /// Accepts and forwards connections again (after [`Proxy::cut`]).
    pub async fn open(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.expect("proxy port");
        let (upstream, tasks) = (self.upstream.clone(), Arc::clone(&self.tasks));
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().expect("proxy tasks").push(conn);
            }
        });
        self.tasks.lock().expect("proxy tasks").push(accept);
    }

    /// The upstream becomes unreachable: no new connections, open ones die.
    pub fn cut(&self) {
        for task in self.tasks.lock().expect("proxy tasks").drain(..) {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
