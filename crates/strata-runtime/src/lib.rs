//! strata-runtime: runs a process in a prepared root filesystem.
//!
//! It knows nothing of layers: it gets a rootfs path (the union mount) and a process
//! spec. Process tree:
//!
//! ```text
//! caller ──fork──> keeper (host pid, mount and cgroup ns; in the cgroup, then out of it)
//!                    └─fork─> pid 1 (own mount and cgroup ns; mounts /proc, /dev, /sys,
//!                             binds; pivot_root;
//!                             confinement; then execs the command, which is pid 1)
//! ```
//!
//! The keeper exists so that the caller stays in the host namespaces (it must unmount
//! and clean up afterwards); it forwards signals. With `-t`, pid 1 opens a terminal inside
//! the container and sends its master to the caller, which relays it. As in Docker, the command itself is pid 1 (a pid-1
//! process ignores the signals it has no handler for); with `--init`, pid 1 is instead a
//! small init that forwards signals and reaps, executed from a sealed in-memory copy of
//! this program ([`init`]), so that `/proc/1/exe` never leads to a host file. Every
//! process of ours that enters the container is non-dumpable until it executes the
//! command, so the container cannot open its `/proc/PID/exe` or memory meanwhile.

pub mod cgroup;
pub mod confine;
pub mod init;
mod inroot;
mod rootfs;
pub mod seccomp;
mod signals;
mod tty;

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::Mode;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use cgroup::{Cgroup, DeviceAccess, Limits};
pub use confine::Confinement;
pub use seccomp::Seccomp;

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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// A network namespace of its own, with only `lo`.
    None,
    /// The host's network.
    Host,
    /// The persistent network namespace bound at this path (an nsfs file), made and
    /// configured by the caller (CNI) before the container starts.
    Join(PathBuf),
}

/// The process to run and its environment.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// stdout, stderr and controlling terminal; it is relayed to our stdio.
    pub tty: bool,
    pub confinement: Confinement,
    /// Host directories and files bind-mounted into the root (`-v`), beside the union.
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

/// A bind mount of a host path at a path in the container (`-v HOST:CTR[:ro]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Absolute host path.
    pub source: PathBuf,
    /// Path in the container, resolved inside its root.
    pub target: String,
    pub read_only: bool,
    /// A tmpfs with these options (`size=64m,mode=1777,exec`...) instead of a bind of
    /// `source`.
    #[serde(default)]
    pub tmpfs: Option<String>,
}

/// Checks a tmpfs option list (`--tmpfs /run:size=64m,exec`) as the runtime will read it.
pub fn check_tmpfs_options(options: &str) -> Result<(), RuntimeError> {
    rootfs::tmpfs_options(options).map(|_| ())
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

/// Leaves a child process with `code`, skipping atexit handlers and stdio buffers that
/// belong to the parent.
fn exit(code: i32) -> ! {
    // SAFETY: _exit only ends the process.
    unsafe { libc::_exit(code) }
}

/// Child side: report a set-up failure and exit.
fn die(msg: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "strata: {msg}");
    exit(EXIT_SETUP)
}

/// A process of ours about to enter a container: no core dumps, and no `/proc/PID/exe`,
/// `mem` or `fd` for the container's processes to open (only CAP_SYS_PTRACE could).
/// Executing the command makes it dumpable again.
pub(crate) fn undumpable() {
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
}

/// Runs `spec` and returns the command's exit status (128+N after signal N).
/// `started` gets the host pid of the container's pid 1 once it runs.
pub fn run(spec: &RunSpec, started: impl FnOnce(i32)) -> Result<i32, RuntimeError> {
    let spec = &*without_unfiltered_mknod(spec);
    // Everything that can fail on bad input fails here, before any process exists.
    let filter = seccomp::compile(&spec.confinement.seccomp, spec.confinement.capabilities)?;
    let init_exe = if spec.confinement.init { Some(init::sealed_copy_of_self()?) } else { None };
    let cgroup = Cgroup::create(&spec.cgroup, &spec.limits, &spec.confinement.devices)?;
    let status = run_in(spec, &cgroup, filter.as_ref(), init_exe, started);
    let _ = cgroup.remove();
    status
}

