//! Security: no way to root through the store's mounts, containers confined as Docker
//! confines them (compared with podman and runc on the same probe), set-up that never
//! follows a container's links out of its root, and the store's output and input
//! handled safely. Each case was an exploit or a fault against the code before the fix.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

/// Docker's default capabilities (CHOWN ... AUDIT_WRITE), as /proc/PID/status prints them.
const DOCKER_CAPS: u64 = 0xa80425fb;

/// The probe (`tests/probe/confine.c`), built static once so that it runs in any root.
fn probe() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = std::env::temp_dir().join(format!("strata-confine-probe-{}", std::process::id()));
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/probe/confine.c");
            sh(Command::new("gcc").args(["-static", "-O", "-o"]).arg(&out).arg(src));
            out
        })
        .clone()
}

/// A root filesystem: static busybox, /etc/passwd with root and user `u` (1000), /tmp,
/// the probe at /probe and a set-user-ID-root copy at /suidprobe.
fn rootfs(s: &Scratch) -> PathBuf {
    let r = s.mkdir("rootfs");
    for d in ["bin", "etc", "tmp", "root", "home/u"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::set_permissions(r.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy("/bin/busybox", r.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "cat", "ls", "id", "grep", "touch", "mv", "ln", "rm", "mkdir", "readlink", "echo", "sleep", "cp",
        "chmod", "head", "true",
    ] {
        std::os::unix::fs::symlink("busybox", r.join("bin").join(applet)).unwrap();
    }
    std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n").unwrap();
    std::fs::write(r.join("etc/group"), "root:x:0:\nu:x:1000:\n").unwrap();
    std::fs::copy(probe(), r.join("probe")).unwrap();
    std::fs::copy(probe(), r.join("suidprobe")).unwrap();
    std::fs::set_permissions(r.join("suidprobe"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    r
}

/// A store holding the rootfs as image `sec`.
fn store(s: &Scratch) -> PathBuf {
    let root = s.path("store");
    sh(st(&root).arg("import").arg(rootfs(s)).arg("sec"));
    root
}

/// `setpriv` as host user 1000, no groups.
fn as_user_1000(cmd: &str) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups", "--", "sh", "-c", cmd])
        .output()
        .unwrap()
}

fn cap_line(out: &str, name: &str) -> u64 {
    let line = out.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {out}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

fn mountinfo_options(mnt: &Path) -> String {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info.lines().find(|l| l.split(' ').nth(4) == Some(mnt.to_str().unwrap())).expect("mounted");
    line.split(' ').nth(5).unwrap().to_string()
}

#[test]
fn host_users_cannot_reach_the_stores_mounts() {
    let s = Scratch::new();
    let root = store(&s);
    // A container's root made a set-user-ID-root copy of the probe in its /tmp.
    let mut child = spawn_run(
        &root,
        &["--name", "c", "sec", "sh", "-c", "cp /probe /tmp/rootsh && chmod 4755 /tmp/rootsh && sleep 60"],
    );
    let id = wait_running(&root, "c")["Id"].as_str().unwrap().to_string();
    let mnt = root.join("mnt").join(&id);
    let t0 = Instant::now();
    while !mnt.join("tmp/rootsh").exists() {
        assert!(t0.elapsed() < Duration::from_secs(10), "the container never made its copy");
        std::thread::sleep(Duration::from_millis(50));
    }
    for attempt in [
        format!("{}/tmp/rootsh /bin/busybox id -u", mnt.display()),
        format!("touch {}/tmp/from-host", mnt.display()),
        format!("ls {}", root.join("mnt").display()),
        format!("ls {}", root.display()),
    ] {
        let o = as_user_1000(&attempt);
        assert!(!o.status.success(), "host uid 1000 got through: {attempt}: {}", String::from_utf8_lossy(&o.stdout));
        assert!(String::from_utf8_lossy(&o.stderr).contains("Permission denied"), "{attempt}");
    }
    assert!(!mnt.join("tmp/from-host").exists());
    for d in ["", "mnt", "diff", "containers", "tmp"] {
        assert_eq!(std::fs::metadata(root.join(d)).unwrap().mode() & 0o777, 0o700, "ROOT/{d}");
    }
    assert!(mountinfo_options(&mnt).split(',').any(|o| o == "nodev"), "the container's union is nodev");
    sh(st(&root).args(["rm", "-f", "c"]));
    let _ = child.wait();

    // An image mounted for inspection: set-id bits and devices do nothing there.
    let img = PathBuf::from(sh(st(&root).args(["mount", "sec"])).trim());
    let opts = mountinfo_options(&img);
    assert!(opts.split(',').any(|o| o == "nosuid") && opts.split(',').any(|o| o == "nodev"), "{opts}");
    let o = as_user_1000(&format!("{}/suidprobe /bin/busybox true", img.display()));
    assert!(!o.status.success(), "the image mount is out of reach");
    // A user who can get there (here: uid 1000 with CAP_DAC_READ_SEARCH to pass the 0700
    // directories) gains nothing from the set-user-ID bit: the effective uid stays 1000.
    // The same file on a mount without nosuid does give uid 0, so the method works.
    let euid_line = |probe: &Path| {
        let o = Command::new("setpriv")
            .args(["--reuid=1000", "--regid=1000", "--clear-groups"])
            .args(["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--"])
            .arg(probe)
            .arg("/bin/true")
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).lines().find(|l| l.starts_with("Uid:")).unwrap_or_default().to_string()
    };
    assert!(euid_line(&img.join("suidprobe")).starts_with("Uid:\t1000\t1000"), "nosuid image mount");
    let plain = Mount::new(&[&format!("br={}=ro", s.path("rootfs").display())], &s.mkdir("plain"));
    assert!(euid_line(&plain.p("suidprobe")).starts_with("Uid:\t1000\t0"), "a mount without nosuid");
    plain.unmount();
    sh(st(&root).arg("umount").arg(&img));
}

/// The probe's lines under a runtime, as (check, allowed).
fn probe_results(out: &str) -> Vec<(String, bool)> {
    out.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| {
            !k.starts_with("Cap") && !k.starts_with("Uid") && !k.starts_with("NoNewPrivs") && !k.starts_with("Seccomp")
        })
        .map(|(k, v)| (k.to_string(), v.starts_with("allowed")))
        .collect()
}

fn podman_probe(s: &Scratch, root: &Path) -> Option<String> {
    let w = s.mkdir("podman");
    let tar = w.join("sec.tar");
    sh(st(root).args(["save", "-o"]).arg(&tar).arg("sec"));
    let podman = || {
        let mut c = Command::new("podman");
        c.arg("--root").arg(w.join("root")).arg("--runroot").arg(w.join("run"));
        c.args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--runtime",
            "runc",
        ]);
        c
    };
    podman().arg("load").arg("-i").arg(&tar).output().ok().filter(|o| o.status.success())?;
    let o = podman()
        .args(["run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"])
        .args(["localhost/sec:latest", "/bin/sh", "-c", "/probe"])
        .output()
        .ok()?;
    let _ = podman().args(["system", "reset", "-f"]).output();
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn runc_probe(s: &Scratch, rootfs: &Path) -> Option<String> {
    let b = s.mkdir("bundle");
    Command::new("runc").arg("spec").current_dir(&b).output().ok().filter(|o| o.status.success())?;
    let mut spec: serde_json::Value = serde_json::from_str(&read(b.join("config.json"))).ok()?;
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["/bin/sh", "-c", "/probe"]);
    spec["root"]["path"] = rootfs.to_str()?.into();
    spec["root"]["readonly"] = false.into();
    std::fs::write(b.join("config.json"), spec.to_string()).ok()?;
    let o = Command::new("runc")
        .arg("--root")
        .arg(s.path("runc-state"))
        .args(["run", "--bundle"])
        .arg(&b)
        .arg(format!("strata-probe-{}", std::process::id()))
        .output()
        .ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn default_confinement_is_as_strict_as_podman_on_every_check() {
    let s = Scratch::new();
    let root = store(&s);
    let o = go(&root, &["run", "--rm", "sec", "sh", "-c", "/probe"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let ours = o.stdout;
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(cap_line(&ours, set), DOCKER_CAPS, "{set}: Docker's 14 capabilities");
    }
    assert_eq!(cap_line(&ours, "CapInh"), 0);
    assert_eq!(cap_line(&ours, "CapAmb"), 0);
    assert!(ours.contains("Seccomp:\t2"), "a seccomp filter: {ours}");
    let strata = probe_results(&ours);
    for must_fail in [
        "mount tmpfs",
        "mount cgroup (release_agent)",
        "write release_agent",
        "remount /sys rw",
        "unshare user namespace",
        "keyctl",
        "read /proc/keys",
        "read /proc/kcore",
        "write /proc/sys/kernel/core_pattern",
        "write /proc/sysrq-trigger",
        "write /sys/kernel/uevent_helper",
        "mknod then open a block device",
        "open /dev/kmsg",
        "open /proc/1/exe for writing",
        "sethostname",
    ] {
        let r = strata.iter().find(|(k, _)| k == must_fail).unwrap_or_else(|| panic!("no {must_fail} line: {ours}"));
        assert!(!r.1, "{must_fail} is allowed in a Strata container:\n{ours}");
    }
    let podman = podman_probe(&s, &root);
    let runc = runc_probe(&s, &s.path("rootfs"));
    let column = |out: &Option<String>, k: &str| match out {
        None => "n/a".to_string(),
        Some(o) => match probe_results(o).into_iter().find(|(n, _)| n == k) {
            Some((_, true)) => "allowed".into(),
            Some((_, false)) => "denied".into(),
            None => "?".into(),
        },
    };
    println!("{:<40} {:<10} {:<10} {:<10}", "check", "strata", "podman", "runc spec");
    for set in ["CapEff", "CapBnd"] {
        let hex = |o: &Option<String>| o.as_ref().map_or("n/a".into(), |o| format!("{:x}", cap_line(o, set)));
        println!("{set:<40} {:<10} {:<10} {:<10}", format!("{:x}", cap_line(&ours, set)), hex(&podman), hex(&runc));
    }
    for (k, allowed) in &strata {
        println!(
            "{k:<40} {:<10} {:<10} {:<10}",
            if *allowed { "allowed" } else { "denied" },
            column(&podman, k),
            column(&runc, k)
        );
        if let Some(p) = &podman {
            let theirs = probe_results(p).into_iter().find(|(n, _)| n == k).map(|(_, a)| a);
            assert!(!allowed || theirs != Some(false), "{k}: allowed by Strata, denied by podman");
        }
    }
    assert!(podman.is_some(), "podman ran the probe (it is installed by scripts/deps)");
}

#[test]
fn a_set_user_id_binary_gives_a_user_no_more_than_dockers_set() {
    let s = Scratch::new();
    let root = store(&s);
    let o = go(&root, &["run", "--rm", "-u", "1000", "sec", "/suidprobe", "/bin/busybox", "true"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("Uid:\t1000\t0"), "the set-user-ID bit works in the container: {}", o.stdout);
    assert_eq!(cap_line(&o.stdout, "CapEff") & !DOCKER_CAPS, 0, "no capability beyond Docker's: {}", o.stdout);
    assert_eq!(cap_line(&o.stdout, "CapBnd"), DOCKER_CAPS);
    // A user's own process has no capability at all.
    let o = go(&root, &["run", "--rm", "-u", "1000", "sec", "/probe", "/bin/busybox", "true"]);
    assert_eq!((cap_line(&o.stdout, "CapEff"), cap_line(&o.stdout, "CapPrm")), (0, 0), "{}", o.stdout);
    // no-new-privileges: the bit is ignored.
    let o = go(
        &root,
        &[
            "run",
            "--rm",
            "-u",
            "1000",
            "--security-opt",
            "no-new-privileges",
            "sec",
            "/suidprobe",
            "/bin/busybox",
            "true",
        ],
    );
    assert!(o.stdout.contains("Uid:\t1000\t1000") && o.stdout.contains("NoNewPrivs:\t1"), "{}", o.stdout);
    assert_eq!(cap_line(&o.stdout, "CapEff"), 0);
}

#[test]
fn pid_1_is_the_command_or_a_sealed_init_never_a_host_file() {
    let s = Scratch::new();
    let root = store(&s);
    let o = go(&root, &["run", "--rm", "sec", "readlink", "/proc/1/exe"]);
    assert_eq!(o.stdout.trim(), "/bin/busybox", "{}", o.stderr);
    for extra in [&[][..], &["--cap-add", "SYS_PTRACE"][..], &["--privileged"][..]] {
        let mut args = vec!["run", "--rm", "--init"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "sec",
            "sh",
            "-c",
            "readlink /proc/1/exe 2>/dev/null || echo unreadable; echo x 2>/dev/null > /proc/1/exe || echo write-refused",
        ]);
        let o = go(&root, &args);
        let lines: Vec<&str> = o.stdout.lines().collect();
        // The init is not dumpable: without CAP_SYS_PTRACE the link cannot even be read.
        let first = lines.first().copied().unwrap_or_default();
        let expect_readable = !extra.is_empty();
        assert!(
            first.starts_with("/memfd:strata-init") || (!expect_readable && first == "unreadable"),
            "{extra:?}: {}{}",
            o.stdout,
            o.stderr
        );
        assert_eq!(lines.get(1), Some(&"write-refused"), "{extra:?}");
    }
}

#[test]
fn docker_options_change_the_confinement() {
    let s = Scratch::new();
    let root = store(&s);
    let status = |args: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["sec", "sh", "-c", "grep -E 'CapEff|Seccomp:' /proc/self/status; mkdir -p /tmp/m; mount -t tmpfs x /tmp/m 2>/dev/null && echo mount-ok"]);
        go(&root, &a)
    };
    let o = status(&["--privileged"]);
    assert!(o.stdout.contains("mount-ok") && o.stdout.contains("Seccomp:\t0"), "{}{}", o.stdout, o.stderr);
    let o = status(&["--cap-drop", "ALL"]);
    assert_eq!(cap_line(&o.stdout, "CapEff"), 0, "{}", o.stderr);
    let o = status(&["--cap-drop", "ALL", "--cap-add", "chown"]);
    assert_eq!(cap_line(&o.stdout, "CapEff"), 1);
    let o = status(&["--cap-add", "SYS_ADMIN"]);
    assert!(o.stdout.contains("mount-ok"), "seccomp lets mount through with CAP_SYS_ADMIN: {}{}", o.stdout, o.stderr);
    let o = status(&["--security-opt", "seccomp=unconfined"]);
    assert!(o.stdout.contains("Seccomp:\t0") && !o.stdout.contains("mount-ok"), "{}", o.stdout);
    // A profile of the user's, in Docker's format: everything but mkdir.
    let profile = s.write("p", "profile.json", r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#);
    let o = go(
        &root,
        &["run", "--rm", "--security-opt", &format!("seccomp={}", profile.display()), "sec", "mkdir", "/tmp/x"],
    );
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("Permission denied"), "{}", o.stderr);
    let o = go(&root, &["run", "--rm", "--read-only", "sec", "touch", "/x"]);
    assert!(o.code != 0 && o.stderr.contains("Read-only"), "{}", o.stderr);
    let o = go(
        &root,
        &[
            "run",
            "--rm",
            "--device",
            "/dev/fuse",
            "sec",
            "sh",
            "-c",
            "ls -l /dev/fuse && exec 3<>/dev/fuse && echo opened",
        ],
    );
    assert!(
        o.stdout.contains("10,") && o.stdout.contains("opened"),
        "the node and the cgroup rule: {}{}",
        o.stdout,
        o.stderr
    );
    // Bad options: one clear line, nothing created.
    for (args, says) in [
        (&["--cap-add", "CAP_FLY"][..], "unknown capability: CAP_FLY"),
        (&["--security-opt", "apparmor=x"][..], "unknown option"),
        (&["--device", "/dev/nonexistent"][..], "/dev/nonexistent"),
        (&["--security-opt", "seccomp=/nonexistent.json"][..], "/nonexistent.json"),
    ] {
        let mut a = vec!["create"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["sec", "true"]);
        let o = go(&root, &a);
        assert_eq!(o.code, 125, "{args:?}: Docker's status for a bad option");
        assert!(o.stderr.contains(says), "{args:?}: {}", o.stderr);
    }
    assert_eq!(ps_json(&root).as_array().unwrap().len(), 0);
    // inspect shows what a container runs with.
    let id =
        sh(st(&root).args(["create", "--cap-drop", "NET_RAW", "--security-opt", "no-new-privileges", "sec", "true"]));
    let v: serde_json::Value = serde_json::from_str(&sh(st(&root).args(["inspect", id.trim()]))).unwrap();
    let caps = v[0]["Confinement"]["Capabilities"].as_array().unwrap();
    assert_eq!(caps.len(), 13);
    assert!(!caps.iter().any(|c| c == "CAP_NET_RAW"));
    assert_eq!(v[0]["Confinement"]["NoNewPrivileges"], true);
    assert_eq!(v[0]["HostConfig"]["CapDrop"][0], "NET_RAW");
}

