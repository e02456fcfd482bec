//! fuse-transport-bench: per-request latency of FUSE over /dev/fuse read/write versus FUSE over
//! io_uring, for a null request (statfs) and a stat of a cached name (one GETATTR), measured
//! against a minimal raw-protocol FUSE server in this same process (issue 13.7).

mod abi;
mod devfuse;
mod fs;
mod uring;

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::abi::*;
use crate::devfuse::{InitWish, Negotiated};
use crate::fs::{FILE_CONTENT, FILE_NAME, Fs, Via};
use crate::uring::{QueueConfig, RingSetup};

const ENABLE_URING: &str = "/sys/module/fuse/parameters/enable_uring";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    DevFuse,
    Uring,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::DevFuse => "devfuse",
            Transport::Uring => "uring",
        }
    }
}

struct Args {
    transports: Vec<Transport>,
    rounds: usize,
    n: usize,
    warmup: usize,
    entry_timeout: u64,
    devfuse_threads: usize,
    depth: usize,
    setup: RingSetup,
    pin_client: Option<usize>,
    pin_devfuse: Option<usize>,
    check_passthrough: bool,
}

const USAGE: &str = "usage: fuse-transport-bench [--transport devfuse|uring|both] [--rounds R] [-n N] [--warmup W]
    [--entry-timeout SECS] [--devfuse-threads T] [--queue-depth D] [--ring-setup plain|coop|defer]
    [--pin-client CPU] [--pin-devfuse CPU] [--check-passthrough]
Runs as root. The uring transport needs /sys/module/fuse/parameters/enable_uring = Y.";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        transports: vec![Transport::DevFuse, Transport::Uring],
        rounds: 5,
        n: 200_000,
        warmup: 2_000,
        entry_timeout: 3600,
        devfuse_threads: 1,
        depth: 2,
        setup: RingSetup::Plain,
        pin_client: None,
        pin_devfuse: None,
        check_passthrough: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--transport" => {
                a.transports = match val()?.as_str() {
                    "devfuse" => vec![Transport::DevFuse],
                    "uring" => vec![Transport::Uring],
                    "both" => vec![Transport::DevFuse, Transport::Uring],
                    t => return Err(format!("unknown transport {t}")),
                }
            }
            "--rounds" => a.rounds = num(val()?)?,
            "-n" | "--n" => a.n = num(val()?)?,
            "--warmup" => a.warmup = num(val()?)?,
            "--entry-timeout" => a.entry_timeout = num(val()?)? as u64,
            "--devfuse-threads" => a.devfuse_threads = num(val()?)?.max(1),
            "--queue-depth" => a.depth = num(val()?)?.max(1),
            "--ring-setup" => {
                let v = val()?;
                a.setup = RingSetup::parse(&v).ok_or_else(|| format!("unknown ring setup {v}"))?
            }
            "--pin-client" => a.pin_client = Some(num(val()?)?),
            "--pin-devfuse" => a.pin_devfuse = Some(num(val()?)?),
            "--check-passthrough" => a.check_passthrough = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            f => return Err(format!("unknown flag {f}\n{USAGE}")),
        }
    }
    if a.n == 0 || a.rounds == 0 {
        return Err("rounds and -n must be positive".into());
    }
    Ok(a)
}

fn pin_self(cpu: usize) -> Result<(), String> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).map_err(|e| format!("pin to cpu {cpu}: {e}"))
}

/// num_possible_cpus(): the kernel makes one ring queue per possible CPU.
fn possible_cpus() -> Result<usize, String> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible").map_err(|e| e.to_string())?;
    let mut count = 0;
    for part in s.trim().split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo, hi),
            None => (part, part),
        };
        let lo: usize = lo.parse().map_err(|e| format!("{part}: {e}"))?;
        let hi: usize = hi.parse().map_err(|e| format!("{part}: {e}"))?;
        count += hi - lo + 1;
    }
    Ok(count)
}

struct Session {
    dir: PathBuf,
    dev: Arc<OwnedFd>,
    fs: Arc<Fs>,
    threads: Vec<JoinHandle<()>>,
    mounted: bool,
    neg: Option<Negotiated>,
    /// The connection's number under /sys/fs/fuse/connections (the minor of the mount's st_dev).
    conn: Option<u32>,
}

