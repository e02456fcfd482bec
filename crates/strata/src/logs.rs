//! Container logs: the command's stdout and stderr, kept as Docker's json-file driver
//! keeps them (one JSON object a line: `log`, `stream`, `time`) in the container's
//! directory, rotated at a size cap; and `strata logs`.
//!
//! While a container runs without a terminal, our stdout and stderr are two pipes read
//! by a copier process. It is forked before the runtime forks the container (so every
//! fork happens from a single-threaded process), writes each line to the log and the
//! raw bytes to the stdout and stderr we had (the user's terminal for an attached run,
//! `/dev/null` for a monitor), and exits when the container's last writer is gone.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use strata_store::Store;
use strata_store::container::{self, Container};

/// The log in the container's directory; rotated to `json.log.1`.
pub const LOG_FILE: &str = "json.log";
/// Docker's `max-size`: past it the log becomes `json.log.1` (replacing the previous
/// one: Docker's `max-file=2`). `STRATA_LOG_MAX_SIZE` (bytes) changes it.
const MAX_SIZE: u64 = 16 << 20;
/// A longer line is kept in pieces, as Docker cuts at 16 KiB.
const MAX_LINE: usize = 16 << 10;

pub fn log_path(store: &Store, c: &Container) -> PathBuf {
    c.dir(store).join(LOG_FILE)
}

fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

fn max_size() -> u64 {
    std::env::var("STRATA_LOG_MAX_SIZE").ok().and_then(|s| s.parse().ok()).filter(|n| *n > 0).unwrap_or(MAX_SIZE)
}

/// The log holds what the container printed: root's eyes only, as the rest of the store.
fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options().create(true).append(true).mode(0o600).open(path)
}

/// Appends entries to a log, rotating it at `max` bytes.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

impl LogWriter {
    pub fn open(path: &Path, max: u64) -> io::Result<LogWriter> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter { path: path.to_path_buf(), file, size, max })
    }

    /// One line (or piece of a line) of `stream`, with the time it was read.
    pub fn write(&mut self, stream: &str, line: &[u8]) -> io::Result<()> {
        let time = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
        let entry = serde_json::json!({"log": String::from_utf8_lossy(line), "stream": stream, "time": time});
        let mut text = entry.to_string().into_bytes();
        text.push(b'\n');
        if self.size > 0 && self.size + text.len() as u64 > self.max {
            std::fs::rename(&self.path, rotated(&self.path))?;
            match open_append(&self.path) {
                Ok(f) => self.file = f,
                Err(e) => {
                    // Named back: the file still written to stays the log, and the next
                    // entry tries the rotation again.
                    let _ = std::fs::rename(rotated(&self.path), &self.path);
                    return Err(e);
                }
            }
            self.size = 0;
        }
        if let Err(e) = self.file.write_all(&text) {
            // A full disk: no piece of the entry stays, so that the next one (once there
            // is room) starts a line of its own and the log stays JSON lines.
            let _ = self.file.set_len(self.size);
            return Err(e);
        }
        self.size += text.len() as u64;
        Ok(())
    }
}

/// The bytes of one stream, cut into lines (the newline kept) or pieces of MAX_LINE.
#[derive(Default)]
struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    fn push(&mut self, data: &[u8], emit: &mut dyn FnMut(&[u8])) {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            let cut = match rest.iter().take(MAX_LINE).position(|b| *b == b'\n') {
                Some(i) => i + 1,
                None if rest.len() >= MAX_LINE => MAX_LINE,
                None => break,
            };
            emit(&rest[..cut]);
            start += cut;
        }
        self.pending.drain(..start);
    }

    fn flush(&mut self, emit: &mut dyn FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending.clear();
        }
    }
}

/// While it lives, our stdout and stderr are the pipes of a copier process (see the
/// module's comment); dropping it gives them back and waits until the log is complete.
pub struct Capture {
    saved: [OwnedFd; 3],
    copier: i32,
}

/// The capture a run of container `c` needs: none for a terminal in the foreground
/// (the output goes to ours as it is); in a monitor, one that serves `attach` too.
pub fn capture_for(store: &Store, c: &Container, tty: bool) -> Result<Option<Capture>> {
    if tty && crate::attach::serving().is_none() {
        return Ok(None);
    }
    capture(&log_path(store, c)).map(Some)
}

