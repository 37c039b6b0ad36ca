//! An HTTP client made resilient with `OperoMiddleware`, against a flaky server started in this
//! process: the first base URL refuses connections, the second answers 503 with `Retry-After`,
//! then 429, then 200. A circuit breaker skips the dead URL after three failures and a deadline
//! bounds the whole request. Run with the logs visible:
//!
//! ```text
//! cargo run -p opero --example http_client --features reqwest
//! ```
//!
//! `RUST_LOG` overrides the log filter (default: `opero=debug,http_client=info`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opero::{BreakerConfig, Jitter, NoCache, Opero, OperoBuilder, OperoMiddleware};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// The pipeline every request goes through: retries with backoff, a circuit breaker per base URL
/// (three failures in a row open it: the dead URL is then skipped at once, as the logs show), and a
/// total deadline across both URLs and every retry.
fn pipeline() -> OperoBuilder<NoCache> {
    Opero::<NoCache>::builder()
        .name("http_client")
        .retries(3)
        .min_delay(Duration::from_millis(50))
        .max_delay(Duration::from_secs(2))
        .jitter(Jitter::Full)
        .circuit_breaker(BreakerConfig {
            failure_threshold: Some(3),
            open_duration: Duration::from_secs(30),
            ..Default::default()
        })
        .deadline(Duration::from_secs(10))
}

/// The base URLs tried in order; the logs show their index, never the URL.
fn base_urls(dead: &str, flaky: &str) -> Vec<String> {
    vec![dead.to_string(), flaky.to_string()]
}

/// A server on a loopback port that answers 503 (Retry-After: 1), then 429, then 200 forever.
async fn flaky_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    let served = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let reply = match served.fetch_add(1, Ordering::SeqCst) {
                0 => "HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nContent-Length: 0\r\n",
                1 => "HTTP/1.1 429 Slow Down\r\nContent-Length: 0\r\n",
                _ => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
            };
            let body = if reply.contains("200") { "hello" } else { "" };
            let out = format!("{reply}Connection: close\r\n\r\n{body}");
            let _ = socket.write_all(out.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    url
}

/// A loopback URL on which nothing listens.
async fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    format!("http://{}", listener.local_addr().expect("local addr"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("opero=debug,http_client=info")),
        )
        .init();

    let flaky = flaky_server().await;
    let dead = dead_url().await;
    let middleware = OperoMiddleware::new(pipeline())?.with_base_urls(base_urls(&dead, &flaky))?;
    tracing::info!(
        deadline_ms = middleware.opero().deadline().map(|d| d.as_millis()),
        breaker = middleware.opero().circuit_breaker(0).is_some(),
        "pipeline ready: a breaker per base URL, one deadline for the whole request"
    );
    let opero = middleware.opero().clone();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();

    let response = client.get(format!("{dead}/greeting")).send().await?;
    let status = response.status();
    let body = response.text().await?;
    tracing::info!(%status, body, "answer");
    let m = opero.metrics();
    tracing::info!(
        failed_attempts = m.failed_attempts,
        retries = m.retries,
        fallback_switches = m.fallback_switches,
        "counters"
    );
    Ok(())
}
