//! Detached containers: one monitor process per container, as conmon is for podman.
//!
//! The monitor is this program executed again (`strata monitor ID`, a hidden command) in
//! a session of its own, with `/dev/null` for stdio and its pid and start time in the
//! container's record. It does what `strata run` does in the foreground: mounts the
//! union, runs the container (the runtime's caller: it forwards signals and waits), keeps
//! the output in the log, records the exit status and time, unmounts, removes the
//! cgroups, and exits. The `strata` that started it returns once the container runs.
//!
//! A monitor killed with SIGKILL leaves the container running (it is not the monitor's
//! to take down); once the container is gone too, [`reap`] records it as exited and
//! removes what the monitor would have.

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use strata_store::Store;
use strata_store::container::{self, Container};

/// The container runs, or its monitor is still at work (starting it, or recording its end).
pub fn live(c: &Container) -> bool {
    c.is_running() || c.monitor_alive()
}

/// Starts `c` under a new monitor; returns once it runs (or already ran and ended).
pub fn start_detached(store: &Store, c: &Container) -> Result<()> {
    if live(c) {
        bail!("container {} is already running", c.name);
    }
    reap(store, c)?;
    let exe = std::env::current_exe().context("finding this program")?;
    let mut child = Command::new(exe)
        .arg("--root")
        .arg(store.root())
        .arg("monitor")
        .arg(&c.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the container's monitor")?;
    let monitor = child.id() as i32;
    let t0 = Instant::now();
    loop {
        let ended = child.try_wait().context("waiting for the container's monitor")?.is_some();
        let now = container::find(store, &c.id)?;
        if ended {
            return match now.state.error {
                // What kept the container from starting: Docker's exit status 125.
                Some(e) => Err(strata_runtime::RuntimeError::Other(e).into()),
                None => Ok(()),
            };
        }
        if now.state.monitor_pid == monitor && now.state.status == "running" {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("container {}: its monitor (pid {monitor}) did not start it within 2 minutes", c.name);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `strata monitor ID`: the monitor itself.
pub fn cmd_monitor(store: &Store, id: &str) -> Result<ExitCode> {
    // Its own session: neither the terminal's signals nor the end of the `strata` that
    // started it reach it; and no directory of the user's is kept busy.
    let _ = rustix::process::setsid();
    let _ = std::env::set_current_dir("/");
    let me = std::process::id() as i32;
    let start = container::pid_start_time(me).unwrap_or(0);
    let c = container::update(store, id, |c| {
        c.state.monitor_pid = me;
        c.state.monitor_start = start;
        c.state.error = None;
    })?;
    match crate::containers::start(store, &c, false, false) {
        Ok(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        Err(e) => {
            let msg = format!("{e:#}");
            let _ = container::update(store, id, |c| c.state.error = Some(msg));
            Err(e)
        }
    }
}

/// A container recorded as running whose process and monitor are both gone (its
/// monitor was killed, then the container ended): recorded as exited, with an unknown
/// status, its mount and cgroups removed. Other containers are returned as they are.
pub fn reap(store: &Store, c: &Container) -> Result<Container> {
    if c.state.status != "running" || live(c) {
        return Ok(c.clone());
    }
    crate::containers::unmount(store, c);
    if let Err(e) = crate::network::teardown(store, &c.id) {
        tracing::warn!("releasing the network of container {}: {e:#}", c.name);
    }
    if !strata_runtime::cgroup::remove_leftover(&c.id) {
        tracing::warn!("the cgroups of container {} still hold processes", c.name);
    }
    Ok(container::update(store, &c.id, |c| {
        if c.state.status == "running" && !live(c) {
            c.state.status = "exited".into();
            c.state.pid = 0;
            c.state.exit_code = None;
            c.state.finished_at = Some(strata_store::store::now_rfc3339());
        }
    })?)
}

/// Waits (up to `limit`) until the container's monitor has finished; true if it has.
pub fn wait_monitor(store: &Store, id: &str, limit: Duration) -> bool {
    let t0 = Instant::now();
    while container::find(store, id).is_ok_and(|c| c.monitor_alive()) {
        if t0.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}