/// Starts copying our stdout and stderr to the log at `path` (and to where they went).
/// In a monitor the copier also serves the attach socket, and with `-i` our stdin
/// becomes a pipe it writes what attached clients send to.
pub fn capture(path: &Path) -> Result<Capture> {
    use rustix::pipe::{PipeFlags, pipe_with};
    let (out_r, out_w) = pipe_with(PipeFlags::CLOEXEC).context("pipe")?;
    let (err_r, err_w) = pipe_with(PipeFlags::CLOEXEC).context("pipe")?;
    let serving = crate::attach::serving();
    let stdin = match serving {
        Some(s) if s.stdin => Some(pipe_with(PipeFlags::CLOEXEC).context("pipe")?),
        _ => None,
    };
    let _ = io::stdout().flush();
    // SAFETY: the CLI is single-threaded here; the child only copies, then _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        drop((out_w, err_w));
        let hub = serving.and_then(|s| {
            crate::attach::Hub::new(s, stdin.map(|(_, w)| w))
                .map_err(|e| tracing::warn!("the attach socket is not served: {e}"))
                .ok()
        });
        copier(out_r, err_r, path, hub);
    }
    drop((out_r, err_r));
    let saved = [
        rustix::io::fcntl_dupfd_cloexec(io::stdout(), 3).context("dup")?,
        rustix::io::fcntl_dupfd_cloexec(io::stderr(), 3).context("dup")?,
        rustix::io::fcntl_dupfd_cloexec(io::stdin(), 3).context("dup")?,
    ];
    let capture = Capture { saved, copier: pid };
    rustix::stdio::dup2_stdout(&out_w).context("dup2")?;
    rustix::stdio::dup2_stderr(&err_w).context("dup2")?;
    if let Some((r, _)) = &stdin {
        rustix::stdio::dup2_stdin(r).context("dup2")?;
    }
    Ok(capture)
}

impl Drop for Capture {
    fn drop(&mut self) {
        // Our ends of the pipes go: once the container's are gone too, the copier has
        // read everything, and the log is complete when it exits.
        let _ = rustix::stdio::dup2_stdout(&self.saved[0]);
        let _ = rustix::stdio::dup2_stderr(&self.saved[1]);
        let _ = rustix::stdio::dup2_stdin(&self.saved[2]);
        let mut status = 0;
        // SAFETY: waitpid on our own child, retried on EINTR.
        while unsafe { libc::waitpid(self.copier, &mut status, 0) } < 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
    }
}

/// The copier process: never returns.
fn copier(out: OwnedFd, err: OwnedFd, path: &Path, mut hub: Option<crate::attach::Hub>) -> ! {
    // Ctrl-C and the signals a monitor forwards are for the container: the copier ends
    // when the container's output does.
    for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2] {
        // SAFETY: setting a signal's disposition to ignore, no handler involved.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    let mut log = match LogWriter::open(path, max_size()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("{}: {e}; the container's output is not logged", path.display());
            None
        }
    };
    let mut warned = false;
    let mut sources = [(Some(out), "stdout", Lines::default(), true), (Some(err), "stderr", Lines::default(), true)];
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let (ready, hub_events): (Vec<usize>, Vec<rustix::event::PollFlags>) = {
            let open: Vec<usize> = (0..2).filter(|i| sources[*i].0.is_some()).collect();
            if open.is_empty() {
                break;
            }
            let mut fds: Vec<rustix::event::PollFd<'_>> = open
                .iter()
                .filter_map(|i| sources[*i].0.as_ref())
                .map(|fd| rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN))
                .collect();
            fds.extend(hub.as_ref().map(|h| h.poll_fds()).unwrap_or_default());
            if rustix::event::poll(&mut fds, None).is_err() {
                continue;
            }
            let hub_events = fds[open.len()..].iter().map(|f| f.revents()).collect();
            (open.iter().zip(&fds).filter(|(_, f)| !f.revents().is_empty()).map(|(i, _)| *i).collect(), hub_events)
        };
        if let Some(h) = hub.as_mut() {
            h.handle(&hub_events);
        }
        for i in ready {
            let (fd, stream, lines, tee) = &mut sources[i];
            let Some(f) = fd.as_ref() else { continue };
            let n = match rustix::io::read(f, &mut buf[..]) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
                Err(_) => 0,
            };
            let mut emit = |line: &[u8]| {
                if let Some(w) = log.as_mut()
                    && let Err(e) = w.write(stream, line)
                    && !warned
                {
                    // A full disk: lines are dropped (the container never blocks on its
                    // output), and the next ones are tried again.
                    tracing::warn!("{}: {e}; the container's output is not all logged", path.display());
                    warned = true;
                }
            };
            if n == 0 {
                lines.flush(&mut emit);
                *fd = None;
                continue;
            }
            lines.push(&buf[..n], &mut emit);
            if let Some(h) = hub.as_mut() {
                h.broadcast(i as u8 + 1, &buf[..n]);
            }
            if *tee && write_all(i, &buf[..n]).is_err() {
                // Our stdout was closed (a `| head`): the log goes on.
                *tee = false;
            }
        }
    }
    if let Some(h) = hub {
        h.finish();
    }
    // SAFETY: _exit only ends the process (no atexit handlers of the parent).
    unsafe { libc::_exit(0) }
}

