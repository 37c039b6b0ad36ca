//! Worker processes for `opmap`: the modes [`process`](crate::Mode::Process) and
//! [`async_process`](crate::Mode::AsyncProcess), on a [procspawn](https://docs.rs/procspawn) pool.
//!
//! Worker processes re-execute the current binary. Two lines make that work:
//! [`init_workers()`] as the first line of `main` (a worker never returns from it: it serves calls
//! and exits), and [`enable_process_test_support!()`](crate::enable_process_test_support) at the
//! top of every integration-test file that maps in worker processes.
//!
//! Every attempt of an item is one call into a worker: the item goes there serialized (postcard,
//! the codec procspawn's channels use), the reply comes back the same way, and the whole pipeline
//! (cache, fallback-free retries, rate limit) stays in the parent. A worker that dies during a call
//! fails that attempt with [`AttemptError::Crashed`], which names the signal or exit status the
//! worker recorded in its status file (see the `last_words` module); procspawn starts a fresh
//! worker in its place and the item is retried per its retry settings.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, Once};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use opero_core::{AttemptError, ErrorKind, OperoError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use ipc_channel::TryRecvError;

use crate::executor::lock;
use crate::last_words::{self, StatusDir};

/// Set by [`init_workers`] and by the test-support macro: without either, a worker process would
/// run the caller's whole `main` instead of serving calls, so no pool is started.
static READY: AtomicBool = AtomicBool::new(false);

/// The parent's pid, handed to each worker so that it can tell when its parent has died.
const PARENT_ENV: &str = "OPERO_WORKER_PARENT";

/// How long the pool may take to start its workers before the opmap gives up with an error.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How often a worker checks that its parent is still alive.
const PARENT_POLL: Duration = Duration::from_millis(200);

/// Makes this executable able to serve as an opmap worker process. Call it as the **first line of
/// `main`**: a worker process starts the executable again, and this call is where it turns into a
/// worker (it serves calls and exits there, never returning). In the parent it only records that
/// worker processes may be started; code before it runs again in every worker.
///
/// Without this line, building an opmap in mode `process` or `async_process` returns an
/// [`OperoError`] of kind [`ErrorKind::Executor`] that says so. Test binaries use
/// [`enable_process_test_support!`](crate::enable_process_test_support) instead.
///
/// # Examples
///
/// ```no_run
/// use opero_parallel::{init_workers, opmap};
///
/// fn square(x: &u64) -> Result<u64, String> {
///     Ok(x * x)
/// }
///
/// fn main() {
///     init_workers(); // first line: worker processes stop here
///     let squares = opmap().workers(2).progress(false).wrap_process(square).unwrap();
///     assert_eq!(squares.call([1, 2, 3]), [Ok(1), Ok(4), Ok(9)]);
/// }
/// ```
pub fn init_workers() {
    READY.store(true, Ordering::SeqCst);
    procspawn::init();
}

/// Records that test support is on; called by
/// [`enable_process_test_support!`](crate::enable_process_test_support). Not for direct use.
#[doc(hidden)]
pub fn __mark_workers_ready() {
    READY.store(true, Ordering::SeqCst);
}

#[doc(hidden)]
pub use procspawn as __procspawn;

/// Lets the tests of one integration-test file map in worker processes. Put it once at the top
/// level of the file (each file under `tests/` is its own binary); it stands in for
/// [`init_workers()`](crate::init_workers), which a test binary cannot call first in `main`.
///
/// It registers a helper test named `procspawn_test_helper` through which the workers start; run
/// on its own it does nothing.
///
/// # Examples
///
/// ```no_run
/// opero_parallel::enable_process_test_support!();
///
/// fn double(x: &u32) -> Result<u32, String> {
///     Ok(x * 2)
/// }
///
/// #[test]
/// fn doubles_in_workers() {
///     let f = opero_parallel::opmap().workers(2).progress(false).wrap_process(double).unwrap();
///     assert_eq!(f.call([1, 2]), [Ok(2), Ok(4)]);
/// }
/// ```
#[macro_export]
macro_rules! enable_process_test_support {
    () => {
        $crate::__procspawn::enable_test_support!();

        #[$crate::__procspawn::testsupport::ctor]
        unsafe fn __opero_process_test_support() {
            $crate::__mark_workers_ready();
        }
    };
}

