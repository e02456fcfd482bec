//! `strata build`: seed 004's Dockerfile, a corpus built by Strata and by `podman build`
//! (vfs storage, runc) from the same base and compared (root filesystems and configs),
//! the cache, multi-stage builds, and bad input that must leave the store unchanged.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// A store with the fixture app image, and a build context directory.
fn setup(s: &Scratch) -> Option<(PathBuf, PathBuf)> {
    let root = store_with_app(s)?;
    Some((root, s.mkdir("ctx")))
}

fn write(dir: &Path, rel: &str, content: &str) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

fn build(root: &Path, ctx: &Path, args: &[&str]) -> Out {
    let mut a = vec!["build"];
    a.extend_from_slice(args);
    let ctx = ctx.to_str().unwrap();
    a.push(ctx);
    go(root, &a)
}

fn ok(o: Out) -> Out {
    assert_eq!(o.code, 0, "stdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
    o
}

fn inspect(root: &Path, image: &str) -> Value {
    let v: Value = serde_json::from_str(&sh(st(root).args(["inspect", image]))).unwrap();
    v[0].clone()
}

/// The image's root filesystem, listed as `make-images` lists trees.
fn strata_tree(root: &Path, image: &str) -> String {
    let mnt = sh(st(root).args(["mount", image]));
    let tree = fixture_tree(Path::new(mnt.trim()));
    sh(st(root).args(["umount", mnt.trim()]));
    tree
}

/// Everything the store holds, to show that a failed build changed nothing.
fn store_state(root: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for d in ["images", "layerdb", "diff", "containers", "build-cache"] {
        if let Ok(rd) = fs::read_dir(root.join(d)) {
            for e in rd {
                v.push(format!("{d}/{}", e.unwrap().file_name().to_string_lossy()));
            }
        }
    }
    v.push(fs::read_to_string(root.join("repositories.json")).unwrap_or_default());
    v.sort();
    v
}

/// Throw-away podman storage (vfs, runc), as `peer-check` runs podman here.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn new(s: &Scratch, images: &Path) -> Podman {
        let p = Podman { dir: s.mkdir("pm") };
        sh(p.cmd().arg("load").arg("-i").arg(images.join("app.docker.tar")));
        p
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root").arg(self.dir.join("root")).arg("--runroot").arg(self.dir.join("run"));
        c.args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]);
        c.args(["--runtime", "runc"]);
        c
    }

    fn build(&self, ctx: &Path, tag: &str, extra: &[&str]) {
        sh(self
            .cmd()
            .args(["build", "--format", "docker", "--network", "none"])
            .args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "-t", tag])
            .args(extra)
            .arg(ctx));
    }

    fn tree(&self, tag: &str) -> String {
        let mnt = sh(self.cmd().args(["image", "mount", tag]));
        let tree = fixture_tree(Path::new(mnt.trim()));
        sh(self.cmd().args(["image", "unmount", tag]));
        tree
    }

    fn config(&self, tag: &str) -> Value {
        let v: Value = serde_json::from_str(&sh(self.cmd().args(["inspect", tag]))).unwrap();
        v[0]["Config"].clone()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd().args(["rmi", "-a", "-f"]).output();
    }
}

/// The config fields the issue compares; a missing, null or empty value is the same.
fn config_fields(c: &Value) -> Vec<(String, Value)> {
    let fields =
        ["Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts", "Volumes", "StopSignal", "Shell"];
    fields
        .iter()
        .map(|f| {
            let mut v = c.get(*f).cloned().unwrap_or(Value::Null);
            if let Some(l) = v.as_object_mut() {
                // buildah stamps its version on every image it builds; Docker does not.
                l.remove("io.buildah.version");
            }
            let empty = v.is_null()
                || v == ""
                || v.as_array().is_some_and(|a| a.is_empty())
                || v.as_object().is_some_and(|o| o.is_empty());
            (f.to_string(), if empty { Value::Null } else { v })
        })
        .collect()
}

fn diff(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out = String::new();
    for l in &a {
        if !b.contains(l) {
            out.push_str(&format!("strata only: {l}\n"));
        }
    }
    for l in &b {
        if !a.contains(l) {
            out.push_str(&format!("podman only: {l}\n"));
        }
    }
    out
}

