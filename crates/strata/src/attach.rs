//! `attach`: the output of a detached container as it happens, and its stdin (`-i`).
//!
//! A container's monitor listens on a unix socket, `attach` in the container's
//! directory, as conmon's attach socket. The socket is served by the log copier (see
//! [`crate::logs`]), the process that already reads the container's stdout and stderr:
//! each chunk goes to the log and to every attached client, framed as Docker's
//! multiplexed streams (a header `[stream, 0, 0, 0, size as u32 big-endian]`, stream 1
//! stdout, 2 stderr). What a client sends is the container's stdin when it was started
//! with `-i`: the copier holds the writing end of a pipe that is the container's stdin.
//! With `-t` the monitor's own stdin and stdout are those pipes, and the runtime relays
//! them to and from the container's terminal, so that the terminal's output comes as
//! stdout. A client that falls more than [`MAX_BEHIND`] bytes behind is dropped: the
//! container never waits for an attached client.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::event::{PollFd, PollFlags};
use strata_store::Store;
use strata_store::container::{self, Container};

/// The socket's name in the container's directory.
pub const SOCKET: &str = "attach";
/// Output a client may have unread before it is dropped.
const MAX_BEHIND: usize = 8 << 20;

/// The monitor's listening socket (the monitor removes its file when it ends).
pub struct Listener {
    socket: UnixListener,
}

/// What the monitor serves, for [`crate::logs::capture`] to hand to its copier.
pub struct Serving {
    pub listener: Listener,
    /// The container's stdin is a pipe written by attached clients.
    pub stdin: bool,
}

static SERVING: OnceLock<Serving> = OnceLock::new();

/// The attach socket, if this process is a monitor serving one.
pub fn serving() -> Option<&'static Serving> {
    SERVING.get()
}

/// A path to `name` in the container's directory short enough for a socket address
/// (108 bytes), whatever the store's root: through `/proc/self/fd` of an open directory.
fn short_path(dir: &std::fs::File) -> String {
    format!("/proc/self/fd/{}/{SOCKET}", dir.as_raw_fd())
}

/// The monitor: listens on the container's attach socket from now on.
pub fn listen(store: &Store, c: &Container) -> Result<()> {
    let dir_path = c.dir(store);
    let dir = std::fs::File::open(&dir_path).with_context(|| format!("{}", dir_path.display()))?;
    let path = dir_path.join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let socket = UnixListener::bind(short_path(&dir)).with_context(|| format!("listening on {}", path.display()))?;
    socket.set_nonblocking(true).context("attach socket")?;
    let stdin = c.config.keep.open_stdin;
    let _ = SERVING.set(Serving { listener: Listener { socket }, stdin });
    Ok(())
}

/// An attached client, as the copier sees it.
struct Client {
    socket: UnixStream,
    /// Output framed for it, not yet written.
    out: VecDeque<u8>,
    /// It may still send stdin.
    reading: bool,
}

/// The copier's side of the socket: the listener, the clients, the container's stdin.
pub struct Hub {
    listener: UnixListener,
    stdin: Option<OwnedFd>,
    pending_in: Vec<u8>,
    clients: Vec<Client>,
}

