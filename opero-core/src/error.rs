//! Errors: [`OperoError`] for the machinery, [`AllFailedError`] for a call whose every attempt failed.

use std::fmt;
use std::time::Duration;

/// What kind of machinery failure an [`OperoError`] is.
///
/// # Examples
///
/// ```
/// use opero_core::{ErrorKind, Opero, NoCache};
///
/// let err = Opero::<NoCache>::builder().rate_limit(-1.0).build().unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidConfig);
/// assert!(!err.is_temporary());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A configuration value is out of range or malformed; `field` and `value` say which.
    InvalidConfig,
    /// A cache backend name that no crate provides.
    UnknownBackend,
    /// A cache backend whose cargo feature is not enabled.
    FeatureDisabled,
    /// A cache backend failed (I/O, network, timeout).
    Backend,
    /// A value could not be encoded, or a stored entry could not be decoded.
    Codec,
    /// An executor or worker failed to start or to run.
    Executor,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::InvalidConfig => "invalid configuration",
            ErrorKind::UnknownBackend => "unknown cache backend",
            ErrorKind::FeatureDisabled => "feature disabled",
            ErrorKind::Backend => "cache backend error",
            ErrorKind::Codec => "codec error",
            ErrorKind::Executor => "executor error",
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The one error type of opero's machinery: bad configuration, a backend that failed, a codec error.
///
/// The user's own errors never become an `OperoError`; they travel inside [`AllFailedError`].
///
/// # Examples
///
/// ```
/// use opero_core::{ErrorKind, RateLimitConfig};
///
/// let err = RateLimitConfig::per_second(0.0).validate().unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidConfig);
/// assert_eq!(err.field(), Some("rate_limit.rate"));
/// assert_eq!(err.value(), Some("0"));
/// ```
#[derive(Debug)]
pub struct OperoError {
    kind: ErrorKind,
    message: String,
    field: Option<&'static str>,
    value: Option<String>,
    temporary: bool,
    source: Option<BoxError>,
}

impl OperoError {
    /// A new error of `kind` with a human-readable message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        OperoError {
            kind,
            message: message.into(),
            field: None,
            value: None,
            temporary: false,
            source: None,
        }
    }

    /// A configuration error naming the field and the rejected value.
    pub fn invalid_config(
        field: &'static str,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        OperoError {
            kind: ErrorKind::InvalidConfig,
            message: reason.into(),
            field: Some(field),
            value: Some(value.to_string()),
            temporary: false,
            source: None,
        }
    }

    /// A backend failure; temporary, since the backend may come back.
    pub fn backend(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        OperoError::new(ErrorKind::Backend, message)
            .with_source(source)
            .set_temporary(true)
    }

    /// Changes the kind, keeping field, value and message.
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Marks whether trying again later may succeed.
    pub fn set_temporary(mut self, temporary: bool) -> Self {
        self.temporary = temporary;
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The configuration field at fault, for [`ErrorKind::InvalidConfig`] and backend selection.
    pub fn field(&self) -> Option<&'static str> {
        self.field
    }

    /// The rejected value, as text.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }

    /// The message without kind, field or value.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying again later may succeed (a backend that is down, a timeout).
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }
}