/// What buildah leaves in an image and Docker does not: an empty `/etc/hostname` (the
/// bind-mount target of its RUN containers), and a directory for each `VOLUME` (Docker's
/// builder records VOLUME in the config only; Strata follows Docker).
fn without_buildah_artifacts(tree: &str, img: &Value) -> String {
    let volumes: Vec<String> = img["Config"]["Volumes"]
        .as_object()
        .map(|v| v.keys().map(|k| format!("{}\td\t", k.trim_start_matches('/'))).collect())
        .unwrap_or_default();
    tree.lines()
        .filter(|l| !l.starts_with("etc/hostname\tf\t0755\t0\t0\t0\t"))
        .filter(|l| !volumes.iter().any(|v| l.starts_with(v.as_str())))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Builds `ctx` with both and compares root filesystems and configs.
/// `docker` lists config fields where podman differs from Docker's reference, with the
/// value Docker gives: Strata must give that, and podman must give something else.
fn compare(root: &Path, pm: &Podman, ctx: &Path, tag: &str, args: &[&str], docker: &[(&str, Value)]) {
    let mut a = vec!["-t", tag];
    a.extend_from_slice(args);
    ok(build(root, ctx, &a));
    pm.build(ctx, tag, args);
    let (mine, theirs) = (strata_tree(root, tag), without_buildah_artifacts(&pm.tree(tag), &inspect(root, tag)));
    assert!(mine == theirs, "{tag}: root filesystems differ:\n{}", diff(&mine, &theirs));
    let (mine, mut theirs) = (config_fields(&inspect(root, tag)["Config"]), config_fields(&pm.config(tag)));
    for (field, value) in docker {
        let f = theirs.iter_mut().find(|(k, _)| k == field).unwrap();
        assert_ne!(&f.1, value, "podman gives Docker's {field} now: drop the exception");
        f.1 = value.clone();
    }
    assert_eq!(mine, theirs, "{tag}: configs differ");
}

#[test]
fn seed_004_dockerfile_builds_and_reads_like_the_seed() {
    let s = Scratch::new();
    let Some((root, ctx)) = setup(&s) else { return };
    write(&ctx, "Dockerfile", "FROM app\nRUN echo \"hello world\" > /tmp/newfile\n");
    let o = ok(build(&root, &ctx, &["-t", "ubuntu-changed"]));
    assert!(o.stdout.contains("STEP 2/2: RUN echo \"hello world\" > /tmp/newfile"), "{}", o.stdout);
    let base = inspect(&root, "app");
    let img = inspect(&root, "ubuntu-changed");
    assert_eq!(o.stdout.lines().last().unwrap(), img["Id"].as_str().unwrap());
    // One new layer, one new history entry, written as docker build writes it.
    let layers = |v: &Value| v["RootFS"]["Layers"].as_array().unwrap().clone();
    assert_eq!(layers(&img).len(), layers(&base).len() + 1);
    assert_eq!(layers(&img)[..layers(&base).len()], layers(&base)[..]);
    let h: Value =
        serde_json::from_str(&sh(st(&root).args(["history", "--format", "json", "ubuntu-changed"]))).unwrap();
    assert_eq!(h[0]["CreatedBy"], "/bin/sh -c echo \"hello world\" > /tmp/newfile");
    assert_eq!(h[0]["EmptyLayer"], false);
    assert_eq!(h[0]["Size"], 12, "the layer holds the 12-byte file");
    assert_eq!(h.as_array().unwrap().len(), base["History"].as_array().unwrap().len() + 1);
    assert_eq!(img["Config"]["Cmd"], base["Config"]["Cmd"], "RUN does not change the command");
    let o = ok(go(&root, &["run", "--rm", "ubuntu-changed", "cat", "/tmp/newfile"]));
    assert_eq!(o.stdout, "hello world\n");
    // No build container, mount or intermediate image is left.
    assert_eq!(ps_json(&root).as_array().unwrap().len(), 0);
    let images = sh(st(&root).args(["images", "--format", "json"]));
    assert!(!images.contains("<none>"), "{images}");
    assert_eq!(fs::read_dir(root.join("mnt")).unwrap().count(), 0);
    // A RUN that changes nothing still gives a layer (an empty one), as Docker's does.
    write(&ctx, "Dockerfile", "FROM app\nRUN true\n");
    ok(build(&root, &ctx, &["-t", "nothing"]));
    let img = inspect(&root, "nothing");
    assert_eq!(layers(&img).len(), layers(&base).len() + 1);
    let h: Value = serde_json::from_str(&sh(st(&root).args(["history", "--format", "json", "nothing"]))).unwrap();
    assert_eq!(
        (h[0]["CreatedBy"].as_str(), h[0]["EmptyLayer"].as_bool(), h[0]["Size"].as_u64()),
        (Some("/bin/sh -c true"), Some(false), Some(0))
    );
}

#[test]
fn built_image_saved_loads_and_runs_in_podman() {
    let s = Scratch::new();
    let Some((root, ctx)) = setup(&s) else { return };
    let pm = Podman::new(&s, &fixture_images().unwrap());
    write(&ctx, "msg", "from the context\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM app\nCOPY msg /msg\nRUN cat /msg > /tmp/newfile\nCMD [\"cat\", \"/tmp/newfile\"]\n",
    );
    ok(build(&root, &ctx, &["-t", "saved"]));
    let tar = s.path("saved.tar");
    ok(go(&root, &["save", "-o", tar.to_str().unwrap(), "saved"]));
    sh(pm.cmd().arg("load").arg("-i").arg(&tar));
    let out = sh(pm.cmd().args(["run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024"]).args([
        "--ulimit",
        "nproc=1024:1024",
        "saved:latest",
    ]));
    assert_eq!(out, "from the context\n");
}

#[test]
fn files_match_podman_build() {
    let s = Scratch::new();
    let Some((root, ctx)) = setup(&s) else { return };
    let pm = Podman::new(&s, &fixture_images().unwrap());
    write(&ctx, "src/a.txt", "one\n");
    write(&ctx, "src/sub/b.txt", "two\n");
    sh(Command::new("chmod").arg("600").arg(ctx.join("src/sub/b.txt")));
    sh(Command::new("chmod").arg("700").arg(ctx.join("src/sub")));
    std::os::unix::fs::symlink("a.txt", ctx.join("src/link")).unwrap();
    std::os::unix::fs::symlink("src/a.txt", ctx.join("link-to-a")).unwrap();
    write(&ctx, "top.log", "ignored\n");
    write(&ctx, "keep.log", "kept by an exception\n");
    write(&ctx, "secret/key", "never copied\n");
    write(&ctx, "private/p.txt", "p\n");
    sh(Command::new("chmod").arg("750").arg(ctx.join("private")));
    write(&ctx, "plain.txt", "not an archive\n");
    write(&ctx, "gz/notes.txt", "compressed, but no tar\n");
    sh(Command::new("gzip").arg(ctx.join("gz/notes.txt")));
    write(&ctx, "arch/inner/f", "from the archive\n");
    std::os::unix::fs::symlink("/etc/shadow", ctx.join("arch/top-link")).unwrap();
    sh(Command::new("tar").arg("czf").arg(ctx.join("data.tgz")).arg("-C").arg(ctx.join("arch")).arg("."));
    fs::remove_dir_all(ctx.join("arch")).unwrap();
    write(&ctx, "docs/keep.md", "kept\n");
    write(&ctx, "docs/drop.md", "dropped\n");
    write(&ctx, "src/sub/scratch.tmp", "temporary\n");
    write(&ctx, ".dockerignore", "# comment\n*.log\n!keep.log\nsecret\ndocs\n!docs/keep.md\n**/*.tmp\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM fixtures/app\n\
         WORKDIR /work\n\
         COPY src/ ./dst/\n\
         COPY src/a.txt /single\n\
         COPY src/a.txt /into/\n\
         COPY --chown=app:app --chmod=640 src/a.txt /owned/\n\
         COPY src/*.txt src/sub /globbed/\n\
         COPY link-to-a /followed\n\
         ADD data.tgz /extracted/\n\
         ADD plain.txt /added.txt\n\
         COPY private/ /newdir-slash/\n\
         COPY private /newdir\n\
         COPY private /app/\n\
         ADD gz/notes.txt.gz /gz/\n\
         COPY [\"keep.log\", \"/json form/\"]\n\
         COPY . /ctx/\n\
         RUN ln -s /etc /escape && ln -s ../../etc /app/up\n\
         COPY src/a.txt /escape/through-abs-link\n\
         COPY src/a.txt /app/up/through-rel-link\n\
         COPY src/a.txt /var/run/under-var-run\n",
    );
    compare(&root, &pm, &ctx, "files", &[], &[]);
    // What the comparison covered, in Strata's image.
    let t = strata_tree(&root, "files");
    for want in [
        "gz/notes.txt.gz\tf",
        "work/dst/sub/b.txt\tf\t0600",
        "owned/a.txt\tf\t0640\t1000\t1000",
        "extracted/inner/f\tf",
        "extracted/top-link\tl\t0777\t0\t0\t-\t-\t/etc/shadow",
        "ctx/keep.log",
    ] {
        assert!(t.lines().any(|l| l.starts_with(want)), "{want} missing:\n{t}");
    }
    assert!(t.contains("ctx/docs/keep.md\tf"), "an exception inside an excluded directory");
    for never in ["ctx/top.log", "ctx/secret", "ctx/docs/drop.md", "scratch.tmp"] {
        assert!(!t.contains(never), "{never} copied despite .dockerignore");
    }
    assert!(t.contains("work/dst/link\tl\t0777\t0\t0\t-\t-\ta.txt"), "a symlink is copied as a symlink");
    // Links in the image are followed inside its root, never to the host's.
    for inside in ["etc/through-abs-link\tf", "etc/through-rel-link\tf", "run/under-var-run\tf"] {
        assert!(t.lines().any(|l| l.starts_with(inside)), "{inside} missing:\n{t}");
    }
    for host in ["/etc/through-abs-link", "/etc/through-rel-link", "/run/under-var-run"] {
        assert!(!Path::new(host).exists(), "{host} written on the host");
    }
}

#[test]
fn run_and_metadata_match_podman_build() {
    let s = Scratch::new();
    let Some((root, ctx)) = setup(&s) else { return };
    let pm = Podman::new(&s, &fixture_images().unwrap());
    write(
        &ctx,
        "Dockerfile",
        "# escape=\\\n\
         FROM fixtures/app\n\
         ARG V=default\n\
         ENV A=1 B=\"two words\" \\\n    C=${V:-none} D=${UNSET:-fallback} E=${V:+set}\n\
         ENV OLD form with spaces\n\
         LABEL org.example.x=\"y z\" version=1\n\
         # a comment between instructions\n\
         RUN echo \"$A $B $C $D $E $V\" > /env.txt && mkdir -p /var/made && rm /etc/motd\n\
         WORKDIR rel\n\
         WORKDIR sub\n\
         RUN pwd > /where\n\
         USER app\n\
         RUN id -u > /tmp/id.txt && id -g >> /tmp/id.txt\n\
         USER root\n\
         EXPOSE 8080 53/udp\n\
         VOLUME [\"/data\", \"/logs\"]\n\
         STOPSIGNAL SIGTERM\n\
         HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD wget -q localhost || exit 1\n\
         ONBUILD RUN echo child\n\
         SHELL [\"/bin/sh\", \"-ec\"]\n\
         RUN echo shell > /shell.txt\n\
         RUN [\"/bin/sh\", \"-c\", \"echo exec form > /exec.txt\"]\n\
         ENTRYPOINT [\"/bin/echo\"]\n\
         CMD hello\n",
    );
    // Docker's reference: SHELL applies to the shell form of CMD too, and is kept in the
    // config; buildah uses /bin/sh -c for CMD and drops Shell.
    let docker =
        [("Cmd", serde_json::json!(["/bin/sh", "-ec", "hello"])), ("Shell", serde_json::json!(["/bin/sh", "-ec"]))];
    compare(&root, &pm, &ctx, "meta", &["--build-arg", "V=given"], &docker);
    // What the comparison covered, in Strata's image.
    let files = image_files(&root, "meta", &["env.txt", "where", "tmp/id.txt", "shell.txt", "exec.txt"]);
    assert_eq!(files[0], "1 two words given fallback set given\n");
    assert_eq!(files[1], "/app/rel/sub\n", "relative to the base's WORKDIR");
    assert_eq!(files[2], "1000\n1000\n");
    assert_eq!(files[3], "shell\n");
    assert_eq!(files[4], "exec form\n");
    let c = &inspect(&root, "meta")["Config"];
    assert!(c["Env"].as_array().unwrap().iter().any(|e| e == "OLD=form with spaces"), "{c}");
    assert_eq!(c["Cmd"], serde_json::json!(["/bin/sh", "-ec", "hello"]));
    // podman's inspect does not show these two: Docker's form (durations in ns).
    assert_eq!(
        c["Healthcheck"],
        serde_json::json!({"Test": ["CMD-SHELL", "wget -q localhost || exit 1"], "Interval": 30_000_000_000u64,
                           "Timeout": 5_000_000_000u64, "Retries": 3})
    );
    assert_eq!(c["OnBuild"], serde_json::json!(["RUN echo child"]));
    let h: Value = serde_json::from_str(&sh(st(&root).args(["history", "--format", "json", "meta"]))).unwrap();
    let by: Vec<&str> = h.as_array().unwrap().iter().map(|e| e["CreatedBy"].as_str().unwrap()).collect();
    assert!(by.contains(&"/bin/sh -c #(nop)  ENV OLD=form with spaces"), "{by:?}");
    assert!(by.contains(&"/bin/sh -c #(nop) WORKDIR /app/rel/sub"), "{by:?}");
    assert!(by.contains(&"|1 V=given /bin/sh -ec echo shell > /shell.txt"), "{by:?}");
    assert!(by.contains(&"/bin/sh -c #(nop)  CMD [\"/bin/sh\" \"-ec\" \"hello\"]"), "{by:?}");
    let empty = h.as_array().unwrap().iter().filter(|e| e["EmptyLayer"] == true).count();
    let base = inspect(&root, "app")["History"].as_array().unwrap().iter().filter(|e| e["empty_layer"] == true).count();
    assert_eq!(empty - base, 16, "one empty_layer entry per metadata instruction: {by:?}");
}

/// Files of an image, read through a read-only mount of it.
fn image_files(root: &Path, image: &str, rels: &[&str]) -> Vec<String> {
    let mnt = sh(st(root).args(["mount", image]));
    let v = rels.iter().map(|r| fs::read_to_string(Path::new(mnt.trim()).join(r)).unwrap_or_default()).collect();
    sh(st(root).args(["umount", mnt.trim()]));
    v
}

#[test]
fn multi_stage_matches_podman_build_and_skips_unneeded_stages() {
    let s = Scratch::new();
    let Some((root, ctx)) = setup(&s) else { return };
    let pm = Podman::new(&s, &fixture_images().unwrap());
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE=fixtures/app\n\
         FROM ${BASE} AS build\n\
         RUN mkdir /out && echo built > /out/result && ln -s result /out/link && chmod 600 /out/result\n\
         FROM fixtures/app AS unused\n\
         RUN echo this stage is not needed && exit 3\n\
         FROM build AS second\n\
         RUN echo more >> /out/result\n\
         FROM fixtures/app\n\
         COPY --from=build /out /copied/\n\
         COPY --from=0 /out/result /result0\n\
         COPY --from=second /out/result /result2\n\
         COPY --from=fixtures/app /app/hello.sh /from-image\n",
    );
    compare(&root, &pm, &ctx, "multi", &[], &[]);
    let files = image_files(&root, "multi", &["copied/result", "result2"]);
    assert_eq!(files, ["built\n", "built\nmore\n"]);
    // --target builds and tags that stage only (and what it needs).
    let o = ok(build(&root, &ctx, &["-t", "second-only", "--target", "second"]));
    assert!(!o.stdout.contains("COPY"), "stages after the target are not built:\n{}", o.stdout);
    assert!(!o.stdout.contains("not needed"), "{}", o.stdout);
    assert_eq!(image_files(&root, "second-only", &["out/result"]), ["built\nmore\n"]);
}

