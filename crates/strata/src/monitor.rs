//! Detached containers: one monitor process per container, as conmon is for podman.
//!
//! The monitor is this program executed again (`strata monitor ID`, a hidden command) in
//! a session of its own, with `/dev/null` for stdio and its pid and start time in the
//! container's record. It does what `strata run` does in the foreground: mounts the
//! union, runs the container (the runtime's caller: it forwards signals and waits), keeps
//! the output in the log, records the exit status and time, unmounts, removes the
//! cgroups, and exits. The `strata` that started it returns once the container runs.
//!
//! With `--restart` it runs the container again as Docker's daemon would; with `--rm`
//! it removes it once it has ended; it serves the attach socket ([`crate::attach`]).
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

/// `--restart`: Docker's restart policies.
#[derive(clap::Args, Debug, Default)]
pub struct RestartArg {
    /// Restart policy of a detached container: no, on-failure[:MAX], always, unless-stopped
    #[arg(long = "restart", value_name = "POLICY", default_value = "no", value_parser = parse_policy)]
    pub restart: String,
}

/// A `--restart` value, checked.
fn parse_policy(s: &str) -> Result<String, String> {
    let (name, max) = s.split_once(':').map_or((s, None), |(n, m)| (n, Some(m)));
    match (name, max) {
        ("no" | "always" | "unless-stopped", None) | ("on-failure", None) => Ok(s.to_string()),
        ("on-failure", Some(m)) if m.parse::<u32>().is_ok() => Ok(s.to_string()),
        ("on-failure", Some(m)) => Err(format!("invalid restart policy: maximum retry count must be a number: {m}")),
        ("no" | "always" | "unless-stopped", Some(_)) => {
            Err(format!("invalid restart policy: maximum retry count cannot be used with restart policy '{name}'"))
        }
        _ => Err(format!("invalid restart policy '{s}' (no, on-failure[:MAX], always, unless-stopped)")),
    }
}

/// A policy's name and maximum retry count (0: none given).
fn split_policy(policy: &str) -> (&str, u32) {
    policy.split_once(':').map_or((policy, 0), |(n, m)| (n, m.parse().unwrap_or(0)))
}

/// Docker's `RestartPolicy` in `inspect`: name and maximum retry count.
pub fn policy_json(policy: &str) -> serde_json::Value {
    let (name, max) = split_policy(policy);
    serde_json::json!({"Name": if name.is_empty() { "no" } else { name }, "MaximumRetryCount": max})
}

/// Whether the monitor runs the container again after it ended with `code`.
fn should_restart(c: &Container, code: i32) -> bool {
    if c.state.manually_stopped {
        return false;
    }
    let (name, max) = split_policy(&c.config.keep.restart);
    match name {
        "always" | "unless-stopped" => true,
        "on-failure" => code != 0 && (max == 0 || c.state.restart_count < max),
        _ => false,
    }
}

/// Before `rm`: a paused or restarting container is refused without `force` (Docker's
/// words); with it, its monitor is told not to run it again.
pub fn before_rm(store: &Store, c: &Container, force: bool) -> Result<()> {
    if !force && crate::manage::paused(c) {
        bail!(
            "You cannot remove a paused container {}. Unpause and then stop the container before attempting removal or force remove",
            c.id
        );
    }
    if !c.monitor_alive() || c.state.monitor_pid == std::process::id() as i32 {
        return Ok(());
    }
    if !force && !c.is_running() && c.state.status == "restarting" {
        bail!(
            "You cannot remove a restarting container {}. Stop the container before attempting removal or force remove",
            c.id
        );
    }
    if force {
        container::update(store, &c.id, |c| c.state.manually_stopped = true)?;
    }
    Ok(())
}

/// `run` options the monitor applies, refused where Docker refuses them.
pub fn check_run(policy: &str, rm: bool) -> Result<()> {
    if rm && !matches!(policy, "" | "no") {
        bail!("Conflicting options: --restart and --rm");
    }
    Ok(())
}

