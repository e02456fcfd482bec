//! Volumes, `cp`, `export` and `import` with real containers of the fixture `app` image:
//! binds and named volumes shared by containers, read-only ones, volumes never in
//! `diff` or `commit`, a named volume filled from the image, anonymous volumes for an
//! image's VOLUME, `--mount` and `--tmpfs`; `cp` of a tree both ways (also as tar
//! streams) keeping everything and never following a link out of the root; an export
//! imported again gives the same tree.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

fn ok(root: &Path, args: &[&str]) -> String {
    let o = go(root, args);
    assert_eq!(o.code, 0, "strata {args:?}: {}\n{}", o.stderr, o.stdout);
    o.stdout
}

fn volume_names(root: &Path) -> Vec<String> {
    ok(root, &["volume", "ls", "-q"]).lines().map(str::to_string).collect()
}

fn data_dir(root: &Path, name: &str) -> PathBuf {
    root.join("volumes").join(name).join("_data")
}

/// [`tree`] (type, mode, owner, size, links, content, xattrs) and every entry's mtime
/// to the nanosecond (`find -printf %T@`).
fn full_tree(dir: &Path) -> (BTreeMap<String, String>, String) {
    let times = sh(Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . -printf '%P %T@\\n' | LC_ALL=C sort")
        .arg("sh")
        .arg(dir));
    (tree(dir), times)
}

