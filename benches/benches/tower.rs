//! A no-fault request through a tower stack: `OperoLayer` beside tower's own `RetryLayer` and
//! `RateLimitLayer`, over the same always-succeeding service.
//!
//! tower's retry layer does no backoff and its rate limit sits outside the retry (its service is
//! not `Clone`), so the peer stacks do a little less than opero's; the figures are the cost of the
//! layers on the path every successful request takes.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use opero::{NoCache, Opero, OperoLayer};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

/// tower's retry policy: up to `self.0` retries of any error, at once.
#[derive(Clone)]
struct Retries(usize);

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for Retries {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Err(_) if self.0 > 0 => {
                self.0 -= 1;
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

fn echo(
) -> impl Service<u64, Response = u64, Error = Infallible, Future = Ready<Result<u64, Infallible>>>
       + Clone
       + Send
       + 'static {
    service_fn(|x: u64| ready(Ok::<_, Infallible>(x)))
}

async fn once<S: Service<u64, Response = u64>>(svc: &mut S, x: u64) -> u64
where
    S::Error: std::fmt::Debug,
{
    let ready = svc.ready().await.unwrap();
    ready.call(x).await.unwrap()
}

/// `iters` requests one after another inside one runtime entry, timed.
fn timed<S: Service<u64, Response = u64>>(
    rt: &tokio::runtime::Runtime,
    svc: &mut S,
    iters: u64,
) -> Duration
where
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            black_box(once(svc, black_box(i)).await);
        }
        start.elapsed()
    })
}

fn stacks(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();

    let mut g = c.benchmark_group("tower_retry");
    let opero = Opero::<NoCache>::builder().retries(3).build().unwrap();
    let mut ours = ServiceBuilder::new()
        .layer(OperoLayer::new(opero).unwrap())
        .service(echo());
    g.bench_function("opero_layer", |b| {
        b.iter_custom(|iters| timed(&rt, &mut ours, iters))
    });
    let mut theirs = ServiceBuilder::new().retry(Retries(3)).service(echo());
    g.bench_function("tower_retry", |b| {
        b.iter_custom(|iters| timed(&rt, &mut theirs, iters))
    });
    g.finish();

    let mut g = c.benchmark_group("tower_retry_rate_limit");
    let opero = Opero::<NoCache>::builder()
        .retries(3)
        .rate_limit(1e9)
        .burst(1_000_000)
        .build()
        .unwrap();
    let mut ours = ServiceBuilder::new()
        .layer(OperoLayer::new(opero).unwrap())
        .service(echo());
    g.bench_function("opero_layer", |b| {
        b.iter_custom(|iters| timed(&rt, &mut ours, iters))
    });
    let mut theirs = rt.block_on(async {
        ServiceBuilder::new()
            .rate_limit(1_000_000_000, Duration::from_secs(1))
            .retry(Retries(3))
            .service(echo())
    });
    g.bench_function("tower_rate_limit_retry", |b| {
        b.iter_custom(|iters| timed(&rt, &mut theirs, iters))
    });
    g.finish();
}

criterion_group!(benches, stacks);
criterion_main!(benches);
