//! Detached containers and their lifecycle with real containers of the fixture `app`
//! image: run -d, ps, logs, exec, stop, kill, wait, restart, a killed monitor.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Removes the test's containers (`rm -f`) whatever happens, so no mount outlives it.
struct Cleanup<'a>(&'a Path, &'a [&'a str]);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for name in self.1 {
            let _ = go(self.0, &["rm", "-f", name]);
        }
    }
}

fn record(root: &Path, id: &str) -> serde_json::Value {
    serde_json::from_str(&read(root.join("containers").join(id).join("config.json"))).unwrap()
}

fn container<'a>(all: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    all.as_array().unwrap().iter().find(|c| c["Names"] == name).unwrap_or_else(|| panic!("no {name} in {all}"))
}

/// `run -d ARGS`: asserts it printed an ID and returned; the ID.
fn run_d(root: &Path, args: &[&str]) -> String {
    let mut all = vec!["run", "-d"];
    all.extend_from_slice(args);
    let o = go(root, &all);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let id = o.stdout.trim().to_string();
    assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{:?}", o.stdout);
    id
}

/// Waits (generously) until `f` holds for the log's text.
fn wait_log(root: &Path, name: &str, f: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let o = go(root, &["logs", name]);
        if f(&o.stdout) {
            return o.stdout;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "log of {name}: {:?} {:?}", o.stdout, o.stderr);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = h.path().join("strata").join(id);
        if p.exists() {
            v.push(p);
        }
    }
    v
}

#[test]
fn a_detached_container_runs_logs_execs_and_stops() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["d1"]);
    let id = run_d(&root, &["--name", "d1", "app", "sh", "-c", "echo hello; echo oops >&2; exec sleep 300"]);
    // `run -d` returned with the container running under its monitor, not under us.
    let c = wait_running(&root, "d1");
    assert_eq!(c["Id"], id.as_str());
    assert!(c["Status"].as_str().unwrap().starts_with("Up "), "{c}");
    let rec = record(&root, &id);
    let monitor = rec["state"]["monitor_pid"].as_i64().unwrap();
    assert!(monitor > 0 && Path::new(&format!("/proc/{monitor}")).exists(), "{rec}");
    let table = sh(st(&root).arg("ps"));
    assert!(table.lines().any(|l| l.contains("d1") && l.contains("Up ")), "{table}");
    // Both streams in the log, each as itself.
    wait_log(&root, "d1", |out| out == "hello\n");
    let o = go(&root, &["logs", "d1"]);
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("hello\n", "oops\n"));
    // Docker's json-file lines.
    let raw = read(root.join("containers").join(&id).join("json.log"));
    let first: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    assert_eq!((first["log"].as_str(), first["stream"].as_str()), (Some("hello\n"), Some("stdout")), "{raw}");
    assert!(first["time"].as_str().unwrap().ends_with('Z'), "{raw}");
    let o = go(&root, &["logs", "-t", "d1"]);
    assert!(o.stdout.starts_with(first["time"].as_str().unwrap()) && o.stdout.ends_with(" hello\n"), "{}", o.stdout);
    // exec reaches the detached container.
    assert_eq!(sh(st(&root).args(["exec", "d1", "cat", "/proc/1/cmdline"])), "sleep\x00300\x00");
    // sleep is pid 1 with no handler: SIGTERM does nothing, SIGKILL after the timeout.
    let t0 = Instant::now();
    let o = go(&root, &["stop", "-t", "2", "d1"]);
    let took = t0.elapsed();
    assert_eq!((o.code, o.stdout.as_str()), (0, "d1\n"), "{}", o.stderr);
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(30), "stop took {took:?}");
    let o = go(&root, &["wait", "d1"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "137\n"), "{}", o.stderr);
    let c = container(&ps_json(&root), "d1").clone();
    assert_eq!((c["State"].as_str(), c["ExitCode"].as_i64()), (Some("exited"), Some(137)), "{c}");
    assert!(c["Status"].as_str().unwrap().starts_with("Exited (137) "), "{c}");
    // The log outlives the container; the monitor, mount and cgroups do not.
    assert_eq!(go(&root, &["logs", "d1"]).stdout, "hello\n");
    assert!(!Path::new(&format!("/proc/{monitor}/exe")).exists(), "the monitor ended");
    assert!(!is_mounted(&root.join("mnt").join(&id)));
    assert_eq!(cgroup_dirs(&id), Vec::<PathBuf>::new());
    // Stopping a stopped container: only its name, exit status 0, as Docker.
    let o = go(&root, &["stop", "d1"]);
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (0, "d1\n", ""));
    let o = go(&root, &["kill", "d1"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains(&format!("cannot kill container: d1: container {id} is not running")), "{}", o.stderr);
    let o = go(&root, &["stop", "ghost"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("no such container: ghost"), "{}", o.stderr);
}

#[test]
fn stop_sends_the_stop_signal_first_and_kill_sends_any() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["t1", "k1"]);
    // A shell that handles SIGTERM ends well before the timeout, with its own status.
    let script = "trap 'echo got TERM; exit 3' TERM; echo ready; while true; do sleep 0.1; done";
    run_d(&root, &["--name", "t1", "app", "sh", "-c", script]);
    wait_log(&root, "t1", |out| out == "ready\n");
    let t0 = Instant::now();
    sh(st(&root).args(["stop", "-t", "20", "t1"]));
    assert!(t0.elapsed() < Duration::from_secs(15), "stop took {:?}", t0.elapsed());
    assert_eq!(sh(st(&root).args(["wait", "t1"])), "3\n");
    assert_eq!(go(&root, &["logs", "t1"]).stdout, "ready\ngot TERM\n");
    // kill -s: the signal given; a handled one leaves it running.
    let script = "trap 'echo got USR1' USR1; echo ready; while true; do sleep 0.1; done";
    run_d(&root, &["--name", "k1", "app", "sh", "-c", script]);
    wait_log(&root, "k1", |out| out == "ready\n");
    assert_eq!(sh(st(&root).args(["kill", "-s", "SIGUSR1", "k1"])), "k1\n");
    wait_log(&root, "k1", |out| out == "ready\ngot USR1\n");
    wait_running(&root, "k1");
    let o = go(&root, &["kill", "-s", "NOPE", "k1"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("invalid signal: NOPE"), "{}", o.stderr);
    sh(st(&root).args(["kill", "k1"]));
    assert_eq!(sh(st(&root).args(["wait", "k1"])), "137\n");
}