// ===== the wire =====

/// What a worker sends back for one item.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Reply {
    /// The function's `Ok`, encoded.
    Ok(Vec<u8>),
    /// The function's `Err`, encoded.
    Failed(Vec<u8>),
    /// The function panicked; the panic's message.
    Panicked(String),
    /// The worker could not decode the argument or encode the result.
    Codec(String),
}

fn encode<V: Serialize + ?Sized>(value: &V) -> Result<Vec<u8>, String> {
    postcard::to_allocvec(value).map_err(|e| e.to_string())
}

/// Encodes an item in the parent, before any worker sees it.
pub(crate) fn encode_item<I: Serialize, E>(item: &I) -> Result<Vec<u8>, AttemptError<E>> {
    encode(item).map_err(|e| AttemptError::Codec(format!("the argument failed to serialize: {e}")))
}

/// Turns a worker's reply back into the attempt's outcome.
pub(crate) fn decode_reply<T: DeserializeOwned, E: DeserializeOwned>(
    reply: Reply,
) -> Result<T, AttemptError<E>> {
    match reply {
        Reply::Ok(bytes) => postcard::from_bytes(&bytes)
            .map_err(|e| AttemptError::Codec(format!("the result failed to deserialize: {e}"))),
        Reply::Failed(bytes) => match postcard::from_bytes(&bytes) {
            Ok(e) => Err(AttemptError::Failed(e)),
            Err(e) => Err(AttemptError::Codec(format!(
                "the function's error failed to deserialize: {e}"
            ))),
        },
        Reply::Panicked(message) => Err(AttemptError::Panicked(message)),
        Reply::Codec(why) => Err(AttemptError::Codec(why)),
    }
}

/// The panic's message when its payload is text, as `panic!` and `unwrap` make it.
fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "panic with a payload that is not text".to_owned(),
        },
    }
}

/// A value of the per-item function's type, in a worker process.
///
/// The function crosses to the worker as a type, not as a value: the trampolines below are
/// monomorphised over it, and procspawn sends the trampoline's address. The builder only accepts
/// zero-sized `Copy` functions (a named `fn` item or a closure that captures nothing), checked by
/// [`check_function`].
#[allow(unsafe_code)]
fn conjure<F: Copy + 'static>() -> F {
    assert!(
        std::mem::size_of::<F>() == 0,
        "opero: not a zero-sized function"
    );
    // SAFETY: `F` is zero-sized (asserted above), so a value of it holds no bytes and every value
    // is the same value. The types that implement `Fn` on stable Rust are `fn` items, closures and
    // `fn` pointers; the zero-sized ones are `fn` items and closures that capture only zero-sized
    // values, and all of them are inhabited. `F: Copy`, and the parent built one of them from the
    // same program, so making one here is the same as copying that one.
    unsafe { std::mem::zeroed() }
}

/// Accepts the per-item function only when a worker can rebuild it from its type alone.
pub(crate) fn check_function<F>() -> Result<(), OperoError> {
    if std::mem::size_of::<F>() != 0 {
        return Err(OperoError::new(
            ErrorKind::Executor,
            format!(
                "worker processes need a named function or a closure that captures nothing; `{}` \
                 carries data (a capture or a function pointer), which cannot cross to another \
                 process: pass what it needs in the item instead",
                std::any::type_name::<F>()
            ),
        ));
    }
    Ok(())
}