/// `run -d`: records how the monitor keeps the container, starts it, prints its ID.
pub fn run_detached(store: &Store, c: &Container, rm: bool, interactive: bool, tty: bool) -> Result<ExitCode> {
    let c = container::update(store, &c.id, |c| {
        c.config.keep.auto_remove = rm;
        c.config.keep.open_stdin = interactive;
        c.config.keep.tty = tty;
    })?;
    start_detached(store, &c)?;
    println!("{}", c.id);
    Ok(ExitCode::SUCCESS)
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
        let now = match container::find(store, &c.id) {
            Ok(now) => now,
            // `--rm`: it ran, ended and was removed already.
            Err(strata_store::StoreError::NoSuchContainer(_)) if ended && c.config.keep.auto_remove => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if ended {
            // Another monitor had it already (two `start`s at once): ours never took it.
            if now.state.monitor_pid != monitor && live(&now) {
                bail!("container {} is already running", c.name);
            }
            return match now.state.error {
                // What kept the container from starting: Docker's exit status 125.
                Some(e) => Err(strata_runtime::RuntimeError::Other(e).into()),
                None => Ok(()),
            };
        }
        if now.state.monitor_pid == monitor && (now.state.status == "running" || now.state.status == "restarting") {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("container {}: its monitor (pid {monitor}) did not start it within 2 minutes", c.name);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `strata monitor ID`: the monitor itself. Runs the container, again while its restart
/// policy says so (Docker's back-off: 100 ms, doubled each time up to a minute, back
/// to 100 ms after a run of 10 s), serving its attach socket meanwhile; removes it at
/// the end with `--rm`.
pub fn cmd_monitor(store: &Store, id: &str) -> Result<ExitCode> {
    // Its own session: neither the terminal's signals nor the end of the `strata` that
    // started it reach it; and no directory of the user's is kept busy.
    let _ = rustix::process::setsid();
    let _ = std::env::set_current_dir("/");
    // Another monitor (a second `start` at the same time) runs it already: that one's
    // record is left as it is.
    let c = container::find(store, id)?;
    if let Some(lock) = run_lock(store, &c)? {
        HELD.lock().unwrap_or_else(|e| e.into_inner()).push((c.id.clone(), lock));
    }
    let me = std::process::id() as i32;
    let start = container::pid_start_time(me).unwrap_or(0);
    let c = container::update(store, id, |c| {
        c.state.monitor_pid = me;
        c.state.monitor_start = start;
        c.state.error = None;
        c.state.manually_stopped = false;
        c.state.restart_count = 0;
    })?;
    if let Err(e) = crate::attach::listen(store, &c) {
        tracing::warn!("container {}: {e:#}; attach is not possible", c.name);
    }
    let mut backoff = Duration::from_millis(100);
    let result = loop {
        let c = container::find(store, id)?;
        let t0 = Instant::now();
        let code = match crate::containers::start(store, &c, c.config.keep.open_stdin, c.config.keep.tty) {
            Ok(code) => code,
            Err(e) => {
                let msg = format!("{e:#}");
                let _ = container::update(store, id, |c| c.state.error = Some(msg));
                break Err(e);
            }
        };
        if !should_restart(&container::find(store, id)?, code) {
            break Ok(code);
        }
        if t0.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        container::update(store, id, |c| {
            c.state.status = "restarting".into();
            c.state.restart_count += 1;
        })?;
        let waited = Instant::now();
        let mut stopped = false;
        while waited.elapsed() < backoff && !stopped {
            std::thread::sleep(Duration::from_millis(20));
            stopped = container::find(store, id)?.state.manually_stopped;
        }
        if stopped {
            container::update(store, id, |c| c.state.status = "exited".into())?;
            break Ok(code);
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    };
    let c = container::find(store, id)?;
    let _ = std::fs::remove_file(c.dir(store).join(crate::attach::SOCKET));
    if c.config.keep.auto_remove && result.is_ok() {
        // Its end stays in the record a moment, for a `wait` (polling every 20 ms) to read.
        std::thread::sleep(Duration::from_millis(200));
        // Not ours to wait for any more: `remove` waits for a live monitor.
        let c = container::update(store, id, |c| c.state.monitor_pid = 0)?;
        crate::containers::remove(store, &c, true)?;
    }
    result.map(|code| ExitCode::from(code.clamp(0, 255) as u8))
}

/// A container recorded as running whose process and monitor are both gone (its
/// monitor was killed, then the container ended): recorded as exited, with an unknown
/// status, its mount and cgroups removed. Other containers are returned as they are.
pub fn reap(store: &Store, c: &Container) -> Result<Container> {
    if !(c.state.status == "running" || c.state.status == "restarting") || live(c) {
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
        if (c.state.status == "running" || c.state.status == "restarting") && !live(c) {
            c.state.status = "exited".into();
            c.state.pid = 0;
            c.state.exit_code = None;
            c.state.finished_at = Some(strata_store::store::now_rfc3339());
        }
    })?)
}

/// The container's run lock, `containers/ID/run.lock`: held by whoever runs the container
/// (its monitor for its whole life, restarts included, or a foreground `start`), so two
/// `start`s of one container at once cannot both run it (nor the second one, failing,
/// unmount the first one's union). `None`: this process holds it already (a monitor).
pub fn run_lock(store: &Store, c: &Container) -> Result<Option<std::fs::File>> {
    if HELD.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|(id, _)| *id == c.id) {
        return Ok(None);
    }
    let path = c.dir(store).join("run.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("{}", path.display()))?;
    // A POSIX record lock, not `flock`: the children this process forks (its FUSE daemon,
    // log copier, the runtime's keeper) do not hold it, so a monitor killed with SIGKILL
    // leaves no lock behind.
    match rustix::fs::fcntl_lock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(f)),
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::ACCESS) => {
            bail!("container {} is already running", c.name)
        }
        Err(e) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

/// Run locks this process holds for its whole life (a monitor's container).
static HELD: std::sync::Mutex<Vec<(String, std::fs::File)>> = std::sync::Mutex::new(Vec::new());

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

#[cfg(test)]
mod tests {
    use super::*;

    fn with(policy: &str, count: u32, stopped: bool) -> Container {
        let mut c: Container = serde_json::from_value(serde_json::json!({
            "id": "0".repeat(64), "name": "c", "image": "sha256:x", "image_name": "x", "image_layers": [],
            "created": "2026-12-07T00:00:00Z"}))
        .expect("a record");
        c.config.keep.restart = policy.into();
        c.state.restart_count = count;
        c.state.manually_stopped = stopped;
        c
    }

    #[test]
    fn restart_policies_as_docker_reads_them() {
        for ok in ["no", "always", "unless-stopped", "on-failure", "on-failure:3"] {
            assert_eq!(parse_policy(ok).as_deref(), Ok(ok));
        }
        assert!(parse_policy("on-failure:x").is_err_and(|e| e.contains("maximum retry count must be a number")));
        assert!(parse_policy("always:2").is_err_and(|e| e.contains("cannot be used with restart policy 'always'")));
        assert!(parse_policy("sometimes").is_err());
        assert_eq!(policy_json("on-failure:2"), serde_json::json!({"Name": "on-failure", "MaximumRetryCount": 2}));
        assert_eq!(policy_json(""), serde_json::json!({"Name": "no", "MaximumRetryCount": 0}));
    }

    #[test]
    fn when_the_monitor_runs_a_container_again() {
        assert!(!should_restart(&with("", 0, false), 1));
        assert!(!should_restart(&with("no", 0, false), 1));
        assert!(should_restart(&with("always", 7, false), 0));
        assert!(should_restart(&with("unless-stopped", 0, false), 0));
        assert!(!should_restart(&with("always", 0, true), 1), "stopped by the user");
        assert!(!should_restart(&with("on-failure", 0, false), 0));
        assert!(should_restart(&with("on-failure", 50, false), 2), "no maximum");
        assert!(should_restart(&with("on-failure:2", 1, false), 2));
        assert!(!should_restart(&with("on-failure:2", 2, false), 2), "two restarts at most");
        assert!(check_run("always", true).is_err() && check_run("no", true).is_ok());
    }
}