#[test]
fn logs_follow_a_container_until_it_ends() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["f1"]);
    let script = "i=1; while [ $i -le 5 ]; do echo line $i; i=$((i+1)); sleep 0.3; done; echo bye >&2; exit 4";
    run_d(&root, &["--name", "f1", "app", "sh", "-c", script]);
    wait_log(&root, "f1", |out| out.starts_with("line 1\n"));
    let mut follow =
        st(&root).args(["logs", "-f", "f1"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = String::new();
    follow.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    follow.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    // It ended by itself, with the container: every line, in order, once.
    assert!(follow.wait().unwrap().success());
    assert_eq!(out, "line 1\nline 2\nline 3\nline 4\nline 5\n");
    assert_eq!(err, "bye\n");
    assert_eq!(sh(st(&root).args(["wait", "f1"])), "4\n");
    // After the end: --tail counts lines of both streams.
    let o = go(&root, &["logs", "--tail", "2", "f1"]);
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("line 5\n", "bye\n"));
    let o = go(&root, &["logs", "--tail", "0", "f1"]);
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("", ""));
    // --since: from a line's own time, or for a while back.
    let stamped = sh(st(&root).args(["logs", "-t", "f1"]));
    let third = stamped.lines().nth(2).unwrap().split(' ').next().unwrap().to_string();
    let o = go(&root, &["logs", "--since", &third, "f1"]);
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("line 3\nline 4\nline 5\n", "bye\n"));
    assert_eq!(go(&root, &["logs", "--since", "1h", "f1"]).stdout.lines().count(), 5);
    // --until: the lines before a line's own time; nothing before a while ago.
    let o = go(&root, &["logs", "--until", &third, "f1"]);
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("line 1\nline 2\n", ""));
    assert_eq!(go(&root, &["logs", "--until", "1h", "f1"]).stdout, "");
}

#[test]
fn an_attached_run_shows_its_output_and_logs_it() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["a1"]);
    let o = go(&root, &["run", "--name", "a1", "app", "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (5, "out\n", "err\n"));
    let o = go(&root, &["logs", "a1"]);
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("out\n", "err\n"));
    // Started again (attached): the log keeps both runs.
    let o = go(&root, &["start", "a1"]);
    assert_eq!(o.code, 5);
    assert_eq!(go(&root, &["logs", "a1"]).stdout, "out\nout\n");
}

#[test]
fn restart_and_start_keep_the_read_write_layer() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["r1"]);
    let script = "echo run >> /runs; exec sleep 300";
    run_d(&root, &["--name", "r1", "app", "sh", "-c", script]);
    wait_running(&root, "r1");
    sh(st(&root).args(["exec", "r1", "sh", "-c", "echo before > /kept"]));
    let t0 = Instant::now();
    assert_eq!(sh(st(&root).args(["restart", "-t", "1", "r1"])), "r1\n");
    assert!(t0.elapsed() < Duration::from_secs(30));
    wait_running(&root, "r1");
    assert_eq!(sh(st(&root).args(["exec", "r1", "cat", "/kept", "/runs"])), "before\nrun\nrun\n");
    sh(st(&root).args(["stop", "-t", "1", "r1"]));
    // start -d of a stopped container: in the background again, same layer.
    assert_eq!(sh(st(&root).args(["start", "-d", "r1"])), "r1\n");
    wait_running(&root, "r1");
    assert_eq!(sh(st(&root).args(["exec", "r1", "cat", "/runs"])), "run\nrun\nrun\n");
    let o = go(&root, &["start", "-d", "r1"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("container r1 is already running"), "{}", o.stderr);
    // A detached command that does not exist: run -d still gives the ID, the status is 127.
    let id = run_d(&root, &["app", "no-such-command"]);
    assert_eq!(sh(st(&root).args(["wait", &id])), "127\n");
    assert!(go(&root, &["logs", &id]).stderr.contains("no-such-command: not found"));
    sh(st(&root).args(["rm", &id]));
}

