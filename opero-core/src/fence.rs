//! An asymmetric memory fence: a free fence on a fast path, paid for by a system call on a rare
//! slow path.
//!
//! A thread that stores to a word of its own and then loads a shared flag needs a full fence
//! between the two (an atomic read-modify-write, several nanoseconds) for another thread that
//! sets the flag and then loads the word to see one of the two. With Linux's `membarrier`
//! system call the other thread forces that fence onto every running thread of the process
//! instead, so the fast path keeps only a compiler fence. This is the kernel's documented use of
//! `MEMBARRIER_CMD_PRIVATE_EXPEDITED`, as in folly's `asymmetricHeavyBarrier` and liburcu.
//!
//! This is opero-core's one use of `unsafe`: the system call itself.
#![allow(unsafe_code)]

use std::sync::OnceLock;

/// Whether [`heavy`] works in this process: asked of the kernel once, and the process
/// registered for it. Without it (another OS, an old kernel, a sandbox that refuses the call)
/// callers take their symmetric path.
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(register)
}

/// Forces a full memory fence on every running thread of the process; a thread that is not
/// running passed one when it was switched out. Only after [`available`] answered true; false
/// if the kernel refused, which it does only to an unregistered process.
pub(crate) fn heavy() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: membarrier takes no pointers; the process registered in `register`.
        let done = unsafe { libc::syscall(libc::SYS_membarrier, PRIVATE_EXPEDITED, 0, 0) };
        if done != 0 {
            tracing::error!(
                target: "opero",
                error = %std::io::Error::last_os_error(),
                "membarrier failed after registration"
            );
        }
        done == 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}

#[cfg(target_os = "linux")]
const PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
#[cfg(target_os = "linux")]
const REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

fn register() -> bool {
    #[cfg(target_os = "linux")]
    {
        const QUERY: libc::c_int = 0;
        // SAFETY: membarrier takes no pointers.
        let supported = unsafe { libc::syscall(libc::SYS_membarrier, QUERY, 0, 0) };
        if supported < 0 || supported & libc::c_long::from(PRIVATE_EXPEDITED) == 0 {
            return false;
        }
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_membarrier, REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_heavy_fence_works_wherever_it_is_offered() {
        // A sandbox may refuse membarrier: then callers keep their symmetric path.
        if super::available() {
            assert!(super::heavy());
        } else {
            assert!(!super::heavy(), "refused to an unregistered process");
        }
    }
}
