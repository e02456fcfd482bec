//! `stop`, `kill`, `wait`, `restart`: Docker's commands for a running container.
//!
//! Signals go to the container's pid 1 through a pidfd opened while the recorded start
//! time still matches, so a reused pid is never signalled; its end is awaited on the
//! same pidfd.

use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use strata_store::Store;
use strata_store::container::{self, Container};

use crate::manage::each;
use crate::monitor::{live, reap};

const SIGNALS: [(&str, i32); 31] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// `TERM`, `SIGTERM`, `sigterm` or `15`.
pub fn parse_signal(s: &str) -> Result<i32> {
    let upper = s.trim().to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Ok(n) = name.parse::<i32>()
        && SIGNALS.iter().any(|(_, v)| *v == n)
    {
        return Ok(n);
    }
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).ok_or_else(|| anyhow!("invalid signal: {s}"))
}

/// The image's `StopSignal`, else SIGTERM (as Docker).
fn stop_signal(store: &Store, c: &Container) -> i32 {
    let image = store.image(&c.image).ok();
    let sig = image.as_ref().and_then(|i| i.config.get("config")?.get("StopSignal")?.as_str().map(str::to_string));
    sig.and_then(|s| parse_signal(&s).ok()).unwrap_or(libc::SIGTERM)
}

/// The container's pid 1 as a pidfd, if it runs.
pub(crate) fn pid1(c: &Container) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(c.state.pid)?;
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
    // Checked once the descriptor is open: it then names the recorded process.
    c.is_running().then_some(fd)
}

pub(crate) fn send(fd: &OwnedFd, sig: i32) -> Result<()> {
    let signal = rustix::process::Signal::from_named_raw(sig).ok_or_else(|| anyhow!("invalid signal {sig}"))?;
    match rustix::process::pidfd_send_signal(fd, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(anyhow!("sending signal {sig} to the container: {e}")),
    }
}

/// Waits up to `limit` for the process of a pidfd to end; true if it has.
fn wait_exit(fd: &OwnedFd, limit: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let t0 = Instant::now();
    while let Some(left) = limit.checked_sub(t0.elapsed()) {
        let ts = Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) };
        match poll(&mut [PollFd::new(fd, PollFlags::IN)], Some(&ts)) {
            Ok(n) if n > 0 => return true,
            Ok(_) => return false,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    false
}

/// Waits until the container no longer runs and its end is recorded (by its monitor,
/// or by `strata run` in the foreground; [`reap`]ed when neither is left to do it).
fn wait_ended(store: &Store, id: &str) -> Result<Container> {
    let mut gone_since: Option<Instant> = None;
    let mut last: Option<Container> = None;
    loop {
        let c = match (container::find(store, id), last) {
            (Ok(c), _) => c,
            // `--rm`: its monitor removed it once it had ended; its end as last seen.
            (Err(strata_store::StoreError::NoSuchContainer(_)), Some(l)) if l.config.keep.auto_remove => return Ok(l),
            (Err(e), _) => return Err(e.into()),
        };
        // `--rm`: its end is recorded before its monitor removes it.
        if c.config.keep.auto_remove && c.state.status == "exited" && c.state.exit_code.is_some() {
            return Ok(c);
        }
        // A created container is waited for until it has run, unless it failed to start.
        if !live(&c) && (c.state.status != "created" || c.state.error.is_some()) {
            let since = *gone_since.get_or_insert_with(Instant::now);
            if c.state.status != "running" || since.elapsed() > Duration::from_secs(5) {
                return reap(store, &c);
            }
        }
        last = Some(c);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a running container: its stop signal, then SIGKILL after `timeout`. False if
/// it was not running. Its restart policy no longer applies (Docker's manual stop); a
/// paused one is thawed once signalled, so that it gets the signal.
pub fn stop(store: &Store, c: &Container, timeout: Duration) -> Result<bool> {
    if live(c) {
        container::update(store, &c.id, |c| c.state.manually_stopped = true)?;
    }
    let Some(fd) = pid1(c) else {
        // Restarting: its monitor ends on seeing the flag.
        crate::monitor::wait_monitor(store, &c.id, Duration::from_secs(10));
        reap(store, c)?;
        return Ok(false);
    };
    send(&fd, stop_signal(store, c))?;
    crate::manage::thaw_after_signal(c);
    if !wait_exit(&fd, timeout) {
        tracing::info!("container {} did not stop within {timeout:?}: SIGKILL", c.name);
        send(&fd, libc::SIGKILL)?;
        if !wait_exit(&fd, Duration::from_secs(30)) {
            bail!("container {} did not end after SIGKILL", c.name);
        }
    }
    wait_ended(store, &c.id)?;
    Ok(true)
}

pub fn cmd_stop(store: &Store, refs: &[String], secs: u64) -> Result<ExitCode> {
    // A container already stopped: only its name, exit status 0, as Docker.
    Ok(each(store, refs, |c| stop(store, c, Duration::from_secs(secs)).map(|_| ())))
}

pub fn cmd_kill(store: &Store, refs: &[String], signal: &str) -> Result<ExitCode> {
    let sig = parse_signal(signal)?;
    Ok(each(store, refs, |c| match pid1(c) {
        Some(fd) => {
            // SIGKILL or its stop signal: its restart policy no longer applies (Docker's
            // kill); a paused container is thawed to get it.
            let ends = sig == libc::SIGKILL || sig == stop_signal(store, c);
            if ends {
                container::update(store, &c.id, |c| c.state.manually_stopped = true)?;
            }
            send(&fd, sig)?;
            if ends {
                crate::manage::thaw_after_signal(c);
            }
            Ok(())
        }
        None => bail!("cannot kill container: {}: container {} is not running", c.name, c.id),
    }))
}

pub fn cmd_restart(store: &Store, refs: &[String], secs: u64) -> Result<ExitCode> {
    Ok(each(store, refs, |c| {
        stop(store, c, Duration::from_secs(secs))?;
        let c = container::find(store, &c.id)?;
        crate::monitor::start_detached(store, &c)
    }))
}

/// `wait`: blocks until each container has ended, then prints its exit status.
pub fn cmd_wait(store: &Store, refs: &[String]) -> Result<ExitCode> {
    let mut failed = false;
    for r in refs {
        let res = container::find(store, r).map_err(anyhow::Error::from).and_then(|c| {
            let c = wait_ended(store, &c.id)?;
            c.state.exit_code.ok_or_else(|| {
                anyhow!("container {}: its exit status is unknown (its monitor was killed before it ended)", c.name)
            })
        });
        match res {
            Ok(code) => println!("{code}"),
            Err(e) => {
                eprintln!("strata: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("SIGTERM").ok(), Some(libc::SIGTERM));
        assert_eq!(parse_signal("kill").ok(), Some(libc::SIGKILL));
        assert_eq!(parse_signal("10").ok(), Some(libc::SIGUSR1));
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}