#[test]
fn a_killed_monitor_leaves_the_state_right_and_rm_cleans_up() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["m1", "m2"]);
    let monitor_of = |id: &str| record(&root, id)["state"]["monitor_pid"].as_i64().unwrap() as i32;
    // The monitor killed: the container still runs, and is seen so.
    let id = run_d(&root, &["--name", "m1", "app", "sleep", "300"]);
    wait_running(&root, "m1");
    // SAFETY: killing the test's own container's monitor.
    unsafe { libc::kill(monitor_of(&id), libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(wait_running(&root, "m1")["Id"], id.as_str());
    assert_eq!(sh(st(&root).args(["exec", "m1", "echo", "still"])), "still\n");
    // Then the container ends: seen as exited, with no status to tell.
    sh(st(&root).args(["kill", "m1"]));
    wait_while(|| container(&ps_json(&root), "m1")["State"] != "exited", || ps_json(&root).to_string());
    let o = go(&root, &["wait", "m1"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("exit status is unknown"), "{}", o.stderr);
    // `wait` cleaned what the monitor would have: mount and cgroups.
    assert!(!is_mounted(&root.join("mnt").join(&id)));
    assert_eq!(cgroup_dirs(&id), Vec::<PathBuf>::new());
    // It starts again under a new monitor.
    sh(st(&root).args(["start", "-d", "m1"]));
    wait_running(&root, "m1");
    // The monitor killed, the container running: rm -f cleans everything.
    let id2 = run_d(&root, &["--name", "m2", "app", "sleep", "300"]);
    wait_running(&root, "m2");
    // SAFETY: killing the test's own container's monitor.
    unsafe { libc::kill(monitor_of(&id2), libc::SIGKILL) };
    sh(st(&root).args(["rm", "-f", "m2", "m1"]));
    for i in [&id, &id2] {
        assert!(!is_mounted(&root.join("mnt").join(i)));
        assert_eq!(cgroup_dirs(i), Vec::<PathBuf>::new());
        assert!(!root.join("containers").join(i).exists());
    }
    assert_eq!(ps_json(&root).as_array().unwrap().len(), 0);
    let out = sh(st(&root).arg("check"));
    assert!(!out.contains("problem"), "{out}");
}

#[test]
fn volumes_are_shared_read_only_on_demand_and_never_in_the_layer() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["w1", "r1", "e1"]);
    let shared = s.mkdir("shared");
    let vol = format!("{}:/data", shared.display());
    let vol_ro = format!("{}:/deep/shared:ro", shared.display());
    // One container writes, detached; another sees it, read-only.
    run_d(&root, &["--name", "w1", "-v", &vol, "app", "sh", "-c", "echo from-w1 > /data/f; exec sleep 300"]);
    wait_while(|| !shared.join("f").exists(), || go(&root, &["logs", "w1"]).stderr);
    let o = go(
        &root,
        &["run", "--name", "r1", "-v", &vol_ro, "app", "sh", "-c", "cat /deep/shared/f; touch /deep/shared/g"],
    );
    assert_eq!((o.code, o.stdout.as_str()), (1, "from-w1\n"), "{}", o.stderr);
    assert!(o.stderr.contains("Read-only file system"), "{}", o.stderr);
    assert!(!shared.join("g").exists());
    // Written through the volume: on the host, not in the layer, diff or commit.
    assert_eq!(read(shared.join("f")), "from-w1\n");
    for name in ["w1", "r1"] {
        assert_eq!(sh(st(&root).args(["diff", name])), "", "diff of {name}");
    }
    sh(st(&root).args(["commit", "w1", "w1img"]));
    let o = go(&root, &["run", "--rm", "w1img", "ls", "/data"]);
    assert_ne!(o.code, 0, "the volume's mount point is not in the commit: {}", o.stdout);
    let inspect: serde_json::Value = serde_json::from_str(&sh(st(&root).args(["inspect", "r1"]))).unwrap();
    let mounts = &inspect[0]["Mounts"];
    assert_eq!(mounts[0]["Destination"], "/deep/shared", "{inspect}");
    assert_eq!((mounts[0]["RW"].as_bool(), mounts[0]["Type"].as_str()), (Some(false), Some("bind")), "{inspect}");
    // A missing source is refused before anything exists, with Docker's wording and status.
    let before = ps_json(&root).as_array().unwrap().len();
    let missing = format!("{}:/x", s.path("missing").display());
    let o = go(&root, &["run", "-v", &missing, "app", "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("bind source path does not exist"), "{}", o.stderr);
    assert_eq!(ps_json(&root).as_array().unwrap().len(), before);
    // An image's link to a host path leads to the container's path, never the host's;
    // one to a path the container lacks is refused.
    let (outside, absent) = (s.path("outside"), s.path("absent"));
    let links = format!(
        "mkdir -p {o} && ln -s /../../..{o} /esc && ln -s {a} /dangle",
        o = outside.display(),
        a = absent.display()
    );
    sh(st(&root).args(["run", "--name", "e1", "app", "sh", "-c", &links]));
    sh(st(&root).args(["commit", "e1", "linkimg"]));
    let vol_esc = format!("{}:/esc/sub:ro", shared.display());
    let inside = format!("cat {}/sub/f", outside.display());
    let o = go(&root, &["run", "--rm", "-v", &vol_esc, "linkimg", "sh", "-c", &inside]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "from-w1\n"), "{}", o.stderr);
    let vol_dangle = format!("{}:/dangle/sub", shared.display());
    let o = go(&root, &["run", "--rm", "-v", &vol_dangle, "linkimg", "true"]);
    assert_eq!(o.code, 125);
    assert!(
        o.stderr.contains("making directory /dangle") && o.stderr.contains("dangling symbolic link"),
        "{}",
        o.stderr
    );
    assert!(!absent.exists() && !outside.exists(), "nothing made on the host");
}

#[test]
fn the_log_is_rotated_at_its_cap_and_logs_reads_both_files() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["big"]);
    // 3000 numbered lines with a 64 KiB cap (the monitor inherits the setting).
    let o = st(&root)
        .args(["run", "-d", "--name", "big", "app", "sh", "-c", "seq 1 3000"])
        .env("STRATA_LOG_MAX_SIZE", "65536")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(sh(st(&root).args(["wait", "big"])), "0\n");
    let dir = root.join("containers").join(&id);
    let (cur, old) = (dir.join("json.log"), dir.join("json.log.1"));
    assert!(old.exists(), "rotated");
    for f in [&cur, &old] {
        assert!(std::fs::metadata(f).unwrap().len() <= 65536, "{} within the cap", f.display());
    }
    // The oldest lines went with the rotation before last; the rest are there, in order.
    let out = sh(st(&root).args(["logs", "big"]));
    let nums: Vec<u32> = out.lines().map(|l| l.parse().unwrap()).collect();
    let first = nums[0];
    assert!(first > 1, "older lines were dropped with the oldest file");
    assert_eq!(nums, (first..=3000).collect::<Vec<_>>());
    assert_eq!(sh(st(&root).args(["logs", "--tail", "3", "big"])), "2998\n2999\n3000\n");
}