/// Steps of a build's output that the cache answered.
fn cached(o: &Out) -> usize {
    o.stdout.lines().filter(|l| l.starts_with("---> Using cache")).count()
}

/// The `STEP n/m:` lines that were built, not taken from the cache.
fn rebuilt(o: &Out) -> Vec<String> {
    let lines: Vec<&str> = o.stdout.lines().collect();
    let mut v = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("STEP ") && !l.contains(": FROM ") {
            let next = lines[i + 1..].iter().find(|n| n.starts_with("---> ")).unwrap();
            if !next.starts_with("---> Using cache") {
                v.push(l.split_once(": ").unwrap().1.to_string());
            }
        }
    }
    v
}

#[test]
fn cache_reuses_steps_and_rebuilds_from_the_first_changed_input() {
    let s = Scratch::new();
    let Some((root, ctx)) = setup(&s) else { return };
    write(&ctx, "a.txt", "a\n");
    write(&ctx, "b.txt", "b\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM app\n\
         ENV X=1\n\
         COPY a.txt /a.txt\n\
         RUN cat /a.txt > /a.copy\n\
         ARG MODE=debug\n\
         COPY b.txt /b.txt\n\
         RUN echo $MODE > /mode\n\
         RUN cat /b.txt /mode > /all\n",
    );
    let first = ok(build(&root, &ctx, &["-t", "cached"]));
    assert_eq!(cached(&first), 0);
    let id = first.stdout.lines().last().unwrap().to_string();
    // A second build reuses every step and gives the same image.
    let again = ok(build(&root, &ctx, &["-t", "cached"]));
    assert_eq!(cached(&again), 7, "{}", again.stdout);
    assert_eq!(again.stdout.lines().last().unwrap(), id);
    // Touching a file (same content, new mtime) rebuilds from the step that copies it:
    // the layer keeps mtimes, so the old one would be wrong (Docker ignores mtimes here).
    let p = ctx.join("b.txt");
    let f = fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5)).unwrap();
    let o = ok(build(&root, &ctx, &["-t", "cached"]));
    assert_eq!(rebuilt(&o), ["COPY b.txt /b.txt", "RUN echo $MODE > /mode", "RUN cat /b.txt /mode > /all"]);
    // A changed build arg rebuilds from its first use.
    let o = ok(build(&root, &ctx, &["-t", "cached", "--build-arg", "MODE=release"]));
    assert_eq!(rebuilt(&o), ["RUN echo $MODE > /mode", "RUN cat /b.txt /mode > /all"]);
    assert_eq!(image_files(&root, "cached", &["all"]), ["b\nrelease\n"]);
    let h: Value = serde_json::from_str(&sh(st(&root).args(["history", "--format", "json", "cached"]))).unwrap();
    assert_eq!(h[0]["CreatedBy"], "|1 MODE=release /bin/sh -c cat /b.txt /mode > /all", "as Docker writes it");
    // Changing a file's content earlier rebuilds from there on.
    write(&ctx, "a.txt", "A\n");
    let o = ok(build(&root, &ctx, &["-t", "cached", "--build-arg", "MODE=release"]));
    assert_eq!(rebuilt(&o).len(), 6, "{}", o.stdout);
    // --no-cache builds everything again.
    let o = ok(build(&root, &ctx, &["-t", "cached", "--no-cache"]));
    assert_eq!(cached(&o), 0);
    // The cache outlives rmi of the tag (its records keep the layers), and check keeps it.
    let before = ok(build(&root, &ctx, &["-t", "cached"])).stdout.lines().last().unwrap().to_string();
    ok(go(&root, &["rmi", "cached"]));
    let o = ok(go(&root, &["check"]));
    assert!(!o.stdout.contains("build cache") && !o.stderr.contains("build cache"), "{}{}", o.stdout, o.stderr);
    let o = ok(build(&root, &ctx, &["-t", "cached"]));
    assert_eq!(cached(&o), 7, "{}", o.stdout);
    assert_eq!(o.stdout.lines().last().unwrap(), before);
}