/// Starts, once per worker, a thread that ends the worker when its parent has died (while the
/// worker is busy it never sees its channel close). A watchdog rather than `PR_SET_PDEATHSIG`:
/// that fires when the parent *thread* that spawned the worker ends, and procspawn restarts
/// workers from threads that may end before the pool does.
fn watch_parent() {
    static WATCH: Once = Once::new();
    WATCH.call_once(|| {
        let expected = std::env::var(PARENT_ENV)
            .ok()
            .and_then(|pid| pid.parse::<u32>().ok());
        #[cfg(unix)]
        {
            let parent = expected.unwrap_or_else(std::os::unix::process::parent_id);
            let spawned = std::thread::Builder::new()
                .name("opero-parent-watch".to_owned())
                .spawn(move || loop {
                    std::thread::sleep(PARENT_POLL);
                    if std::os::unix::process::parent_id() != parent {
                        last_words::forget();
                        tracing::warn!(target: "opero", parent, "opmap worker's parent died; exiting");
                        std::process::exit(70);
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(target: "opero", error = %e, "cannot watch the opmap worker's parent");
            }
        }
        #[cfg(not(unix))]
        let _ = expected;
    });
}

/// Runs one item in a worker: `F` is the user's function, rebuilt from its type.
fn serve_one<F, I, T, E>(request: Vec<u8>) -> Reply
where
    F: Fn(&I) -> Result<T, E> + Copy + 'static,
    I: DeserializeOwned,
    T: Serialize,
    E: Serialize,
{
    let item: I = match postcard::from_bytes(&request) {
        Ok(item) => item,
        Err(e) => return Reply::Codec(format!("the worker cannot decode the argument: {e}")),
    };
    let f = conjure::<F>();
    match catch_unwind(AssertUnwindSafe(|| f(&item))) {
        Ok(Ok(value)) => match encode(&value) {
            Ok(bytes) => Reply::Ok(bytes),
            Err(e) => Reply::Codec(format!("the result failed to serialize: {e}")),
        },
        Ok(Err(error)) => match encode(&error) {
            Ok(bytes) => Reply::Failed(bytes),
            Err(e) => Reply::Codec(format!("the function's error failed to serialize: {e}")),
        },
        Err(payload) => Reply::Panicked(panic_message(payload)),
    }
}

thread_local! {
    /// The worker's tokio runtime, built on its first async batch and kept for the next ones.
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

/// Runs a batch of items of an async function in a worker, all of them at once on its runtime.
fn serve_batch<F, I, T, E, Fut>(requests: Vec<Vec<u8>>) -> Vec<Reply>
where
    F: Fn(I) -> Fut + Copy + 'static,
    Fut: Future<Output = Result<T, E>>,
    I: DeserializeOwned,
    T: Serialize,
    E: Serialize,
{
    let f = conjure::<F>();
    let one = |request: Vec<u8>| async move {
        let item: I = match postcard::from_bytes(&request) {
            Ok(item) => item,
            Err(e) => return Reply::Codec(format!("the worker cannot decode the argument: {e}")),
        };
        let started = catch_unwind(AssertUnwindSafe(|| f(item)));
        let outcome = match started {
            Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
            Err(payload) => Err(payload),
        };
        match outcome {
            Ok(Ok(value)) => match encode(&value) {
                Ok(bytes) => Reply::Ok(bytes),
                Err(e) => Reply::Codec(format!("the result failed to serialize: {e}")),
            },
            Ok(Err(error)) => match encode(&error) {
                Ok(bytes) => Reply::Failed(bytes),
                Err(e) => Reply::Codec(format!("the function's error failed to serialize: {e}")),
            },
            Err(payload) => Reply::Panicked(panic_message(payload)),
        }
    };
    let count = requests.len();
    let all = futures_util::future::join_all(requests.into_iter().map(one));
    RUNTIME.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => *slot = Some(runtime),
                Err(e) => {
                    let why = format!("the worker cannot start its tokio runtime: {e}");
                    return (0..count).map(|_| Reply::Panicked(why.clone())).collect();
                }
            }
        }
        match slot.as_ref() {
            Some(runtime) => runtime.block_on(all),
            None => Vec::new(),
        }
    })
}

/// What a worker serves on: requests in, replies out, and the path of the status file where it
/// records how it ends (none where that is not supported).
pub(crate) type Ends<A, R> = (IpcReceiver<A>, IpcSender<R>, Option<String>);

/// The ends of an `async_process` worker: a batch of encoded items in, their replies out.
pub(crate) type BatchEnds = Ends<Vec<Vec<u8>>, Vec<Reply>>;

/// The workers of an `async_process` map.
pub(crate) type BatchWorkers = Workers<Vec<Vec<u8>>, Vec<Reply>>;