impl fmt::Display for OperoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(field) = self.field {
            write!(f, ": `{field}`")?;
            if let Some(value) = &self.value {
                write!(f, " = {value:?}")?;
            }
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for OperoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Why one attempt failed: the user's own error, or something the machinery saw happen to the call.
///
/// # Examples
///
/// ```
/// use opero_core::AttemptError;
/// use std::time::Duration;
///
/// let failed = AttemptError::Failed("HTTP 503");
/// assert_eq!(failed.user_error(), Some(&"HTTP 503"));
/// let late = AttemptError::<&str>::TimedOut(Duration::from_secs(2));
/// assert_eq!(late.user_error(), None);
/// assert_eq!(late.to_string(), "timed out after 2s");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AttemptError<E> {
    /// The user's function returned this error.
    Failed(E),
    /// The user's function returned `Ok`, and the pipeline's `retry_if_ok` check turned the value
    /// into this error (which may carry the value). Retried as [`Failed`](Self::Failed) is.
    RejectedOk(E),
    /// The user's function panicked (only where opero catches panics, as in `opmap`); the message is
    /// the panic's payload when it was a string. Panics are bugs, so they are never retried.
    Panicked(String),
    /// A worker process died while running the attempt (exit status or signal). Retried per the
    /// retry settings, on a fresh worker.
    Crashed(String),
    /// The attempt ran longer than its timeout and was abandoned. Retried per the retry settings.
    TimedOut(Duration),
    /// The argument or the result could not cross to or from a worker process (it failed to
    /// serialize or to deserialize). Never retried: the same value would fail the same way.
    Codec(String),
    /// The call's deadline (the duration it holds) passed while the attempt ran, and the attempt
    /// was abandoned (async forms only: a blocking attempt cannot be cut). Never retried: the
    /// call is over, and [`AllFailedError::ended_by_deadline`] says so.
    DeadlineExceeded(Duration),
    /// The rate limiter could not hand out a permit (a shared limiter whose server is down,
    /// under a policy that fails rather than waits or falls back), so the attempt did not run.
    /// Retried per the retry settings, like a crash.
    NoPermit(String),
    /// The circuit breaker of this fallback value is open (or half-open with every probe taken):
    /// the function was not called. Never retried and never slept on: the call moves on to the
    /// next fallback value at once.
    BreakerOpen,
    /// The bulkhead was full: `max_concurrent` calls were in flight and `max_queue` more were
    /// waiting. The function was not called.
    BulkheadFull {
        /// Calls allowed in flight at once.
        max_concurrent: usize,
        /// Calls allowed to wait for a slot.
        max_queue: usize,
    },
    /// A setting of the pipeline cannot apply to this form of call (hedging on a blocking call):
    /// the function was not called. `field` names the setting.
    Unsupported {
        /// The setting, as named in [`OperoConfig`](crate::OperoConfig).
        field: &'static str,
        /// Why it cannot apply.
        reason: &'static str,
    },
}

impl<E> AttemptError<E> {
    /// The user's error, if this attempt failed with one (returned, or made by `retry_if_ok`
    /// from a rejected `Ok` value).
    pub fn user_error(&self) -> Option<&E> {
        match self {
            AttemptError::Failed(e) | AttemptError::RejectedOk(e) => Some(e),
            _ => None,
        }
    }

    /// The user's error by value, if this attempt failed with one.
    pub fn into_user_error(self) -> Option<E> {
        match self {
            AttemptError::Failed(e) | AttemptError::RejectedOk(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for AttemptError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptError::Failed(e) => e.fmt(f),
            AttemptError::RejectedOk(e) => write!(f, "Ok value rejected by retry_if_ok: {e}"),
            AttemptError::Panicked(msg) => write!(f, "panicked: {msg}"),
            AttemptError::Crashed(status) => write!(f, "worker crashed: {status}"),
            AttemptError::TimedOut(after) => write!(f, "timed out after {after:?}"),
            AttemptError::NoPermit(why) => write!(f, "no rate-limit permit: {why}"),
            AttemptError::Codec(why) => write!(f, "cannot cross the process boundary: {why}"),
            AttemptError::DeadlineExceeded(deadline) => {
                write!(f, "cut by the call's deadline of {deadline:?}")
            }
            AttemptError::BreakerOpen => f.write_str("circuit breaker open"),
            AttemptError::BulkheadFull {
                max_concurrent,
                max_queue,
            } => write!(
                f,
                "bulkhead full: {max_concurrent} calls in flight (bulkhead.max_concurrent) and \
                 {max_queue} waiting (bulkhead.max_queue)"
            ),
            AttemptError::Unsupported { field, reason } => {
                write!(f, "`{field}` cannot apply to this call: {reason}")
            }
        }
    }
}

/// One failed attempt: which fallback value it used, its number for that value, and its error.
///
/// # Examples
///
/// ```
/// use opero_core::{AttemptError, Fallbacks, NoCache, Opero};
///
/// let opero = Opero::<NoCache>::builder().retries(0).build().unwrap();
/// let keys = Fallbacks::new(vec!["a", "b"]).unwrap();
/// let err = opero.run_fallback(&keys, |k: &&str| Err::<(), _>(format!("{k} refused"))).unwrap_err();
/// let second = &err.attempts()[1];
/// assert_eq!((second.fallback_index, second.attempt), (1, 1));
/// assert_eq!(second.error, AttemptError::Failed("b refused".to_string()));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt<E> {
    /// Index of the fallback value the attempt used (0 when no fallback was configured).
    pub fallback_index: usize,
    /// 1-based attempt number for that fallback value.
    pub attempt: u32,
    /// What went wrong.
    pub error: AttemptError<E>,
}