/// Last resort against a request that never gets an answer: a thread waiting for a request the
/// daemon already received cannot be killed, and it keeps /dev/fuse open, so only the fusectl
/// "abort" file ends the connection. Mounts fusectl for the moment if nobody has.
fn abort_connection(conn: u32) {
    let base = Path::new("/sys/fs/fuse/connections");
    let abort = base.join(conn.to_string()).join("abort");
    let mut mounted = false;
    if !abort.exists() {
        mounted = rustix::mount::mount("fusectl", base, "fusectl", rustix::mount::MountFlags::empty(), None).is_ok();
    }
    match std::fs::write(&abort, "1") {
        Ok(()) => eprintln!("aborted FUSE connection {conn}"),
        Err(e) => eprintln!("could not abort FUSE connection {conn}: {e}"),
    }
    if mounted {
        let _ = rustix::mount::unmount(base, rustix::mount::UnmountFlags::empty());
    }
}

impl Session {
    fn teardown(&mut self) {
        if self.mounted {
            if let Err(e) = rustix::mount::unmount(&self.dir, rustix::mount::UnmountFlags::empty()) {
                eprintln!("unmount {}: {e}; detaching", self.dir.display());
                let _ = rustix::mount::unmount(&self.dir, rustix::mount::UnmountFlags::DETACH);
            }
            self.mounted = false;
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// The FUSE connection number of the mount at `dir`: the minor of its device, read from
/// /proc/self/mountinfo (a stat(2) would be a FUSE request, which over io_uring waits until
/// the ring is ready).
fn conn_of(dir: &Path) -> Option<u32> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = dir.to_str()?;
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 4 && f[4] == want).then(|| f[2].split_once(':')?.1.parse().ok()).flatten()
        })
        .next_back()
}

