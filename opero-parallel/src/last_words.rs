//! How a worker process ended, as its parent learns it.
//!
//! procspawn reaps a dead worker itself and keeps no exit status, so the worker records its own
//! end: each worker channel gets a small status file in a directory of its pool, which the worker
//! opens when it starts serving and where it writes `pid <pid>`. On Unix, handlers for the fatal
//! signals append `signal <n>` (with only `write(2)`, as a signal handler must), and on
//! Linux/glibc an `on_exit(3)` hook appends `exit <status>`. When the worker dies, the parent reads
//! the file and names the signal or status in [`AttemptError::Crashed`](opero_core::AttemptError);
//! SIGKILL (a timeout, the OOM killer) runs no handler, and the file then has the pid alone.
//!
//! Other platforms keep no status file; the parent then only says that the worker died.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a status file says about how its worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Record {
    pid: Option<u32>,
    end: Option<End>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Signal(i32),
    Exit(i32),
}

/// Reads a status file's lines; the last `signal` or `exit` line is how the process ended (a
/// stack overflow, say, records SIGSEGV and then the SIGABRT that Rust's handler raises).
fn parse(text: &str) -> Record {
    let mut record = Record::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(word), Some(number)) = (words.next(), words.next()) else {
            continue;
        };
        match word {
            "pid" => record.pid = number.parse().ok().or(record.pid),
            "signal" => {
                if let Ok(n) = number.parse() {
                    record.end = Some(End::Signal(n));
                }
            }
            "exit" => {
                if let Ok(n) = number.parse() {
                    record.end = Some(End::Exit(n));
                }
            }
            _ => {}
        }
    }
    record
}

/// The usual name of a signal number, for the few a crash is likely to end in.
fn signal_name(signal: i32) -> Option<&'static str> {
    #[cfg(unix)]
    {
        let names = [
            (libc::SIGSEGV, "SIGSEGV"),
            (libc::SIGBUS, "SIGBUS"),
            (libc::SIGILL, "SIGILL"),
            (libc::SIGFPE, "SIGFPE"),
            (libc::SIGABRT, "SIGABRT"),
            (libc::SIGTERM, "SIGTERM"),
            (libc::SIGKILL, "SIGKILL"),
            (libc::SIGINT, "SIGINT"),
            (libc::SIGHUP, "SIGHUP"),
            (libc::SIGPIPE, "SIGPIPE"),
            (libc::SIGTRAP, "SIGTRAP"),
            (libc::SIGSYS, "SIGSYS"),
        ];
        names
            .iter()
            .find(|(n, _)| *n == signal)
            .map(|(_, name)| *name)
    }
    #[cfg(not(unix))]
    {
        let _ = signal;
        None
    }
}

/// What a worker that ended without a recorded status most likely met.
const NO_STATUS: &str = if cfg!(all(target_os = "linux", target_env = "gnu")) {
    "died without a status (SIGKILL or killed from outside)"
} else if cfg!(unix) {
    "died without a status (SIGKILL, killed from outside, or `exit`)"
} else {
    "died during the call (its exit status is not recorded on this platform)"
};

fn message(record: Record, pid: Option<u32>) -> String {
    let who = match record.pid.or(pid) {
        Some(pid) => format!("worker process {pid}"),
        None => "the worker process".to_owned(),
    };
    match record.end {
        Some(End::Signal(n)) => match signal_name(n) {
            Some(name) => format!("{who} killed by signal {n} ({name})"),
            None => format!("{who} killed by signal {n}"),
        },
        Some(End::Exit(status)) => format!("{who} exited with status {status}"),
        None => format!("{who} {NO_STATUS}"),
    }
}

/// Says how the worker of a channel ended, from its status file (if it has one) and the pid
/// procspawn knows (if it still does).
pub(crate) fn read(status: Option<&Path>, pid: Option<u32>) -> String {
    let record = status
        .and_then(|path| std::fs::read_to_string(path).ok())
        .map(|text| parse(&text))
        .unwrap_or_default();
    message(record, pid)
}

// ===== the parent's side =====

/// The status directory of one pool: a file per worker channel, removed with the pool.
#[derive(Debug)]
pub(crate) struct StatusDir {
    dir: Option<PathBuf>,
    next: AtomicU64,
}

impl StatusDir {
    /// Makes the pool's directory in the temp dir; without one (or off Unix), crashes are
    /// reported without their status.
    pub(crate) fn create() -> Self {
        static POOLS: AtomicU64 = AtomicU64::new(0);
        let dir = if cfg!(unix) {
            let pool = POOLS.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("opero-workers-{}-{pool}", std::process::id()));
            // A directory of that name was left by an earlier process with the same pid.
            let made = std::fs::create_dir(&dir).or_else(|_| {
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir(&dir)
            });
            match made {
                Ok(()) => Some(dir),
                Err(e) => {
                    tracing::debug!(target: "opero", error = %e, dir = %dir.display(),
                        "no status directory for the opmap workers; crashes are reported without \
                         their signal or exit status");
                    None
                }
            }
        } else {
            None
        };
        StatusDir {
            dir,
            next: AtomicU64::new(0),
        }
    }

    /// A fresh status file path for the next worker channel, if there is a directory (and its
    /// path is text, as it crosses to the worker).
    pub(crate) fn next_file(&self) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(n.to_string());
        path.to_str().is_some().then_some(path)
    }
}

