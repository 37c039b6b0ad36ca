//! A [reqwest-middleware](https://docs.rs/reqwest-middleware) middleware: [`OperoMiddleware`]
//! retries transient failures with the pipeline's backoff, honours `Retry-After`, and can rotate
//! base URLs as fallback values.
//!
//! - **Transient**: a connect error or a timeout, a `5xx` response, a `429` response. Any other
//!   response (a `400`, a `404`) is returned at once; any other transport error moves to the next
//!   base URL, if any, without retries.
//! - **`Retry-After`** (delay-seconds or an HTTP-date) is a minimum: the delay before the retry is
//!   the larger of the backoff's and the hint, the hint capped by `max_delay`.
//! - **Base URLs**: with [`with_base_urls`](OperoMiddleware::with_base_urls), each request is sent
//!   to the first base URL with the full retry budget, then to the next, keeping its path and
//!   query. Logs name the URL's index, never the URL (it may carry credentials).
//! - When every attempt fails, the last response (a `503`, say) is returned as a response, or the
//!   last transport error as an error.
//!
//! A request whose body cannot be cloned (a stream) is sent once. opero brings no TLS of its own:
//! the client's reqwest features decide.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use opero::{NoCache, Opero, OperoMiddleware};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let middleware = OperoMiddleware::new(
//!     Opero::<NoCache>::builder()
//!         .name("api")
//!         .retries(3)
//!         .min_delay(Duration::from_millis(100))
//!         .max_delay(Duration::from_secs(10)),
//! )?
//! .with_base_urls(["http://primary.internal/", "http://replica.internal/"])?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(middleware)
//!     .build();
//! let body = client.get("http://primary.internal/v1/items").send().await?.text().await?;
//! # let _ = body; Ok(()) }
//! ```

use std::fmt;
use std::time::{Duration, SystemTime};

use http::Extensions;
use opero_core::{
    Backoff, Fallbacks, NoCache, Opero, OperoBuilder, OperoError, RetryPolicy, StableKey,
};
use reqwest::{Request, Response, StatusCode, Url};
use reqwest_middleware::{Middleware, Next};

/// One failed attempt of an HTTP request.
pub enum HttpFailure {
    /// A response with a transient status (`5xx`, `429`), and its `Retry-After`, if any.
    Status {
        /// The response, returned to the caller if no attempt succeeds.
        response: Response,
        /// The server's hint, already converted to a delay from now.
        retry_after: Option<Duration>,
    },
    /// The request did not produce a response.
    Transport(reqwest_middleware::Error),
}

impl HttpFailure {
    /// Whether another attempt at the same URL may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            HttpFailure::Status { .. } => true,
            HttpFailure::Transport(reqwest_middleware::Error::Reqwest(e)) => {
                e.is_connect() || e.is_timeout()
            }
            HttpFailure::Transport(_) => false,
        }
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            HttpFailure::Status { retry_after, .. } => *retry_after,
            HttpFailure::Transport(_) => None,
        }
    }
}

impl fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpFailure::Status { response, .. } => write!(f, "HTTP {}", response.status()),
            // reqwest's message may name the URL, which may carry credentials: only its kind.
            HttpFailure::Transport(reqwest_middleware::Error::Reqwest(e)) if e.is_connect() => {
                f.write_str("connect error")
            }
            HttpFailure::Transport(reqwest_middleware::Error::Reqwest(e)) if e.is_timeout() => {
                f.write_str("timed out")
            }
            HttpFailure::Transport(_) => f.write_str("request failed"),
        }
    }
}

impl fmt::Debug for HttpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpFailure({self})")
    }
}

/// The middleware's retry policy: the pipeline's backoff for transient failures, raised to the
/// server's `Retry-After` (capped by `max_delay`).
#[derive(Debug)]
pub struct HttpRetry {
    backoff: Backoff,
}

impl RetryPolicy<HttpFailure> for HttpRetry {
    fn retry_delay(&self, attempt: u32, error: &HttpFailure) -> Option<Duration> {
        if !error.is_transient() {
            return None;
        }
        let delay = self.backoff.delay(attempt)?;
        let hint = error
            .retry_after()
            .map(|h| h.min(self.backoff.config().max_delay));
        Some(hint.map_or(delay, |h| delay.max(h)))
    }
}

/// Retries, `Retry-After` and base-URL fallback for a `reqwest_middleware` client. See the
/// [module docs](self).
pub struct OperoMiddleware {
    opero: Opero<NoCache, StableKey, opero_core::CustomPolicy<HttpRetry>>,
    base_urls: Option<Fallbacks<Url>>,
}