/// The numbers a counter container printed so far (one a line in its log).
fn counted(root: &Path, name: &str) -> Vec<u64> {
    go(root, &["logs", name]).stdout.lines().filter_map(|l| l.split(' ').next()?.trim().parse().ok()).collect()
}

fn inspect(root: &Path, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&sh(st(root).args(["inspect", name]))).unwrap();
    v[0].clone()
}

const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done";

#[test]
fn pause_freezes_every_process_and_unpause_resumes() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["p1", "p2"]);
    let id = run_d(&root, &["--name", "p1", "app", "sh", "-c", COUNTER]);
    wait_log(&root, "p1", |out| out.lines().count() >= 3);
    assert_eq!(sh(st(&root).args(["pause", "p1"])), "p1\n");
    // Frozen: the counter no longer advances (a line written just before may still be on
    // its way to the log).
    std::thread::sleep(Duration::from_millis(200));
    let frozen = counted(&root, "p1");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(counted(&root, "p1"), frozen, "the counter advanced while paused");
    let c = container(&ps_json(&root), "p1").clone();
    assert_eq!(c["State"], "paused", "{c}");
    assert!(c["Status"].as_str().unwrap().ends_with(" (Paused)"), "{c}");
    let table = sh(st(&root).arg("ps"));
    assert!(table.lines().any(|l| l.contains("p1") && l.contains("(Paused)")), "{table}");
    assert_eq!(inspect(&root, "p1")["State"]["Paused"], true);
    // The kernel's own view: every process of its cgroup frozen.
    let freezer = Path::new("/sys/fs/cgroup/freezer/strata").join(&id).join("freezer.state");
    if freezer.exists() {
        assert_eq!(read(&freezer).trim(), "FROZEN");
    }
    let o = go(&root, &["pause", "p1"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is already paused"), "{}", o.stderr);
    let o = go(&root, &["exec", "p1", "true"]);
    assert!(o.code != 0 && o.stderr.contains("is paused, unpause the container before exec"), "{}", o.stderr);
    // Thawed: it counts on from where it was.
    assert_eq!(sh(st(&root).args(["unpause", "p1"])), "p1\n");
    wait_log(&root, "p1", |out| out.lines().count() > frozen.len() + 3);
    let after = counted(&root, "p1");
    assert_eq!(after[..frozen.len()], frozen[..]);
    assert_eq!(after[frozen.len()], frozen.last().unwrap() + 1, "resumed, nothing skipped");
    assert_eq!(wait_running(&root, "p1")["State"], "running");
    let o = go(&root, &["unpause", "p1"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is not paused"), "{}", o.stderr);
    // A paused container stops: its stop signal is delivered once thawed (the handler
    // runs, well before the timeout).
    let script = "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.05; done";
    run_d(&root, &["--name", "p2", "app", "sh", "-c", script]);
    wait_log(&root, "p2", |out| out == "ready\n");
    sh(st(&root).args(["pause", "p2"]));
    let t0 = Instant::now();
    assert_eq!(sh(st(&root).args(["stop", "-t", "20", "p2"])), "p2\n");
    assert!(t0.elapsed() < Duration::from_secs(10), "stop took {:?}", t0.elapsed());
    assert_eq!(sh(st(&root).args(["wait", "p2"])), "7\n");
    // Pausing a container that does not run: an error.
    let o = go(&root, &["pause", "p2"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is not running"), "{}", o.stderr);
    // rm of a paused container: only with -f (Docker's words).
    sh(st(&root).args(["pause", "p1"]));
    let o = go(&root, &["rm", "p1"]);
    assert!(o.code == 1 && o.stderr.contains("You cannot remove a paused container"), "{}", o.stderr);
    // kill of a paused container: SIGKILL delivered once thawed.
    sh(st(&root).args(["kill", "p1"]));
    assert_eq!(sh(st(&root).args(["wait", "p1"])), "137\n");
    assert_eq!(cgroup_dirs(&id), Vec::<PathBuf>::new());
}

#[test]
fn rename_top_and_stats() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["n1", "n2", "taken", "busy"]);
    let id = run_d(&root, &["--name", "n1", "-m", "64m", "app", "sh", "-c", "sleep 300 & exec sleep 301"]);
    sh(st(&root).args(["create", "--name", "taken", "app", "true"]));
    // rename: the new name is the container's; a taken one is refused, in Docker's words.
    assert_eq!(sh(st(&root).args(["rename", "n1", "n2"])), "");
    let c = wait_running(&root, "n2");
    assert_eq!(c["Id"], id.as_str());
    assert!(go(&root, &["inspect", "n1"]).code != 0);
    let o = go(&root, &["rename", "n2", "taken"]);
    assert_eq!(o.code, 1);
    let taken = container(&ps_json(&root), "taken")["Id"].as_str().unwrap().to_string();
    let want = format!("Conflict. The container name \"/taken\" is already in use by container \"{taken}\"");
    assert!(o.stderr.contains(&want), "{}", o.stderr);
    let o = go(&root, &["rename", "n2", "bad/name"]);
    assert!(o.code == 1 && o.stderr.contains("Invalid container name (bad/name)"), "{}", o.stderr);
    // top: ps -ef's columns, the container's processes only, with host pids.
    let wait_two = Instant::now();
    let pid1 = record(&root, &id)["state"]["pid"].as_i64().unwrap();
    let top = loop {
        let top = sh(st(&root).args(["top", "n2"]));
        if top.lines().count() == 3 {
            break top;
        }
        assert!(wait_two.elapsed() < Duration::from_secs(10), "{top}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut lines = top.lines();
    let titles: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(titles, ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let pid1_row = rows.iter().find(|r| r[1] == pid1.to_string()).unwrap_or_else(|| panic!("{top}"));
    assert_eq!(pid1_row[7..].join(" "), "sleep 301");
    let child = rows.iter().find(|r| r[1] != pid1.to_string()).unwrap();
    assert_eq!((child[2], child[7..].join(" ")), (pid1.to_string().as_str(), "sleep 300".to_string()), "{top}");
    // ps options of the user's.
    let top = sh(st(&root).args(["top", "n2", "-o", "pid,comm"]));
    assert_eq!(top.lines().next().unwrap().split_whitespace().collect::<Vec<_>>(), ["PID", "COMMAND"]);
    assert_eq!(top.lines().skip(1).filter(|l| l.ends_with("sleep")).count(), 2, "{top}");
    let o = go(&root, &["top", "n2", "-o", "comm"]);
    assert!(o.code == 1 && o.stderr.contains("Couldn't find PID field in ps output"), "{}", o.stderr);
    // stats: the memory limit, at least its two processes, the columns of Docker's.
    let o = go(&root, &["stats", "--no-stream", "n2"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let mut lines = o.stdout.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("CONTAINER ID") && header.ends_with("PIDS"), "{}", o.stdout);
    let row = lines.next().unwrap();
    assert!(row.starts_with(&id[..12]) && row.contains(" n2 "), "{row}");
    assert!(row.contains(" / 64MiB "), "{row}");
    let pids: u64 = row.split_whitespace().last().unwrap().parse().unwrap();
    assert!(pids >= 2, "{row}");
    let cpu = row.split_whitespace().nth(2).unwrap();
    assert!(cpu.ends_with('%') && cpu.trim_end_matches('%').parse::<f64>().is_ok(), "{row}");
    // CPU %: a busy loop held to half a CPU is seen using about that (Docker's formula),
    // less when the machine is busy.
    run_d(&root, &["--name", "busy", "--cpus", "0.5", "app", "sh", "-c", "while true; do :; done"]);
    wait_running(&root, "busy");
    let o = go(&root, &["stats", "--no-stream", "busy"]);
    let row = o.stdout.lines().nth(1).unwrap().to_string();
    let cpu: f64 = row.split_whitespace().nth(2).unwrap().trim_end_matches('%').parse().unwrap();
    assert!(cpu > 5.0 && cpu < 70.0, "{row}");
    sh(st(&root).args(["rm", "-f", "busy"]));
    // Not running: top refuses; stats shows zeros.
    sh(st(&root).args(["kill", "n2"]));
    sh(st(&root).args(["wait", "n2"]));
    let o = go(&root, &["top", "n2"]);
    assert!(o.code == 1 && o.stderr.contains("is not running"), "{}", o.stderr);
}

/// Reads a child's stdout on a thread; the text so far.
fn reader(mut from: impl Read + Send + 'static) -> std::sync::Arc<std::sync::Mutex<String>> {
    let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let t = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            t.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// Polls every 50 ms while `cond` holds; fails after 30 s with what `why` says then.
fn wait_while(mut cond: impl FnMut() -> bool, why: impl Fn() -> String) {
    let t0 = Instant::now();
    while cond() {
        assert!(t0.elapsed() < Duration::from_secs(30), "{}", why());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_text(text: &std::sync::Mutex<String>, f: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let now = text.lock().unwrap().clone();
        if f(&now) {
            return now;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{now:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn attach_streams_the_output_and_feeds_stdin() {
    use std::io::Write;
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["at1", "at2", "at3", "fg"]);
    // Output produced after attaching, stdout and stderr apart, then the exit status.
    let script =
        "sleep 2; i=0; while [ $i -lt 20 ]; do i=$((i+1)); echo out $i; echo err $i >&2; sleep 0.05; done; exit 6";
    run_d(&root, &["--name", "at1", "app", "sh", "-c", script]);
    wait_running(&root, "at1");
    let o = go(&root, &["attach", "at1"]);
    assert_eq!(o.code, 6, "{}", o.stderr);
    let want = |s: &str| (1..=20).map(|i| format!("{s} {i}\n")).collect::<String>();
    // It attached before the first line (two seconds of sleep): every line.
    assert_eq!((o.stdout, o.stderr), (want("out"), want("err")));
    // -d -i: what attach sends is the container's stdin; its end is not the container's.
    run_d(&root, &["-i", "--name", "at2", "app", "sh", "-c", "while read l; do echo got $l; done; echo eof"]);
    wait_running(&root, "at2");
    let mut a = st(&root).args(["attach", "at2"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let out = reader(a.stdout.take().unwrap());
    let mut input = a.stdin.take().unwrap();
    input.write_all(b"one\n").unwrap();
    wait_text(&out, |t| t == "got one\n");
    input.write_all(b"two\n").unwrap();
    wait_text(&out, |t| t == "got one\ngot two\n");
    drop(input);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(wait_running(&root, "at2")["State"], "running", "stdin stays open for the next attach");
    // A second client feeds it too; both see the output.
    let mut b = st(&root).args(["attach", "at2"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let out_b = reader(b.stdout.take().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    b.stdin.as_mut().unwrap().write_all(b"three\n").unwrap();
    wait_text(&out_b, |t| t == "got three\n");
    wait_text(&out, |t| t == "got one\ngot two\ngot three\n");
    sh(st(&root).args(["kill", "at2"]));
    assert_eq!(a.wait().unwrap().code(), Some(137));
    assert_eq!(b.wait().unwrap().code(), Some(137));
    // -d -i -t: a terminal; Ctrl-P Ctrl-Q detaches, the container runs on.
    run_d(&root, &["-i", "-t", "--name", "at3", "app", "sh"]);
    wait_running(&root, "at3");
    let mut t = st(&root).args(["attach", "at3"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let out_t = reader(t.stdout.take().unwrap());
    let mut input = t.stdin.take().unwrap();
    input.write_all(b"tty; echo mark $((6*7))\n").unwrap();
    let seen = wait_text(&out_t, |t| t.contains("mark 42"));
    assert!(seen.contains("/dev/pts/0"), "{seen:?}");
    input.write_all(b"\x10\x11").unwrap();
    let code = t.wait().unwrap();
    assert!(code.success(), "{code:?}");
    assert_eq!(wait_running(&root, "at3")["State"], "running");
    assert!(go(&root, &["logs", "at3"]).stdout.contains("mark 42"));
    // Keys of the user's: Ctrl-X then `q`.
    let mut t = st(&root)
        .args(["attach", "--detach-keys", "ctrl-x,q", "at3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out_t = reader(t.stdout.take().unwrap());
    let mut input = t.stdin.take().unwrap();
    input.write_all(b"echo again $((6*8))\n").unwrap();
    wait_text(&out_t, |t| t.contains("again 48"));
    input.write_all(b"\x18q").unwrap();
    assert!(t.wait().unwrap().success());
    assert_eq!(wait_running(&root, "at3")["State"], "running");
    // Docker's refusals: a stopped container; a paused one; a foreground run.
    sh(st(&root).args(["stop", "-t", "1", "at1"]));
    let o = go(&root, &["attach", "at1"]);
    assert!(o.code == 1 && o.stderr.contains("You cannot attach to a stopped container"), "{}", o.stderr);
    sh(st(&root).args(["pause", "at3"]));
    let o = go(&root, &["attach", "at3"]);
    assert!(o.code == 1 && o.stderr.contains("You cannot attach to a paused container"), "{}", o.stderr);
    let mut fg = spawn_run(&root, &["--name", "fg", "app", "sleep", "300"]);
    wait_running(&root, "fg");
    let o = go(&root, &["attach", "fg"]);
    assert!(o.code == 1 && o.stderr.contains("no monitor serves it"), "{}", o.stderr);
    sh(st(&root).args(["kill", "fg"]));
    let _ = fg.wait();
}

/// How many times `name` ran: "run" lines in its log.
fn runs(root: &Path, name: &str) -> usize {
    go(root, &["logs", name]).stdout.lines().filter(|l| *l == "run").count()
}

#[test]
fn restart_policies_are_applied_by_the_monitor() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["of", "al", "ok", "rr"]);
    // on-failure:2: two restarts, then it stays exited with its status.
    run_d(&root, &["--restart", "on-failure:2", "--name", "of", "app", "sh", "-c", "echo run; exit 3"]);
    assert_eq!(sh(st(&root).args(["wait", "of"])), "3\n");
    assert_eq!(runs(&root, "of"), 3);
    let i = inspect(&root, "of");
    assert_eq!(i["RestartCount"], 2, "{i}");
    assert_eq!(i["HostConfig"]["RestartPolicy"], serde_json::json!({"Name": "on-failure", "MaximumRetryCount": 2}));
    assert_eq!(container(&ps_json(&root), "of")["State"], "exited");
    // on-failure: a success is not restarted.
    run_d(&root, &["--restart", "on-failure", "--name", "ok", "app", "sh", "-c", "echo run"]);
    assert_eq!(sh(st(&root).args(["wait", "ok"])), "0\n");
    assert_eq!((runs(&root, "ok"), inspect(&root, "ok")["RestartCount"].as_u64()), (1, Some(0)));
    // always: again and again (also after a success), until `stop`.
    run_d(&root, &["--restart", "always", "--name", "al", "app", "sh", "-c", "echo run; sleep 0.2"]);
    wait_while(|| runs(&root, "al") < 3, || go(&root, &["logs", "al"]).stdout);
    assert!(inspect(&root, "al")["RestartCount"].as_u64().unwrap() >= 2);
    // While it runs or waits to run again, it is listed (a restarting one says so).
    let state = container(&ps_json(&root), "al")["State"].as_str().unwrap().to_string();
    assert!(state == "running" || state == "restarting", "{state}");
    assert_eq!(sh(st(&root).args(["stop", "al"])), "al\n");
    let after = runs(&root, "al");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(runs(&root, "al"), after, "restarted after stop");
    assert_eq!(container(&ps_json(&root), "al")["State"], "exited");
    let id = container(&ps_json(&root), "al")["Id"].as_str().unwrap().to_string();
    assert!(!is_mounted(&root.join("mnt").join(&id)));
    assert_eq!(cgroup_dirs(&id), Vec::<PathBuf>::new());
    // `restart`: the policy applies again, its count from 0.
    sh(st(&root).args(["restart", "al"]));
    wait_while(|| runs(&root, "al") < after + 2, || go(&root, &["logs", "al"]).stdout);
    let count = inspect(&root, "al")["RestartCount"].as_u64().unwrap() as usize;
    let since = runs(&root, "al") - after;
    // Counted from 0 again: at most one restart fewer than the runs since (without the
    // reset it would carry the `after - 1` restarts before).
    assert!(count >= 1 && count <= since, "count {count}, runs since restart {since}, before {after}");
    sh(st(&root).args(["stop", "al"]));
    // rm -f of a container that restarts: its monitor gives up, nothing is left.
    let rr = run_d(&root, &["--restart", "always", "--name", "rr", "app", "sh", "-c", "echo run; exit 1"]);
    wait_while(|| runs(&root, "rr") < 2, || go(&root, &["logs", "rr"]).stdout);
    let monitor = record(&root, &rr)["state"]["monitor_pid"].as_i64().unwrap();
    assert_eq!(sh(st(&root).args(["rm", "-f", "rr"])), "rr\n");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!Path::new(&format!("/proc/{monitor}/exe")).exists(), "the monitor ended");
    assert!(!root.join("containers").join(&rr).exists());
    assert!(!is_mounted(&root.join("mnt").join(&rr)));
    assert_eq!(cgroup_dirs(&rr), Vec::<PathBuf>::new());
    // Bad policies, and one with --rm, are refused before anything exists.
    let o = go(&root, &["run", "-d", "--restart", "sometimes", "app", "true"]);
    assert!(o.code == 2 && o.stderr.contains("invalid restart policy"), "{}", o.stderr);
    let o = go(&root, &["run", "-d", "--rm", "--restart", "always", "app", "true"]);
    assert!(o.code == 1 && o.stderr.contains("Conflicting options: --restart and --rm"), "{}", o.stderr);
    assert_eq!(ps_json(&root).as_array().unwrap().len(), 3);
}

#[test]
fn run_d_rm_removes_the_container_when_it_ends() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let id = run_d(&root, &["--rm", "app", "sh", "-c", "echo bye; sleep 0.5"]);
    assert!(root.join("containers").join(&id).exists(), "removed only once it has ended");
    wait_while(|| root.join("containers").join(&id).exists(), || "not removed".into());
    assert_eq!(ps_json(&root).as_array().unwrap().len(), 0);
    assert!(!is_mounted(&root.join("mnt").join(&id)));
    assert!(!root.join("diff").join(&id).exists());
    assert_eq!(cgroup_dirs(&id), Vec::<PathBuf>::new());
    // wait gives its status (seen before it goes); stop of one works and removes it.
    let id = run_d(&root, &["--rm", "--name", "w", "app", "sh", "-c", "sleep 0.5; exit 9"]);
    assert_eq!(sh(st(&root).args(["wait", "w"])), "9\n");
    let id2 = run_d(&root, &["--rm", "--name", "s", "app", "sleep", "300"]);
    let o = go(&root, &["stop", "-t", "1", "s"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "s\n"), "{}", o.stderr);
    for i in [&id, &id2] {
        wait_while(|| root.join("containers").join(i).exists(), || "not removed".into());
        assert!(!is_mounted(&root.join("mnt").join(i)));
    }
    // One that ends at once is removed too (run -d still printed its ID).
    let id = run_d(&root, &["--rm", "app", "true"]);
    wait_while(|| root.join("containers").join(&id).exists(), || "not removed".into());
}

#[test]
fn a_paused_container_whose_monitor_was_killed_is_removed_cleanly() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["pk"]);
    let id = run_d(&root, &["--name", "pk", "app", "sh", "-c", COUNTER]);
    wait_log(&root, "pk", |out| !out.is_empty());
    sh(st(&root).args(["pause", "pk"]));
    let monitor = record(&root, &id)["state"]["monitor_pid"].as_i64().unwrap() as i32;
    // SAFETY: killing the test's own container's monitor.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(200));
    // Still seen as it is: running, paused.
    assert_eq!(container(&ps_json(&root), "pk")["State"], "paused");
    assert_eq!(sh(st(&root).args(["rm", "-f", "pk"])), "pk\n");
    let mounts = read("/proc/mounts");
    assert!(!mounts.contains(&id), "{mounts}");
    assert_eq!(cgroup_dirs(&id), Vec::<PathBuf>::new());
    assert!(!root.join("containers").join(&id).exists());
}

/// A small tmpfs of the test's own, unmounted (lazily) when dropped.
struct SmallFs(PathBuf);

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_drops_log_lines_but_never_the_container() {
    let s = Scratch::new();
    if store_with_app(&s).is_none() {
        return;
    }
    let fs = SmallFs(s.mkdir("small"));
    let o = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m,mode=755", "tmpfs"])
        .arg(&fs.0)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let root = fs.0.join("store");
    sh(st(&root).args(["load", "-i"]).arg(fixture_images().unwrap().join("app.docker.tar")));
    sh(st(&root).args(["tag", "fixtures/app", "app"]));
    let _c = Cleanup(&root, &["full"]);
    // Lines of 4 KiB: each needs a page of its own on the tmpfs.
    let script = "p=$(printf '%04096d' 0); i=0; while true; do i=$((i+1)); echo $i $p; sleep 0.02; done";
    let id = run_d(&root, &["--name", "full", "app", "sh", "-c", script]);
    wait_log(&root, "full", |out| out.lines().count() >= 5);
    // The disk fills up.
    let filler = fs.0.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        for size in [1 << 16, 512] {
            let chunk = vec![0u8; size];
            while f.write_all(&chunk).is_ok() {}
        }
    }
    let during = counted(&root, "full");
    std::thread::sleep(Duration::from_millis(1000));
    // Lines are dropped, the container runs on.
    let c = wait_running(&root, "full");
    assert_eq!(c["Id"], id.as_str());
    // Room again: the log goes on, and every line of it is a whole JSON entry.
    std::fs::remove_file(&filler).unwrap();
    wait_while(|| counted(&root, "full").len() <= during.len() + 5, || "the log did not go on".into());
    sh(st(&root).args(["stop", "-t", "1", "full"]));
    let raw = read(root.join("containers").join(&id).join("json.log"));
    for line in raw.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(v["log"].as_str().unwrap().ends_with('\n'), "{line}");
    }
    let nums = counted(&root, "full");
    assert!(nums.windows(2).all(|w| w[0] < w[1]), "in order");
    assert!(nums.windows(2).any(|w| w[1] > w[0] + 5), "lines written while the disk was full were dropped: {nums:?}");
}

#[test]
fn two_starts_at_once_run_the_container_once() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["once"]);
    let data = s.mkdir("data");
    let bind = format!("{}:/data", data.display());
    let script = "echo run >> /data/runs; exec sleep 300";
    sh(st(&root).args(["create", "--network", "none", "--name", "once", "-v", &bind, "app", "sh", "-c", script]));
    // Both at once: each sees the container stopped.
    let starts: Vec<_> = (0..2)
        .map(|_| st(&root).args(["start", "-d", "once"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    let mut ok = 0;
    for child in starts {
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        if o.status.success() {
            ok += 1;
        } else {
            assert!(err.contains("container once is already running"), "{err}");
        }
    }
    assert_eq!(ok, 1, "one start runs it, the other is told it runs");
    wait_running(&root, "once");
    // A second run would have appended its line by now.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(read(data.join("runs")), "run\n");
    // Its union is still there for it (a failed second start unmounted nothing).
    let o = go(&root, &["exec", "once", "cat", "/data/runs"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "run\n"), "{}", o.stderr);
    let o = go(&root, &["exec", "once", "ls", "/bin/sh"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    // A foreground start while it runs is refused.
    let o = go(&root, &["start", "once"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("already running"), "{}", o.stderr);
    sh(st(&root).args(["stop", "-t", "1", "once"]));
}

#[test]
fn a_container_that_cannot_start_leaves_no_mount() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["nouser", "nouser-d"]);
    // Its user is not in the image: found out after the union is mounted for it.
    let id = sh(st(&root).args(["create", "--network", "none", "--name", "nouser", "-u", "nosuchuser", "app", "true"]));
    let o = go(&root, &["start", "nouser"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("nosuchuser"), "{}", o.stderr);
    assert!(!is_mounted(&root.join("mnt").join(id.trim())));
    // Detached: its monitor gives up the same way.
    let o = go(&root, &["run", "-d", "--network", "none", "--name", "nouser-d", "-u", "nosuchuser", "app", "true"]);
    assert_ne!(o.code, 0);
    let rec: serde_json::Value = serde_json::from_str(&sh(st(&root).args(["inspect", "nouser-d"]))).unwrap();
    let id = rec[0]["Id"].as_str().unwrap().to_string();
    assert!(!is_mounted(&root.join("mnt").join(&id)));
}