/// A worker's loop: one procspawn call that serves every request of its channel until the parent
/// drops it. One call per worker rather than one per attempt, because a procspawn call makes two
/// channels and passes their descriptors, which cost more than the trivial item itself.
fn serve<A, R>(ends: Ends<A, R>, handle: impl Fn(A) -> R)
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    watch_parent();
    let (requests, replies, status) = ends;
    // Records a crash from here on; disarmed when the parent closes the channel.
    let _armed = last_words::arm(status.as_deref());
    while let Ok(request) = requests.recv() {
        if replies.send(handle(request)).is_err() {
            break;
        }
    }
}

fn serve_sync<F, I, T, E>(ends: Ends<Vec<u8>, Reply>)
where
    F: Fn(&I) -> Result<T, E> + Copy + 'static,
    I: DeserializeOwned,
    T: Serialize,
    E: Serialize,
{
    serve(ends, serve_one::<F, I, T, E>);
}

fn serve_async<F, I, T, E, Fut>(ends: BatchEnds)
where
    F: Fn(I) -> Fut + Copy + 'static,
    Fut: Future<Output = Result<T, E>>,
    I: DeserializeOwned,
    T: Serialize,
    E: Serialize,
{
    serve(ends, serve_batch::<F, I, T, E, Fut>);
}

/// The sync worker loop of `F`, as procspawn sends it.
pub(crate) fn sync_trampoline<F, I, T, E>() -> fn(Ends<Vec<u8>, Reply>)
where
    F: Fn(&I) -> Result<T, E> + Copy + 'static,
    I: DeserializeOwned,
    T: Serialize,
    E: Serialize,
{
    serve_sync::<F, I, T, E>
}

/// The async worker loop of `F`, as procspawn sends it.
pub(crate) fn async_trampoline<F, I, T, E, Fut>() -> fn(BatchEnds)
where
    F: Fn(I) -> Fut + Copy + 'static,
    Fut: Future<Output = Result<T, E>>,
    I: DeserializeOwned,
    T: Serialize,
    E: Serialize,
{
    serve_async::<F, I, T, E, Fut>
}

// ===== the parent's side =====

/// Why an attempt got no reply.
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    Crashed(String),
    TimedOut(Duration),
}

impl Fault {
    pub(crate) fn into_attempt<E>(self) -> AttemptError<E> {
        match self {
            Fault::Crashed(why) => AttemptError::Crashed(why),
            Fault::TimedOut(after) => AttemptError::TimedOut(after),
        }
    }
}

/// A worker serving one channel: the procspawn call running its loop, and both ends.
struct Channel<A, R> {
    call: procspawn::JoinHandle<()>,
    requests: IpcSender<A>,
    replies: IpcReceiver<R>,
    /// The worker's status file, removed with the channel.
    status: StatusFile,
}

/// Removes a worker's status file when its channel goes. A guard of its own rather than a `Drop`
/// on [`Channel`], so that shutting down can take a channel apart (close its requests first,
/// then wait for its call).
struct StatusFile(Option<std::path::PathBuf>);

impl Drop for StatusFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The channels of a pool: the idle ones, and how many are open in all. A channel holds its
/// worker for as long as it is open, so at most `workers` may be: one more would wait in
/// procspawn's queue for a worker that never frees up.
struct Channels<A, R> {
    idle: Vec<Channel<A, R>>,
    open: usize,
}

/// How often a caller waiting for a reply checks whether the opmap is being dropped.
const CLOSING_POLL: Duration = Duration::from_millis(50);

/// How long shutting down waits, at most, for each of its steps: the idle workers to end their
/// loops, the batch threads to stop, procspawn's monitors to finish restarting a worker. A step
/// that overruns is logged and the next one runs anyway: dropping an opmap never hangs.
const SHUTDOWN_STEP: Duration = Duration::from_secs(1);

/// Why a caller got no reply.
enum NoReply {
    /// The worker's end of the channel closed: it died.
    Closed,
    /// The attempt outlived the map's timeout.
    TimedOut(Duration),
    /// The opmap is being dropped.
    Closing,
}