impl Hub {
    /// In the copier, after fork: `stdin` is the writing end of the container's stdin.
    pub fn new(serving: &Serving, stdin: Option<OwnedFd>) -> io::Result<Hub> {
        let listener = serving.listener.socket.try_clone()?;
        if let Some(fd) = &stdin {
            rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::NONBLOCK)?;
        }
        Ok(Hub { listener, stdin, pending_in: Vec::new(), clients: Vec::new() })
    }

    /// The descriptors to poll, and what for.
    pub fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let mut v = vec![PollFd::new(&self.listener, PollFlags::IN)];
        if let Some(fd) = &self.stdin
            && !self.pending_in.is_empty()
        {
            v.push(PollFd::new(fd, PollFlags::OUT));
        }
        // Input is taken only when the container's stdin has room for it.
        let take_input = self.pending_in.is_empty();
        for c in &self.clients {
            let mut f = PollFlags::empty();
            if c.reading && take_input {
                f |= PollFlags::IN;
            }
            if !c.out.is_empty() {
                f |= PollFlags::OUT;
            }
            v.push(PollFd::new(&c.socket, f));
        }
        v
    }

    /// Acts on what [`Hub::poll_fds`]'s descriptors reported (in the same order).
    pub fn handle(&mut self, revents: &[PollFlags]) {
        let mut it = revents.iter();
        if it.next().is_some_and(|r| r.contains(PollFlags::IN)) {
            while let Ok((socket, _)) = self.listener.accept() {
                if socket.set_nonblocking(true).is_ok() {
                    self.clients.push(Client { socket, out: VecDeque::new(), reading: true });
                }
            }
        }
        if self.stdin.is_some() && !self.pending_in.is_empty() {
            let _ = it.next();
            self.write_stdin();
        }
        let take_input = self.pending_in.is_empty();
        let mut buf = [0u8; 16 << 10];
        let mut gone = Vec::new();
        for (i, r) in it.enumerate().take(self.clients.len()) {
            let c = &mut self.clients[i];
            if r.contains(PollFlags::IN) && c.reading && take_input {
                match c.socket.read(&mut buf) {
                    // The client's stdin ended (or it went): the container's stays open.
                    Ok(0) => c.reading = false,
                    Ok(n) => {
                        if self.stdin.is_some() {
                            self.pending_in.extend_from_slice(&buf[..n]);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => gone.push(i),
                }
            }
            if flush(c).is_err() || (r.intersects(PollFlags::HUP | PollFlags::ERR) && !r.contains(PollFlags::IN)) {
                gone.push(i);
            }
        }
        self.drop_clients(gone);
        if !self.pending_in.is_empty() {
            self.write_stdin();
        }
    }

    fn write_stdin(&mut self) {
        let Some(fd) = &self.stdin else { return };
        match rustix::io::write(fd, &self.pending_in) {
            Ok(n) => {
                self.pending_in.drain(..n);
            }
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
            // The container closed its stdin (or ended): what clients send goes nowhere.
            Err(_) => {
                self.stdin = None;
                self.pending_in.clear();
            }
        }
    }

    fn drop_clients(&mut self, mut gone: Vec<usize>) {
        gone.sort_unstable();
        gone.dedup();
        for i in gone.into_iter().rev() {
            self.clients.remove(i);
        }
    }

    /// A chunk of the container's output (`stream` 1 stdout, 2 stderr) for every client.
    pub fn broadcast(&mut self, stream: u8, data: &[u8]) {
        let mut gone = Vec::new();
        for (i, c) in self.clients.iter_mut().enumerate() {
            c.out.extend([stream, 0, 0, 0]);
            c.out.extend((data.len() as u32).to_be_bytes());
            c.out.extend(data);
            if flush(c).is_err() || c.out.len() > MAX_BEHIND {
                tracing::debug!("an attached client fell behind or went: dropped");
                gone.push(i);
            }
        }
        self.drop_clients(gone);
    }

    /// The output ended: what clients have not read yet is written (for up to 2 s),
    /// then their connections close.
    pub fn finish(mut self) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(2) && self.clients.iter().any(|c| !c.out.is_empty()) {
            let mut fds: Vec<PollFd<'_>> = self
                .clients
                .iter()
                .filter(|c| !c.out.is_empty())
                .map(|c| PollFd::new(&c.socket, PollFlags::OUT))
                .collect();
            let ts = rustix::event::Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
            let _ = rustix::event::poll(&mut fds, Some(&ts));
            drop(fds);
            self.clients.retain_mut(|c| flush(c).is_ok());
        }
    }
}

/// Writes what a client can take now.
fn flush(c: &mut Client) -> io::Result<()> {
    while !c.out.is_empty() {
        let (a, _) = c.out.as_slices();
        match c.socket.write(a) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Options of `attach`.
#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// Do not attach stdin
    #[arg(long)]
    pub no_stdin: bool,
    /// Pass the signals we get to the container (without a terminal)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub sig_proxy: bool,
    /// The keys that detach (with a terminal): `ctrl-<a-z@[\\]^_>` or single characters, comma separated
    #[arg(long, default_value = "ctrl-p,ctrl-q", value_parser = parse_detach_keys)]
    pub detach_keys: DetachKeys,
    pub container: String,
}

/// The bytes of a detach sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct DetachKeys(Vec<u8>);

/// Docker's `--detach-keys`: `ctrl-p,ctrl-q`, `ctrl-@`, `a,b`...
fn parse_detach_keys(s: &str) -> Result<DetachKeys, String> {
    let bad = || format!("Invalid detach keys ({s}) provided");
    let mut keys = Vec::new();
    for key in s.split(',') {
        let lower = key.to_ascii_lowercase();
        let byte = match lower.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => match c.as_bytes()[0] {
                b @ b'a'..=b'z' => b - b'a' + 1,
                b'@' => 0,
                b @ (b'[' | b'\\' | b']' | b'^' | b'_') => b - b'[' + 27,
                _ => return Err(bad()),
            },
            Some(_) => return Err(bad()),
            None if key.len() == 1 => key.as_bytes()[0],
            None => return Err(bad()),
        };
        keys.push(byte);
    }
    Ok(DetachKeys(keys))
}

