//! Small TCP servers on 127.0.0.1 that stand between Berth and the test registry, to make it slow,
//! silent or observable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A proxy to the test registry that forwards every connection, optionally slows the responses,
/// and counts the blob downloads that pass through it. It stops when dropped.
pub struct RegistryProxy {
    pub address: String,
    blob_requests: Arc<Mutex<HashMap<String, usize>>>,
    task: JoinHandle<()>,
}

impl RegistryProxy {
    /// Starts a proxy to `upstream`. With `bytes_per_second`, responses are sent at that rate.
    pub async fn start(upstream: &str, bytes_per_second: Option<usize>) -> RegistryProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address").to_string();
        let blob_requests = Arc::new(Mutex::new(HashMap::new()));
        let upstream = upstream.to_string();
        let counts = blob_requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                let counts = counts.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    forward(client, server, bytes_per_second, counts).await;
                });
            }
        });
        RegistryProxy {
            address,
            blob_requests,
            task,
        }
    }

    /// Returns how many GET requests for each blob digest passed through.
    pub fn blob_requests(&self) -> HashMap<String, usize> {
        self.blob_requests.lock().unwrap().clone()
    }
}

impl Drop for RegistryProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    client: TcpStream,
    server: TcpStream,
    bytes_per_second: Option<usize>,
    counts: Arc<Mutex<HashMap<String, usize>>>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            count_blob_gets(&buffer[..n], &counts);
            if server_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    let responses = async move {
        let chunk = bytes_per_second.map_or(64 * 1024, |rate| (rate / 10).max(1));
        let mut buffer = vec![0u8; chunk];
        loop {
            let n = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if client_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
            if bytes_per_second.is_some() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    tokio::join!(requests, responses);
}

/// Counts `GET /v2/<name>/blobs/sha256:<hex>` request lines in a chunk of client traffic.
fn count_blob_gets(chunk: &[u8], counts: &Mutex<HashMap<String, usize>>) {
    let text = String::from_utf8_lossy(chunk);
    for line in text.lines().filter(|line| line.starts_with("GET /v2/")) {
        if let Some(position) = line.find("/blobs/sha256:") {
            let digest: String = line[position + 7..].chars().take(71).collect();
            *counts.lock().unwrap().entry(digest).or_default() += 1;
        }
    }
}

/// A server that accepts connections and reads requests but never answers, as a hung
/// registry does. It stops when dropped.
pub struct SilentServer {
    pub address: String,
    task: JoinHandle<()>,
}

impl SilentServer {
    pub async fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind silent server");
        let address = listener
            .local_addr()
            .expect("silent server address")
            .to_string();
        let task = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                open.push(tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                    }
                }));
            }
        });
        SilentServer { address, task }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Returns a 127.0.0.1 address on which nothing listens.
pub fn closed_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    drop(listener);
    address
}