/// Every attempt of every fallback value failed. Holds the attempts' errors, in order: all of
/// them up to [`KEPT_FIRST`](Self::KEPT_FIRST) + [`KEPT_LAST`](Self::KEPT_LAST), and past that
/// the first `KEPT_FIRST` and the last `KEPT_LAST` with the count of those in between, so that a
/// call with millions of retries keeps a few hundred bytes, not every error it ever saw.
///
/// The user's error type `E` passes through untouched: [`AllFailedError::last_error`] and
/// [`AllFailedError::into_last_error`] give it back.
///
/// # Examples
///
/// ```
/// use opero_core::{Opero, OperoConfig, RetryConfig, Jitter, NoCache};
/// use std::time::Duration;
///
/// let cfg = OperoConfig {
///     retry: RetryConfig { retries: 1, min_delay: Duration::ZERO, jitter: Jitter::None, ..Default::default() },
///     ..Default::default()
/// };
/// let opero = Opero::<NoCache>::new(cfg).unwrap();
/// let err = opero.run(|| Err::<(), _>("boom")).unwrap_err();
/// assert_eq!(err.len(), 2);
/// assert_eq!(err.last_error(), Some(&"boom"));
/// assert!(err.to_string().starts_with("all 2 attempts failed"));
/// ```
///
/// The record lives behind one pointer, allocated at the first failure: an `AllFailedError` is
/// one word, so a `Result<T, AllFailedError<E>>` is barely larger than `T` (a map's million
/// outputs stay small), and creating an empty one allocates nothing.
#[derive(Clone)]
pub struct AllFailedError<E> {
    record: Option<Box<Record<E>>>,
}

/// What an [`AllFailedError`] holds once an attempt failed.
#[derive(Clone)]
struct Record<E> {
    /// The first `KEPT_FIRST` attempts, then the most recent ones (at most `KEPT_LAST`).
    attempts: Vec<Attempt<E>>,
    /// Every attempt, kept or not.
    total: usize,
    fallbacks_tried: usize,
    /// The deadline that ended the call, if one did.
    deadline: Option<Duration>,
}

impl<E> AllFailedError<E> {
    /// How many of the first attempts are kept.
    pub const KEPT_FIRST: usize = 8;
    /// How many of the most recent attempts are kept.
    pub const KEPT_LAST: usize = 8;

    /// An empty record; attempts are pushed as they fail.
    pub const fn new() -> Self {
        AllFailedError { record: None }
    }

    fn record_mut(&mut self) -> &mut Record<E> {
        self.record.get_or_insert_with(|| {
            Box::new(Record {
                attempts: Vec::new(),
                total: 0,
                fallbacks_tried: 0,
                deadline: None,
            })
        })
    }

    /// An error made of a single failure, as a worker crash outside any retry loop.
    pub fn single(fallback_index: usize, attempt: u32, error: AttemptError<E>) -> Self {
        let mut all = AllFailedError::new();
        all.push(fallback_index, attempt, error);
        all
    }

    /// Records one failed attempt; past the kept ones, the oldest of the recent ones is dropped.
    pub fn push(&mut self, fallback_index: usize, attempt: u32, error: AttemptError<E>) {
        let record = self.record_mut();
        if record.attempts.last().map(|a| a.fallback_index) != Some(fallback_index) {
            record.fallbacks_tried += 1;
        }
        record.total += 1;
        if record.attempts.len() == Self::KEPT_FIRST + Self::KEPT_LAST {
            // Eight moves at most, and only past the sixteenth attempt.
            record.attempts.remove(Self::KEPT_FIRST);
        }
        record.attempts.push(Attempt {
            fallback_index,
            attempt,
            error,
        });
    }

    /// The kept attempts, in the order they ran: every attempt when there were at most
    /// `KEPT_FIRST + KEPT_LAST`, else the first and the last ones ([`elided`](Self::elided) says
    /// how many ran in between).
    pub fn attempts(&self) -> &[Attempt<E>] {
        self.record.as_deref().map_or(&[], |r| &r.attempts)
    }

    /// The kept attempts by value.
    pub fn into_attempts(self) -> Vec<Attempt<E>> {
        self.record.map_or_else(Vec::new, |r| r.attempts)
    }

    /// How many attempts failed, kept or not.
    pub fn len(&self) -> usize {
        self.record.as_deref().map_or(0, |r| r.total)
    }

    /// How many attempts between the first and the last kept ones were dropped.
    pub fn elided(&self) -> usize {
        self.len() - self.attempts().len()
    }

    /// Whether no attempt was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last attempt.
    pub fn last(&self) -> Option<&Attempt<E>> {
        self.attempts().last()
    }

    /// The user's error of the last kept attempt that failed with one.
    pub fn last_error(&self) -> Option<&E> {
        self.attempts()
            .iter()
            .rev()
            .find_map(|a| a.error.user_error())
    }