/// Finds a detach sequence in typed input, holding back a partial match until the next
/// keys tell whether it is one.
struct Escape<'a> {
    keys: &'a [u8],
    matched: usize,
}

impl Escape<'_> {
    /// Appends to `out` what goes to the container; true once the sequence was typed.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return true;
                }
                continue;
            }
            // Not the sequence: what was held goes through, and this key may begin it.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] && self.keys.len() > 1 {
                self.matched = 1;
            } else if b == self.keys[0] {
                return true;
            } else {
                out.push(b);
            }
        }
        false
    }
}

/// Copies our stdin to the socket; with a terminal, the detach keys detach. Returns true
/// on a detach.
fn send_stdin(mut socket: UnixStream, detach: Option<&[u8]>) -> bool {
    let mut input = io::stdin();
    let mut buf = [0u8; 4096];
    let mut escape = detach.filter(|k| !k.is_empty()).map(|keys| Escape { keys, matched: 0 });
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = socket.shutdown(std::net::Shutdown::Write);
                return false;
            }
            Ok(n) => n,
        };
        let mut out = Vec::with_capacity(n + 2);
        let detached = match escape.as_mut() {
            Some(e) => e.feed(&buf[..n], &mut out),
            None => {
                out.extend_from_slice(&buf[..n]);
                false
            }
        };
        if socket.write_all(&out).is_err() {
            return false;
        }
        if detached {
            return true;
        }
    }
}

/// Without a terminal, signals we get go to the container (Docker's `--sig-proxy`): a
/// thread waits for them (blocked in every thread) and sends them to its pid 1.
fn proxy_signals(c: &Container) {
    let sigs = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];
    // SAFETY: a signal set built with sigemptyset/sigaddset, then blocked in this thread
    // (the only one so far: threads started after inherit the mask).
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in sigs {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let c = c.clone();
    std::thread::spawn(move || {
        loop {
            let mut sig = 0;
            // SAFETY: sigwait on a valid set, into a local.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                return;
            }
            if let Some(fd) = crate::lifecycle::pid1(&c) {
                let _ = crate::lifecycle::send(&fd, sig);
            }
        }
    });
}