fn write_all(stream: usize, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = match stream {
            0 => rustix::io::write(io::stdout().as_fd(), data),
            _ => rustix::io::write(io::stderr().as_fd(), data),
        };
        match n {
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Options of `logs`.
#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// Follow the log until the container stops
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines (or "all")
    #[arg(short = 'n', long, value_name = "N", default_value = "all")]
    pub tail: String,
    /// Show each line's time (RFC 3339, nanoseconds)
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Only lines since a time (RFC 3339, e.g. 2026-12-07T03:00:00Z) or for a while (10m, 1h30m)
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<SystemTime>,
    /// Only lines before a time (RFC 3339) or before a while ago (10m)
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub until: Option<SystemTime>,
    pub container: String,
}

/// Reads the complete lines a log file gained since the last call; a rotation (the
/// path now names another file) is followed once the old file is read to its end.
struct Reader {
    path: PathBuf,
    file: Option<File>,
    partial: Vec<u8>,
}

impl Reader {
    fn new(path: &Path) -> Reader {
        Reader { path: path.to_path_buf(), file: File::open(path).ok(), partial: Vec::new() }
    }

    fn lines(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            if let Some(f) = self.file.as_mut() {
                let mut data = Vec::new();
                let _ = f.read_to_end(&mut data);
                self.partial.extend_from_slice(&data);
            }
            let rotated = match (&self.file, std::fs::metadata(&self.path)) {
                (Some(f), Ok(m)) => f.metadata().is_ok_and(|fm| fm.ino() != m.ino()),
                (None, Ok(_)) => true,
                (_, Err(_)) => false,
            };
            let cut = self.partial.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            out.extend(self.partial.drain(..cut).collect::<Vec<u8>>().lines().map_while(Result::ok));
            if !rotated {
                return out;
            }
            self.partial.clear();
            self.file = File::open(&self.path).ok();
        }
    }
}

/// `--since` and `--until`: a time, or a duration back from now.
fn parse_since(s: &str) -> Result<SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    let ago = humantime::parse_duration(s).map_err(|_| format!("'{s}': a time (RFC 3339) or a duration (10m)"))?;
    Ok(SystemTime::now().checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH))
}

/// Whether a log entry's time is from `since` on and before `until` (Docker's bounds).
fn within(entry: &str, since: Option<SystemTime>, until: Option<SystemTime>) -> bool {
    if since.is_none() && until.is_none() {
        return true;
    }
    let v: serde_json::Value = serde_json::from_str(entry).unwrap_or_default();
    v["time"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .is_some_and(|t| since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u))
}

/// Prints log entries to our stdout and stderr; false once our stdout is gone.
fn print(entries: &[String], timestamps: bool) -> bool {
    let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
    for e in entries {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(e) else { continue };
        let text = v["log"].as_str().unwrap_or_default();
        let time = if timestamps { format!("{} ", v["time"].as_str().unwrap_or_default()) } else { String::new() };
        let w: &mut dyn Write = if v["stream"] == "stderr" { &mut err } else { &mut out };
        if w.write_all(time.as_bytes()).and_then(|()| w.write_all(text.as_bytes())).is_err() {
            return false;
        }
    }
    out.flush().is_ok()
}

