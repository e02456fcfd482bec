//! The image store through the CLI: every fixture format loads and mounts as exactly the
//! expected tree; save/load round trips keep every ID and satisfy skopeo, umoci and
//! podman; hostile layers and bad digests are refused leaving nothing; a killed load is
//! repaired by `check`; load and rmi at once keep the store whole.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn inspect(root: &Path, image: &str) -> serde_json::Value {
    let out = sh(st(root).args(["inspect", image]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

fn entries(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    names(dir)
}

/// Nothing of a refused load is left: no image, no layer, no staging.
fn assert_store_empty(root: &Path) {
    for d in ["diff", "layers", "layerdb", "images", "tmp"] {
        assert_eq!(entries(&root.join(d)), Vec::<String>::new(), "{d}/ should be empty");
    }
}

#[test]
fn every_fixture_format_loads_and_mounts_exactly() {
    let Some(img) = fixture_images() else { return };
    let expected = read(img.join("expected/app.tree"));
    let s = Scratch::new();
    let sources: [(&str, String); 5] = [
        ("docker-archive", img.join("app.docker.tar").display().to_string()),
        ("oci gzip", img.join("oci").display().to_string()),
        ("oci zstd", img.join("oci-zstd").display().to_string()),
        ("oci plain", img.join("oci-uncompressed").display().to_string()),
        ("oci-archive", img.join("app.oci-archive.tar").display().to_string()),
    ];
    for (i, (what, src)) in sources.iter().enumerate() {
        let root = s.path(&format!("store{i}"));
        let out = sh(st(&root).args(["load", "-i", src]));
        assert!(out.contains("app:latest"), "{what}: {out}");
        let name = if what.starts_with("docker") { "fixtures/app" } else { "app" };
        assert_eq!(mounted_tree(&root, name), expected, "{what}: mounted tree differs from expected/app.tree");
        let id = inspect(&root, name)["Id"].clone();
        assert_eq!(id, "sha256:88560b81062affcc626e2e38baf550b6507de0bd1bd3c20d0ea7e87046b6a241", "{what}");
    }
    // From stdin, the archive gzip-compressed as a whole (docker load takes that too).
    let root = s.path("stdin");
    let mut gz = Command::new("gzip").arg("-c").arg(img.join("app.docker.tar")).stdout(Stdio::piped()).spawn().unwrap();
    let out = st(&root).arg("load").stdin(gz.stdout.take().unwrap()).output().unwrap();
    assert!(gz.wait().unwrap().success());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mounted_tree(&root, "fixtures/app"), expected, "stdin load");
    // Shared layers are unpacked once: base's one layer serves both images.
    let root = s.path("shared");
    sh(st(&root).args(["load", "-i"]).arg(img.join("oci")));
    assert_eq!(entries(&root.join("diff")).len(), 3, "app's 3 layers, base's one among them");
}

#[test]
fn save_then_load_keeps_every_id_and_peers_accept_it() {
    let Some(img) = fixture_images() else { return };
    let s = Scratch::new();
    let root = s.path("store");
    sh(st(&root).args(["load", "-i"]).arg(img.join("oci")));
    let want = inspect(&root, "app");
    let out = s.mkdir("out");
    sh(st(&root).args(["save", "-o"]).arg(out.join("app.tar")).arg("app"));
    sh(st(&root).args(["save", "--format", "oci", "-o"]).arg(out.join("oci")).args(["app", "base"]));
    sh(st(&root).args(["save", "--format", "oci-archive", "-o"]).arg(out.join("app.oci.tar")).arg("app"));
    for (i, src) in ["app.tar", "oci", "app.oci.tar"].iter().enumerate() {
        let again = s.path(&format!("again{i}"));
        sh(st(&again).args(["load", "-i"]).arg(out.join(src)));
        let got = inspect(&again, "app");
        assert_eq!(got["Id"], want["Id"], "{src}: image ID");
        assert_eq!(got["RootFS"], want["RootFS"], "{src}: diff IDs");
        assert_eq!(mounted_tree(&again, "app"), read(img.join("expected/app.tree")), "{src}");
    }
    // umoci unpacks our OCI layout into the expected tree.
    let unpacked = s.path("umoci");
    sh(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:app:latest", out.join("oci").display()))
        .arg(&unpacked));
    assert_eq!(fixture_tree(&unpacked.join("rootfs")), read(img.join("expected/app.tree")), "umoci unpack");
    // skopeo inspects, podman loads and runs the docker-archive and the OCI archive.
    let peer = fixtures().unwrap().join("peer-check");
    let o = sh(Command::new("bash")
        .arg(&peer)
        .arg("image")
        .arg(format!("docker-archive:{}", out.join("app.tar").display()))
        .arg("/app/hello.sh"));
    assert!(o.contains("hello from app v2"), "{o}");
    let o = sh(Command::new("bash")
        .arg(&peer)
        .arg("image")
        .arg(format!("oci-archive:{}:app:latest", out.join("app.oci.tar").display()))
        .arg("/app/hello.sh"));
    assert!(o.contains("hello from app v2"), "{o}");
}

// ---------------------------------------------------------------- hostile layers

/// A tar built by hand, so that names tar writers refuse (`..`) can be written.
#[derive(Default)]
struct RawTar(Vec<u8>);

impl RawTar {
    fn entry(mut self, name: &str, kind: u8, link: &str, data: &[u8]) -> RawTar {
        let mut h = tar::Header::new_ustar();
        let b = h.as_mut_bytes();
        b[..name.len()].copy_from_slice(name.as_bytes());
        b[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_mode(if kind == b'5' { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000_000);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }
    fn file(self, name: &str, data: &str) -> RawTar {
        self.entry(name, b'0', "", data.as_bytes())
    }
    /// A PAX header whose records apply to the next entry.
    fn pax(self, key: &str, value: &str) -> RawTar {
        let body = format!("{key}={value}\n");
        let mut len = body.len() + 3;
        while format!("{len} {body}").len() != len {
            len += 1;
        }
        self.entry("PaxHeaders/x", b'x', "", format!("{len} {body}").as_bytes())
    }
    fn write(mut self, path: &Path) -> PathBuf {
        self.0.extend_from_slice(&[0u8; 1024]);
        fs::write(path, &self.0).unwrap();
        path.to_path_buf()
    }
}

fn import(root: &Path, tar: &Path, name: &str) -> std::process::Output {
    run(st(root).arg("import").arg(tar).arg(name))
}

#[test]
fn hostile_layers_are_refused_and_leave_nothing() {
    let s = Scratch::new();
    let outside = s.mkdir("outside");
    fs::write(outside.join("victim"), "untouched").unwrap();
    let out = outside.display().to_string();
    let cases: Vec<(&str, RawTar, &str)> = vec![
        ("dotdot", RawTar::default().file("../../../../../../../tmp/evil", "x"), "climbs out"),
        ("dotdot inside", RawTar::default().file("a/../../evil", "x"), "climbs out"),
        (
            "write through own symlink",
            RawTar::default().entry("link", b'2', &out, b"").file("link/victim", "pwned"),
            "symlink or not a directory",
        ),
        ("hard link out", RawTar::default().entry("h", b'1', "../../../../../../etc/passwd", b""), "climbs out"),
        ("hard link to a host path", RawTar::default().entry("h", b'1', "/etc/passwd", b""), "not an earlier entry"),
        (
            "hard link through own symlink",
            RawTar::default().entry("l", b'2', &out, b"").entry("h", b'1', "l/victim", b""),
            "symlink or not a directory",
        ),
        ("empty whiteout", RawTar::default().file("dir/.wh.", ""), "invalid whiteout"),
        ("dot whiteout", RawTar::default().file(".wh..", ""), "invalid whiteout"),
        ("not a tar", RawTar(b"this is not a tar archive at all".repeat(40)), "tar"),
    ];
    for (what, tar, why) in cases {
        let root = s.path(&format!("store-{}", what.replace(' ', "-")));
        let t = tar.write(&s.path(&format!("{}.tar", what.replace(' ', "-"))));
        let o = import(&root, &t, "hostile");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{what}: accepted");
        assert!(err.contains(why), "{what}: error should say '{why}': {err}");
        assert!(err.starts_with("strata: ") && err.lines().count() <= 2, "{what}: one clear line: {err}");
        assert_store_empty(&root);
        assert_eq!(names(&outside), ["victim"], "{what}");
        assert_eq!(read(outside.join("victim")), "untouched", "{what}");
    }
    assert!(!Path::new("/tmp/evil").exists() && !s.path("evil").exists());
}

#[test]
fn containable_layers_are_contained() {
    let s = Scratch::new();
    let outside = s.mkdir("outside");
    let root = s.path("store");
    let out = outside.display().to_string();
    let t = RawTar::default()
        // An absolute name lands inside the layer.
        .file("/abs/file", "inside")
        // A symlink to outside replaced by a directory: the entries go into the directory.
        .entry("d", b'2', &out, b"")
        .entry("d/", b'5', "", b"")
        .file("d/f", "in the layer")
        // A symlink pointing out is stored, never followed.
        .entry("up", b'2', "../../../../etc", b"")
        // The union's private xattrs are never taken from a layer.
        .pax("SCHILY.xattr.trusted.overlay.opaque", "y")
        .entry("o/", b'5', "", b"")
        .file("o/x", "x")
        .pax("SCHILY.xattr.user.kept", "yes")
        .entry("p/", b'5', "", b"")
        .write(&s.path("ok.tar"));
    let o = import(&root, &t, "contained");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("trusted.overlay.opaque"), "the dropped xattr is reported");
    assert_eq!(names(&outside), Vec::<String>::new(), "nothing written outside");
    let mnt = PathBuf::from(sh(st(&root).args(["mount", "contained"])).trim());
    assert_eq!(read(mnt.join("abs/file")), "inside");
    assert!(fs::symlink_metadata(mnt.join("d")).unwrap().is_dir());
    assert_eq!(read(mnt.join("d/f")), "in the layer");
    assert_eq!(fs::read_link(mnt.join("up")).unwrap(), Path::new("../../../../etc"));
    let layer = entries(&root.join("diff")).pop().unwrap();
    let o_dir = root.join("diff").join(&layer).join("o");
    assert!(xattr_of(&o_dir, "trusted.overlay.opaque").is_none(), "private xattr dropped");
    assert_eq!(xattr_of(&mnt.join("p"), "user.kept").as_deref(), Some(&b"yes"[..]));
    sh(strata().arg("umount").arg(&mnt));
}

fn xattr_of(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut v = vec![0u8; 256];
    rustix::fs::lgetxattr(p, name, &mut v[..]).ok().map(|n| v[..n].to_vec())
}

#[test]
fn whiteouts_in_one_layer_replace_what_is_below() {
    // Layer 1: dir/{a,b}; layer 2: whiteout of dir and a new dir with c (a directory
    // replaced in one layer), opaque marker for keep/, whiteout of file gone.
    let s = Scratch::new();
    let root = s.path("store");
    let l1 = RawTar::default()
        .file("dir/a", "a")
        .file("dir/b", "b")
        .file("keep/old", "old")
        .file("gone", "g")
        .write(&s.path("l1.tar"));
    let l2 = RawTar::default()
        .file(".wh.dir", "")
        .entry("dir/", b'5', "", b"")
        .file("dir/c", "c")
        .file("keep/new", "new")
        .file("keep/.wh..wh..opq", "")
        .file(".wh.gone", "")
        .write(&s.path("l2.tar"));
    // A two-layer image as a docker-archive built from the pieces.
    let arch = s.mkdir("arch");
    let mut diff_ids = Vec::new();
    for (i, l) in [&l1, &l2].iter().enumerate() {
        fs::copy(l, arch.join(format!("l{i}.tar"))).unwrap();
        let sum = sh(Command::new("sha256sum").arg(l));
        diff_ids.push(format!("sha256:{}", &sum[..64]));
    }
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    fs::write(arch.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    let manifest =
        serde_json::json!([{"Config": "config.json", "RepoTags": ["two:layers"], "Layers": ["l0.tar", "l1.tar"]}]);
    fs::write(arch.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    sh(st(&root).args(["load", "-i"]).arg(&arch));
    let mnt = PathBuf::from(sh(st(&root).args(["mount", "two:layers"])).trim());
    assert_eq!(names(mnt.join("dir")), ["c"], "a directory replaced in one layer hides the lower one");
    assert_eq!(names(mnt.join("keep")), ["new"], "opaque, whatever the order in the tar");
    assert!(!mnt.join("gone").exists());
    sh(strata().arg("umount").arg(&mnt));
}

#[test]
fn bad_digests_are_refused_naming_the_blob() {
    let Some(img) = fixture_images() else { return };
    let s = Scratch::new();
    // docker-archive with a layer whose content is not what the config's diff ID says.
    let arch = s.mkdir("arch");
    sh(Command::new("tar").arg("-xf").arg(img.join("app.docker.tar")).arg("-C").arg(&arch));
    let manifest: serde_json::Value = serde_json::from_str(&read(arch.join("manifest.json"))).unwrap();
    let layer = manifest[0]["Layers"][2].as_str().unwrap().to_string();
    let real = fs::canonicalize(arch.join(&layer)).unwrap();
    let mut bytes = fs::read(&real).unwrap();
    fs::remove_file(&real).unwrap();
    bytes.extend_from_slice(&[0u8; 512]);
    fs::write(&real, bytes).unwrap();
    let root = s.path("s1");
    let o = run(st(&root).args(["load", "-i"]).arg(&arch));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("diff ID") && err.contains("layer 3/3"), "{err}");
    assert_store_empty(&root);

    // OCI layout: a config blob changed after the manifest named it.
    let oci = s.path("oci");
    sh(Command::new("cp").arg("-a").arg(img.join("oci")).arg(&oci));
    let index: serde_json::Value = serde_json::from_str(&read(oci.join("index.json"))).unwrap();
    let blob = |d: &str| oci.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "app")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest: serde_json::Value = serde_json::from_str(&read(blob(&m))).unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap().to_string();
    let text = read(blob(&config)).replace("\"os\":\"linux\"", "\"os\":\"linuz\"");
    fs::write(blob(&config), text).unwrap();
    let root = s.path("s2");
    let o = run(st(&root).args(["load", "-i"]).arg(&oci));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("digest mismatch") && err.contains(&config), "{err}");
    assert_store_empty(&root);

    // OCI layout: a layer blob cut short.
    let oci = s.path("oci2");
    sh(Command::new("cp").arg("-a").arg(img.join("oci")).arg(&oci));
    let top = manifest["layers"][2]["digest"].as_str().unwrap().to_string();
    let p = oci.join("blobs/sha256").join(top.trim_start_matches("sha256:"));
    let bytes = fs::read(&p).unwrap();
    fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let root = s.path("s3");
    let o = run(st(&root).args(["load", "-i"]).arg(&oci));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("layer 3/3"), "{err}");
    assert!(!entries(&root.join("images")).iter().any(|i| i.starts_with("8856")), "app not registered");
    assert_eq!(entries(&root.join("tmp")), Vec::<String>::new());
}

