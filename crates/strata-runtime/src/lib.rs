//! strata-runtime: runs a process in a prepared root filesystem.
//!
//! It knows nothing of layers: it gets a rootfs path (the union mount) and a process
//! spec. Process tree:
//!
//! ```text
//! caller ──fork──> keeper (host pid ns; in the cgroup; unshares the namespaces)
//!                    └─fork─> init, pid 1 (mounts /proc, /dev, /sys, binds; pivot_root)
//!                               └─fork─> the command, pid 2 (user, cwd, exec)
//! ```
//!
//! The keeper exists so that the caller stays in the host namespaces (it must unmount
//! and clean up afterwards). Init forwards signals sent to it and reaps orphans, so
//! `kill` and Ctrl-C reach the command even though it is not pid 1 (a pid-1 command
//! ignores every signal it has no handler for); it exits with the command's status.

pub mod cgroup;
mod rootfs;
mod signals;
mod tty;

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use rustix::fs::Mode;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use cgroup::{Cgroup, Limits};

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("cgroup: {0}")]
    Cgroup(String),
    #[error("{what}: {cause}")]
    Sys { what: String, cause: std::io::Error },
    #[error("{0}")]
    Other(String),
}

fn sys(what: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> RuntimeError {
    let what = what.into();
    move |e| RuntimeError::Sys { what, cause: e.into() }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// A network namespace of its own, with only `lo`.
    None,
    /// The host's network.
    Host,
}

/// The process to run and its environment.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub hostname: String,
    pub network: Network,
    /// Host files bind-mounted over files of the rootfs (`/etc/hosts` and friends).
    pub binds: Vec<(PathBuf, String)>,
    pub limits: Limits,
    /// The cgroup's name under `strata/`.
    pub cgroup: String,
    /// Keep stdin (else it is `/dev/null`).
    pub stdin: bool,
    /// Give the command a pseudo-terminal (of the container's own devpts) as stdin,
    /// stdout, stderr and controlling terminal; init relays it to our stdio.
    pub tty: bool,
}

/// Exit status for failures of the runtime itself, before the command runs (as Docker).
pub const EXIT_SETUP: i32 = 125;
/// The command could not be executed (permission, not executable).
pub const EXIT_CANNOT_EXEC: i32 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

fn pipe() -> Result<(File, File), RuntimeError> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(sys("pipe"))?;
    Ok((File::from(r), File::from(w)))
}

fn fork() -> Result<i32, RuntimeError> {
    // SAFETY: callers fork from single-threaded code; the child runs only our own set-up
    // code and then execs or exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(RuntimeError::Sys { what: "fork".into(), cause: std::io::Error::last_os_error() });
    }
    Ok(pid)
}

/// The exit status a shell would report for a wait status: the code, or 128+signal.
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        EXIT_SETUP
    }
}

fn wait(pid: i32) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: plain waitpid on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return exit_code(status);
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return EXIT_SETUP;
        }
    }
}

/// Child side: report a set-up failure and exit.
fn die(msg: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "strata: {msg}");
    // SAFETY: _exit skips atexit handlers and stdio buffers that belong to the parent.
    unsafe { libc::_exit(EXIT_SETUP) }
}

/// Runs `spec` and returns the command's exit status (128+N after signal N).
/// `started` gets the host pid of the container's init once it runs.
pub fn run(spec: &RunSpec, started: impl FnOnce(i32)) -> Result<i32, RuntimeError> {
    let cgroup = Cgroup::create(&spec.cgroup, &spec.limits)?;
    let (go_r, mut go_w) = pipe()?;
    let (pid_r, pid_w) = pipe()?;
    let keeper = fork()?;
    if keeper == 0 {
        drop(go_w);
        drop(pid_r);
        keeper_main(spec, &cgroup, go_r, pid_w);
    }
    drop(go_r);
    drop(pid_w);
    let res = cgroup.add(keeper);
    let status = match res {
        Ok(()) => {
            let _ = go_w.write_all(b"g");
            drop(go_w);
            signals::forward_to(keeper);
            let mut buf = [0u8; 4];
            let mut r = pid_r;
            if r.read_exact(&mut buf).is_ok() {
                started(i32::from_le_bytes(buf));
            }
            let code = wait(keeper);
            signals::restore();
            Ok(code)
        }
        Err(e) => {
            drop(go_w); // the keeper exits on a closed pipe
            wait(keeper);
            Err(e)
        }
    };
    cgroup.remove();
    status
}