/// Reads framed output until the socket closes; false if our stdout went away.
fn receive(socket: &mut UnixStream) -> bool {
    let (mut out, mut err) = (io::stdout(), io::stderr());
    let mut header = [0u8; 8];
    let mut data = Vec::new();
    loop {
        if socket.read_exact(&mut header).is_err() {
            return true;
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        data.resize(len, 0);
        if socket.read_exact(&mut data).is_err() {
            return true;
        }
        let w: &mut dyn Write = if header[0] == 2 { &mut err } else { &mut out };
        if w.write_all(&data).and_then(|()| w.flush()).is_err() {
            return false;
        }
    }
}

pub fn cmd_attach(store: &Store, args: &AttachArgs) -> Result<ExitCode> {
    let c = container::find(store, &args.container)?;
    if !c.is_running() {
        if c.state.status == "restarting" && c.monitor_alive() {
            bail!("You cannot attach to a restarting container, wait until it is running");
        }
        bail!("You cannot attach to a stopped container, start it first");
    }
    if crate::manage::paused(&c) {
        bail!("You cannot attach to a paused container, unpause it first");
    }
    if !c.monitor_alive() {
        bail!(
            "container {}: no monitor serves it (it runs in the foreground of a `strata run`, or its monitor was killed)",
            c.name
        );
    }
    let dir_path = c.dir(store);
    let dir = std::fs::File::open(&dir_path).with_context(|| format!("{}", dir_path.display()))?;
    let mut socket = UnixStream::connect(short_path(&dir))
        .with_context(|| format!("connecting to {}", dir_path.join(SOCKET).display()))?;
    let tty = c.config.keep.tty;
    let stdin = c.config.keep.open_stdin && !args.no_stdin;
    if args.sig_proxy && !tty {
        proxy_signals(&c);
    }
    let raw = (tty && stdin).then(crate::terminal::RawMode::enter);
    let detached = std::sync::Arc::new(AtomicBool::new(false));
    if stdin {
        let (w, flag, r) = (socket.try_clone().context("attach socket")?, detached.clone(), socket.try_clone()?);
        let keys = args.detach_keys.0.clone();
        std::thread::spawn(move || {
            if send_stdin(w, tty.then_some(keys.as_slice())) {
                flag.store(true, Ordering::SeqCst);
                // Ends the reading below.
                let _ = r.shutdown(std::net::Shutdown::Both);
            }
        });
    }
    let stdout_ok = receive(&mut socket);
    drop(raw);
    if detached.load(Ordering::SeqCst) || !stdout_ok {
        return Ok(ExitCode::SUCCESS);
    }
    // The output ended with the run: its exit status, once recorded.
    let t0 = Instant::now();
    loop {
        let now = container::find(store, &c.id)?;
        let same_run = now.state.status == "running" && now.state.pid == c.state.pid;
        if !same_run {
            return Ok(ExitCode::from(now.state.exit_code.unwrap_or(0).clamp(0, 255) as u8));
        }
        if !crate::monitor::live(&now) {
            bail!("container {}: its exit status is unknown (its monitor was killed before it ended)", c.name);
        }
        if t0.elapsed() > Duration::from_secs(30) {
            // The connection went, not the container (its monitor was killed).
            bail!("container {}: the attach connection closed while it runs", c.name);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_as_docker_reads_them() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q"), Ok(DetachKeys(vec![0x10, 0x11])));
        assert_eq!(parse_detach_keys("ctrl-@,ctrl-[,ctrl-_,a"), Ok(DetachKeys(vec![0, 27, 31, b'a'])));
        assert!(parse_detach_keys("ctrl-pp").is_err_and(|e| e == "Invalid detach keys (ctrl-pp) provided"));
        assert!(parse_detach_keys("ab").is_err());
        let keys = [0x10, 0x11];
        let mut e = Escape { keys: &keys, matched: 0 };
        let mut out = Vec::new();
        // A Ctrl-P alone goes through once the next key is not Ctrl-Q; one split across
        // reads still detaches.
        assert!(!e.feed(b"a\x10b\x10\x10", &mut out));
        assert_eq!(out, b"a\x10b\x10");
        out.clear();
        assert!(e.feed(b"\x11", &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn clients_get_framed_output_and_feed_stdin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        let socket = UnixListener::bind(&path).expect("bind");
        socket.set_nonblocking(true).expect("nonblocking");
        let serving = Serving { listener: Listener { socket }, stdin: true };
        let (stdin_r, stdin_w) = rustix::pipe::pipe().expect("pipe");
        let mut hub = Hub::new(&serving, Some(stdin_w)).expect("hub");
        let mut client = UnixStream::connect(&path).expect("connect");
        let pump = |hub: &mut Hub| {
            let mut fds = hub.poll_fds();
            let ts = rustix::event::Timespec { tv_sec: 0, tv_nsec: 50_000_000 };
            let _ = rustix::event::poll(&mut fds, Some(&ts));
            let rev: Vec<PollFlags> = fds.iter().map(|f| f.revents()).collect();
            drop(fds);
            hub.handle(&rev);
        };
        pump(&mut hub);
        assert_eq!(hub.clients.len(), 1);
        hub.broadcast(2, b"oops\n");
        let mut got = [0u8; 13];
        client.read_exact(&mut got).expect("frame");
        assert_eq!(&got, b"\x02\0\0\0\0\0\0\x05oops\n");
        client.write_all(b"input\n").expect("write");
        for _ in 0..5 {
            pump(&mut hub);
        }
        let mut line = [0u8; 6];
        std::fs::File::from(stdin_r).read_exact(&mut line).expect("stdin");
        assert_eq!(&line, b"input\n");
        drop(client);
        for _ in 0..3 {
            pump(&mut hub);
        }
        assert!(hub.clients.is_empty(), "a client that went is dropped");
    }
}