/// The pool of worker processes of one opmap, killed with it. Each caller takes a free
/// [`Channel`] (one per busy worker), so that an attempt is one message each way.
pub(crate) struct Workers<A, R> {
    pool: procspawn::Pool,
    serve: fn(Ends<A, R>),
    channels: Mutex<Channels<A, R>>,
    /// Signalled when a channel goes back to idle or is closed, and when shutdown starts.
    freed: Condvar,
    /// Set when the opmap is dropped: no channel opens any more, and callers still waiting for
    /// a reply give up (only the batch threads of `async_process` can still be calling then).
    closing: AtomicBool,
    workers: usize,
    timeout: Option<Duration>,
    /// Where the workers record how they end; removed when the pool is dropped.
    status: StatusDir,
}

impl<A, R> Workers<A, R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    /// Starts `workers` processes, or says why it cannot: no init line, a binary that cannot be
    /// started, workers that never report in.
    pub(crate) fn start(
        workers: usize,
        timeout: Option<Duration>,
        serve: fn(Ends<A, R>),
    ) -> Result<Self, OperoError> {
        if !READY.load(Ordering::SeqCst) {
            return Err(OperoError::new(
                ErrorKind::Executor,
                "worker processes need `opero::init_workers();` as the first line of `main` \
                 (in an integration-test file: `opero::enable_process_test_support!();` at its top)",
            ));
        }
        // procspawn blocks until each worker has connected; a binary that starts but never gets
        // to the init line would block it for ever, so the pool starts on a thread of its own.
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("opero-process-start".to_owned())
            .spawn(move || {
                let pool = procspawn::Pool::builder(workers)
                    .env(PARENT_ENV, std::process::id().to_string())
                    .build();
                // A late pool is dropped here, which kills its workers.
                let _ = sender.send(pool);
            })
            .map_err(|e| {
                OperoError::new(ErrorKind::Executor, "cannot start the worker-pool thread")
                    .with_source(e)
            })?;
        let pool = match receiver.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(pool)) => pool,
            Ok(Err(e)) => {
                return Err(OperoError::new(
                    ErrorKind::Executor,
                    format!("cannot start the worker processes: {e}"),
                )
                .with_source(e))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(OperoError::new(
                    ErrorKind::Executor,
                    format!(
                        "the worker processes did not report in within {STARTUP_TIMEOUT:?}: is \
                         `opero::init_workers();` the first line of `main`, run on every start?"
                    ),
                ))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(OperoError::new(
                    ErrorKind::Executor,
                    "the worker pool failed while starting its processes",
                ))
            }
        };
        tracing::debug!(target: "opero", workers, "opmap worker processes started");
        Ok(Workers {
            pool,
            serve,
            channels: Mutex::new(Channels {
                idle: Vec::with_capacity(workers),
                open: 0,
            }),
            freed: Condvar::new(),
            closing: AtomicBool::new(false),
            workers,
            timeout,
            status: StatusDir::create(),
        })
    }

    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// A channel to a worker: an idle one, a new one on the next free (or freshly restarted)
    /// process of the pool, or, when every worker has one, the next one given back.
    fn channel(&self) -> Result<Channel<A, R>, Fault> {
        let mut channels = lock(&self.channels);
        loop {
            if self.closing.load(Ordering::SeqCst) {
                return Err(Fault::Crashed(
                    "the opmap was dropped before a worker took the attempt".to_owned(),
                ));
            }
            if let Some(channel) = channels.idle.pop() {
                return Ok(channel);
            }
            if channels.open < self.workers {
                channels.open += 1;
                break;
            }
            channels = self
                .freed
                .wait(channels)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        drop(channels);
        let opened = self.open();
        if opened.is_err() {
            self.closed();
        }
        opened
    }

    /// Gives a healthy channel back.
    fn give_back(&self, channel: Channel<A, R>) {
        lock(&self.channels).idle.push(channel);
        self.freed.notify_one();
    }

    /// Books a channel whose worker died or was killed.
    fn closed(&self) {
        let mut channels = lock(&self.channels);
        channels.open = channels.open.saturating_sub(1);
        drop(channels);
        self.freed.notify_one();
    }

    fn open(&self) -> Result<Channel<A, R>, Fault> {
        let no_worker = |why: String| Fault::Crashed(format!("no worker: {why}"));
        let (requests, worker_requests) = ipc::channel().map_err(|e| no_worker(e.to_string()))?;
        let (worker_replies, replies) = ipc::channel().map_err(|e| no_worker(e.to_string()))?;
        // procspawn panics when the pool was killed (the opmap is being dropped) or a channel
        // cannot be made; either way this attempt has no worker.
        let serve = self.serve;
        let status = self.status.next_file();
        let status_arg = status.as_ref().and_then(|p| p.to_str()).map(str::to_owned);
        let call = catch_unwind(AssertUnwindSafe(|| {
            self.pool
                .spawn((worker_requests, worker_replies, status_arg), serve)
        }))
        .map_err(|payload| no_worker(panic_message(payload)))?;
        Ok(Channel {
            call,
            requests,
            replies,
            status: StatusFile(status),
        })
    }

    /// One request to a worker, blocking until it replies, dies or times out.
    pub(crate) fn call(&self, request: A) -> Result<R, Fault> {
        let mut channel = self.channel()?;
        if channel.requests.send(request).is_err() {
            let fault = crashed(&mut channel);
            drop(channel);
            self.closed();
            return Err(fault);
        }
        let fault = match self.receive(&channel) {
            Ok(reply) => {
                self.give_back(channel);
                return Ok(reply);
            }
            Err(NoReply::TimedOut(timeout)) => {
                // Killing the hung worker makes procspawn start a fresh one in its place.
                let _ = channel.call.kill();
                tracing::warn!(target: "opero", ?timeout, "opmap worker timed out; killed");
                Fault::TimedOut(timeout)
            }
            Err(NoReply::Closing) => {
                let _ = channel.call.kill();
                Fault::Crashed("the opmap was dropped while the worker was busy".to_owned())
            }
            Err(NoReply::Closed) => crashed(&mut channel),
        };
        drop(channel);
        self.closed();
        Err(fault)
    }

    /// Waits for the reply on `channel`, in slices of [`CLOSING_POLL`] so that a caller still
    /// waiting when the opmap is dropped (a batch thread) lets go of its worker promptly.
    fn receive(&self, channel: &Channel<A, R>) -> Result<R, NoReply> {
        let deadline = self
            .timeout
            .and_then(|timeout| Instant::now().checked_add(timeout));
        loop {
            let slice = match deadline {
                Some(deadline) => deadline
                    .saturating_duration_since(Instant::now())
                    .min(CLOSING_POLL),
                None => CLOSING_POLL,
            };
            match channel.replies.try_recv_timeout(slice) {
                Ok(reply) => return Ok(reply),
                Err(TryRecvError::IpcError(_)) => return Err(NoReply::Closed),
                Err(TryRecvError::Empty) => {}
            }
            if self.closing.load(Ordering::SeqCst) {
                return Err(NoReply::Closing);
            }
            if let (Some(deadline), Some(timeout)) = (deadline, self.timeout) {
                if Instant::now() >= deadline {
                    return Err(NoReply::TimedOut(timeout));
                }
            }
        }
    }
}