impl Drop for StatusDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::debug!(target: "opero", error = %e, dir = %dir.display(),
                        "cannot remove the opmap workers' status directory");
                }
            }
        }
    }
}

// ===== the worker's side =====

/// Keeps this worker's status file armed while it serves a channel; dropping it (the parent
/// closed the channel: a normal end) disarms it, so that the exit that follows is not recorded.
#[must_use]
pub(crate) struct Armed(());

impl Drop for Armed {
    fn drop(&mut self) {
        imp::disarm();
    }
}

/// Opens `path` as this worker's status file and installs the hooks that write to it.
pub(crate) fn arm(path: Option<&str>) -> Armed {
    if let Some(path) = path {
        imp::arm(Path::new(path));
    }
    Armed(())
}

/// The parent died: stops recording and removes this worker's file (and the pool's directory,
/// once empty), since nobody is left to read or remove them.
pub(crate) fn forget() {
    if let Some(path) = imp::disarm() {
        let _ = std::fs::remove_file(&path);
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[cfg(unix)]
mod imp {
    use std::ffi::{c_int, c_void};
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::{Mutex, Once, OnceLock};

    use crate::executor::lock;

    /// The open status file, or -1; the only state the signal handlers read.
    static FD: AtomicI32 = AtomicI32::new(-1);

    /// The status file's path, for [`super::forget`]; never touched by a handler.
    static PATH: Mutex<Option<PathBuf>> = Mutex::new(None);

    /// The signals a crash ends in, recorded before the process dies of them.
    const SIGNALS: [c_int; 6] = [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGABRT,
        libc::SIGTERM,
    ];

    /// The disposition each of [`SIGNALS`] had before, restored by the handler; `None` where
    /// it was ignored, which stays so.
    static PREVIOUS: OnceLock<[Option<libc::sigaction>; SIGNALS.len()]> = OnceLock::new();

    pub(super) fn arm(path: &Path) {
        let opened = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| {
                writeln!(file, "pid {}", std::process::id())?;
                Ok(file)
            });
        let file = match opened {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(target: "opero", error = %e, path = %path.display(),
                    "opmap worker cannot open its status file; a crash will be reported without \
                     its signal or exit status");
                return;
            }
        };
        *lock(&PATH) = Some(path.to_path_buf());
        // A descriptor swapped out here is left open rather than closed: a handler running at
        // this moment on another thread could otherwise write into a file that reused it.
        FD.store(file.into_raw_fd(), Ordering::SeqCst);
        static HOOKS: Once = Once::new();
        HOOKS.call_once(|| {
            install_handlers();
            install_exit_hook();
        });
    }

    /// Stops recording; returns the file's path. The descriptor stays open (see [`arm`]).
    pub(super) fn disarm() -> Option<PathBuf> {
        FD.store(-1, Ordering::SeqCst);
        lock(&PATH).take()
    }

    /// Appends `<word> <n>\n` to the status file. Async-signal-safe: an atomic load, a buffer on
    /// the stack and one `write(2)`; no allocation, no lock.
    fn record(word: &[u8], n: c_int) {
        let fd = FD.load(Ordering::SeqCst);
        if fd < 0 {
            return;
        }
        let mut line = [0u8; 40];
        let mut len = 0;
        for &b in word.iter().take(24) {
            line[len] = b;
            len += 1;
        }
        line[len] = b' ';
        len += 1;
        let mut digits = [0u8; 12];
        let mut count = 0;
        let negative = n < 0;
        let mut rest = n.unsigned_abs();
        loop {
            digits[count] = b'0' + (rest % 10) as u8;
            count += 1;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if negative {
            line[len] = b'-';
            len += 1;
        }
        while count > 0 {
            count -= 1;
            line[len] = digits[count];
            len += 1;
        }
        line[len] = b'\n';
        len += 1;
        write_all(fd, &line[..len]);
    }

    #[allow(unsafe_code)]
    fn write_all(fd: c_int, bytes: &[u8]) {
        // SAFETY: `write(2)` is async-signal-safe; `bytes` is a live slice of `bytes.len()`
        // bytes. A short line to a regular file opened for appending is written whole; a failed
        // write (a descriptor that is no longer valid) only loses the record.
        let _ = unsafe { libc::write(fd, bytes.as_ptr().cast::<c_void>(), bytes.len()) };
    }

    /// Records the signal, gives the signal back its previous disposition and lets it take its
    /// course: a fault recurs when the faulting instruction runs again, a signal sent by
    /// `kill`/`raise` (as `abort` does) is raised again and delivered when this returns.
    #[allow(unsafe_code)]
    extern "C" fn on_signal(signal: c_int, info: *mut libc::siginfo_t, _context: *mut c_void) {
        record(b"signal", signal);
        let previous = PREVIOUS.get().and_then(|previous| {
            SIGNALS
                .iter()
                .position(|&s| s == signal)
                .and_then(|i| previous[i])
        });
        // SAFETY: `sigaction(2)` and `raise(3)` are async-signal-safe. The restored disposition
        // is the one the kernel reported before this handler replaced it (or the default), so
        // it is a valid `sigaction` value. `info`, when not null, points at the siginfo the
        // kernel passed to this SA_SIGINFO handler, valid for the handler's duration.
        unsafe {
            let action = match previous {
                Some(action) => action,
                None => {
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = libc::SIG_DFL;
                    action
                }
            };
            libc::sigaction(signal, &action, std::ptr::null_mut());
            let sent = info.is_null() || (*info).si_code <= 0;
            if sent {
                libc::raise(signal);
            }
        }
    }

    #[allow(unsafe_code)]
    fn install_handlers() {
        let mut previous = [None; SIGNALS.len()];
        for (slot, &signal) in previous.iter_mut().zip(SIGNALS.iter()) {
            // SAFETY: querying a disposition with a null new action changes nothing; `old` is
            // a zeroed `sigaction`, a valid value for the kernel to fill in.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            let queried = unsafe { libc::sigaction(signal, std::ptr::null(), &mut old) };
            if queried == 0 && old.sa_sigaction != libc::SIG_IGN {
                *slot = Some(old);
            }
        }
        if PREVIOUS.set(previous).is_err() {
            return;
        }
        for (i, &signal) in SIGNALS.iter().enumerate() {
            if previous[i].is_none() {
                continue; // ignored, or unknown: leave it alone
            }
            let handler: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) = on_signal;
            // SAFETY: `action` starts zeroed (an empty mask, no flags), then gets a handler with
            // the three-argument signature SA_SIGINFO calls. SA_ONSTACK lets it run on the
            // alternate stack Rust sets up for its threads, so that a stack overflow is
            // recorded too. The handler only makes async-signal-safe calls.
            let installed = unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = handler as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut())
            };
            if installed != 0 {
                tracing::debug!(target: "opero", signal,
                    "opmap worker cannot record this signal in its status file");
            }
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    extern "C" {
        /// glibc's `on_exit(3)`: like `atexit`, with the status passed to `exit`.
        fn on_exit(function: extern "C" fn(c_int, *mut c_void), arg: *mut c_void) -> c_int;
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    extern "C" fn on_exit_status(status: c_int, _arg: *mut c_void) {
        // The parent sees the low byte of the value given to `exit`.
        record(b"exit", status & 0xff);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    fn install_exit_hook() {
        // SAFETY: `on_exit` is glibc's (this is a glibc target) and takes a function with this
        // signature and an argument it passes back, here unused and null. The hook only
        // appends one line to the status file (nothing once disarmed).
        let registered = unsafe { on_exit(on_exit_status, std::ptr::null_mut()) };
        if registered != 0 {
            tracing::debug!(target: "opero",
                "opmap worker cannot record its exit status in its status file");
        }
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    fn install_exit_hook() {}
}

#[cfg(not(unix))]
mod imp {
    use std::path::{Path, PathBuf};

    pub(super) fn arm(_path: &Path) {}

    pub(super) fn disarm() -> Option<PathBuf> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_end_line_wins_and_the_pid_is_kept() {
        let record = parse("pid 42\nsignal 11\nsignal 6\n");
        assert_eq!(record.pid, Some(42));
        assert_eq!(record.end, Some(End::Signal(6)));
        assert_eq!(parse("pid 7\nexit 3\n").end, Some(End::Exit(3)));
        assert_eq!(parse("pid 7\n").end, None);
        assert_eq!(parse("garbage\npid x\nsignal\n"), Record::default());
    }

    #[cfg(unix)]
    #[test]
    fn messages_name_the_signal_or_the_status() {
        let crashed = |text: &str| message(parse(text), None);
        assert_eq!(
            crashed("pid 9\nsignal 11\n"),
            "worker process 9 killed by signal 11 (SIGSEGV)"
        );
        assert_eq!(
            crashed("pid 9\nsignal 6\n"),
            "worker process 9 killed by signal 6 (SIGABRT)"
        );
        assert_eq!(
            crashed("pid 9\nexit 3\n"),
            "worker process 9 exited with status 3"
        );
        assert!(crashed("pid 9\n").starts_with("worker process 9 died without a status"));
        assert!(message(Record::default(), Some(5)).starts_with("worker process 5 "));
        assert!(read(Some(Path::new("/nonexistent/opero")), None).starts_with("the worker"));
    }
}