fn wait_for(path: &Path) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(t0.elapsed() < Duration::from_secs(30), "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn binds_and_named_volumes_are_shared_read_only_on_demand_and_never_in_the_layer() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["w1", "r1"]);
    let host = s.mkdir("host");
    let bind = format!("{}:/bound", host.display());
    // A named volume made by `run`, shared by two containers; the second sees both
    // read-only.
    ok(
        &root,
        &[
            "run",
            "-d",
            "--name",
            "w1",
            "-v",
            &bind,
            "-v",
            "shared:/data",
            "app",
            "sh",
            "-c",
            "echo b > /bound/f; echo n > /data/f; exec sleep 300",
        ],
    );
    wait_for(&host.join("f"));
    wait_for(&data_dir(&root, "shared").join("f"));
    assert_eq!(volume_names(&root), ["shared"]);
    let bind_ro = format!("{}:/bound:ro", host.display());
    let o = go(
        &root,
        &[
            "run",
            "--name",
            "r1",
            "-v",
            &bind_ro,
            "--mount",
            "type=volume,src=shared,dst=/data,readonly",
            "app",
            "sh",
            "-c",
            "cat /bound/f /data/f; touch /data/g || touch /bound/g || exit 0; exit 9",
        ],
    );
    assert_eq!((o.code, o.stdout.as_str()), (0, "b\nn\n"), "{}", o.stderr);
    assert_eq!(o.stderr.matches("Read-only file system").count(), 2, "{}", o.stderr);
    assert!(!host.join("g").exists() && !data_dir(&root, "shared").join("g").exists());
    // What was written through the volumes is on the host only: not in diff, not in commit.
    for name in ["w1", "r1"] {
        assert_eq!(ok(&root, &["diff", name]), "", "diff of {name}");
    }
    ok(&root, &["commit", "w1", "w1img"]);
    let o = go(&root, &["run", "--rm", "w1img", "sh", "-c", "ls /data/f /bound/f"]);
    assert_ne!(o.code, 0, "volume content is in the commit: {}", o.stdout);
    let inspect: serde_json::Value = serde_json::from_str(&ok(&root, &["inspect", "r1"])).unwrap();
    let mounts = inspect[0]["Mounts"].as_array().unwrap();
    let vol = mounts.iter().find(|m| m["Type"] == "volume").unwrap_or_else(|| panic!("{inspect}"));
    assert_eq!(
        (vol["Name"].as_str(), vol["Destination"].as_str(), vol["RW"].as_bool()),
        (Some("shared"), Some("/data"), Some(false))
    );
    // In use: refused, naming the containers; `rm` of a container keeps a named volume.
    let o = go(&root, &["volume", "rm", "shared"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("volume is in use") && o.stderr.contains("w1") && o.stderr.contains("r1"),
        "{}",
        o.stderr
    );
    ok(&root, &["rm", "-f", "-v", "w1", "r1"]);
    assert_eq!(volume_names(&root), ["shared"]);
    let insp: serde_json::Value = serde_json::from_str(&ok(&root, &["volume", "inspect", "shared"])).unwrap();
    assert_eq!((insp[0]["Driver"].as_str(), insp[0]["Scope"].as_str()), (Some("local"), Some("local")), "{insp}");
    assert!(insp[0]["CreatedAt"].as_str().is_some_and(|t| t.starts_with("20")), "{insp}");
    ok(&root, &["volume", "rm", "shared"]);
    assert!(volume_names(&root).is_empty() && !root.join("volumes/shared").exists());
    let o = go(&root, &["volume", "rm", "shared"]);
    assert!(o.code == 1 && o.stderr.contains("no such volume: shared"), "{}", o.stderr);
    assert_eq!(go(&root, &["volume", "rm", "-f", "shared"]).code, 0);
}

#[test]
fn a_new_named_volume_is_filled_from_the_image_once_and_anonymous_ones_go_with_rm_v() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["f1", "f2", "f3", "a1"]);
    ok(&root, &["run", "--name", "f1", "-v", "filled:/app/data", "app", "true"]);
    // The image's /app/data (hard link, xattr, times, owners) as it shows in the union.
    let mnt = PathBuf::from(ok(&root, &["mount", "app"]).trim());
    let image = full_tree(&mnt.join("app/data"));
    sh(strata().arg("umount").arg(&mnt));
    let filled = data_dir(&root, "filled");
    assert_eq!(full_tree(&filled).0, image.0);
    assert_eq!(full_tree(&filled).1.lines().skip(1).collect::<Vec<_>>(), image.1.lines().skip(1).collect::<Vec<_>>());
    assert!(
        tree(&filled).values().any(|v| v.contains("nlink=2") && v.contains("user.layer=two")),
        "{:?}",
        tree(&filled)
    );
    // Only a new volume is filled: emptied, it stays empty; an existing one with
    // content keeps its own; nocopy leaves a new one empty.
    for e in std::fs::read_dir(&filled).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    ok(&root, &["run", "--name", "f2", "-v", "filled:/app/data", "app", "true"]);
    assert!(names(&filled).is_empty());
    assert_eq!(ok(&root, &["volume", "create", "own"]), "own\n");
    std::fs::write(data_dir(&root, "own").join("mine"), "x").unwrap();
    ok(
        &root,
        &[
            "run",
            "--name",
            "f3",
            "-v",
            "own:/app/data",
            "-v",
            "bare:/app/data2:nocopy",
            "--mount",
            "type=volume,source=bare2,target=/app/data3,volume-nocopy",
            "app",
            "true",
        ],
    );
    assert_eq!(names(data_dir(&root, "own")), ["mine"]);
    assert!(names(data_dir(&root, "bare")).is_empty() && names(data_dir(&root, "bare2")).is_empty());
    // An image's VOLUME: an anonymous volume (64-hex name), filled, removed by rm -v;
    // `run --rm` removes its own; named volumes stay.
    let ctx = s.mkdir("ctx");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM app\nRUN mkdir /vol && echo seeded > /vol/seed && chown 1000:1000 /vol && chmod 0750 /vol\nVOLUME /vol\n",
    )
    .unwrap();
    ok(&root, &["build", "-t", "volimg", ctx.to_str().unwrap()]);
    let before = volume_names(&root);
    let o = go(
        &root,
        &["run", "--name", "a1", "volimg", "sh", "-c", "stat -c '%a %u' /vol; cat /vol/seed; echo w > /vol/w"],
    );
    assert_eq!((o.code, o.stdout.as_str()), (0, "750 1000\nseeded\n"), "{}", o.stderr);
    let anon: Vec<String> = volume_names(&root).into_iter().filter(|v| !before.contains(v)).collect();
    assert_eq!(anon.len(), 1, "{anon:?}");
    assert!(anon[0].len() == 64 && anon[0].bytes().all(|b| b.is_ascii_hexdigit()), "{anon:?}");
    assert_eq!(read(data_dir(&root, &anon[0]).join("w")), "w\n");
    assert_eq!(ok(&root, &["diff", "a1"]), "");
    ok(&root, &["rm", "-v", "a1", "f1"]);
    assert!(!volume_names(&root).contains(&anon[0]));
    assert!(volume_names(&root).contains(&"filled".to_string()));
    let o = go(&root, &["run", "--rm", "-v", "/anon", "volimg", "true"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(volume_names(&root), before);
    // prune -a removes what no container uses.
    ok(&root, &["rm", "f2", "f3"]);
    let out = ok(&root, &["volume", "prune", "-a", "-f"]);
    assert!(
        out.contains("Deleted Volumes:") && out.contains("filled") && out.contains("Total reclaimed space"),
        "{out}"
    );
    assert!(volume_names(&root).is_empty(), "{:?}", volume_names(&root));
}

#[test]
fn mount_and_tmpfs_options_and_their_errors() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let host = s.mkdir("host");
    std::fs::write(host.join("f"), "h\n").unwrap();
    let bind = format!("type=bind,source={},destination=/b,ro", host.display());
    let o = go(
        &root,
        &[
            "run",
            "--rm",
            "--mount",
            &bind,
            "--tmpfs",
            "/t:size=1m,mode=1770",
            "--mount",
            "type=tmpfs,dst=/t2,tmpfs-size=2m",
            "--read-only",
            "app",
            "sh",
            "-c",
            "cat /b/f; echo x > /t/x && cat /t/x; stat -c %a /t; grep -E ' /t2? ' /proc/mounts; touch /b/g /root-ro",
        ],
    );
    assert_eq!(o.code, 1, "{}", o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(&lines[..3], ["h", "x", "1770"], "{}", o.stdout);
    let t = lines.iter().find(|l| l.contains("tmpfs /t tmpfs")).unwrap_or_else(|| panic!("{}", o.stdout));
    assert!(t.contains("size=1024k") && t.contains("noexec") && t.contains("nosuid"), "{t}");
    let t2 = lines.iter().find(|l| l.contains("tmpfs /t2 tmpfs")).unwrap_or_else(|| panic!("{}", o.stdout));
    assert!(t2.contains("size=2048k"), "{t2}");
    assert_eq!(o.stderr.matches("Read-only file system").count(), 2, "{}", o.stderr);
    for (args, msg) in [
        (vec!["--mount", "type=bind,target=/x,colour=red"], "unexpected key 'colour'"),
        (vec!["--mount", "type=bind,target=/x"], "field Source must not be empty"),
        (vec!["--mount", "type=tmpfs,source=/x,target=/y"], "field Source must not be specified"),
        (vec!["--mount", "type=volume,source=v1"], "target is required"),
        (vec!["--mount", "type=bind,source=/nonexistent-strata,target=/x"], "bind source path does not exist"),
        (vec!["--tmpfs", "/t:bogus"], "tmpfs option 'bogus' is not supported"),
        (vec!["-v", "aa:/x", "--tmpfs", "/x"], "duplicate mount point: /x"),
        (vec!["-v", "bad/name:/x"], "invalid characters for a local volume name"),
    ] {
        let mut all = vec!["run", "--rm"];
        all.extend(args.iter().copied());
        all.extend(["app", "true"]);
        let o = go(&root, &all);
        assert_eq!(o.code, 125, "{all:?}: {}", o.stderr);
        assert!(o.stderr.contains(msg), "{all:?}: {}", o.stderr);
    }
    // Nothing was left behind by the refused ones.
    assert!(volume_names(&root).is_empty(), "{:?}", volume_names(&root));
    assert_eq!(ps_json(&root).as_array().unwrap().len(), 0);
}

/// A host tree with what a copy must keep: modes (set-gid directory), owners, times,
/// xattrs, a hard link, links pointing out of the root (absolute, and climbing), a fifo.
fn rich_tree(s: &Scratch) -> PathBuf {
    let t = s.mkdir("rich");
    let script = r#"
set -e
cd "$1"
chmod 0700 .
mkdir -p sub/deep
echo hello > f && chmod 0640 f && chown 1000:1001 f && ln f hl
setfattr -n user.k -v val f
setfattr -n user.d -v dirval sub
ln -s /etc/shadow abs-out
ln -s ../../../../../../etc/passwd rel-out
ln -s sub/deep inside
ln -s ../../../../../../tmp up-tmp
mkfifo fifo
echo y > sub/deep/y && chmod 4755 sub/deep/y
chmod 2770 sub && chown 1000:0 sub
touch -h -d '2001-02-03 04:05:06.123456789' abs-out f sub/deep/y
touch -d '2002-01-01 00:00:00.5' sub/deep sub
"#;
    sh(Command::new("sh").arg("-c").arg(script).arg("sh").arg(&t));
    t
}

#[test]
fn cp_copies_a_tree_in_and_out_keeping_everything_and_never_leaves_the_root() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["c1", "run1"]);
    let src = rich_tree(&s);
    ok(
        &root,
        &[
            "create",
            "--name",
            "c1",
            "app",
            "sh",
            "-c",
            "readlink /copied/abs-out; cat /copied/sub/deep/y; ls /etc/shadow 2>&1; cat /onto-link-target 2>&1",
        ],
    );
    // In (a stopped container: through its union, mounted for the copy), then out.
    ok(&root, &["cp", src.to_str().unwrap(), "c1:/copied"]);
    assert!(!root.join("mnt").read_dir().unwrap().any(|e| is_mounted(&e.unwrap().path())), "cp left the union mounted");
    let out = s.mkdir("out");
    ok(&root, &["cp", "c1:/copied", out.to_str().unwrap()]);
    assert_eq!(full_tree(&out.join("copied")), full_tree(&src));
    // In the container: the links are links, added to its layer (diff).
    let diff = ok(&root, &["diff", "c1"]);
    for p in ["A /copied", "A /copied/abs-out", "A /copied/sub/deep/y", "A /copied/fifo"] {
        assert!(diff.lines().any(|l| l == p), "{p} not in {diff}");
    }
    let o = go(&root, &["start", "c1"]);
    assert!(o.stdout.starts_with("/etc/shadow\ny\n"), "{}\n{}", o.stdout, o.stderr);
    // Docker's rules: SRC/. copies the content; a file onto a missing name takes it; a
    // file into an existing directory keeps its name; a directory onto a file is refused.
    ok(&root, &["cp", &format!("{}/.", src.display()), "c1:/app"]);
    ok(&root, &["cp", "c1:/app/f", &out.join("renamed").to_string_lossy()]);
    assert_eq!(read(out.join("renamed")), "hello\n");
    ok(&root, &["cp", "c1:/app/hello.sh", out.to_str().unwrap()]);
    assert!(out.join("hello.sh").is_file());
    let o = go(&root, &["cp", src.to_str().unwrap(), "c1:/app/f"]);
    assert!(o.code != 0 && o.stderr.contains("cannot overwrite non-directory"), "{}", o.stderr);
    let o = go(&root, &["cp", "c1:/app/f", &format!("{}/nodir/", out.display())]);
    assert!(o.code != 0 && o.stderr.contains("must exist"), "{}", o.stderr);
    let o = go(&root, &["cp", "c1:/nope", out.to_str().unwrap()]);
    assert!(o.code != 0 && o.stderr.contains("Could not find the file /nope in container c1"), "{}", o.stderr);
    // A link of the container that points out of its root is resolved inside it: the
    // container's /etc/passwd is read, the container's /tmp written, never the host's.
    ok(&root, &["cp", "c1:/copied/rel-out", &out.join("as-link").to_string_lossy()]);
    assert_eq!(std::fs::read_link(out.join("as-link")).unwrap(), Path::new("../../../../../../etc/passwd"));
    ok(&root, &["cp", "-L", "c1:/copied/rel-out", &out.join("followed").to_string_lossy()]);
    assert!(read(out.join("followed")).contains("app:x:1000:1000"), "the container's passwd");
    ok(&root, &["cp", "c1:/copied/inside/y", &out.join("via-link").to_string_lossy()]);
    assert_eq!(read(out.join("via-link")), "y\n");
    let marker = format!("strata-cp-test-{}", std::process::id());
    std::fs::write(s.path(&marker), "m").unwrap();
    ok(&root, &["cp", &s.path(&marker).to_string_lossy(), "c1:/copied/up-tmp/"]);
    assert!(!Path::new("/tmp").join(&marker).exists() && !Path::new("/etc").join(&marker).exists());
    ok(&root, &["cp", "c1:/tmp/", &out.join("ctmp").to_string_lossy()]);
    assert!(out.join("ctmp").join(&marker).exists(), "{:?}", names(out.join("ctmp")));
    // A running container: its own root, volumes included.
    let vol = s.mkdir("vol");
    ok(&root, &["run", "-d", "--name", "run1", "-v", &format!("{}:/v", vol.display()), "app", "sleep", "300"]);
    wait_running(&root, "run1");
    ok(&root, &["cp", &src.join("f").to_string_lossy(), "run1:/v/"]);
    ok(&root, &["cp", &src.join("sub").to_string_lossy(), "run1:/sub"]);
    assert_eq!(read(vol.join("f")), "hello\n");
    let o = go(&root, &["exec", "run1", "sh", "-c", "cat /sub/deep/y; stat -c '%a %u' /sub"]);
    assert_eq!(o.stdout, "y\n2770 1000\n", "{}", o.stderr);
    let out2 = s.mkdir("out2");
    ok(&root, &["cp", "run1:/sub", out2.to_str().unwrap()]);
    assert_eq!(full_tree(&out2.join("sub")), full_tree(&src.join("sub")));
}

