//! A pipeline as a [tower](https://docs.rs/tower) layer: [`OperoLayer`] wraps any `Service`
//! whose request is `Clone` with the pipeline's retries, backoff, fallback values and rate limit.
//!
//! Each attempt clones the inner service and the request, waits for the clone to be ready, then
//! calls it; a readiness error counts as a failed attempt like a call error. The cache is
//! refused: a tower request is not a function's arguments, and a response is rarely a value to
//! serialize, so [`OperoLayer::new`] returns an error naming `cache.enabled` for a pipeline with
//! its cache on rather than silently skipping it.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use opero::{Jitter, NoCache, Opero, OperoLayer};
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let opero = Opero::<NoCache>::builder()
//!     .name("lookup")
//!     .retries(2)
//!     .min_delay(Duration::from_millis(1))
//!     .jitter(Jitter::None)
//!     .build()
//!     .unwrap();
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let counted = calls.clone();
//! let mut svc = ServiceBuilder::new()
//!     .layer(OperoLayer::new(opero).unwrap())
//!     .service(service_fn(move |id: u32| {
//!         let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!         async move { if n == 0 { Err("busy") } else { Ok(id * 2) } }
//!     }));
//! let answer = svc.ready().await.unwrap().call(21).await.unwrap();
//! assert_eq!(answer, 42);
//! assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
//! # }
//! ```

use std::fmt::{self, Display};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use opero_core::{
    AllFailedError, AttemptError, Backoff, Fallbacks, KeyFn, Opero, OperoError, RetryPolicy,
    StableKey,
};
use tower::{Layer, Service, ServiceExt};

/// How a fallback value changes a request before an attempt (a base URL, a replica, a key).
pub trait Rewrite<Req, V>: Send + Sync {
    /// The request to send with fallback value `value`.
    fn rewrite(&self, request: Req, value: &V) -> Req;
}

/// No fallback values: the request goes as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsIs;

impl<Req> Rewrite<Req, ()> for AsIs {
    #[inline]
    fn rewrite(&self, request: Req, _: &()) -> Req {
        request
    }
}

/// A closure as a [`Rewrite`].
#[derive(Clone, Copy)]
pub struct RewriteFn<F>(F);

impl<Req, V, F> Rewrite<Req, V> for RewriteFn<F>
where
    F: Fn(Req, &V) -> Req + Send + Sync,
{
    #[inline]
    fn rewrite(&self, request: Req, value: &V) -> Req {
        (self.0)(request, value)
    }
}

/// A [`Layer`] applying an [`Opero`] pipeline (retries, backoff, fallback values, rate limit) to
/// the service it wraps. See the [module docs](self).
pub struct OperoLayer<C, K = StableKey, P = Backoff, V = (), R = AsIs> {
    opero: Opero<C, K, P>,
    fallbacks: Arc<Fallbacks<V>>,
    rewrite: Arc<R>,
}

impl<C, K, P, V, R> Clone for OperoLayer<C, K, P, V, R> {
    fn clone(&self) -> Self {
        OperoLayer {
            opero: self.opero.clone(),
            fallbacks: Arc::clone(&self.fallbacks),
            rewrite: Arc::clone(&self.rewrite),
        }
    }
}

impl<C, K, P, V, R> fmt::Debug for OperoLayer<C, K, P, V, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperoLayer")
            .field("opero", &self.opero)
            .field("fallbacks", &self.fallbacks)
            .finish()
    }
}

impl<C, K, P> OperoLayer<C, K, P> {
    /// A layer running every request through `opero`. A pipeline with its cache on is refused
    /// with an error naming `cache.enabled`.
    pub fn new(opero: Opero<C, K, P>) -> Result<Self, OperoError> {
        if opero.cache().is_some() {
            return Err(OperoError::invalid_config(
                "cache.enabled",
                "true",
                "OperoLayer does not cache tower requests; build the pipeline with the cache off",
            ));
        }
        Ok(OperoLayer {
            opero,
            fallbacks: Arc::new(Fallbacks::new(vec![()])?),
            rewrite: Arc::new(AsIs),
        })
    }

    /// Tries the request with each fallback value in order, each with the full retry budget:
    /// `rewrite(request, value)` makes the request for that value. Only the value's index is
    /// logged, never the value.
    pub fn with_fallbacks<V, F>(
        self,
        fallbacks: Fallbacks<V>,
        rewrite: F,
    ) -> OperoLayer<C, K, P, V, RewriteFn<F>> {
        OperoLayer {
            opero: self.opero,
            fallbacks: Arc::new(fallbacks),
            rewrite: Arc::new(RewriteFn(rewrite)),
        }
    }
}

impl<S, C, K, P, V, R> Layer<S> for OperoLayer<C, K, P, V, R> {
    type Service = OperoService<S, C, K, P, V, R>;

    fn layer(&self, inner: S) -> Self::Service {
        OperoService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The [`Service`] made by [`OperoLayer`]. It is always ready: each attempt waits for the
/// readiness of its own clone of the inner service.
pub struct OperoService<S, C, K = StableKey, P = Backoff, V = (), R = AsIs> {
    inner: S,
    layer: OperoLayer<C, K, P, V, R>,
}

impl<S: Clone, C, K, P, V, R> Clone for OperoService<S, C, K, P, V, R> {
    fn clone(&self) -> Self {
        OperoService {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, C, K, P, V, R> fmt::Debug for OperoService<S, C, K, P, V, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperoService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, Req, C, K, P, V, R> Service<Req> for OperoService<S, C, K, P, V, R>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Display + Send,
    Req: Clone + Send + 'static,
    C: Send + Sync + 'static,
    K: KeyFn + Send + Sync + 'static,
    P: RetryPolicy<S::Error> + Send + Sync + 'static,
    V: Send + Sync + 'static,
    R: Rewrite<Req, V> + 'static,
{
    type Response = S::Response;
    type Error = AllFailedError<S::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is awaited per attempt on a clone, so that a service that is not ready yet
        // is an attempt to retry rather than a caller stuck before the pipeline.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let inner = self.inner.clone();
        let layer = self.layer.clone();
        // The attempt closure owns the request and the service (rather than borrowing them across
        // awaits), so neither needs to be `Sync`.
        Box::pin(async move {
            let OperoLayer {
                opero,
                fallbacks,
                rewrite,
            } = &layer;
            opero
                .run_attempts_async(fallbacks.as_slice(), move |value| {
                    let request = rewrite.rewrite(request.clone(), value);
                    let mut svc = inner.clone();
                    async move {
                        let ready = svc.ready().await.map_err(AttemptError::Failed)?;
                        ready.call(request).await.map_err(AttemptError::Failed)
                    }
                })
                .await
        })
    }
}
