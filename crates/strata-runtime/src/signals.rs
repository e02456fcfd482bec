//! Signal forwarding down the process tree (caller -> keeper -> init -> command).
//!
//! Signals a terminal generates (Ctrl-C, Ctrl-\) reach the whole foreground process
//! group, the command included, so they are not forwarded again; signals sent with
//! kill(2) to the caller (or to init) are passed down.

use std::sync::atomic::{AtomicI32, Ordering};

static TARGET: AtomicI32 = AtomicI32::new(0);
/// With `-t`, init's pseudo-terminal master: a resize of our terminal is copied to it.
static RESIZE: AtomicI32 = AtomicI32::new(-1);
const FORWARDED: [i32; 7] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGWINCH];

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    if sig == libc::SIGWINCH {
        let master = RESIZE.load(Ordering::Relaxed);
        if master >= 0 {
            // SAFETY: the master stays open while init relays it; the fd is only borrowed
            // for the two ioctls.
            crate::tty::copy_winsize(unsafe { std::os::fd::BorrowedFd::borrow_raw(master) });
            return; // the command's terminal signals the command itself
        }
    }
    if code == libc::SI_KERNEL {
        return; // from the terminal: the command got it too
    }
    let target = TARGET.load(Ordering::Relaxed);
    if target > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(target, sig) };
    }
}

fn set(handler: libc::sighandler_t, flags: libc::c_int) {
    for sig in FORWARDED {
        // SAFETY: a zeroed sigaction with a valid handler and an empty mask.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler;
            sa.sa_flags = flags;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// From now on, forward signals to `pid`.
pub fn forward_to(pid: i32) {
    TARGET.store(pid, Ordering::Relaxed);
    set(forward as *const () as libc::sighandler_t, libc::SA_SIGINFO | libc::SA_RESTART);
}

/// Resizes of our terminal go to the pseudo-terminal master `fd` (init, with `-t`).
pub fn resize_into(fd: i32) {
    RESIZE.store(fd, Ordering::Relaxed);
}

/// Back to the default actions.
pub fn restore() {
    set(libc::SIG_DFL, 0);
    TARGET.store(0, Ordering::Relaxed);
}

/// In a new child: default actions (SIGPIPE too, which Rust ignores and execve would
/// pass on), nothing blocked.
pub fn reset() {
    restore();
    // SAFETY: setting a default disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // SAFETY: an empty set unblocks everything.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}