/// A rootfs-like tree: files, hard links, symlinks, setuid, xattrs, a fifo, a device, a
/// sparse file, long names, owners.
fn make_rootfs(dir: &Path, files: usize) {
    for i in 0..files {
        let d = dir.join(format!("d{:02}", i % 40));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!("f{i:05}")), format!("{i}").repeat(1 + i % 500)).unwrap();
    }
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::write(dir.join("bin/tool"), "#!/bin/sh\n").unwrap();
    sh(Command::new("chmod").arg("4755").arg(dir.join("bin/tool")));
    fs::hard_link(dir.join("bin/tool"), dir.join("bin/tool-link")).unwrap();
    std::os::unix::fs::symlink("tool", dir.join("bin/rel")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("bin/abs")).unwrap();
    sh(Command::new("setfattr").args(["-n", "user.k", "-v", "v"]).arg(dir.join("bin/tool")));
    sh(Command::new("mkfifo").arg(dir.join("bin/fifo")));
    sh(Command::new("mknod").arg(dir.join("bin/null")).args(["c", "1", "3"]));
    sh(Command::new("truncate").args(["-s", "10M"]).arg(dir.join("sparse")));
    let long = dir.join("a".repeat(120)).join("b".repeat(140));
    fs::create_dir_all(long.parent().unwrap()).unwrap();
    fs::write(&long, "long").unwrap();
    fs::create_dir_all(dir.join("home/user")).unwrap();
    sh(Command::new("chown").args(["-R", "1000:1000"]).arg(dir.join("home/user")));
}

