//! `strata mount`: check everything in the foreground, then (unless `-f`) fork a daemon
//! and return once the mount is live, as mount(8) and fuse-overlayfs do.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::ExitCode;

use strata_union::{MountSpec, prepare};

use crate::{EXIT_USAGE, fail};

pub fn mount(options: &[String], foreground: bool, log_file: Option<&Path>, mountpoint: &Path) -> ExitCode {
    let spec = match MountSpec::parse(options) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_USAGE, &e),
    };
    let prepared = match prepare(spec, mountpoint) {
        Ok(p) => p,
        Err(e) => return fail(EXIT_USAGE, &e),
    };
    if foreground {
        daemon_process_setup();
        init_logging(log_file, true);
        return match prepared.serve(|_| {}) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(EXIT_USAGE, &e),
        };
    }

    let (reader, writer) = match rustix::pipe::pipe() {
        Ok(p) => p,
        Err(e) => return fail(1, &format!("pipe: {e}")),
    };
    // SAFETY: the process is single-threaded here (no logging or FUSE threads yet), so the
    // child may run arbitrary code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return fail(1, &format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid > 0 {
        drop(writer);
        return wait_ready(reader);
    }
    drop(reader);
    daemon_process_setup();
    let _ = rustix::process::setsid();
    detach_stdio(log_file);
    init_logging(log_file, false);
    let mut status = File::from(writer);
    let result = prepared.serve(|r| {
        let msg = match r {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        };
        let _ = status.write_all(msg.as_bytes()).and_then(|()| status.write_all(b"\n"));
        let _ = status.flush();
    });
    drop(status);
    // The daemon never returns into the caller's code (which may go on to use the mount).
    std::process::exit(match result {
        Ok(()) => 0,
        Err(_) => EXIT_USAGE.into(),
    })
}

/// Parent side: the daemon writes an empty line once the mount is live, or the error.
fn wait_ready(reader: OwnedFd) -> ExitCode {
    let mut msg = String::new();
    let _ = BufReader::new(File::from(reader)).read_line(&mut msg);
    match msg.strip_suffix('\n') {
        Some("") => ExitCode::SUCCESS,
        Some(err) => fail(EXIT_USAGE, &err),
        None => fail(1, &"the mount daemon exited before the mount was live"),
    }
}

fn detach_stdio(log_file: Option<&Path>) {
    let Ok(null) = File::options().read(true).write(true).open("/dev/null") else { return };
    let out = log_file.and_then(|p| open_log(p).ok());
    let _ = rustix::stdio::dup2_stdin(null.as_fd());
    let _ = rustix::stdio::dup2_stdout(null.as_fd());
    let _ = match &out {
        Some(f) => rustix::stdio::dup2_stderr(f.as_fd()),
        None => rustix::stdio::dup2_stderr(null.as_fd()),
    };
}

/// The daemon's log: for root's eyes only (it names paths of the mounted tree), whatever
/// the daemon's umask (0, so that files it creates get the modes asked for).
fn open_log(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options().create(true).append(true).mode(0o600).open(path)
}

fn init_logging(log_file: Option<&Path>, foreground: bool) {
    let builder = tracing_subscriber::fmt().with_env_filter(log_filter());
    // In the background, stderr already points at the log file (or nowhere).
    let file = if foreground { log_file.and_then(|p| open_log(p).ok()) } else { None };
    let _ = match file {
        Some(f) => builder.with_ansi(false).with_writer(std::sync::Mutex::new(f)).try_init(),
        None if foreground || log_file.is_some() => {
            builder.with_ansi(foreground).with_writer(std::io::stderr).try_init()
        }
        None => Ok(()),
    };
}

/// The daemon process only (never the caller of `mount`, which may go on to create files):
/// its creations carry exactly the modes the kernel asks for, and one malloc arena.
fn daemon_process_setup() {
    rustix::process::umask(rustix::fs::Mode::empty());
    one_malloc_arena();
}

/// The table's nodes are small, long-lived and made by every request thread: with an
/// arena per thread, glibc keeps each thread's freed pages apart and the daemon's memory
/// per cached entry grows by a third (measured: 493 -> 354 bytes per entry after a walk
/// of 42,000 entries). One arena costs nothing measurable at these request rates.
fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only tunes the allocator; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// `STRATA_LOG` (tracing `EnvFilter` syntax), `warn` by default.
pub fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
}