/// A directory of the host that a container's links name; it must stay empty.
struct HostDir(PathBuf);

impl HostDir {
    fn new(name: &str) -> HostDir {
        let p = std::env::temp_dir().join(format!("strata-escape-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        HostDir(p)
    }
    fn assert_untouched(&self) {
        assert_eq!(
            names(&self.0),
            Vec::<String>::new(),
            "the runtime created files on the host in {}",
            self.0.display()
        );
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!info.contains(self.0.to_str().unwrap()), "something was mounted on the host's {}", self.0.display());
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn container_set_up_never_follows_links_out_of_the_root() {
    let s = Scratch::new();
    let root = store(&s);
    // Made by the container's own process, then `start`ed again (/dev, /proc and /sys are
    // mount points while it runs: an image's layer tries those below).
    let host = HostDir::new("etc");
    let link = format!("mv /etc /etc.old && ln -s {} /etc", host.0.display());
    let o = go(&root, &["run", "--name", "esc-etc", "sec", "sh", "-c", &link]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = go(&root, &["start", "esc-etc"]);
    host.assert_untouched();
    assert!(o.code == 0 || o.stderr.contains("/etc"), "refused by name, or set up inside the root: {}", o.stderr);
    sh(st(&root).args(["rm", "-f", "esc-etc"]));
    // /etc/hosts a link to a host file: its content and mode stay.
    let host = HostDir::new("hostsfile");
    let file = host.0.join("precious");
    std::fs::write(&file, "keep me\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // (/etc/hosts is a mount point while the container runs: a new /etc takes its place.)
    let swap = format!("mkdir /etc2 && ln -s {} /etc2/hosts && mv /etc /etc.old && mv /etc2 /etc", file.display());
    let o = go(&root, &["run", "--name", "esc-hosts", "sec", "sh", "-c", &swap]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = go(&root, &["start", "esc-hosts"]);
    // The link resolves inside the container's root, where its target does not exist.
    assert!(o.stderr.contains("/etc/hosts") && o.stderr.contains("does not exist in the container"), "{}", o.stderr);
    assert_eq!(read(&file), "keep me\n");
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
    assert_eq!(names(&host.0), ["precious"]);
    sh(st(&root).args(["rm", "-f", "esc-hosts"]));
    // The same links in an image's layer, for every directory the runtime mounts on.
    for dir in ["etc", "dev", "proc", "sys"] {
        let evil = HostDir::new(&format!("image-{dir}"));
        let scratch = Scratch::new();
        let r = rootfs(&scratch);
        let _ = std::fs::rename(r.join(dir), r.join(format!("{dir}.real")));
        std::os::unix::fs::symlink(&evil.0, r.join(dir)).unwrap();
        sh(st(&root).arg("import").arg(&r).arg(format!("evil-{dir}")));
        let o = go(&root, &["run", "--rm", &format!("evil-{dir}"), "true"]);
        evil.assert_untouched();
        assert!(o.code == 0 || o.stderr.contains(&format!("/{dir}")), "{dir}: {}", o.stderr);
    }
    // The files the runtime makes for a container are 0644.
    let id = sh(st(&root).args(["create", "sec", "true"]));
    for f in ["hosts", "hostname", "resolv.conf"] {
        let m = std::fs::metadata(root.join("containers").join(id.trim()).join(f)).unwrap().mode() & 0o777;
        assert_eq!(m, 0o644, "{f}");
    }
    // ... and so inside the container, where they are bind-mounted.
    let o = go(&root, &["run", "--rm", "sec", "ls", "-l", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]);
    assert_eq!(o.stdout.lines().filter(|l| l.starts_with("-rw-r--r--")).count(), 3, "{}{}", o.stdout, o.stderr);
}

#[test]
fn save_writes_into_devices_and_fifos_and_follows_links() {
    let s = Scratch::new();
    let root = store(&s);
    // A character device of the test's own (same numbers as /dev/null).
    let null = s.path("null");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &null,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    sh(st(&root).args(["save", "-o"]).arg(&null).arg("sec"));
    assert!(std::fs::metadata(&null).unwrap().file_type().is_char_device(), "still a device");
    let fifo = s.path("fifo");
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0)
        .unwrap();
    let reader = std::thread::spawn({
        let fifo = fifo.clone();
        move || std::fs::read(fifo).unwrap().len()
    });
    sh(st(&root).args(["save", "-o"]).arg(&fifo).arg("sec"));
    assert!(reader.join().unwrap() > 10_000, "the archive went through the FIFO");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    let target = s.path("real.tar");
    let link = s.path("link.tar");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    sh(st(&root).args(["save", "-o"]).arg(&link).arg("sec"));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays a link");
    assert!(std::fs::metadata(&target).unwrap().len() > 10_000, "the file it names got the archive");
}

#[test]
fn load_refuses_fifos_and_escaping_links_and_names_bad_fields() {
    let Some(images) = fixture_images() else { return };
    let s = Scratch::new();
    let root = s.path("store");
    let copy = |name: &str| {
        let d = s.path(name);
        sh(Command::new("cp").arg("-a").arg(images.join("oci")).arg(&d));
        d
    };
    let layer = |d: &Path| {
        let index: serde_json::Value = serde_json::from_str(&read(d.join("index.json"))).unwrap();
        let m = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
        let manifest: serde_json::Value = serde_json::from_str(&read(d.join("blobs/sha256").join(&m))).unwrap();
        (m, manifest["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string())
    };
    // A FIFO where a layer blob should be: refused at once, by name.
    let d = copy("fifo");
    let (_, l) = layer(&d);
    let blob = d.join("blobs/sha256").join(&l);
    std::fs::remove_file(&blob).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, &blob, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0)
        .unwrap();
    let t0 = Instant::now();
    let o = go(&root, &["load", "-i", d.to_str().unwrap()]);
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert!(o.code != 0 && o.stderr.contains(&l) && o.stderr.contains("not a regular file"), "{}", o.stderr);
    // A blob that is a link out of the layout.
    let d = copy("link");
    let (_, l) = layer(&d);
    let blob = d.join("blobs/sha256").join(&l);
    std::fs::remove_file(&blob).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &blob).unwrap();
    let o = go(&root, &["load", "-i", d.to_str().unwrap()]);
    assert!(o.stderr.contains("leads out of the layout") && o.stderr.contains("/etc/passwd"), "{}", o.stderr);
    // A manifest with a bad digest: the field and the value are named.
    let d = copy("badfield");
    let (m, l) = layer(&d);
    let path = d.join("blobs/sha256").join(&m);
    let text = read(&path).replace(&format!("sha256:{l}"), "sha256:nothex");
    std::fs::write(&path, &text).unwrap();
    let digest = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()));
    let index = read(d.join("index.json")).replace(&m, &digest).replace(
        &format!("\"size\":{}", std::fs::metadata(images.join("oci/blobs/sha256").join(&m)).unwrap().len()),
        &format!("\"size\":{}", text.len()),
    );
    std::fs::write(d.join("index.json"), index).unwrap();
    std::fs::rename(&path, d.join("blobs/sha256").join(&digest)).unwrap();
    let o = go(&root, &["load", "-i", d.to_str().unwrap()]);
    assert!(o.stderr.contains("layers[0].digest") && o.stderr.contains("nothex"), "{}", o.stderr);
    // A corrupt blob of a layer the store already has is still refused.
    sh(st(&root).args(["load", "-i"]).arg(images.join("oci")));
    let d = copy("corrupt");
    let (_, l) = layer(&d);
    let blob = d.join("blobs/sha256").join(&l);
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let o = go(&root, &["load", "-i", d.to_str().unwrap()]);
    assert!(o.code != 0 && o.stderr.contains("digest mismatch"), "{}", o.stderr);
}

#[test]
fn a_killed_run_leaves_cgroups_that_check_removes() {
    let s = Scratch::new();
    let root = store(&s);
    let mut child = spawn_run(&root, &["--name", "k", "-m", "64m", "sec", "sleep", "60"]);
    let info = wait_running(&root, "k");
    let id = info["Id"].as_str().unwrap().to_string();
    let pid1 = info["Pid"].as_i64().unwrap() as i32;
    let cg = PathBuf::from(format!("/sys/fs/cgroup/memory/strata/{id}"));
    assert!(cg.is_dir());
    // `strata run` killed, then the container's process.
    child.kill().unwrap();
    let _ = child.wait();
    // SAFETY: killing the test's own container process.
    unsafe { libc::kill(pid1, libc::SIGKILL) };
    let t0 = Instant::now();
    while Path::new(&format!("/proc/{pid1}")).exists() {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(cg.is_dir(), "left behind by the killed run");
    let out = sh(st(&root).arg("check"));
    assert!(out.contains("removed the cgroups of container k"), "{out}");
    assert!(!cg.exists());
    let out = sh(st(&root).arg("check"));
    assert!(out.contains("is consistent"), "{out}");
    sh(st(&root).args(["rm", "-f", "k"]));
}

#[test]
fn the_daemon_log_is_for_root_only_and_ioctls_are_quiet() {
    let s = Scratch::new();
    let (a, mnt) = (s.mkdir("a"), s.mkdir("m"));
    let log = s.path("daemon.log");
    // The daemon runs with umask 0; the log must still be 0600.
    sh(strata().args(["mount", "--log-file"]).arg(&log).arg("-o").arg(format!("br={}=rw", a.display())).arg(&mnt));
    // Unmounted on drop if an assertion fails first.
    let mounted = Mount { mnt: mnt.clone() };
    std::fs::write(mnt.join("f"), "x").unwrap();
    // TCGETS, as isatty() and many programs' file probes do: ENOTTY each time, quietly.
    // (The file-attribute ioctls, such as FS_IOC_GETFLAGS, are answered: tests/details.rs.)
    let script = "import fcntl, sys\nf = open(sys.argv[1])\nlast = 0\nfor _ in range(200):\n    try: fcntl.ioctl(f, 0x5401, b'\\0' * 60)\n    except OSError as e: last = e.errno\nprint(last)";
    let out = sh(Command::new("python3").arg("-c").arg(script).arg(mnt.join("f")));
    assert_eq!(out.trim(), libc::ENOTTY.to_string());
    mounted.unmount();
    assert_eq!(std::fs::metadata(&log).unwrap().mode() & 0o777, 0o600);
    assert!(!read(&log).contains("ioctl"), "{}", read(&log));
}