fn start(t: Transport, args: &Args, passthrough: bool, seq: usize) -> Result<Session, String> {
    let dir = std::env::temp_dir().join(format!("fuse-transport-{}-{seq}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let dev = rustix::fs::open("/dev/fuse", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("open /dev/fuse: {e}"))?;
    let dev = Arc::new(dev);
    let fs = Arc::new(Fs::new(args.entry_timeout));
    let mut s = Session { dir, dev, fs, threads: Vec::new(), mounted: false, neg: None, conn: None };
    let data = CString::new(format!("fd={},rootmode=40000,user_id=0,group_id=0", s.dev.as_raw_fd())).expect("no NUL");
    rustix::mount::mount(
        "fuse-transport-bench",
        &s.dir,
        "fuse.fuse-transport-bench",
        rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
        data.as_c_str(),
    )
    .map_err(|e| format!("mount {}: {e}", s.dir.display()))?;
    s.mounted = true;

    let (init_tx, init_rx) = mpsc::channel();
    let readers = if t == Transport::DevFuse { args.devfuse_threads } else { 1 };
    for _ in 0..readers {
        let (dev, fs) = (s.dev.clone(), s.fs.clone());
        let wish = InitWish { uring: t == Transport::Uring, passthrough };
        // Whichever reader gets INIT reports it.
        let tx = Some(init_tx.clone());
        let pin = args.pin_devfuse;
        s.threads.push(std::thread::spawn(move || {
            if let Some(cpu) = pin
                && let Err(e) = pin_self(cpu)
            {
                eprintln!("devfuse: {e}");
            }
            devfuse::serve(dev, fs, wish, tx)
        }));
    }
    // mount(2) returns before INIT is answered; the first request (here, a stat of the root)
    // waits for it. Poke the mount so INIT is sent, then wait for the negotiation.
    let poke_dir = s.dir.clone();
    s.threads.push(std::thread::spawn(move || {
        let _ = rustix::fs::stat(&poke_dir);
    }));
    let neg = init_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "no FUSE_INIT within 10 s".to_string())?
        .map_err(|e| format!("INIT: {e}"))?;
    s.neg = Some(neg);
    s.conn = conn_of(&s.dir);

    if t == Transport::Uring {
        let nr = possible_cpus()?;
        let (tx, rx) = mpsc::channel();
        for qid in 0..nr {
            let (dev, fs, tx) = (s.dev.clone(), s.fs.clone(), tx.clone());
            let cfg = QueueConfig {
                qid: qid as u16,
                depth: args.depth,
                payload_len: devfuse::MAX_WRITE as usize,
                setup: args.setup,
                pin: true,
            };
            s.threads.push(std::thread::spawn(move || uring::serve_queue(dev, fs, cfg, tx)));
        }
        for _ in 0..nr {
            rx.recv_timeout(Duration::from_secs(10)).map_err(|_| "queue setup timed out".to_string())??;
        }
    }
    Ok(s)
}

struct Samples {
    stat: Vec<u32>,
    statfs: Vec<u32>,
}

fn measure(s: &Session, n: usize, warmup: usize, pin: Option<usize>) -> Result<Samples, String> {
    let dir = s.dir.clone();
    let (tx, rx) = mpsc::channel();
    let client = std::thread::spawn(move || {
        let _ = tx.send(client(dir, n, warmup, pin));
    });
    // Generous: 2n requests at well under 1 ms each.
    let limit = Duration::from_secs(60 + (2 * (n + warmup) / 1000) as u64);
    match rx.recv_timeout(limit) {
        Ok(r) => {
            let _ = client.join();
            r
        }
        Err(_) => {
            if let Some(conn) = s.conn {
                abort_connection(conn);
            }
            let _ = client.join();
            Err(format!("client made no progress for {} s: connection aborted", limit.as_secs()))
        }
    }
}

fn client(dir: PathBuf, n: usize, warmup: usize, pin: Option<usize>) -> Result<Samples, String> {
    {
        if let Some(cpu) = pin {
            pin_self(cpu)?;
        }
        let root = rustix::fs::open(&dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| format!("open {}: {e}", dir.display()))?;
        let stat = || rustix::fs::statat(root.as_fd(), FILE_NAME, AtFlags::SYMLINK_NOFOLLOW);
        let statfs = || rustix::fs::fstatfs(root.as_fd());
        let st = stat().map_err(|e| format!("stat {FILE_NAME}: {e}"))?;
        if st.st_size as usize != FILE_CONTENT.len() {
            return Err(format!("stat {FILE_NAME}: size {} is not {}", st.st_size, FILE_CONTENT.len()));
        }
        for _ in 0..warmup {
            stat().map_err(|e| e.to_string())?;
            statfs().map_err(|e| e.to_string())?;
        }
        let mut out = Samples { stat: Vec::with_capacity(n), statfs: Vec::with_capacity(n) };
        for _ in 0..n {
            let t0 = Instant::now();
            let r = stat();
            let dt = t0.elapsed();
            r.map_err(|e| format!("stat: {e}"))?;
            out.stat.push(dt.as_nanos().min(u32::MAX as u128) as u32);
        }
        for _ in 0..n {
            let t0 = Instant::now();
            let r = statfs();
            let dt = t0.elapsed();
            r.map_err(|e| format!("statfs: {e}"))?;
            out.statfs.push(dt.as_nanos().min(u32::MAX as u128) as u32);
        }
        Ok(out)
    }
}

#[derive(Clone, Copy)]
struct Summary {
    median: u32,
    p99: u32,
}

fn summarize(v: &mut [u32]) -> Summary {
    v.sort_unstable();
    Summary { median: v[v.len() / 2], p99: v[(v.len() * 99 / 100).min(v.len() - 1)] }
}

/// One mount, one transport: measure and check that the daemon saw exactly the requests we
/// timed, over the transport we meant.
fn round(t: Transport, args: &Args, seq: usize) -> Result<Samples, String> {
    let s = start(t, args, false, seq)?;
    let via = if t == Transport::Uring { Via::Uring } else { Via::DevFuse };
    let before = (s.fs.count(via, FUSE_GETATTR), s.fs.count(via, FUSE_STATFS));
    let samples = measure(&s, args.n, args.warmup, args.pin_client)?;
    let after = (s.fs.count(via, FUSE_GETATTR), s.fs.count(via, FUSE_STATFS));
    let want = (args.n + args.warmup) as u64;
    let got = (after.0 - before.0, after.1 - before.1);
    // The first stat of the round (a LOOKUP plus GETATTR) is counted too.
    if got.0 < want || got.1 < want {
        return Err(format!(
            "{}: daemon served only {} GETATTR / {} STATFS via {:?} for {} stats and statfs each",
            t.name(),
            got.0,
            got.1,
            via,
            want
        ));
    }
    if seq == 0 || args.rounds == 1 {
        let neg = s.neg.expect("negotiated");
        eprintln!(
            "[{}] kernel FUSE 7.{} flags {:#x}; replied 7.{} flags {:#x}; GETATTR per stat: {:.3}, lookups: {}",
            t.name(),
            neg.kernel_minor,
            neg.kernel_flags,
            neg.minor,
            neg.flags,
            got.0 as f64 / (want + 1) as f64,
            s.fs.count(Via::Uring, FUSE_LOOKUP) + s.fs.count(Via::DevFuse, FUSE_LOOKUP)
        );
    }
    Ok(samples)
}

/// Passthrough together with the given transport: OPEN answers FOPEN_PASSTHROUGH with a backing
/// id; a read must return the backing file's bytes without any READ reaching the daemon.
fn check_passthrough(t: Transport, args: &Args, seq: usize) -> Result<String, String> {
    let s = start(t, args, true, seq)?;
    let backing_path = std::env::temp_dir().join(format!("fuse-transport-backing-{}-{seq}", std::process::id()));
    let backing_content = b"content of the passthrough backing file\n";
    std::fs::write(&backing_path, backing_content).map_err(|e| e.to_string())?;
    let backing = std::fs::File::open(&backing_path).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&backing_path);
    // struct fuse_backing_map { int32_t fd; uint32_t flags; uint64_t padding; }
    let map: [u32; 4] = [backing.as_raw_fd() as u32, 0, 0, 0];
    // SAFETY: FUSE_DEV_IOC_BACKING_OPEN reads a 16-byte struct fuse_backing_map from the pointer,
    // which points at a live, properly sized and aligned [u32; 4]; the fd is a valid /dev/fuse fd.
    let id = unsafe { libc::ioctl(s.dev.as_raw_fd(), FUSE_DEV_IOC_BACKING_OPEN as _, map.as_ptr()) };
    if id < 0 {
        return Err(format!("FUSE_DEV_IOC_BACKING_OPEN: {}", std::io::Error::last_os_error()));
    }
    *s.fs.backing_id.lock().expect("lock") = Some(id);
    let path = s.dir.join(FILE_NAME);
    let reads_before = s.fs.count(Via::DevFuse, FUSE_READ) + s.fs.count(Via::Uring, FUSE_READ);
    let opens_uring = s.fs.count(Via::Uring, FUSE_OPEN);
    let got = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let reads = s.fs.count(Via::DevFuse, FUSE_READ) + s.fs.count(Via::Uring, FUSE_READ) - reads_before;
    let open_via_uring = s.fs.count(Via::Uring, FUSE_OPEN) > opens_uring;
    let verdict = if got == backing_content && reads == 0 {
        "works: read returned the backing file's bytes, no READ reached the daemon"
    } else if got == FILE_CONTENT {
        "NOT in effect: read was served by the daemon"
    } else {
        "unexpected content"
    };
    Ok(format!("{}: passthrough {verdict} (OPEN via io_uring: {open_via_uring}, READs: {reads})", t.name()))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let enable = std::fs::read_to_string(ENABLE_URING).unwrap_or_else(|_| "?".into());
    eprintln!(
        "enable_uring={} possible_cpus={} n={} warmup={} rounds={} entry_timeout={}s devfuse_threads={} queue_depth={} ring_setup={:?} pin_client={:?}",
        enable.trim(),
        possible_cpus().unwrap_or(0),
        args.n,
        args.warmup,
        args.rounds,
        args.entry_timeout,
        args.devfuse_threads,
        args.depth,
        args.setup,
        args.pin_client
    );
    let mut seq = 0;
    if args.check_passthrough {
        for &t in &args.transports {
            match check_passthrough(t, &args, seq) {
                Ok(msg) => println!("{msg}"),
                Err(e) => println!("{}: passthrough check failed: {e}", t.name()),
            }
            seq += 1;
        }
        return;
    }

    let mut all: Vec<(Transport, Vec<u32>, Vec<u32>)> =
        args.transports.iter().map(|&t| (t, Vec::new(), Vec::new())).collect();
    println!(
        "{:>5} {:>8} {:>12} {:>12} {:>12} {:>12}",
        "round", "transp", "stat med", "stat p99", "statfs med", "statfs p99"
    );
    let mut failed = false;
    // Per round, per transport: (stat median, statfs median), for paired per-round ratios.
    let mut per_round: Vec<Vec<Option<(u32, u32)>>> = vec![vec![None; all.len()]; args.rounds];
    for (r, this_round) in per_round.iter_mut().enumerate() {
        // Alternate which transport goes first.
        let mut order: Vec<usize> = (0..all.len()).collect();
        if r % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let t = all[i].0;
            match round(t, &args, seq) {
                Ok(mut s) => {
                    let a = summarize(&mut s.stat);
                    let b = summarize(&mut s.statfs);
                    println!(
                        "{:>5} {:>8} {:>12} {:>12} {:>12} {:>12}",
                        r + 1,
                        t.name(),
                        a.median,
                        a.p99,
                        b.median,
                        b.p99
                    );
                    this_round[i] = Some((a.median, b.median));
                    all[i].1.extend_from_slice(&s.stat);
                    all[i].2.extend_from_slice(&s.statfs);
                }
                Err(e) => {
                    println!("{:>5} {:>8} FAILED: {e}", r + 1, t.name());
                    failed = true;
                }
            }
            seq += 1;
        }
    }
    println!();
    println!("pooled over rounds, ns per request:");
    println!("{:>8} {:>12} {:>12} {:>12} {:>12}", "transp", "stat med", "stat p99", "statfs med", "statfs p99");
    let mut sums = Vec::new();
    for (t, st, sf) in all.iter_mut() {
        if st.is_empty() {
            continue;
        }
        let a = summarize(st);
        let b = summarize(sf);
        println!("{:>8} {:>12} {:>12} {:>12} {:>12}", t.name(), a.median, a.p99, b.median, b.p99);
        sums.push((*t, a, b));
    }
    let find = |want: Transport| sums.iter().find(|(t, _, _)| *t == want).map(|&(_, a, b)| (a, b));
    if let (Some((da, db)), Some((ua, ub))) = (find(Transport::DevFuse), find(Transport::Uring)) {
        let r = |u: u32, d: u32| u as f64 / d as f64;
        println!(
            "{:>8} {:>12.3} {:>12.3} {:>12.3} {:>12.3}",
            "uring/devfuse",
            r(ua.median, da.median),
            r(ua.p99, da.p99),
            r(ub.median, db.median),
            r(ub.p99, db.p99)
        );
    }
    // The machine drifts between states that shift both transports alike (on the 2-vCPU VM this
    // was written on, whole rounds ran ~30 % slower at times): the ratio of the two medians
    // measured back to back within each round is steadier than the ratio of pooled medians.
    let di = all.iter().position(|(t, _, _)| *t == Transport::DevFuse);
    let ui = all.iter().position(|(t, _, _)| *t == Transport::Uring);
    if let (Some(di), Some(ui)) = (di, ui) {
        let mut rs: Vec<f64> = Vec::new();
        let mut rf: Vec<f64> = Vec::new();
        for r in &per_round {
            if let (Some(d), Some(u)) = (r[di], r[ui]) {
                rs.push(u.0 as f64 / d.0 as f64);
                rf.push(u.1 as f64 / d.1 as f64);
            }
        }
        if !rs.is_empty() {
            let med = |v: &mut Vec<f64>| {
                v.sort_by(|a, b| a.total_cmp(b));
                v[v.len() / 2]
            };
            let fmt = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" ");
            println!("per-round uring/devfuse median ratios: stat {} | statfs {}", fmt(&rs), fmt(&rf));
            println!("median of per-round ratios: stat {:.3}, statfs {:.3}", med(&mut rs), med(&mut rf));
        }
    }
    if failed {
        std::process::exit(1);
    }
}