/// The worker of `channel` died: says how, from procspawn's error when it has more to say (a
/// panic outside the function) and otherwise from the worker's status file.
fn crashed<A, R>(channel: &mut Channel<A, R>) -> Fault {
    let pid = channel.call.pid();
    // The worker's loop call ends with the process; its error says whether it panicked.
    let told = match channel.call.join_timeout(Duration::from_millis(100)) {
        Err(e) if !e.is_timeout() => describe(&e),
        _ => None,
    };
    let _ = channel.call.kill();
    // The worker wrote its status before it died, and the channel closed only once it had.
    let why = told.unwrap_or_else(|| last_words::read(channel.status.0.as_deref(), pid));
    tracing::warn!(target: "opero", error = %why, "opmap worker crashed; replaced");
    Fault::Crashed(why)
}

/// What a failed procspawn call says about the worker, beyond that it died (procspawn reaps a
/// dead worker itself and keeps no exit status: that comes from the status file).
fn describe(e: &procspawn::SpawnError) -> Option<String> {
    if let Some(panic) = e.panic_info() {
        Some(format!(
            "the worker process panicked outside the function: {}",
            panic.message()
        ))
    } else if e.is_remote_close() {
        None
    } else if e.is_cancellation() {
        Some("the call was cancelled before a worker took it".to_owned())
    } else {
        Some(format!("the worker process failed: {e}"))
    }
}