impl fmt::Debug for OperoMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperoMiddleware")
            .field("opero", &self.opero)
            .field("base_urls", &self.base_urls)
            .finish()
    }
}

impl OperoMiddleware {
    /// A middleware with the builder's retry settings (retries, delays, factor, jitter), rate
    /// limit and name. The builder's `retry_on` does not apply: HTTP failures are classified as
    /// the [module docs](self) say. A cache is refused with an error naming `cache.enabled`.
    pub fn new(builder: OperoBuilder<NoCache>) -> Result<Self, OperoError> {
        if builder.config().cache.enabled {
            return Err(OperoError::invalid_config(
                "cache.enabled",
                "true",
                "OperoMiddleware does not cache HTTP responses",
            ));
        }
        let backoff = Backoff::new(builder.config().retry.clone())?;
        let opero = builder.retry_policy(HttpRetry { backoff }).build()?;
        Ok(OperoMiddleware {
            opero,
            base_urls: None,
        })
    }

    /// Sends each request to these base URLs in order, each with the full retry budget, keeping
    /// the request's path (after the base's own path) and query. Invalid URLs and an empty list
    /// are errors naming `base_urls`.
    pub fn with_base_urls<U: AsRef<str>>(
        mut self,
        urls: impl IntoIterator<Item = U>,
    ) -> Result<Self, OperoError> {
        let mut parsed = Vec::new();
        for (i, u) in urls.into_iter().enumerate() {
            let url = Url::parse(u.as_ref()).map_err(|e| {
                // The value may carry credentials: only its index is shown.
                OperoError::invalid_config("base_urls", format!("[{i}]"), e.to_string())
            })?;
            if url.cannot_be_a_base() {
                return Err(OperoError::invalid_config(
                    "base_urls",
                    format!("[{i}]"),
                    "cannot be a base URL",
                ));
            }
            parsed.push(url);
        }
        self.base_urls = Some(Fallbacks::new(parsed).map_err(|_| {
            OperoError::invalid_config("base_urls", "[]", "needs at least one URL")
        })?);
        Ok(self)
    }

    /// The pipeline the middleware runs requests through (its counters, its name).
    pub fn opero(&self) -> &Opero<NoCache, StableKey, opero_core::CustomPolicy<HttpRetry>> {
        &self.opero
    }
}

/// `url` moved onto `base`: the base's scheme, host, port and path prefix, `url`'s path and query.
fn rebase(url: &Url, base: &Url) -> Url {
    let mut out = base.clone();
    let prefix = base.path().trim_end_matches('/');
    out.set_path(&format!("{prefix}{}", url.path()));
    out.set_query(url.query());
    out
}

/// The `Retry-After` of a response as a delay from now: delay-seconds or an HTTP-date.
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn is_transient_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

#[async_trait::async_trait]
impl Middleware for OperoMiddleware {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        // A streaming body cannot be sent twice: one attempt, as if there were no middleware.
        if request.try_clone().is_none() {
            return next.run(request, extensions).await;
        }
        let one_base = [None];
        let bases: Vec<Option<&Url>> = match &self.base_urls {
            Some(urls) => urls.iter().map(Some).collect(),
            None => one_base.to_vec(),
        };
        let template = &request;
        let ext = &*extensions;
        let result = self
            .opero
            .run_attempts_async(&bases, |base| {
                let attempt = template.try_clone().map(|mut r| {
                    if let Some(base) = base {
                        *r.url_mut() = rebase(r.url(), base);
                    }
                    r
                });
                let next = next.clone();
                let mut ext = ext.clone();
                async move {
                    let Some(attempt) = attempt else {
                        return Ok(Err(reqwest_middleware::Error::middleware(
                            std::io::Error::other("request body could not be cloned"),
                        )));
                    };
                    match next.run(attempt, &mut ext).await {
                        Ok(response) if is_transient_status(response.status()) => {
                            let retry_after = retry_after(&response);
                            Err(opero_core::AttemptError::Failed(HttpFailure::Status {
                                response,
                                retry_after,
                            }))
                        }
                        Ok(response) => Ok(Ok(response)),
                        Err(e) => Err(opero_core::AttemptError::Failed(HttpFailure::Transport(e))),
                    }
                }
            })
            .await;
        match result {
            Ok(done) => done,
            Err(all) => match all.into_last_error() {
                Some(HttpFailure::Status { response, .. }) => Ok(response),
                Some(HttpFailure::Transport(e)) => Err(e),
                None => Err(reqwest_middleware::Error::middleware(
                    std::io::Error::other("no attempt was made"),
                )),
            },
        }
    }
}