    /// The user's error of the last kept attempt that failed with one, by value.
    pub fn into_last_error(self) -> Option<E> {
        self.into_attempts()
            .into_iter()
            .rev()
            .find_map(|a| a.error.into_user_error())
    }

    /// How many fallback values were tried (a value counts again if it comes back).
    pub fn fallbacks_tried(&self) -> usize {
        self.record.as_deref().map_or(0, |r| r.fallbacks_tried)
    }

    /// The deadline, when it is what ended the call: a retry whose delay would have crossed it
    /// was not started, a fallback value was not tried, or an attempt was cut
    /// ([`AttemptError::DeadlineExceeded`]). `None` when the attempts ran out on their own.
    ///
    /// ```
    /// use opero_core::{NoCache, Opero};
    /// use std::time::Duration;
    ///
    /// let opero = Opero::<NoCache>::builder()
    ///     .min_delay(Duration::from_secs(60))
    ///     .max_delay(Duration::from_secs(60))
    ///     .deadline(Duration::from_secs(1))
    ///     .build()
    ///     .unwrap();
    /// let err = opero.run(|| Err::<(), _>("down")).unwrap_err();
    /// assert_eq!(err.ended_by_deadline(), Some(Duration::from_secs(1)));
    /// assert_eq!(err.len(), 1, "the 60 s retry would cross the deadline: not started");
    /// assert!(err.to_string().starts_with("the deadline of 1s ended the call"), "{err}");
    /// ```
    pub fn ended_by_deadline(&self) -> Option<Duration> {
        self.record.as_deref().and_then(|r| r.deadline)
    }

    /// Records that `deadline` ended the call (for executors that run the attempt loop
    /// themselves).
    pub fn end_by_deadline(&mut self, deadline: Duration) {
        self.record_mut().deadline = Some(deadline);
    }
}

impl<E: fmt::Debug> fmt::Debug for AllFailedError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllFailedError")
            .field("attempts", &self.attempts())
            .field("total", &self.len())
            .field("fallbacks_tried", &self.fallbacks_tried())
            .field("deadline", &self.ended_by_deadline())
            .finish()
    }
}

impl<E: PartialEq> PartialEq for AllFailedError<E> {
    fn eq(&self, other: &Self) -> bool {
        self.attempts() == other.attempts()
            && self.len() == other.len()
            && self.fallbacks_tried() == other.fallbacks_tried()
            && self.ended_by_deadline() == other.ended_by_deadline()
    }
}

impl<E> Default for AllFailedError<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: fmt::Display> fmt::Display for AllFailedError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.len();
        let (s, fallbacks) = (if n == 1 { "" } else { "s" }, self.fallbacks_tried());
        let fs = if fallbacks == 1 { "" } else { "s" };
        match self.ended_by_deadline() {
            Some(deadline) => write!(
                f,
                "the deadline of {deadline:?} ended the call after {n} failed attempt{s} across \
                 {fallbacks} fallback value{fs}"
            )?,
            None => write!(
                f,
                "all {n} attempt{s} failed across {fallbacks} fallback value{fs}"
            )?,
        }
        if let Some(last) = self.attempts().last() {
            write!(
                f,
                "; last (fallback {}, attempt {}): {}",
                last.fallback_index, last.attempt, last.error
            )?;
        }
        if n > 1 {
            f.write_str(" [")?;
            for (i, a) in self.attempts().iter().enumerate() {
                if i > 0 {
                    f.write_str("; ")?;
                }
                if i == Self::KEPT_FIRST && self.elided() > 0 {
                    write!(f, "... {} more ...; ", self.elided())?;
                }
                write!(f, "#{}.{}: {}", a.fallback_index, a.attempt, a.error)?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

/// A standard error when the user's error is one, so that `?` carries it into `anyhow`,
/// `eyre` or `Box<dyn Error>`; its [`source`](std::error::Error::source) is the last attempt's
/// error, so a report walks on into the user's own chain.
///
/// An error type that is not a `std::error::Error` (a `String`, a `&str`) keeps its `Display`
/// summary: `err.to_string()` carries it anywhere.
///
/// # Examples
///
/// ```
/// use opero_core::{NoCache, Opero};
/// use std::error::Error;
///
/// let opero = Opero::<NoCache>::builder().retries(0).build().unwrap();
/// let err = opero.run(|| Err::<(), _>(std::io::Error::other("disk on fire"))).unwrap_err();
/// assert_eq!(err.source().unwrap().to_string(), "disk on fire");
/// ```
impl<E: std::error::Error + 'static> std::error::Error for AllFailedError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.last_error()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
