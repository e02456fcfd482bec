//! Containers for real: namespaces, cgroup limits, exit statuses, exec, rm, diff,
//! commit (and the committed image loaded and run by podman), the seed 004 story, bad
//! input and killed processes. Uses the fixture images (busybox inside).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn namespaces_are_isolated_and_statuses_pass_through() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    // Pid namespace: the command is pid 1 and alone (as in Docker); own hostname; only lo.
    let o = go(
        &root,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--hostname",
            "box1",
            "app",
            "sh",
            "-c",
            "set -- /proc/[0-9]*; echo $* ; hostname; cat /etc/hostname; grep -c : /proc/net/dev",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout.lines().collect::<Vec<_>>(), ["/proc/1", "box1", "box1", "1"]);
    // Other tests' containers come and go on the host's bridges meanwhile: the
    // interfaces the host had both before and after the run must all be seen.
    let host_ifaces = || -> Vec<String> {
        let text = std::fs::read_to_string("/proc/net/dev").unwrap();
        text.lines().filter_map(|l| l.split_once(':')).map(|(n, _)| n.trim().to_string()).collect()
    };
    let before = host_ifaces();
    let o = go(&root, &["run", "--rm", "--network", "host", "app", "sh", "-c", "cut -d: -f1 -s /proc/net/dev"]);
    let after = host_ifaces();
    let seen: Vec<&str> = o.stdout.lines().map(str::trim).collect();
    let stable: Vec<&String> = before.iter().filter(|n| after.contains(n)).collect();
    assert!(
        stable.len() > 1 && stable.iter().all(|n| seen.contains(&n.as_str())),
        "--network host sees the host's interfaces: {seen:?} {stable:?}"
    );
    // The image's Cmd and WorkingDir; exit statuses; users; env; workdir.
    let o = go(&root, &["run", "--rm", "app"]);
    assert_eq!((o.code, o.stdout.trim()), (0, "hello from app v2"));
    assert_eq!(go(&root, &["run", "--rm", "app", "sh", "-c", "exit 3"]).code, 3);
    let o = go(&root, &["run", "--rm", "app", "nosuchcmd"]);
    assert_eq!(o.code, 127);
    assert!(o.stderr.contains("nosuchcmd: not found"), "{}", o.stderr);
    assert_eq!(go(&root, &["run", "--rm", "app", "/etc/passwd"]).code, 126);
    // A pid 1 is immune to its own namespace's signals (Docker's case too); under --init
    // the command is pid 2 and the init passes its status on.
    assert_eq!(go(&root, &["run", "--rm", "app", "sh", "-c", "kill -9 $$"]).code, 0);
    assert_eq!(go(&root, &["run", "--rm", "--init", "app", "sh", "-c", "kill -9 $$"]).code, 137);
    let o = go(
        &root,
        &[
            "run",
            "--rm",
            "-u",
            "app",
            "-e",
            "FOO=bar",
            "-w",
            "/home",
            "app",
            "sh",
            "-c",
            "id -u; id -g; echo $FOO $HOME; pwd",
        ],
    );
    assert_eq!(o.stdout.lines().collect::<Vec<_>>(), ["1000", "1000", "bar /home/app", "/home"], "{}", o.stderr);
    let o = go(&root, &["run", "--rm", "-u", "1234:5", "app", "sh", "-c", "id -u; id -g; touch /root/x"]);
    assert_eq!(o.stdout.lines().collect::<Vec<_>>(), ["1234", "5"]);
    assert_ne!(o.code, 0, "uid 1234 cannot write in /root (0700)");
    // /dev, /sys read-only, /etc files bind-mounted.
    let o = go(
        &root,
        &[
            "run",
            "--rm",
            "app",
            "sh",
            "-c",
            "ls /dev | tr '\\n' ' '; echo; touch /sys/x 2>/dev/null || echo sys-ro; grep -c localhost /etc/hosts",
        ],
    );
    assert_eq!(
        o.stdout.lines().collect::<Vec<_>>(),
        ["fd full null ptmx pts random shm stderr stdin stdout tty urandom zero ", "sys-ro", "2"],
        "{}",
        o.stderr
    );
    assert_eq!(ps_json(&root).as_array().unwrap().len(), 0, "--rm removed them all");
    assert_eq!(names(root.join("diff")).len(), 3, "only the image layers are left");
}