#[test]
fn cp_reads_and_writes_tar_streams() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["t1"]);
    let src = rich_tree(&s);
    ok(&root, &["create", "--name", "t1", "app", "true"]);
    // `-` in: GNU tar's stream, xattrs included, into an existing directory.
    let tar_in = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=user.*", "-C"])
        .arg(&src)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(tar_in.status.success());
    let mut child = st(&root).args(["cp", "-", "t1:/app"]).stdin(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(&tar_in.stdout).unwrap();
    assert!(child.wait().unwrap().success());
    // `-` out: a tar of /app named `app/...`, unpacked by GNU tar: the same tree.
    let o = st(&root).args(["cp", "t1:/app", "-"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut modes = Vec::new();
    let names: Vec<String> = tar::Archive::new(&o.stdout[..])
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            modes.push(e.header().mode().unwrap());
            e.path().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    assert_eq!(names[0].trim_end_matches('/'), "app");
    // The stream's `./` (mode 0700) left the existing /app as it was (as Docker).
    assert_eq!(modes[0], 0o755, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("app")), "{names:?}");
    let out = s.mkdir("out");
    let mut untar = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=user.*", "--same-owner", "-xpf", "-", "-C"])
        .arg(&out)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    untar.stdin.take().unwrap().write_all(&o.stdout).unwrap();
    assert!(untar.wait().unwrap().success());
    let got = tree(&out.join("app"));
    for (k, v) in tree(&src) {
        assert_eq!(got.get(&k), Some(&v), "{k}");
    }
    // A tar holding a union's whiteout name is refused, nothing else written.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, ".wh.passwd", std::io::empty()).unwrap();
    let bytes = b.into_inner().unwrap();
    let mut child =
        st(&root).args(["cp", "-", "t1:/etc"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(".wh."), "{}", String::from_utf8_lossy(&o.stderr));
    let o = go(&root, &["cp", "-", "t1:/app/hello.sh"]);
    assert!(o.code != 0 && o.stderr.contains("must be a directory"), "{}", o.stderr);
}

#[test]
fn export_then_import_gives_the_same_tree() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let _c = Cleanup(&root, &["x1"]);
    // Changes of every kind: added, changed, deleted (a whiteout), an xattr, a link.
    ok(
        &root,
        &[
            "run",
            "--name",
            "x1",
            "-v",
            "notexported:/app/vol",
            "app",
            "sh",
            "-c",
            "echo new > /new; rm /app/data/a.txt; chmod 0700 /app; ln -s /etc/passwd /lnk; mkdir -p /d/e; \
         echo in-volume > /app/vol/f; echo changed >> /etc/group",
        ],
    );
    let tarball = s.path("x1.tar");
    ok(&root, &["export", "x1", "-o", tarball.to_str().unwrap()]);
    ok(&root, &["import", tarball.to_str().unwrap(), "x1img"]);
    // And from stdin, as `export | import -`.
    let mut exp = st(&root).args(["export", "x1"]).stdout(Stdio::piped()).spawn().unwrap();
    let piped = exp.stdout.take().unwrap();
    let imp = st(&root).args(["import", "-", "x1img2"]).stdin(piped).output().unwrap();
    assert!(exp.wait().unwrap().success());
    assert!(imp.status.success(), "{}", String::from_utf8_lossy(&imp.stderr));
    let cmnt = PathBuf::from(ok(&root, &["mount", "x1"]).trim());
    let container = full_tree(&cmnt);
    sh(strata().arg("umount").arg(&cmnt));
    assert!(!container.0.contains_key("app/data/a.txt") && container.0.contains_key("new"));
    assert_eq!(container.0.get("app/vol").map(|v| v.starts_with("dir")), Some(true));
    assert!(!container.0.contains_key("app/vol/f"), "volume content is not in the export");
    for image in ["x1img", "x1img2"] {
        let mnt = PathBuf::from(ok(&root, &["mount", image]).trim());
        let imported = full_tree(&mnt);
        sh(strata().arg("umount").arg(&mnt));
        assert_eq!(imported.0, container.0, "{image}");
        assert_eq!(imported.1, container.1, "{image}: times");
    }
}