/// [`run`] once the cgroups exist (the caller removes them, whatever happens here).
fn run_in(
    spec: &RunSpec,
    cgroup: &Cgroup,
    filter: Option<&libseccomp::ScmpFilterContext>,
    init_exe: Option<OwnedFd>,
    started: impl FnOnce(i32),
) -> Result<i32, RuntimeError> {
    let (go_r, mut go_w) = pipe()?;
    let (pid_r, pid_w) = pipe()?;
    let terminal = if spec.tty { Some(terminal_channel()?) } else { None };
    let keeper = fork()?;
    if keeper == 0 {
        drop(go_w);
        drop(pid_r);
        let pid1 = Pid1 { spec, filter, init_exe, terminal: terminal.as_ref().map(|t| &t.1) };
        keeper_main(spec, cgroup, go_r, pid_w, pid1);
    }
    drop(go_r);
    drop(pid_w);
    // Only pid 1 holds the sending end: receiving stops if it dies first.
    let terminal = terminal.map(|(ours, _theirs)| ours);
    match cgroup.add(keeper) {
        Ok(()) => {
            let _ = go_w.write_all(b"g");
            drop(go_w);
            signals::forward_to(keeper);
            let mut buf = [0u8; 4];
            let mut r = pid_r;
            if r.read_exact(&mut buf).is_ok() {
                started(i32::from_le_bytes(buf));
            }
            // The relay runs here: a process that made a pid namespace for its children
            // (the keeper) cannot start threads.
            let code = wait_relaying(keeper, terminal.as_ref(), spec.stdin);
            signals::restore();
            Ok(code)
        }
        Err(e) => {
            drop(go_w); // the keeper exits on a closed pipe
            wait(keeper);
            Err(e)
        }
    }
}

/// Where no devices controller decides what a container may open (a cgroup v2 host, for
/// now), CAP_MKNOD would let it make and open any device in its /dev: it is dropped, as
/// in a rootless container, unless the container is trusted with every device anyway.
fn without_unfiltered_mknod(spec: &RunSpec) -> std::borrow::Cow<'_, RunSpec> {
    use rustix::thread::CapabilitySet;
    let c = &spec.confinement;
    if c.devices == DeviceAccess::All || !c.capabilities.contains(CapabilitySet::MKNOD) || Cgroup::controls_devices() {
        return std::borrow::Cow::Borrowed(spec);
    }
    let mut spec = spec.clone();
    spec.confinement.capabilities -= CapabilitySet::MKNOD;
    std::borrow::Cow::Owned(spec)
}

/// Waits for `pid`, relaying the terminal whose master arrives on `terminal` (if any)
/// to our stdin and stdout meanwhile.
fn wait_relaying(pid: i32, terminal: Option<&OwnedFd>, stdin: bool) -> i32 {
    let output = terminal.and_then(tty::receive_master).map(|pty| pty.relay(stdin));
    let code = wait(pid);
    if let Some(output) = output {
        output.finish();
    }
    code
}

/// A connected pair of sockets: pid 1 sends its terminal's master on the second.
fn terminal_channel() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)
        .map_err(sys("socketpair"))
}

/// What pid 1 needs besides the spec.
struct Pid1<'a> {
    spec: &'a RunSpec,
    filter: Option<&'a libseccomp::ScmpFilterContext>,
    /// The sealed copy of this program, with `--init`.
    init_exe: Option<OwnedFd>,
    /// Where to send the terminal's master, with `-t`.
    terminal: Option<&'a OwnedFd>,
}

/// The keeper: unshares the namespaces pid 1 gets, forks it, waits for it.
fn keeper_main(spec: &RunSpec, cgroup: &Cgroup, mut go: File, mut pid_out: File, pid1: Pid1<'_>) -> ! {
    signals::reset();
    let mut b = [0u8; 1];
    if go.read_exact(&mut b).is_err() {
        exit(EXIT_SETUP)
    }
    use rustix::thread::UnshareFlags as U;
    let mut flags = U::NEWPID | U::NEWUTS | U::NEWIPC;
    match &spec.network {
        Network::None => flags |= U::NEWNET,
        Network::Host => {}
        Network::Join(path) => {
            if let Err(e) = join_netns(path) {
                die(&e.to_string());
            }
        }
    }
    // SAFETY: this process is single-threaded; no file table is shared.
    if let Err(e) = unsafe { rustix::thread::unshare_unsafe(flags) } {
        die(&format!("unshare: {e}"));
    }
    // Pid 1 holds the writing end until it is in the container's root and about to
    // become the command (it closes every descriptor then): only from then on is the pid
    // reported, since `exec` enters whatever root pid 1 has.
    let (mut in_root, in_root_w) = match pipe() {
        Ok(p) => p,
        Err(e) => die(&e.to_string()),
    };
    let init = match fork() {
        Ok(p) => p,
        Err(e) => die(&e.to_string()),
    };
    if init == 0 {
        drop(pid_out);
        drop(in_root);
        pid1_main(pid1, in_root_w);
    }
    drop(pid1);
    drop(in_root_w);
    let _ = in_root.read(&mut [0u8; 1]);
    drop(in_root);
    let _ = pid_out.write_all(&init.to_le_bytes());
    drop(pid_out);
    // Only the container's processes count against its limits.
    cgroup.leave(std::process::id() as i32);
    signals::forward_to(init);
    exit(wait(init))
}

