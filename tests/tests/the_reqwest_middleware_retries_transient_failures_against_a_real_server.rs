//! `OperoMiddleware` against a real HTTP server on a loopback port that fails in scripted ways:
//! a 503 then a 200, a 429 whose `Retry-After` (seconds or HTTP-date) sets the minimum delay
//! capped by `max_delay`, a first base URL refusing connections then a second one working, and a
//! 400 returned at once. Real sockets need the real clock, so delays are small and asserted as
//! bounds.

use std::time::{Duration, SystemTime};

use opero::{Jitter, NoCache, Opero, OperoMiddleware};
use opero_tests::http_server::{refusing_url, HttpServer, Reply};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

fn client(middleware: OperoMiddleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build()
}

fn middleware(retries: u32, max_delay: Duration) -> OperoMiddleware {
    OperoMiddleware::new(
        Opero::<NoCache>::builder()
            .name("http")
            .retries(retries)
            .min_delay(Duration::from_millis(10))
            .max_delay(max_delay)
            .jitter(Jitter::None),
    )
    .unwrap()
}

fn gaps(server: &HttpServer) -> Vec<Duration> {
    let seen = server.seen();
    seen.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[tokio::test]
async fn a_503_is_retried_and_the_200_returned() {
    let server = HttpServer::start(vec![Reply::status(503)]).await;
    let m = middleware(3, Duration::from_secs(1));
    let opero = m.opero().clone();
    let got = client(m)
        .get(format!("{}/item?id=7", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.text().await.unwrap(), "ok");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|s| s.line == "GET /item?id=7 HTTP/1.1"),
        "{seen:?}"
    );
    assert_eq!(opero.metrics().retries, 1);
}

#[tokio::test]
async fn retry_after_seconds_is_a_minimum_delay() {
    let server = HttpServer::start(vec![Reply::status(429).header("Retry-After: 1")]).await;
    let got = client(middleware(2, Duration::from_secs(5)))
        .get(server.url())
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let gaps = gaps(&server);
    assert_eq!(gaps.len(), 1);
    // The backoff alone would wait 10 ms.
    assert!(gaps[0] >= Duration::from_secs(1), "{gaps:?}");
    assert!(gaps[0] < Duration::from_secs(5), "{gaps:?}");
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
    let server =
        HttpServer::start(vec![Reply::status(503).header(format!("Retry-After: {at}"))]).await;
    let got = client(middleware(2, Duration::from_secs(5)))
        .get(server.url())
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let gaps = gaps(&server);
    // The date has whole seconds: at least one of the two seconds is left when it is read.
    assert!(gaps[0] >= Duration::from_millis(900), "{gaps:?}");
    assert!(gaps[0] < Duration::from_secs(5), "{gaps:?}");
}

#[tokio::test]
async fn retry_after_is_capped_by_max_delay() {
    let server = HttpServer::start(vec![Reply::status(503).header("Retry-After: 3600")]).await;
    let got = client(middleware(2, Duration::from_millis(200)))
        .get(server.url())
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let gaps = gaps(&server);
    assert!(gaps[0] >= Duration::from_millis(200), "{gaps:?}");
    assert!(gaps[0] < Duration::from_secs(3), "{gaps:?}");
}

#[tokio::test]
async fn a_refusing_base_url_falls_back_to_the_next() {
    let server = HttpServer::start(vec![]).await;
    let dead = refusing_url().await;
    let m = middleware(1, Duration::from_secs(1))
        .with_base_urls([dead.as_str(), server.url().as_str()])
        .unwrap();
    let opero = m.opero().clone();
    // The request names the dead host; the middleware moves it to each base URL in turn.
    let got = client(m)
        .get(format!("{dead}/v1/x?q=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].line, "GET /v1/x?q=1 HTTP/1.1");
    let m = opero.metrics();
    // Two refused connections on the first URL (one retry), then the switch.
    assert_eq!(
        (m.failed_attempts, m.retries, m.fallback_switches),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn a_400_is_returned_at_once() {
    let server = HttpServer::start(vec![Reply::status(400)]).await;
    let got = client(middleware(3, Duration::from_secs(1)))
        .get(server.url())
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 400);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn when_every_attempt_fails_the_last_response_is_returned() {
    let server = HttpServer::start(vec![Reply::status(502); 3]).await;
    let got = client(middleware(2, Duration::from_secs(1)))
        .get(server.url())
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 502);
    assert_eq!(server.seen().len(), 3);
}

#[test]
fn bad_settings_are_typed_errors_naming_the_field() {
    let err = OperoMiddleware::new(Opero::<NoCache>::builder())
        .unwrap()
        .with_base_urls(Vec::<String>::new())
        .unwrap_err();
    assert_eq!(err.field(), Some("base_urls"));
    let err = OperoMiddleware::new(Opero::<NoCache>::builder())
        .unwrap()
        .with_base_urls(["not a url"])
        .unwrap_err();
    assert_eq!(err.field(), Some("base_urls"));
    assert!(
        !err.to_string().contains("not a url"),
        "the value is not shown: {err}"
    );
}