pub fn cmd_logs(store: &Store, args: &LogsArgs) -> Result<ExitCode> {
    let c = container::find(store, &args.container)?;
    let tail: Option<usize> = match args.tail.as_str() {
        "all" => None,
        n => Some(n.parse().map_err(|_| anyhow::anyhow!("--tail {n}: a number of lines, or all"))?),
    };
    let path = log_path(store, &c);
    let mut old = String::new();
    if let Ok(mut f) = File::open(rotated(&path)) {
        let _ = f.read_to_string(&mut old);
    }
    let mut reader = Reader::new(&path);
    let mut entries: Vec<String> = old.lines().map(str::to_string).collect();
    entries.extend(reader.lines());
    entries.retain(|e| within(e, args.since, args.until));
    if let Some(n) = tail {
        entries.drain(..entries.len().saturating_sub(n));
    }
    if !print(&entries, args.timestamps) || !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        // Whether it still runs is read before the log: nothing it wrote is missed.
        let live = container::find(store, &c.id).is_ok_and(|c| crate::monitor::live(&c));
        let mut lines = reader.lines();
        lines.retain(|e| within(e, None, args.until));
        // Following ends at `--until` too, as Docker's does.
        let past = args.until.is_some_and(|u| SystemTime::now() >= u);
        if !print(&lines, args.timestamps) || !live || past {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    #[test]
    fn since_and_until_bound_the_entries_by_their_time() {
        let at = |t: &str| format!(r#"{{"log":"x\n","stream":"stdout","time":"{t}"}}"#);
        let t = |s: &str| humantime::parse_rfc3339(s).expect("a time");
        let (early, mid, late) = (at("2026-12-07T01:00:00Z"), at("2026-12-07T02:00:00Z"), at("2026-12-07T03:00:00Z"));
        let since = Some(t("2026-12-07T02:00:00Z"));
        let until = Some(t("2026-12-07T03:00:00Z"));
        let kept: Vec<bool> = [&early, &mid, &late].iter().map(|e| within(e, since, until)).collect();
        assert_eq!(kept, [false, true, false], "since is inclusive, until exclusive");
        assert!(within(&early, None, None) && within("not json", None, None));
        assert!(!within("not json", since, None), "an entry without a time is outside any bound");
        assert!(parse_since("10m").expect("a duration") < SystemTime::now());
    }

    #[test]
    fn lines_are_cut_at_newlines_and_at_the_cap() {
        let mut got = Vec::new();
        let mut lines = Lines::default();
        let mut emit = |l: &[u8]| got.push(l.to_vec());
        lines.push(b"one\ntw", &mut emit);
        lines.push(b"o\nthree", &mut emit);
        lines.push(&vec![b'x'; MAX_LINE + 5], &mut emit);
        lines.flush(&mut emit);
        assert_eq!(got.len(), 4);
        assert_eq!((got[0].as_slice(), got[1].as_slice()), (&b"one\n"[..], &b"two\n"[..]));
        assert_eq!(got[2].len(), MAX_LINE);
        assert!(got[2].starts_with(b"three"));
        assert_eq!(got[3], vec![b'x'; 10]);
    }

    #[test]
    fn the_log_is_json_lines_and_rotates_at_its_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(LOG_FILE);
        let mut w = LogWriter::open(&path, 400).expect("open");
        for i in 0..10 {
            w.write(if i % 2 == 0 { "stdout" } else { "stderr" }, format!("line {i}\n").as_bytes()).expect("write");
        }
        let (old, new) = (entries(&rotated(&path)), entries(&path));
        assert!(!old.is_empty() && !new.is_empty(), "rotated once at least");
        assert!(std::fs::metadata(&path).expect("log").len() <= 400);
        // Only the last rotation is kept: the newest lines are all there, in order.
        let all: Vec<String> = old.iter().chain(&new).map(|e| e["log"].as_str().unwrap_or("").to_string()).collect();
        let last = all.last().cloned().unwrap_or_default();
        assert_eq!(last, "line 9\n");
        let first: usize = all[0].trim_start_matches("line ").trim().parse().expect("a number");
        let expected: Vec<String> = (first..10).map(|i| format!("line {i}\n")).collect();
        assert_eq!(all, expected);
        assert_eq!(new.last().map(|e| e["stream"].clone()), Some("stderr".into()));
        assert!(humantime::parse_rfc3339(new[0]["time"].as_str().unwrap_or("")).is_ok(), "{}", new[0]);
    }
}