/// The keeper: joins the namespaces-to-be, forks init, waits for it.
fn keeper_main(spec: &RunSpec, cgroup: &Cgroup, mut go: File, mut pid_out: File) -> ! {
    signals::reset();
    let mut b = [0u8; 1];
    if go.read_exact(&mut b).is_err() {
        // SAFETY: see die().
        unsafe { libc::_exit(EXIT_SETUP) }
    }
    use rustix::thread::UnshareFlags as U;
    let mut flags = U::NEWNS | U::NEWPID | U::NEWUTS | U::NEWIPC;
    if spec.network == Network::None {
        flags |= U::NEWNET;
    }
    // SAFETY: this process is single-threaded; no file table is shared.
    if let Err(e) = unsafe { rustix::thread::unshare_unsafe(flags) } {
        die(&format!("unshare: {e}"));
    }
    let init = match fork() {
        Ok(p) => p,
        Err(e) => die(&e.to_string()),
    };
    if init == 0 {
        drop(pid_out);
        init_main(spec);
    }
    let _ = pid_out.write_all(&init.to_le_bytes());
    drop(pid_out);
    // Only the container's processes count against its limits.
    cgroup.leave(std::process::id() as i32);
    signals::forward_to(init);
    let code = wait(init);
    // SAFETY: see die().
    unsafe { libc::_exit(code) }
}

/// Pid 1: sets up the root filesystem, starts the command, forwards signals, reaps.
fn init_main(spec: &RunSpec) -> ! {
    if let Err(e) = rootfs::prepare(spec) {
        die(&e.to_string());
    }
    let (cmd, output) = start_command(spec);
    // Reap everything; leave with the command's status.
    loop {
        let mut status = 0;
        // SAFETY: plain waitpid.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == cmd {
            if let Some(output) = output {
                output.finish();
            }
            // SAFETY: see die().
            unsafe { libc::_exit(exit_code(status)) }
        }
        if pid < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
            // SAFETY: see die().
            unsafe { libc::_exit(EXIT_SETUP) }
        }
    }
}

/// Opens the command's terminal (with `-t`, inside the container's root), forks the
/// command and forwards signals to it; the caller waits for it.
fn start_command(spec: &RunSpec) -> (i32, Option<tty::Output>) {
    let pty = if spec.tty {
        match tty::Pty::open() {
            Ok(p) => Some(p),
            Err(e) => die(&e.to_string()),
        }
    } else {
        None
    };
    let cmd = match fork() {
        Ok(p) => p,
        Err(e) => die(&e.to_string()),
    };
    if cmd == 0 {
        command_main(spec, pty.as_ref().map(|p| p.slave_path.as_path()));
    }
    let output = pty.map(|p| p.relay(spec.stdin));
    signals::forward_to(cmd);
    (cmd, output)
}

/// Finds `cmd` in the container's PATH, as a shell would.
fn find_command(cmd: &str, env: &[String]) -> Result<PathBuf, i32> {
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file()) && rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok()
    };
    if cmd.contains('/') {
        let p = PathBuf::from(cmd);
        return match std::fs::metadata(&p) {
            Err(_) => Err(EXIT_NOT_FOUND),
            Ok(_) if is_exec(&p) => Ok(p),
            Ok(_) => Err(EXIT_CANNOT_EXEC),
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(cmd);
        if is_exec(&p) {
            return Ok(p);
        }
    }
    Err(EXIT_NOT_FOUND)
}

/// The command: its terminal, its user, its directory, exec.
fn command_main(spec: &RunSpec, tty: Option<&Path>) -> ! {
    signals::reset();
    if let Some(path) = tty {
        if let Err(e) = tty::attach(path) {
            die(&e.to_string());
        }
    } else if !spec.stdin
        && let Ok(null) = File::open("/dev/null")
    {
        let _ = rustix::stdio::dup2_stdin(&null);
    }
    enter_user_and_exec(spec.uid, spec.gid, &spec.groups, &spec.cwd, &spec.args, &spec.env)
}