/// Enters the network namespace bound at `path` (pid 1 and the command inherit it).
fn join_netns(path: &Path) -> Result<(), RuntimeError> {
    use rustix::fs::OFlags;
    let what = || format!("joining the network namespace {}", path.display());
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(sys(what()))?;
    rustix::thread::move_into_link_name_space(fd.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
        .map_err(sys(what()))
}

/// Pid 1: its own mount namespace, the root filesystem, the terminal, then the command
/// (or, with `--init`, the sealed init that runs it).
fn pid1_main(p: Pid1<'_>, in_root: File) -> ! {
    undumpable();
    // Pid 1 is in the container's cgroups (the keeper was moved there before forking it):
    // its cgroup namespace is rooted at them. The keeper stays out of both namespaces, so
    // that it can still leave the cgroups for the hierarchies' roots.
    let flags = rustix::thread::UnshareFlags::NEWNS | rustix::thread::UnshareFlags::NEWCGROUP;
    // SAFETY: single-threaded; the namespaces are this process's alone.
    if let Err(e) = unsafe { rustix::thread::unshare_unsafe(flags) } {
        die(&format!("unshare: {e}"));
    }
    if let Err(e) = rootfs::prepare(p.spec) {
        die(&e.to_string());
    }
    if let Some(socket) = p.terminal {
        let attached = tty::Pty::open_for(socket).and_then(|pty| pty.attach());
        if let Err(e) = attached {
            die(&e.to_string());
        }
    } else {
        null_stdin(p.spec);
    }
    if let Some(exe) = p.init_exe {
        init::exec(exe, p.spec, in_root);
    }
    if let Err(e) = rootfs::enter() {
        die(&e.to_string());
    }
    drop(in_root);
    let prog = become_the_command(p.spec, p.filter);
    exec_command(p.spec, &prog)
}

fn null_stdin(spec: &RunSpec) {
    if !spec.stdin
        && let Ok(null) = File::open("/dev/null")
    {
        let _ = rustix::stdio::dup2_stdin(&null);
    }
}

/// Forks the command (with `-t`, on a terminal of the container's, whose master goes to
/// `terminal`) and forwards signals to it; the caller waits for it.
fn start_command(spec: &RunSpec, filter: Option<&libseccomp::ScmpFilterContext>, terminal: Option<&OwnedFd>) -> i32 {
    let pty = match terminal {
        Some(socket) => match tty::Pty::open_for(socket) {
            Ok(p) => Some(p),
            Err(e) => die(&e.to_string()),
        },
        None => None,
    };
    let cmd = match fork() {
        Ok(p) => p,
        Err(e) => die(&e.to_string()),
    };
    if cmd == 0 {
        match &pty {
            Some(pty) => {
                if let Err(e) = pty.attach() {
                    die(&e.to_string());
                }
            }
            None => null_stdin(spec),
        }
        let prog = become_the_command(spec, filter);
        exec_command(spec, &prog)
    }
    drop(pty);
    signals::forward_to(cmd);
    cmd
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

/// Takes on the command's user, directory and confinement; returns the program to run.
fn become_the_command(spec: &RunSpec, filter: Option<&libseccomp::ScmpFilterContext>) -> PathBuf {
    signals::reset();
    // Nothing of ours crosses into the container but stdin, stdout and stderr (an open
    // directory descriptor would be a way out of the root). Done before the seccomp
    // filter, which need not allow close_range.
    if let Err(e) = close_from(3, &[]) {
        die(&format!("closing inherited descriptors: {e}"));
    }
    // As root, inside the container's root: a missing working directory is made (as
    // Docker does), never on the host's side of the mount.
    let _ = std::fs::create_dir_all(&spec.cwd);
    // The command gets the usual umask, not the one set up for device nodes.
    rustix::process::umask(Mode::from_raw_mode(0o022));
    if let Err(e) = spec.confinement.enter(filter, spec.uid, spec.gid, &spec.groups) {
        die(&e);
    }
    let cwd = &spec.cwd;
    if let Err(e) = std::env::set_current_dir(cwd) {
        die(&format!("working directory {cwd}: {e}"));
    }
    let Some(cmd) = spec.args.first() else { die("no command given, and the image has none") };
    match find_command(cmd, &spec.env) {
        Ok(p) => p,
        Err(code) => {
            let why = if code == EXIT_NOT_FOUND { "not found" } else { "permission denied (not executable)" };
            let _ = writeln!(std::io::stderr(), "strata: {cmd}: {why}");
            exit(code)
        }
    }
}

fn cstrings(v: &[String]) -> Vec<CString> {
    v.iter().map(|s| CString::new(s.as_str()).unwrap_or_default()).collect()
}

/// Executes `prog` with the command's arguments and environment.
fn exec_command(spec: &RunSpec, prog: &Path) -> ! {
    let path = CString::new(prog.as_os_str().as_encoded_bytes()).unwrap_or_default();
    let (argv, envp) = (cstrings(&spec.args), cstrings(&spec.env));
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: NUL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(path.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    let err = std::io::Error::last_os_error();
    let code = if err.raw_os_error() == Some(libc::ENOENT) { EXIT_NOT_FOUND } else { EXIT_CANNOT_EXEC };
    let _ = writeln!(std::io::stderr(), "strata: {}: {err}", spec.args.first().map_or("", |a| a.as_str()));
    exit(code)
}

/// Closes every descriptor from `first` up, but those in `keep`: close_range(2), or one
/// by one from /proc/self/fd where the kernel lacks it.
fn close_from(first: u32, keep: &[u32]) -> std::io::Result<()> {
    let mut keep: Vec<u32> = keep.iter().copied().filter(|k| *k >= first).collect();
    keep.sort_unstable();
    let mut from = first;
    for k in keep.iter().copied().chain([u32::MAX]) {
        // SAFETY: close_range only closes descriptors; the caller uses none of them after.
        if k > from && unsafe { libc::syscall(libc::SYS_close_range, from, k - 1, 0u32) } != 0 {
            let open: Vec<u32> = std::fs::read_dir("/proc/self/fd")?
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .filter(|fd: &u32| *fd >= first && !keep.contains(fd))
                .collect();
            for fd in open {
                // SAFETY: closing a descriptor nothing of ours uses after this.
                unsafe { libc::close(fd as i32) };
            }
            return Ok(());
        }
        from = k.saturating_add(1);
    }
    Ok(())
}

/// Has the process of `pidfd` ended? (Its pidfd polls readable then.)
pub fn pidfd_ended(pidfd: BorrowedFd<'_>) -> std::io::Result<bool> {
    let mut polled = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
    let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
    Ok(rustix::event::poll(&mut polled, Some(&zero))? > 0)
}

/// Runs a command in the namespaces and cgroup of the running container whose pid 1 has
/// host pid `init` (held by `pidfd`), confined as the container is. Returns its exit status.
pub fn exec_in(init: i32, pidfd: BorrowedFd<'_>, cgroup: &str, spec: &RunSpec) -> Result<i32, RuntimeError> {
    let spec = &*without_unfiltered_mknod(spec);
    let filter = seccomp::compile(&spec.confinement.seccomp, spec.confinement.capabilities)?;
    let ns: Vec<(&str, OwnedFd)> = ["cgroup", "ipc", "uts", "net", "pid", "mnt"]
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
    // All opened through /proc/<init>: if the process `pidfd` holds still runs now, the pid
    // named it all along (a pid is reused only once its process has ended), never another
    // process's namespaces or the host's root.
    if pidfd_ended(pidfd).map_err(|e| RuntimeError::Other(format!("polling the container's pidfd: {e}")))? {
        return Err(RuntimeError::Other("the container's pid 1 ended while its namespaces were opened".into()));
    }
    let (go_r, mut go_w) = pipe()?;
    let terminal = if spec.tty { Some(terminal_channel()?) } else { None };
    let child = fork()?;
    if child == 0 {
        drop(go_w);
        let mut b = [0u8; 1];
        let mut go_r = go_r;
        if go_r.read_exact(&mut b).is_err() {
            exit(EXIT_SETUP)
        }
        undumpable();
        for (name, fd) in &ns {
            if let Err(e) = rustix::thread::move_into_link_name_space(fd.as_fd(), None) {
                die(&format!("joining the container's {name} namespace: {e}"));
            }
        }
        // setns(mnt) leaves us at the namespace's root, which is the host's tree when
        // init had to chroot: go to init's root instead.
        if let Err(e) = rustix::process::fchdir(&root).and_then(|()| rustix::process::chroot(".")) {
            die(&format!("entering the container's root: {e}"));
        }
        // The pid namespace applies to children: the command is forked from here. This
        // process stays outside the container's pid namespace; with `-t` the terminal's
        // master goes to our caller, which relays it, so nothing of ours but the command
        // runs inside.
        exit(wait(start_command(spec, filter.as_ref(), terminal.as_ref().map(|t| &t.1))))
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
    let terminal = terminal.map(|(ours, _theirs)| ours);
    let code = wait_relaying(child, terminal.as_ref(), spec.stdin);
    signals::restore();
    Ok(code)
}