impl<A, R> Workers<A, R> {
    /// Step 1 of shutting down (see [`shut_down`](Self::shut_down)): no channel opens any more,
    /// and callers waiting for a channel or a reply give up.
    fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        // Taken so that a caller between its check of `closing` and its wait cannot miss this.
        drop(lock(&self.channels));
        self.freed.notify_all();
    }

    /// Stops every worker and reaps it before returning, without ever waiting on a lock that a
    /// procspawn monitor thread may hold for good.
    ///
    /// Why the order matters (the hang this replaces): procspawn runs a monitor thread per
    /// worker. When the process serving a pooled call dies, its monitor locks that worker's
    /// `join_handle` mutex, reaps the process and, *still holding the lock*, reports the error
    /// to the call's `JoinHandle` through a rendezvous channel (`sync_channel(0)`): the send
    /// waits until someone joins that handle or drops it. `Pool::kill` locks every worker's
    /// `join_handle` in turn. Our idle channels keep their call's `JoinHandle` and nobody joins
    /// it, so when a worker was SIGKILLed while its channel was idle, its monitor sat in that
    /// send for good, and calling `Pool::kill` before dropping the idle channels waited on the
    /// monitor's lock for good: the drop hung, and the workers after it in the pool were never
    /// killed.
    ///
    /// So no call of ours is left unjoined and undropped when `Pool::kill` runs, and no monitor
    /// is still working on one either:
    /// 1. `closing` stops new channels and makes callers still waiting for a reply (batch
    ///    threads) kill their worker and drop their channel.
    /// 2. Each idle channel's requests are closed, which ends its worker's loop (the worker
    ///    goes back to procspawn's pool, alive and idle), and its call is joined: that takes
    ///    the monitor's report, whether the loop ended or the worker had died. Killing an idle
    ///    worker instead would make procspawn start a fresh process in its place first.
    /// 3. Waits for procspawn to have no call active or queued: a monitor that is restarting a
    ///    worker (after a crash, or one killed from outside) stores the new process only when
    ///    it has started; `Pool::kill` running before that would miss it.
    /// 4. `Pool::kill` then finds every monitor idle, no lock held, and kills and reaps each
    ///    process.
    ///
    /// Steps 2 and 3 are bounded by [`SHUTDOWN_STEP`]. A monitor can block for good only in
    /// procspawn's own restart, when a fresh process dies before it connects; it holds no lock
    /// that `Pool::kill` needs, so the drop still returns (that process stays a zombie of the
    /// stuck thread).
    fn shut_down(&mut self) {
        self.close();
        let idle = std::mem::take(&mut lock(&self.channels).idle);
        let mut calls = Vec::with_capacity(idle.len());
        for channel in idle {
            let Channel {
                call,
                requests,
                replies,
                status,
            } = channel;
            drop(requests);
            calls.push((call, replies, status));
        }
        let deadline = Instant::now() + SHUTDOWN_STEP;
        for (mut call, _replies, _status) in calls {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(e) = call.join_timeout(left.max(Duration::from_millis(1))) {
                if e.is_timeout() {
                    tracing::debug!(target: "opero", "an idle opmap worker did not end its loop in time; killed");
                }
            }
            // Dropping an unjoined call kills its worker; a joined one is left alone.
        }
        let deadline = Instant::now() + SHUTDOWN_STEP;
        while self.pool.active_count() + self.pool.queued_count() > 0 {
            if Instant::now() >= deadline {
                tracing::warn!(target: "opero", active = self.pool.active_count(),
                    "procspawn is still restarting an opmap worker; killing the pool anyway");
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.pool.kill();
    }
}

impl<A, R> Drop for Workers<A, R> {
    fn drop(&mut self) {
        // The status files went with their channels; the directory goes when `status` drops.
        self.shut_down();
        tracing::debug!(target: "opero", workers = self.workers, "opmap worker processes stopped");
    }
}

// ===== batches for async_process =====

/// One attempt waiting for a batch.
pub(crate) struct Job {
    pub(crate) request: Vec<u8>,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<Reply, Fault>>,
}

/// Groups the attempts of an async opmap into batches, one batch in flight per worker process:
/// `workers` dispatcher threads each take up to `per_worker` waiting attempts, send them as one
/// call, and hand each reply back to its attempt. A worker that dies fails every attempt of its
/// batch with the same [`Fault`]; each is retried on its own.
pub(crate) struct Batches {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    workers: Arc<BatchWorkers>,
    per_worker: usize,
    /// Disconnects when the last batch thread has ended (each holds a sender).
    stopped: Mutex<mpsc::Receiver<()>>,
}

impl Batches {
    pub(crate) fn start(workers: BatchWorkers, per_worker: usize) -> Result<Self, OperoError> {
        let workers = Arc::new(workers);
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let (running, stopped) = mpsc::channel::<()>();
        for n in 0..workers.workers() {
            let receiver = Arc::clone(&receiver);
            let pool = Arc::clone(&workers);
            let running = running.clone();
            std::thread::Builder::new()
                .name(format!("opero-process-batch-{n}"))
                .spawn(move || {
                    dispatch(&receiver, &pool, per_worker);
                    // Let go of the workers before saying so: the drop that waits for this
                    // must hold the last reference, to stop them before it returns.
                    drop(pool);
                    drop(running);
                })
                .map_err(|e| {
                    OperoError::new(ErrorKind::Executor, "cannot start a batch thread")
                        .with_source(e)
                })?;
        }
        Ok(Batches {
            queue: Mutex::new(Some(sender)),
            workers,
            per_worker,
            stopped: Mutex::new(stopped),
        })
    }

    pub(crate) fn workers(&self) -> usize {
        self.workers.workers()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.workers.workers().saturating_mul(self.per_worker)
    }

    /// Queues one attempt; the receiver gets its reply or its fault.
    pub(crate) fn submit(
        &self,
        request: Vec<u8>,
    ) -> tokio::sync::oneshot::Receiver<Result<Reply, Fault>> {
        let (reply, receiver) = tokio::sync::oneshot::channel();
        let job = Job { request, reply };
        let rejected = match &*lock(&self.queue) {
            Some(queue) => queue.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        if let Some(job) = rejected {
            let _ = job.reply.send(Err(Fault::Crashed(
                "the worker pool has stopped".to_owned(),
            )));
        }
        receiver
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        // Closing the queue ends the batch threads once their batch is done, and closing the
        // workers ends those batches at once (their attempts, whose callers are gone, get a
        // fault nobody reads). The pool itself is stopped by the last holder of `workers`:
        // normally this drop, once the batch threads have let go of their channels, since
        // stopping it while a batch thread still holds one is what it must not do (see
        // `Workers::shut_down`). A batch thread that overruns the wait stops it when it ends.
        lock(&self.queue).take();
        self.workers.close();
        let stopped = self
            .stopped
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(SHUTDOWN_STEP) {
            tracing::warn!(target: "opero", "an opmap batch thread did not stop in time; its workers stop when it does");
        }
    }
}

fn dispatch(receiver: &Mutex<mpsc::Receiver<Job>>, workers: &BatchWorkers, per_worker: usize) {
    loop {
        let batch = {
            let receiver = lock(receiver);
            let Ok(first) = receiver.recv() else { return };
            let mut batch = vec![first];
            while batch.len() < per_worker {
                match receiver.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        // An attempt whose caller went away (its map was dropped midway) needs no worker.
        let batch: Vec<Job> = batch.into_iter().filter(|j| !j.reply.is_closed()).collect();
        if batch.is_empty() {
            continue;
        }
        let (requests, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|j| (j.request, j.reply)).unzip();
        let count = requests.len();
        match workers.call(requests) {
            Ok(answers) if answers.len() == count => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Ok(answers) => {
                let fault = Fault::Crashed(format!(
                    "the worker answered {} of {count} items",
                    answers.len()
                ));
                for reply in replies {
                    let _ = reply.send(Err(fault.clone()));
                }
            }
            Err(fault) => {
                for reply in replies {
                    let _ = reply.send(Err(fault.clone()));
                }
            }
        }
    }
}
