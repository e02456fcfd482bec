//! `--init`: a small pid 1 that starts the command, passes on the signals sent to it,
//! reaps orphans and exits with the command's status (as `docker run --init`).
//!
//! It is this program, executed from a sealed in-memory copy (as runc does since
//! CVE-2019-5736): the container's `/proc/1/exe` is then that copy, which no one can
//! write, and never the host's binary. Like runc's, it is executed while still in the
//! host's root (its dynamic loader and libraries are the host's), after the mounts: it
//! reads the spec from a memfd, enters the root, takes on the container's user and
//! confinement itself, then forks the command. The binary's `main` calls
//! [`main_if_init`] first.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{MemfdFlags, SealFlags};

use crate::{RunSpec, RuntimeError, die, exit, exit_code, signals, sys};

/// `argv[0]` of the init: `strata-init FD`, FD a memfd holding the spec as JSON.
pub const ARGV0: &str = "strata-init";
/// The name of the sealed copy, as `/proc/self/exe` shows it.
const MEMFD_NAME: &str = "/memfd:strata-init";

/// Pid 1, mounts done and in the rootfs: executes the sealed init with the spec. The
/// init inherits `in_root` and closes it once in the container's root.
pub(crate) fn exec(exe: OwnedFd, spec: &RunSpec, in_root: File) -> ! {
    let plan = match write_plan(spec) {
        Ok(f) => f,
        Err(e) => die(&format!("passing the spec to the init: {e}")),
    };
    let fd = plan.as_raw_fd();
    let argv = [CString::new(ARGV0).unwrap_or_default(), CString::new(fd.to_string()).unwrap_or_default()];
    let argv_p = [argv[0].as_ptr(), argv[1].as_ptr(), std::ptr::null()];
    let envp_p = [std::ptr::null()];
    if let Err(e) = rustix::io::fcntl_setfd(&in_root, rustix::io::FdFlags::empty()) {
        die(&format!("passing a descriptor to the init: {e}"));
    }
    let keep = [fd as u32, exe.as_raw_fd() as u32, in_root.as_raw_fd() as u32];
    if let Err(e) = crate::close_from(3, &keep) {
        die(&format!("closing inherited descriptors: {e}"));
    }
    // SAFETY: a sealed memfd and NUL-terminated arrays of valid C strings that outlive
    // the call.
    unsafe { libc::fexecve(exe.as_raw_fd(), argv_p.as_ptr(), envp_p.as_ptr()) };
    die(&format!("executing the init: {}", std::io::Error::last_os_error()))
}

/// The spec in a memfd the init inherits (not close-on-exec).
fn write_plan(spec: &RunSpec) -> std::io::Result<File> {
    let fd = rustix::fs::memfd_create("strata-init-spec", MemfdFlags::empty())?;
    let mut f = File::from(fd);
    f.write_all(&serde_json::to_vec(spec).map_err(std::io::Error::other)?)?;
    f.rewind()?;
    Ok(f)
}

/// A copy of the running program in a sealed memfd: it can be executed, not changed.
pub fn sealed_copy_of_self() -> Result<OwnedFd, RuntimeError> {
    let mut exe = File::open("/proc/self/exe")
        .map_err(|e| RuntimeError::Sys { what: "opening /proc/self/exe".into(), cause: e })?;
    let memfd = rustix::fs::memfd_create(ARGV0, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(sys("memfd_create"))?;
    let mut copy = File::from(memfd);
    std::io::copy(&mut exe, &mut copy)
        .map_err(|e| RuntimeError::Sys { what: "copying the init into memory".into(), cause: e })?;
    let memfd = OwnedFd::from(copy);
    let seals = SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE;
    // The write seal waits ~75 ms for extra references to the memfd's pages to go, then
    // fails with EBUSY. A CI run here hit that once (the holder was not found; kernel
    // page scanners such as DAMON's kdamond, running on these machines, take such
    // references briefly): the references are transient, so it is tried again.
    let mut tries = 0;
    loop {
        match rustix::fs::fcntl_add_seals(&memfd, seals) {
            Err(rustix::io::Errno::BUSY) if tries < 10 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r.map_err(sys("sealing the init"))?,
        }
    }
    Ok(memfd)
}

/// If this process is the init (by `argv[0]`), runs it and never returns.
pub fn main_if_init() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.len() != 2 || args[0].as_bytes() != ARGV0.as_bytes() {
        return;
    }
    // Only the sealed copy is the init: `strata` called by that name otherwise is not.
    let sealed =
        std::fs::read_link("/proc/self/exe").is_ok_and(|p| p.as_os_str().as_bytes().starts_with(MEMFD_NAME.as_bytes()));
    let Some(fd) = args[1].to_str().and_then(|a| a.parse::<i32>().ok()).filter(|fd| *fd >= 3) else { return };
    if !sealed {
        return;
    }
    // Executing the copy made this process dumpable again: not for the container.
    crate::undumpable();
    // SAFETY: the runtime passed this descriptor open, for us alone.
    let mut plan = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut text = String::new();
    let spec: RunSpec = match plan
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => die(&format!("strata-init: reading the spec: {e}")),
    };
    drop(plan);
    // The default profile is a host file: read before entering the root.
    let filter = match crate::seccomp::compile(&spec.confinement.seccomp, spec.confinement.capabilities) {
        Ok(f) => f,
        Err(e) => die(&e.to_string()),
    };
    if let Err(e) = crate::rootfs::enter() {
        die(&e.to_string());
    }
    // The init runs as the command's user, confined as it is.
    let prog = crate::become_the_command(&spec, filter.as_ref());
    // SAFETY: the init is single-threaded; the child only execs.
    let child = unsafe { libc::fork() };
    if child < 0 {
        die(&format!("strata-init: fork: {}", std::io::Error::last_os_error()));
    }
    if child == 0 {
        signals::reset();
        crate::exec_command(&spec, &prog);
    }
    signals::forward_to(child);
    loop {
        let mut status = 0;
        // SAFETY: plain waitpid; reaps the command and every orphan.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == child {
            exit(exit_code(status));
        }
        if pid < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
            exit(crate::EXIT_SETUP);
        }
    }
}