#[test]
fn check_drops_cache_records_that_lost_a_layer() {
    let s = Scratch::new();
    let Some((root, ctx)) = setup(&s) else { return };
    write(&ctx, "Dockerfile", "FROM app\nRUN echo x > /x\n");
    ok(build(&root, &ctx, &["-t", "x"]));
    let records = || fs::read_dir(root.join("build-cache")).unwrap().count();
    assert_eq!(records(), 1);
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(root.join("build-cache")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the store stays root's only");
    // A record whose layer is gone cannot be used, and check removes it.
    let cfg = inspect(&root, "x");
    let top = cfg["GraphDriver"]["Data"]["Layers"][0].as_str().unwrap().to_string();
    ok(go(&root, &["rmi", "x"]));
    let layer = Path::new(&top).file_name().unwrap().to_str().unwrap().to_string();
    fs::remove_file(root.join("layerdb").join(format!("{layer}.json"))).unwrap();
    let o = go(&root, &["check"]);
    assert!(
        o.stdout.contains("build cache record") || o.stderr.contains("build cache record"),
        "{}{}",
        o.stdout,
        o.stderr
    );
    assert_eq!(records(), 0);
    let o = ok(build(&root, &ctx, &["-t", "x"]));
    assert_eq!(cached(&o), 0, "{}", o.stdout);
}

#[test]
fn quiet_prints_only_the_id_and_stdin_takes_a_dockerfile() {
    let s = Scratch::new();
    let Some((root, ctx)) = setup(&s) else { return };
    write(&ctx, "Dockerfile", "FROM app\nRUN echo noisy\nLABEL a=b\n");
    let o = ok(build(&root, &ctx, &["-q", "-t", "q", "--label", "from=cli"]));
    assert_eq!(o.stdout.lines().count(), 1, "{}", o.stdout);
    let img = inspect(&root, "q");
    assert_eq!(o.stdout.trim(), img["Id"]);
    assert_eq!(img["Config"]["Labels"]["from"], "cli");
    assert_eq!(img["Config"]["Labels"]["a"], "b");
    let mut child = st(&root)
        .args(["build", "-t", "fromstdin", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    // No context: a heredoc is all a COPY may take.
    child.stdin.take().unwrap().write_all(b"FROM app\nRUN echo piped > /p\nCOPY <<EOF /h\nhere\nEOF\n").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(image_files(&root, "fromstdin", &["p", "h"]), ["piped\n", "here\n"]);
}

#[test]
fn failed_run_stops_the_build_and_leaves_nothing_behind() {
    let s = Scratch::new();
    let Some((root, ctx)) = setup(&s) else { return };
    write(&ctx, "Dockerfile", "FROM app\nRUN echo first > /f\nRUN echo to-stderr >&2; exit 3\nRUN echo never\n");
    let o = build(&root, &ctx, &["-t", "broken"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("line 3"), "{}", o.stderr);
    assert!(o.stderr.contains("status 3"), "{}", o.stderr);
    assert!(o.stderr.contains("to-stderr"), "{}", o.stderr);
    assert!(!o.stdout.contains("never"), "{}", o.stdout);
    assert!(go(&root, &["inspect", "broken"]).code != 0, "nothing tagged");
    assert_eq!(ps_json(&root).as_array().unwrap().len(), 0, "no container left");
    assert_eq!(fs::read_dir(root.join("mnt")).unwrap().count(), 0, "no mount left");
    let images = sh(st(&root).args(["images", "--format", "json"]));
    assert!(!images.contains("<none>"), "no intermediate image left: {images}");
    // -q: the command's stderr is still in the error.
    let o = build(&root, &ctx, &["-q", "-t", "broken"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("to-stderr") && o.stdout.is_empty(), "{}{}", o.stdout, o.stderr);
}

#[test]
fn bad_input_names_the_line_and_changes_nothing() {
    let s = Scratch::new();
    let Some((root, ctx)) = setup(&s) else { return };
    write(&ctx, "inside.txt", "x\n");
    write(&s.path("outside"), "secret", "host secret\n");
    std::os::unix::fs::symlink(s.path("outside").join("secret"), ctx.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../outside/secret", ctx.join("rel-link")).unwrap();
    // A first build fills the cache, so "unchanged" covers cache records too.
    write(&ctx, "Dockerfile", "FROM app\nCOPY inside.txt /\n");
    ok(build(&root, &ctx, &[]));
    let cases: &[(&str, usize, &str)] = &[
        ("FROM app\nRUN true\nFROBNICATE x\n", 3, "unknown instruction"),
        ("# only a comment\nRUN true\n", 2, "no FROM"),
        ("FROM app\nRUN true\nCOPY ../outside/secret /x\n", 3, "outside the build context"),
        ("FROM app\nCOPY rel-link /x\n", 2, "outside the build context"),
        ("FROM app\nCOPY abs-link /x\n", 2, "outside the build context"),
        ("FROM app\nRUN true\nCOPY missing.txt /x\n", 3, "no such file"),
        ("FROM app\nRUN true\nCOPY --from=nostage /x /x\n", 3, "no such stage"),
        ("FROM app\nRUN true\nFROM no-such-image:1\n", 3, "no such image"),
        ("FROM app\nADD http://example.com/x /x\n", 2, "remote sources are not supported"),
        ("FROM app\nENV A=${B:?must be set}\n", 2, "must be set"),
        ("FROM app\nRUN --mount=type=cache,target=/c true\n", 2, "--mount is not supported"),
        ("FROM app AS a\nFROM app AS a\n", 2, "duplicate stage name"),
        ("FROM app\nCOPY a b c\n", 2, "ending in /"),
    ];
    for (df, line, what) in cases {
        write(&ctx, "Dockerfile", df);
        let before = store_state(&root);
        let o = build(&root, &ctx, &["-t", "bad"]);
        assert_eq!(o.code, 1, "{df}: {}", o.stderr);
        assert!(o.stderr.contains(&format!("line {line}")), "{df}: {}", o.stderr);
        assert!(o.stderr.contains(what), "{df}: {}", o.stderr);
        assert_eq!(o.stderr.lines().count(), 1, "one error: {}", o.stderr);
        assert_eq!(store_state(&root), before, "{df}: the store changed");
    }
}

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let s = Scratch::new();
    let Some((root, ctx)) = setup(&s) else { return };
    write(&ctx, "Dockerfile", "FROM app\nONBUILD RUN echo triggered > /trigger\n");
    ok(build(&root, &ctx, &["-t", "parent"]));
    assert_eq!(inspect(&root, "parent")["Config"]["OnBuild"], serde_json::json!(["RUN echo triggered > /trigger"]));
    write(&ctx, "Dockerfile", "FROM parent\nRUN cat /trigger > /seen\n");
    ok(build(&root, &ctx, &["-t", "child"]));
    assert_eq!(image_files(&root, "child", &["seen"]), ["triggered\n"]);
    let c = &inspect(&root, "child")["Config"];
    assert!(c["OnBuild"].is_null() || c["OnBuild"] == serde_json::json!([]), "triggers are not inherited: {c}");
}

#[test]
fn heredocs_run_and_copy() {
    // podman 4.3 here has no heredocs: Strata alone, checked against the reference's meaning.
    let s = Scratch::new();
    let Some((root, ctx)) = setup(&s) else { return };
    write(
        &ctx,
        "Dockerfile",
        "FROM app\nENV WHO=world\nRUN <<EOF\necho one > /h1\necho two >> /h1\nEOF\n\
         COPY <<-END /greeting\n\thello $WHO\n\tEND\nCOPY <<'RAW' /raw\nhello $WHO\nRAW\n\
         RUN cat <<EOT > /h2\nin a file\nEOT\n",
    );
    ok(build(&root, &ctx, &["-t", "heredoc"]));
    let files = image_files(&root, "heredoc", &["h1", "greeting", "raw", "h2"]);
    assert_eq!(files, ["one\ntwo\n", "hello world\n", "hello $WHO\n", "in a file\n"]);
}

#[test]
fn a_signal_during_run_reaches_the_command_and_the_build_stops_cleanly() {
    let s = Scratch::new();
    let Some((root, ctx)) = setup(&s) else { return };
    // The command is pid 1 of its namespace: it dies of SIGTERM only with a handler.
    write(&ctx, "Dockerfile", "FROM app\nRUN trap 'exit 9' TERM; echo started; sleep 30 & wait\nRUN echo never\n");
    let t0 = std::time::Instant::now();
    let mut child = st(&root)
        .args(["build", "-t", "stopped", ctx.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0 && !line.contains("started") {}
    assert!(line.contains("started"), "the RUN never started");
    // The runtime starts the command just before it begins forwarding signals (a signal
    // in between stops the build only after the RUN, at the build's own check).
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: kill(2) of the child this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("status 9"), "{err}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(20), "the build waited for the sleep");
    assert_eq!(ps_json(&root).as_array().unwrap().len(), 0, "no container left");
    assert_eq!(fs::read_dir(root.join("mnt")).unwrap().count(), 0, "no mount left");
    assert!(go(&root, &["inspect", "stopped"]).code != 0);
}

#[test]
fn network_of_run_steps_follows_the_command_line() {
    let s = Scratch::new();
    let Some((root, ctx)) = setup(&s) else { return };
    write(&ctx, "Dockerfile", "FROM app\nRUN cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' ' | sort > /ifaces\n");
    ok(build(&root, &ctx, &["-t", "isolated"]));
    assert_eq!(image_files(&root, "isolated", &["ifaces"]), ["lo\n"], "default: --network none");
    let host = || sh(Command::new("sh").arg("-c").arg("cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' ' | sort"));
    let before = host();
    ok(build(&root, &ctx, &["-t", "shared", "--network", "host"]));
    let after = host();
    // Other work on the machine may add or remove an interface meanwhile.
    let seen = image_files(&root, "shared", &["ifaces"]).remove(0);
    assert!(seen == before || seen == after, "{seen} is not the host's {before}");
}

#[test]
fn copy_from_may_name_its_stage_through_an_arg() {
    let s = Scratch::new();
    let Some((root, ctx)) = setup(&s) else { return };
    write(
        &ctx,
        "Dockerfile",
        "ARG FROM_STAGE=one\nFROM app AS one\nRUN echo one > /x\nFROM app AS two\nRUN echo two > /x\n\
         FROM app\nCOPY --from=${FROM_STAGE} /x /x\n",
    );
    ok(build(&root, &ctx, &["-t", "byarg"]));
    assert_eq!(image_files(&root, "byarg", &["x"]), ["one\n"]);
    let o = ok(build(&root, &ctx, &["-t", "byarg", "--build-arg", "FROM_STAGE=two"]));
    assert!(!o.stdout.contains("echo one"), "stage one is not needed now:\n{}", o.stdout);
    assert_eq!(image_files(&root, "byarg", &["x"]), ["two\n"]);
}

#[test]
fn builder_prune_drops_the_cache_and_the_layers_only_it_kept() {
    let s = Scratch::new();
    let Some((root, ctx)) = setup(&s) else { return };
    let layers = || {
        fs::read_dir(root.join("layerdb"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".json"))
            .count()
    };
    let base = layers();
    write(&ctx, "Dockerfile", "FROM app\nRUN echo 1 > /1\nRUN echo 2 > /2\n");
    ok(build(&root, &ctx, &["-t", "pruned"]));
    ok(go(&root, &["rmi", "pruned"]));
    assert_eq!(layers(), base + 2, "the cache keeps the layers after rmi");
    let o = ok(go(&root, &["builder", "prune"]));
    assert!(o.stdout.contains("Deleted 2 build cache record(s)"), "{}", o.stdout);
    assert_eq!(o.stdout.matches("Deleted layer:").count(), 2, "{}", o.stdout);
    assert_eq!(layers(), base);
    assert_eq!(ok(go(&root, &["run", "--rm", "app", "true"])).code, 0, "the base is intact");
    let o = ok(build(&root, &ctx, &["-t", "pruned"]));
    assert_eq!(cached(&o), 0, "{}", o.stdout);
}