fn enter_user_and_exec(uid: u32, gid: u32, groups: &[u32], cwd: &str, args: &[String], env: &[String]) -> ! {
    // As root, inside the container's root: a missing working directory is made (as
    // Docker does), never on the host's side of the mount.
    let _ = std::fs::create_dir_all(cwd);
    // The command gets the usual umask, not the one set up for device nodes.
    rustix::process::umask(Mode::from_raw_mode(0o022));
    let groups: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY: plain system calls on values we own.
    let ok = unsafe {
        libc::setgroups(groups.len(), groups.as_ptr()) == 0 && libc::setgid(gid) == 0 && libc::setuid(uid) == 0
    };
    if !ok {
        die(&format!("cannot switch to user {uid}:{gid}: {}", std::io::Error::last_os_error()));
    }
    if let Err(e) = std::env::set_current_dir(cwd) {
        die(&format!("working directory {cwd}: {e}"));
    }
    let Some(cmd) = args.first() else { die("no command given, and the image has none") };
    let path = match find_command(cmd, env) {
        Ok(p) => p,
        Err(code) => {
            let why = if code == EXIT_NOT_FOUND { "not found" } else { "permission denied (not executable)" };
            let _ = writeln!(std::io::stderr(), "strata: {cmd}: {why}");
            // SAFETY: see die().
            unsafe { libc::_exit(code) }
        }
    };
    let c = |s: &str| CString::new(s).unwrap_or_default();
    let prog = CString::new(path.as_os_str().as_encoded_bytes()).unwrap_or_default();
    let argv: Vec<CString> = args.iter().map(|a| c(a)).collect();
    let envp: Vec<CString> = env.iter().map(|e| c(e)).collect();
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // Nothing of ours crosses into the container but stdin, stdout and stderr (an open
    // directory fd would be a way out of the root).
    // SAFETY: close_range only closes descriptors; none above 2 is used after this.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    // SAFETY: NUL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(prog.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    let err = std::io::Error::last_os_error();
    let code = if err.raw_os_error() == Some(libc::ENOENT) { EXIT_NOT_FOUND } else { EXIT_CANNOT_EXEC };
    let _ = writeln!(std::io::stderr(), "strata: {cmd}: {err}");
    // SAFETY: see die().
    unsafe { libc::_exit(code) }
}

/// Runs a command in the namespaces and cgroup of the running container whose init has
/// host pid `init`. Returns its exit status.
pub fn exec_in(init: i32, cgroup: &str, spec: &RunSpec) -> Result<i32, RuntimeError> {
    let ns: Vec<(&str, OwnedFd)> = ["ipc", "uts", "net", "pid", "mnt"]
        .iter()
        .map(|n| {
            let p = format!("/proc/{init}/ns/{n}");
            rustix::fs::open(&p, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
                .map(|fd| (*n, fd))
                .map_err(sys(p))
        })
        .collect::<Result<_, _>>()?;
    let cg = Cgroup::existing(cgroup);
    // The container's root as its init sees it (after pivot_root or chroot alike).
    let root_path = format!("/proc/{init}/root");
    let root = rustix::fs::open(
        &root_path,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys(root_path))?;
    let (go_r, mut go_w) = pipe()?;
    let child = fork()?;
    if child == 0 {
        drop(go_w);
        let mut b = [0u8; 1];
        let mut go_r = go_r;
        if go_r.read_exact(&mut b).is_err() {
            // SAFETY: see die().
            unsafe { libc::_exit(EXIT_SETUP) }
        }
        for (name, fd) in &ns {
            // SAFETY: fd is an open /proc/PID/ns link.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd.as_raw_fd()) };
            if let Err(e) = rustix::thread::move_into_link_name_space(borrowed, None) {
                die(&format!("joining the container's {name} namespace: {e}"));
            }
        }
        // setns(mnt) leaves us at the namespace's root, which is the host's tree when
        // init had to chroot: go to init's root instead.
        if let Err(e) = rustix::process::fchdir(&root).and_then(|()| rustix::process::chroot(".")) {
            die(&format!("entering the container's root: {e}"));
        }
        // The pid namespace applies to children: the command is forked from here. With
        // `-t`, one more process in between relays the terminal: a process whose children
        // go to another pid namespace cannot create threads.
        let inner = if spec.tty {
            let relay = match fork() {
                Ok(p) => p,
                Err(e) => die(&e.to_string()),
            };
            if relay == 0 {
                let (cmd, output) = start_command(spec);
                let code = wait(cmd);
                if let Some(output) = output {
                    output.finish();
                }
                // SAFETY: see die().
                unsafe { libc::_exit(code) }
            }
            signals::forward_to(relay);
            relay
        } else {
            start_command(spec).0
        };
        let code = wait(inner);
        // SAFETY: see die().
        unsafe { libc::_exit(code) }
    }
    drop(go_r);
    if let Err(e) = cg.add(child) {
        drop(go_w); // the child exits on a closed pipe: nothing runs outside the limits
        wait(child);
        return Err(e);
    }
    let _ = go_w.write_all(b"g");
    drop(go_w);
    signals::forward_to(child);
    let code = wait(child);
    signals::restore();
    Ok(code)
}
