//! Drop-in for fuse-overlayfs: podman, with Strata as its overlay `mount_program`, loads
//! an image, runs a container that writes and deletes files, commits it, and runs the
//! result. Uses the shared fixtures (`../shared/fixtures/make-images`).

mod common;

use std::process::Command;

use common::*;

#[test]
fn podman_runs_containers_on_strata() {
    let Some(images) = fixture_images() else { return };
    let s = Scratch::new();
    let w = s.mkdir("podman");
    // podman calls its mount program as fuse-overlayfs does: `NAME -o OPTIONS MOUNTPOINT`.
    let drop_in = w.join("fuse-overlayfs");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_strata"), &drop_in).unwrap();
    let podman = || {
        let mut c = Command::new("podman");
        c.arg("--root").arg(w.join("root")).arg("--runroot").arg(w.join("run"));
        c.args(["--storage-driver", "overlay", "--storage-opt"])
            .arg(format!("overlay.mount_program={}", drop_in.display()));
        c.args(["--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", "runc"]);
        c
    };
    let run_flags = ["--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];
    sh(podman().arg("load").arg("-i").arg(images.join("app.docker.tar")));
    let out = sh(podman().arg("run").arg("--rm").args(run_flags).arg("docker.io/fixtures/app:latest"));
    assert_eq!(out.trim(), "hello from app v2");

    let script = "grep ' / ' /proc/mounts | cut -d' ' -f3; echo written > /app/new.txt; rm /etc/motd; \
                  rm -rf /usr/share/base; mkdir -p /var/made; echo more >> /etc/passwd";
    let out = sh(podman().args(["run", "--name", "c1"]).args(run_flags).args([
        "docker.io/fixtures/app:latest",
        "/bin/busybox",
        "sh",
        "-c",
        script,
    ]));
    assert_eq!(out.trim(), "fuse.strata", "the container's root is a Strata mount");
    sh(podman().args(["commit", "c1", "fixtures/app:committed"]));
    sh(podman().args(["rm", "c1"]));
    let check = "cat /app/new.txt; test ! -e /etc/motd && echo motd-gone; test ! -e /usr/share/base && echo base-gone; \
                 test -d /var/made && echo made; tail -1 /etc/passwd";
    let out = sh(podman().arg("run").arg("--rm").args(run_flags).args([
        "fixtures/app:committed",
        "/bin/busybox",
        "sh",
        "-c",
        check,
    ]));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["written", "motd-gone", "base-gone", "made", "more"]);
    let _ = Command::new("podman")
        .arg("--root")
        .arg(w.join("root"))
        .arg("--runroot")
        .arg(w.join("run"))
        .args(["system", "reset", "-f"])
        .output();
}