#[test]
fn import_keeps_a_rootfs_exactly() {
    let s = Scratch::new();
    let src = s.mkdir("rootfs");
    make_rootfs(&src, 300);
    let root = s.path("store");
    sh(st(&root).arg("import").arg(&src).arg("mine:v1"));
    let mnt = PathBuf::from(sh(st(&root).args(["mount", "mine:v1"])).trim());
    assert_eq!(tree(&mnt), tree(&src), "imported directory");
    let sparse = fs::metadata(mnt.join("sparse")).unwrap();
    assert!(std::os::unix::fs::MetadataExt::blocks(&sparse) < 64, "sparse file stays sparse");
    sh(strata().arg("umount").arg(&mnt));
    // The same tree as a gzip tarball on stdin.
    let mut tgz = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .args(["--xattrs", "-czf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let o = st(&root).args(["import", "-", "mine:tgz"]).stdin(tgz.stdout.take().unwrap()).output().unwrap();
    assert!(tgz.wait().unwrap().success());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mnt = PathBuf::from(sh(st(&root).args(["mount", "mine:tgz"])).trim());
    assert_eq!(tree(&mnt), tree(&src), "imported tarball");
    sh(strata().arg("umount").arg(&mnt));
    let h: serde_json::Value =
        serde_json::from_str(&sh(st(&root).args(["history", "--format", "json", "mine:v1"]))).unwrap();
    assert!(h[0]["CreatedBy"].as_str().unwrap().starts_with("strata import "), "{h}");
}

#[test]
fn tags_rmi_and_layer_collection() {
    let Some(img) = fixture_images() else { return };
    let s = Scratch::new();
    let root = s.path("store");
    sh(st(&root).args(["load", "-i"]).arg(img.join("oci")));
    let list: serde_json::Value = serde_json::from_str(&sh(st(&root).args(["images", "--format", "json"]))).unwrap();
    let mut tags: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("{}:{}", i["Repository"].as_str().unwrap(), i["Tag"].as_str().unwrap()))
        .collect();
    tags.sort();
    assert_eq!(tags, ["app:latest", "base:latest"]);
    let table = sh(st(&root).arg("images"));
    assert!(table.starts_with("REPOSITORY   TAG      IMAGE ID       CREATED        SIZE"), "{table}");
    sh(st(&root).args(["tag", "app", "mine:v1"]));
    let o = run(st(&root).args(["rmi", "88560b81"]));
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("-f"), "ID with two tags needs -f");
    assert_eq!(sh(st(&root).args(["rmi", "app"])).trim(), "Untagged: app:latest");
    assert_eq!(entries(&root.join("diff")).len(), 3, "still used by mine:v1");
    let out = sh(st(&root).args(["rmi", "mine:v1"]));
    assert!(out.contains("Deleted: sha256:88560b81") && out.matches("Deleted layer").count() == 2, "{out}");
    assert_eq!(entries(&root.join("diff")), ["47185da97beabd156ea2bd5022ffc7f577ebeae17e46bf3832791f354ae99a35"]);
    sh(st(&root).args(["rmi", "base"]));
    assert_store_empty(&root);
    let o = run(st(&root).args(["inspect", "nosuch"]));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim(), "strata: no such image: nosuch");
    let o = run(st(&root).args(["load", "-i", "/nonexistent/x.tar"]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/x.tar"));
}

#[test]
fn history_and_inspect_follow_the_config() {
    let Some(img) = fixture_images() else { return };
    let s = Scratch::new();
    let root = s.path("store");
    sh(st(&root).args(["load", "-i"]).arg(img.join("app.docker.tar")));
    let h: serde_json::Value =
        serde_json::from_str(&sh(st(&root).args(["history", "--format", "json", "fixtures/app"]))).unwrap();
    let rows = h.as_array().unwrap();
    assert_eq!(rows.len(), 5, "5 history entries for 3 layers");
    let empty: Vec<bool> = rows.iter().map(|r| r["EmptyLayer"].as_bool().unwrap()).collect();
    assert_eq!(empty, [true, false, false, true, false], "newest first");
    assert_eq!(
        rows[0]["Id"].as_str().unwrap(),
        "sha256:88560b81062affcc626e2e38baf550b6507de0bd1bd3c20d0ea7e87046b6a241"
    );
    assert!(rows[4]["Size"].as_u64().unwrap() > 1_000_000, "busybox layer");
    let table = sh(st(&root).args(["history", "fixtures/app"]));
    assert!(table.lines().nth(1).unwrap().starts_with("88560b81062a"), "{table}");
    let i = inspect(&root, "fixtures/app");
    let diff_ids: Vec<String> = read(img.join("expected/app.digests"))
        .lines()
        .filter_map(|l| l.split(" diff_id ").nth(1).map(str::to_string))
        .collect();
    let layers: Vec<String> =
        i["RootFS"]["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect();
    assert_eq!(layers, diff_ids);
    assert_eq!(i["RootFS"]["Type"], "layers");
    assert_eq!(i["Config"]["Cmd"][0], "/app/hello.sh");
    assert_eq!(i["RepoTags"][0], "fixtures/app:latest");
}

#[test]
fn a_killed_load_is_repaired_by_check() {
    let s = Scratch::new();
    let src = s.mkdir("rootfs");
    make_rootfs(&src, 6000);
    let a = s.path("a");
    sh(st(&a).arg("import").arg(&src).arg("big"));
    let archive = s.path("big.tar");
    sh(st(&a).args(["save", "-o"]).arg(&archive).arg("big"));
    let b = s.path("b");
    for delay in [5u64, 30, 80, 200, 400] {
        let mut child =
            st(&b).args(["load", "-i"]).arg(&archive).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        let out = sh(st(&b).arg("check"));
        assert!(!out.contains("problem"), "after kill at {delay} ms: {out}");
        assert_eq!(entries(&b.join("tmp")), Vec::<String>::new(), "after kill at {delay} ms");
        // Whatever is listed is whole.
        sh(st(&b).arg("images"));
        for l in entries(&b.join("layerdb")).iter().filter_map(|n| n.strip_suffix(".json")) {
            assert!(b.join("diff").join(l).is_dir(), "registered layer {l} has its files");
        }
        let _ = run(st(&b).args(["rmi", "big"]));
    }
    sh(st(&b).args(["load", "-i"]).arg(&archive));
    let mnt = PathBuf::from(sh(st(&b).args(["mount", "big"])).trim());
    assert_eq!(tree(&mnt), tree(&src));
    sh(strata().arg("umount").arg(&mnt));
}

#[test]
fn concurrent_load_and_rmi_keep_the_store_whole() {
    let Some(img) = fixture_images() else { return };
    let s = Scratch::new();
    let root = s.path("store");
    let expected = read(img.join("expected/app.tree"));
    for round in 0..6 {
        sh(st(&root).args(["load", "-i"]).arg(img.join("base.docker.tar")));
        let mut load =
            st(&root).args(["load", "-i"]).arg(img.join("app.docker.tar")).stdout(Stdio::null()).spawn().unwrap();
        if round % 2 == 1 {
            std::thread::sleep(Duration::from_millis(10 * round));
        }
        let rmi = run(st(&root).args(["rmi", "fixtures/base"]));
        assert!(rmi.status.success(), "{}", String::from_utf8_lossy(&rmi.stderr));
        assert!(load.wait().unwrap().success(), "round {round}: load failed");
        let out = sh(st(&root).arg("check"));
        assert!(!out.contains("problem"), "round {round}: {out}");
        assert_eq!(mounted_tree(&root, "fixtures/app"), expected, "round {round}");
        sh(st(&root).args(["rmi", "fixtures/app"]));
    }
    assert_store_empty(&root);
}

#[test]
fn a_full_disk_fails_the_load_cleanly() {
    let s = Scratch::new();
    let src = s.mkdir("rootfs");
    make_rootfs(&src, 400);
    std::fs::write(src.join("big"), vec![7u8; 12 << 20]).unwrap();
    let a = s.path("a");
    sh(st(&a).arg("import").arg(&src).arg("big"));
    let archive = s.path("big.tar");
    sh(st(&a).args(["save", "-o"]).arg(&archive).arg("big"));
    // A store on an 8 MiB tmpfs: the 12 MiB file cannot fit.
    let small = s.mkdir("small");
    sh(Command::new("mount").args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"]).arg(&small));
    let o = run(st(&small).args(["load", "-i"]).arg(&archive));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let listing: Vec<Vec<String>> =
        ["diff", "layerdb", "images", "tmp"].iter().map(|d| entries(&small.join(d))).collect();
    let _ = Command::new("umount").arg(&small).status();
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("No space left on device") && err.contains(&small.display().to_string()), "{err}");
    assert_eq!(err.matches("No space left on device").count(), 1, "said once: {err}");
    assert!(listing.iter().all(Vec::is_empty), "nothing kept: {listing:?}");
}