#[test]
fn limits_are_enforced() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let o = go(
        &root,
        &[
            "run",
            "--rm",
            "-m",
            "32m",
            "app",
            "sh",
            "-c",
            "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
        ],
    );
    assert_eq!(o.code, 137, "killed by the memory limit: {} {}", o.stdout, o.stderr);
    assert!(!o.stdout.contains("survived"));
    let o = go(
        &root,
        &["run", "--rm", "-m", "64m", "app", "sh", "-c", "x=$(head -c 1000000 /dev/zero | tr '\\0' a); echo survived"],
    );
    assert_eq!((o.code, o.stdout.trim()), (0, "survived"), "{}", o.stderr);
    // A fork bomb stops at the limit (the shell counts: 9 more fit in 10).
    let bomb = "n=0; while true; do sleep 5 & n=$((n+1)); echo $n; done";
    let o = go(&root, &["run", "--rm", "--pids-limit", "10", "app", "sh", "-c", bomb]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("can't fork"), "{}", o.stderr);
    assert_eq!(o.stdout.lines().last(), Some("9"));
    // The container runs on the CPUs it was given, and says so.
    let o = go(
        &root,
        &["run", "--name", "pinned", "--cpuset-cpus", "0", "app", "grep", "Cpus_allowed_list", "/proc/self/status"],
    );
    assert_eq!((o.code, o.stdout.trim()), (0, "Cpus_allowed_list:\t0"), "{}", o.stderr);
    let info: serde_json::Value = serde_json::from_str(&sh(st(&root).args(["inspect", "pinned"]))).unwrap();
    assert_eq!(info[0]["HostConfig"]["CpusetCpus"], "0", "{info}");
    sh(st(&root).args(["rm", "pinned"]));
}

#[test]
fn exec_ps_and_rm_of_a_running_container() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let mut child = spawn_run(
        &root,
        &["--name", "live", "--cpus", "0.5", "-m", "64m", "--hostname", "live1", "app", "sleep", "60"],
    );
    let info = wait_running(&root, "live");
    let id = info["Id"].as_str().unwrap().to_string();
    let o = go(
        &root,
        &[
            "exec",
            "live",
            "sh",
            "-c",
            "hostname; set -- /proc/[0-9]*; echo $#; touch /tmp/inside; mount -t tmpfs none /tmp || echo no-mount",
        ],
    );
    // pid 1 (sleep) and the exec'd shell; exec is confined as the container is.
    assert_eq!(o.stdout.lines().collect::<Vec<_>>(), ["live1", "2", "no-mount"], "{}", o.stderr);
    let mnt = root.join("mnt").join(&id);
    assert!(mnt.join("tmp/inside").exists(), "the exec'd shell wrote to the container's root");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(&format!("{}/proc", mnt.display())), "the container's /proc is not in the host's mounts");
    let cg = std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/strata/{id}/cpu.cfs_quota_us")).unwrap();
    assert_eq!(cg.trim(), "50000");
    let mem = std::fs::read_to_string(format!("/sys/fs/cgroup/memory/strata/{id}/memory.limit_in_bytes")).unwrap();
    assert_eq!(mem.trim(), (64u64 << 20).to_string());
    let table = sh(st(&root).arg("ps"));
    assert!(table.lines().nth(1).unwrap().contains("Up ") && table.contains("live"), "{table}");
    let o = go(&root, &["rm", "live"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is running"), "{}", o.stderr);
    let o = go(&root, &["exec", "live", "sh", "-c", "exit 7"]);
    assert_eq!(o.code, 7);
    sh(st(&root).args(["rm", "-f", "live"]));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(137), "the run ends with the killed command's status");
    assert!(!is_mounted(&mnt));
    assert!(!Path::new(&format!("/sys/fs/cgroup/cpu/strata/{id}")).exists(), "cgroup removed");
    assert_eq!(ps_json(&root).as_array().unwrap().len(), 0);
    assert_eq!(names(root.join("diff")).len(), 3);
    let o = go(&root, &["exec", "live", "true"]);
    assert!(o.stderr.contains("no such container: live"), "{}", o.stderr);
}

