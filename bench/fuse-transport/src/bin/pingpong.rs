//! What a round trip between two processes costs on this machine, with no FUSE in it:
//! one byte back and forth over two pipes, both ends on one CPU, then one on each of two
//! CPUs; between two processes (each switch changes address space) and between two
//! threads of one (it does not). A FUSE request is at least one such round trip.
//!
//!     cargo run --release --bin pingpong [ROUND_TRIPS]
//!
//! Prints the mean round trip of each of 3 runs, in µs.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).expect("sched_setaffinity");
}

/// Reads a byte from `from` and writes it to `to`, `n` times.
fn echo(from: &OwnedFd, to: &OwnedFd, n: usize) {
    let mut b = [0u8; 1];
    for _ in 0..n {
        rustix::io::read(from, &mut b).expect("read");
        rustix::io::write(to, &b).expect("write");
    }
}

/// Mean round trip in µs, this thread on CPU 0 and the echoing end on `other_cpu`.
fn run(processes: bool, other_cpu: usize, n: usize) -> f64 {
    let (a_r, a_w) = rustix::pipe::pipe().expect("pipe");
    let (b_r, b_w) = rustix::pipe::pipe().expect("pipe");
    pin(0);
    let child = if processes {
        // SAFETY: the child only pins itself, echoes over inherited pipes and exits with
        // _exit; it touches no lock another thread could hold (this program has none).
        match unsafe { libc::fork() } {
            0 => {
                pin(other_cpu);
                echo(&a_r, &b_w, n);
                // SAFETY: ends the child at once, as it must after fork.
                unsafe { libc::_exit(0) }
            }
            pid if pid > 0 => Some(pid),
            _ => panic!("fork: {}", std::io::Error::last_os_error()),
        }
    } else {
        None
    };
    let thread = (!processes).then(|| {
        let (from, to) = (a_r.try_clone().expect("dup"), b_w.try_clone().expect("dup"));
        std::thread::spawn(move || {
            pin(other_cpu);
            echo(&from, &to, n);
        })
    });
    let mut b = [b'x'];
    let t0 = Instant::now();
    for _ in 0..n {
        rustix::io::write(a_w.as_fd(), &b).expect("write");
        rustix::io::read(b_r.as_fd(), &mut b).expect("read");
    }
    let us = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
    if let Some(pid) = child {
        // SAFETY: waits for our own child; the status pointer may be null.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
    if let Some(t) = thread {
        t.join().expect("echo thread");
    }
    us
}

fn main() {
    let n = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    for _ in 0..3 {
        let mut line = format!(
            "one CPU: threads {:6.2} µs, processes {:6.2} µs",
            run(false, 0, n),
            run(true, 0, n)
        );
        if cpus > 1 {
            line += &format!(" | two CPUs: threads {:6.2} µs, processes {:6.2} µs", run(false, 1, n), run(true, 1, n));
        }
        println!("{line}");
    }
}