#[test]
fn diff_and_commit_keep_only_the_read_write_layer() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let script = "echo new > /app/new.txt; rm /etc/motd; rm -rf /usr/share/base; mkdir -p /var/made; \
                  echo more >> /etc/passwd; mv /etc/conf.d /etc/conf.renamed; echo h > /etc/hostname; chmod 600 /app/hello.sh";
    let o = go(&root, &["run", "--name", "c1", "app", "sh", "-c", script]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let diff = sh(st(&root).args(["diff", "c1"]));
    let want = [
        "C /app",
        "C /app/hello.sh",
        "A /app/new.txt",
        "C /etc",
        "D /etc/conf.d",
        "A /etc/conf.renamed",
        "A /etc/conf.renamed/new.conf",
        "D /etc/motd",
        "C /etc/passwd",
        "C /usr",
        "C /usr/share",
        "D /usr/share/base",
        "C /var",
        "A /var/made",
    ];
    assert_eq!(diff.lines().collect::<Vec<_>>(), want, "{diff}");
    let id = sh(st(&root).args(["commit", "-m", "changed", "c1", "app:changed"]));
    assert!(id.trim().starts_with("sha256:"));
    let check = "cat /app/new.txt; test -e /etc/motd || echo motd-gone; test -e /usr/share/base || echo base-gone; \
                 test -d /var/made && echo made; tail -1 /etc/passwd; cat /etc/conf.renamed/new.conf; ls /etc/conf.d 2>&1 | head -1";
    let o = go(&root, &["run", "--rm", "app:changed", "sh", "-c", check]);
    assert_eq!(
        o.stdout.lines().collect::<Vec<_>>(),
        ["new", "motd-gone", "base-gone", "made", "more", "new=1", "ls: /etc/conf.d: No such file or directory"],
        "{}",
        o.stderr
    );
    // History and RootFS: one more layer and a history entry with the message.
    let i: serde_json::Value = serde_json::from_str(&sh(st(&root).args(["inspect", "app:changed"]))).unwrap();
    assert_eq!(i[0]["RootFS"]["Layers"].as_array().unwrap().len(), 4);
    assert_eq!(i[0]["History"].as_array().unwrap().last().unwrap()["comment"], "changed");
    // The committed layer holds none of the init layer's files.
    let out = s.path("changed.tar");
    sh(st(&root).args(["save", "-o"]).arg(&out).arg("app:changed"));
    let x = s.mkdir("x");
    sh(Command::new("tar").arg("-xf").arg(&out).arg("-C").arg(&x));
    let manifest: serde_json::Value = serde_json::from_str(&read(x.join("manifest.json"))).unwrap();
    let top = manifest[0]["Layers"][3].as_str().unwrap();
    let listing = sh(Command::new("tar").arg("-tf").arg(x.join(top)));
    for init_file in ["etc/hosts", "etc/hostname", "etc/resolv.conf", "proc", "dev", "sys"] {
        assert!(!listing.lines().any(|l| l.trim_end_matches('/') == init_file), "{init_file} committed:\n{listing}");
    }
    assert!(listing.lines().any(|l| l == "etc/.wh.motd"), "{listing}");
    assert!(listing.lines().any(|l| l == "etc/conf.renamed/.wh..wh..opq"), "{listing}");
    // podman loads and runs the committed image.
    let peer = fixtures().unwrap().join("peer-check");
    let o = sh(Command::new("bash").arg(&peer).arg("image").arg(format!("docker-archive:{}", out.display())).args([
        "/bin/busybox",
        "cat",
        "/app/new.txt",
    ]));
    assert!(o.lines().any(|l| l == "new"), "{o}");
    // `start` runs the container again on its own layer.
    let o = go(&root, &["start", "c1"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = go(&root, &["run", "--rm", "app", "test", "-e", "/app/new.txt"]);
    assert_eq!(o.code, 1, "another container does not see c1's changes");
}

/// The README's main job: a base image from busybox-static, then seed 004.
#[test]
fn seed_004_story_from_busybox_static() {
    let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"].iter().map(PathBuf::from).find(|p| p.exists()) else {
        assert!(std::env::var_os("CI").is_none(), "busybox-static is not installed");
        return;
    };
    let s = Scratch::new();
    let rootfs = s.mkdir("rootfs");
    for d in ["bin", "etc", "tmp", "root"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(&busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "echo", "ls"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    sh(Command::new("chmod").arg("1777").arg(rootfs.join("tmp")));
    let root = s.path("store");
    sh(st(&root).arg("import").arg(&rootfs).arg("base"));
    let o = go(&root, &["run", "--name", "c", "base", "sh", "-c", "echo \"hello world\" > /tmp/newfile"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(sh(st(&root).args(["diff", "c"])), "C /tmp\nA /tmp/newfile\n");
    sh(st(&root).args(["commit", "c", "base-changed"]));
    let h = sh(st(&root).args(["history", "base-changed"]));
    assert_eq!(h.lines().count(), 3, "{h}");
    assert!(h.contains("sh -c echo \"hello world\" > /tmp/newfile") && h.contains("strata import"), "{h}");
    let i: serde_json::Value = serde_json::from_str(&sh(st(&root).args(["inspect", "base-changed"]))).unwrap();
    assert_eq!(i[0]["RootFS"]["Type"], "layers");
    assert_eq!(i[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(go(&root, &["run", "--rm", "base-changed", "cat", "/tmp/newfile"]).stdout, "hello world\n");
    // The container's mount shows its branches as seed 001 does: rw, init, the image.
    let mnt = PathBuf::from(sh(st(&root).args(["mount", "c"])).trim());
    let branches = sh(strata().arg("branches").arg(&mnt));
    let c: serde_json::Value = ps_json(&root)[0].clone();
    let id = c["Id"].as_str().unwrap();
    let lines: Vec<&str> = branches.lines().collect();
    assert!(lines[0].ends_with(&format!("diff/{id}=rw")), "{branches}");
    assert!(lines[1].ends_with(&format!("diff/{id}-init=ro+wh")), "{branches}");
    assert!(lines[2].ends_with("=ro+wh"), "{branches}");
    sh(strata().arg("umount").arg(&mnt));
}

#[test]
fn bad_input_gives_clear_errors_and_keeps_the_store() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let o = go(&root, &["run", "nope"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.starts_with("strata: no such image: nope") && o.stderr.contains("strata pull nope"),
        "{}",
        o.stderr
    );
    let o = go(&root, &["run", "-m", "12x", "app"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("not a size"), "{}", o.stderr);
    let o = go(&root, &["run", "-m", "1k", "app"]);
    assert!(o.stderr.contains("minimum memory limit is 6m"), "{}", o.stderr);
    let o = go(&root, &["run", "--cpuset-cpus", "0-x", "app"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("'0-x': CPUs are a list of numbers and ranges"), "{}", o.stderr);
    let o = go(&root, &["run", "--cpuset-cpus", "4095", "app"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("CPU 4095 is not online here (online: "), "{}", o.stderr);
    let o = go(&root, &["create", "--name", "dup", "app"]);
    assert_eq!(o.code, 0);
    let o = go(&root, &["create", "--name", "dup", "app"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("'dup' is already used"), "{}", o.stderr);
    let o = go(&root, &["create", "--name", "bad/name", "app"]);
    assert!(o.stderr.contains("invalid container name"), "{}", o.stderr);
    let o = go(&root, &["rm", "ghost"]);
    assert!(o.stderr.contains("no such container: ghost"), "{}", o.stderr);
    // `app` is the image's second name: only the name goes.
    let o = go(&root, &["rmi", "app"]);
    assert_eq!((o.code, o.stdout.trim()), (0, "Untagged: app:latest"), "{}", o.stderr);
    let o = go(&root, &["rmi", "fixtures/app"]);
    assert_eq!(o.code, 1, "the image of a container is kept");
    assert!(o.stderr.contains("dup"), "{}", o.stderr);
    assert_eq!(ps_json(&root).as_array().unwrap().len(), 1);
    assert!(!sh(st(&root).arg("check")).contains("problem"));
}

#[test]
fn killed_processes_leave_a_store_that_cleans_up() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    // The command killed from outside: the run ends with 137, ps says so.
    let mut child = spawn_run(&root, &["--name", "k1", "app", "sleep", "60"]);
    let info = wait_running(&root, "k1");
    // The command is the container's pid 1.
    let cmd = info["Pid"].as_i64().unwrap() as i32;
    // SAFETY: killing the test's own container process.
    unsafe { libc::kill(cmd, libc::SIGKILL) };
    assert_eq!(child.wait().unwrap().code(), Some(137));
    let c = &ps_json(&root)[0];
    assert_eq!((c["State"].as_str(), c["ExitCode"].as_i64()), (Some("exited"), Some(137)));
    // The `strata run` process and the mount's daemon killed: rm -f still cleans all.
    let mut child = spawn_run(&root, &["--name", "k2", "app", "sleep", "60"]);
    let info = wait_running(&root, "k2");
    let id = info["Id"].as_str().unwrap().to_string();
    let mnt = root.join("mnt").join(&id);
    // "running" is recorded once pid 1 is in the container's root, just before it
    // executes the command, which is read through the union: killing the daemon before
    // that exec would end the container (a race of the test, seen 2 times in 5 runs).
    let pid = info["Pid"].as_i64().unwrap();
    let t0 = Instant::now();
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim() != "sleep").unwrap_or(true) {
        assert!(t0.elapsed() < Duration::from_secs(10), "k2's command never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    let daemon = sh(Command::new("sh")
        .arg("-c")
        .arg(format!("getfattr --only-values -n trusted.strata.pid {} 2>/dev/null", mnt.display())));
    let pid: i32 = daemon.trim().parse().unwrap_or_else(|_| panic!("the mount's daemon pid: {daemon:?}"));
    // SAFETY: killing the test's own mount daemon.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let t0 = Instant::now();
    while std::fs::read_dir(&mnt).map_err(|e| e.raw_os_error()).err() != Some(Some(libc::ENOTCONN)) {
        assert!(t0.elapsed() < Duration::from_secs(10), "the mount outlived its daemon");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(wait_running(&root, "k2")["Id"], id.as_str(), "the container itself still runs");
    sh(st(&root).args(["rm", "-f", "k2", "k1"]));
    assert!(!is_mounted(&mnt));
    assert_eq!(ps_json(&root).as_array().unwrap().len(), 0);
    let out = sh(st(&root).arg("check"));
    assert!(!out.contains("problem"), "{out}");
    assert_eq!(names(root.join("diff")).len(), 3);
}

#[test]
fn a_terminal_for_the_command_and_ctrl_c_reaches_it() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let bin = env!("CARGO_BIN_EXE_strata");
    // `script` gives `strata run` a terminal; keys are fed through it.
    let feed = |keys: &str, cmd: &str| -> String {
        let shell = format!("({keys}) | script -qc '{bin} --root {} {cmd}; echo rc=$?' /dev/null", root.display());
        sh(Command::new("sh").arg("-c").arg(shell)).replace('\r', "")
    };
    let out = feed("sleep 0.5", "run --rm -t app tty");
    assert!(out.contains("/dev/pts/0"), "the container's own terminal: {out}");
    let out = feed(
        "sleep 1; printf 'sleep 30\\n'; sleep 1; printf '\\003'; sleep 0.5; printf 'echo after-ctrl-c\\nexit 4\\n'",
        "run --rm -it app sh",
    );
    assert!(out.contains("after-ctrl-c"), "Ctrl-C stopped sleep, not the shell: {out}");
    assert!(out.contains("rc=4"), "{out}");
    // exec -t gets a terminal of the container too.
    let mut child = spawn_run(&root, &["--name", "t1", "app", "sleep", "30"]);
    wait_running(&root, "t1");
    let out = feed("sleep 0.5", "exec -t t1 sh -c \"tty; exit 6\"");
    assert!(out.contains("/dev/pts/") && out.contains("rc=6"), "{out}");
    sh(st(&root).args(["rm", "-f", "t1"]));
    let _ = child.wait();
}

#[test]
fn containers_cannot_reach_the_host_through_their_config_or_files() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let escape = format!("/tmp/strata-escape-{}", std::process::id());
    // A working directory climbing out, a passwd that is a link to a device.
    let o = go(&root, &["run", "--name", "evil", "app", "sh", "-c", "rm /etc/passwd && ln -s /dev/zero /etc/passwd"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let wd = format!("WORKDIR /../../../../..{escape}");
    sh(st(&root).args(["commit", "-c", &wd, "evil", "evil:1"]));
    let o = go(&root, &["run", "--rm", "evil:1", "pwd"]);
    assert_eq!(o.stdout.trim(), escape, "the directory is made inside the container: {}", o.stderr);
    assert!(!Path::new(&escape).exists(), "nothing made on the host");
    let t0 = Instant::now();
    let o = go(&root, &["run", "--rm", "-u", "app", "evil:1", "true"]);
    assert!(o.stderr.contains("unable to find user app"), "{}", o.stderr);
    assert!(t0.elapsed() < Duration::from_secs(10), "the link was not followed to the host's /dev/zero");
    // Only stdin, stdout and stderr cross into the container; SIGPIPE and umask as usual.
    let o =
        go(&root, &["run", "--rm", "app", "sh", "-c", "ls /proc/self/fd | tr '\\n' ' '; echo; yes | head -n1; umask"]);
    assert_eq!(o.stdout.lines().collect::<Vec<_>>(), ["0 1 2 3 ", "y", "0022"], "{}", o.stderr);
    assert_eq!(o.stderr, "", "yes dies of SIGPIPE quietly");
    // The store keeps untrusted layers out of other users' reach.
    let mode = |p: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777;
    for d in ["", "diff", "mnt", "containers"] {
        assert_eq!(mode(&root.join(d)), 0o700, "{d}");
    }
}

#[test]
fn a_resize_of_our_terminal_reaches_the_container() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    // Python's pty module plays the user's terminal: it sets a size, then changes it.
    const SCRIPT: &str = r#"
import fcntl, os, pty, select, struct, sys, termios, time
strata, root = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    os.execv(strata, [strata, "--root", root, "run", "--rm", "-it", "app", "sh"])
out = b""
def pump(t):
    global out
    end = time.time() + t
    while time.time() < end:
        if not select.select([fd], [], [], max(0, end - time.time()))[0]:
            return
        try:
            out += os.read(fd, 4096)
        except OSError:
            return
pump(1.5)
os.write(fd, b"stty size\n"); pump(1.0)
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 132, 0, 0)); pump(0.5)
os.write(fd, b"stty size; exit\n"); pump(2.0)
os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
"#;
    let out = sh(Command::new("python3").arg("-c").arg(SCRIPT).arg(env!("CARGO_BIN_EXE_strata")).arg(&root));
    let sizes: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| l.split(' ').count() == 2 && l.split(' ').all(|n| n.parse::<u32>().is_ok()))
        .collect();
    assert_eq!(sizes, ["24 80", "50 132"], "{out}");
}

#[test]
fn diff_lists_every_entry_that_commit_commits() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    // A file rewritten with its own content, a new file, a deletion, a chmod.
    let work = "cat /etc/passwd > /tmp/p && cat /tmp/p > /etc/passwd && rm /tmp/p && echo new > /app/new \
                && rm /etc/motd && chmod 600 /etc/group";
    let o = go(&root, &["run", "--name", "d1", "app", "sh", "-c", work]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let diff = sh(st(&root).args(["diff", "d1"]));
    assert!(diff.lines().any(|l| l == "C /etc/passwd"), "same content, still in the layer: {diff}");
    let listed: std::collections::BTreeSet<String> = diff.lines().map(|l| l[2..].to_string()).collect();
    let layers = |img: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&sh(st(&root).args(["inspect", img]))).unwrap();
        v[0]["GraphDriver"]["Data"]["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect()
    };
    sh(st(&root).args(["commit", "d1", "d1:img"]));
    let before = layers("app");
    let new: Vec<String> = layers("d1:img").into_iter().filter(|l| !before.contains(l)).collect();
    assert_eq!(new.len(), 1);
    // The committed layer's entries, whiteouts as the names they delete.
    let out = sh(Command::new("sh").arg("-c").arg(format!("cd {} && find . -mindepth 1", new[0])));
    let committed: std::collections::BTreeSet<String> = out
        .lines()
        .map(|p| {
            let p = Path::new(&p[1..]);
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let name = name.strip_prefix(".wh.").unwrap_or(&name).to_string();
            p.with_file_name(name).to_string_lossy().into_owned()
        })
        .collect();
    assert_eq!(listed, committed, "diff: {diff}");
}

/// Containers mount with `metacopy=on`: `chmod`, `chown` and `touch` of image files copy
/// no data into the read-write layer; `diff` lists them and `commit` takes their data
/// from the image's layers.
#[test]
fn metadata_changes_copy_no_data_and_commit_takes_it_from_below() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let sums = "md5sum /etc/group /etc/passwd /bin/busybox";
    let before = go(&root, &["run", "--rm", "app", "sh", "-c", sums]);
    assert_eq!(before.code, 0, "{}", before.stderr);
    let work = format!("chmod 600 /etc/group && chown 1:1 /etc/passwd && touch /bin/busybox && {sums}");
    let o = go(&root, &["run", "--name", "m1", "app", "sh", "-c", &work]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, before.stdout, "the data reads as before");
    let i: serde_json::Value = serde_json::from_str(&sh(st(&root).args(["inspect", "m1"]))).unwrap();
    let upper = PathBuf::from(i[0]["GraphDriver"]["Data"]["UpperDir"].as_str().unwrap());
    for f in ["etc/group", "etc/passwd", "bin/busybox"] {
        assert!(is_metacopy(&upper.join(f)), "{f} was copied with its data");
    }
    let busybox = std::fs::metadata(upper.join("bin/busybox")).unwrap();
    assert!(busybox.len() > 100_000 && busybox.blocks() == 0, "{busybox:?}");
    let diff = sh(st(&root).args(["diff", "m1"]));
    for l in ["C /bin/busybox", "C /etc/group", "C /etc/passwd"] {
        assert!(diff.lines().any(|d| d == l), "{l} missing: {diff}");
    }

    sh(st(&root).args(["commit", "m1", "app:meta"]));
    let check = format!("{sums} && stat -c '%a %u' /etc/group /etc/passwd");
    let o = go(&root, &["run", "--rm", "app:meta", "sh", "-c", &check]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let mut want = before.stdout.clone();
    want.push_str("600 0\n644 1\n");
    assert_eq!(o.stdout, want, "{}", o.stderr);

    // Writing to such a file in the container gives it its data, the rest kept.
    let group = go(&root, &["run", "--rm", "app", "cat", "/etc/group"]).stdout;
    let o = go(&root, &["run", "--name", "m2", "app", "sh", "-c", "chmod 600 /etc/group && echo x >> /etc/group"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let i: serde_json::Value = serde_json::from_str(&sh(st(&root).args(["inspect", "m2"]))).unwrap();
    let upper = PathBuf::from(i[0]["GraphDriver"]["Data"]["UpperDir"].as_str().unwrap());
    assert!(!is_metacopy(&upper.join("etc/group")));
    assert!(group.len() > 10);
    assert_eq!(std::fs::read_to_string(upper.join("etc/group")).unwrap(), format!("{group}x\n"));
}
