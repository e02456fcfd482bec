//! Trees deeper than one system call can name (`PATH_MAX`, 4096 bytes): 40 levels of
//! 250-byte names, about 10,000 bytes from the root. A process reaches them by working
//! relative to a deep current directory, as `cd` down the tree does. Strata must then
//! behave as kernel overlayfs does (listing, reading, copy-up, creation, rename,
//! deletion), show nothing as absent, and commit such a tree.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Builds or walks a deep tree with `chdir`, one level at a time.
const DEEP: &str = r#"
import os, sys

LEVELS = 40
names = [f"{i:03d}" + "n" * 247 for i in range(LEVELS)]

def down(root, levels=LEVELS):
    os.chdir(root)
    for n in names[:levels]:
        os.chdir(n)

def make(root):
    os.chdir(root)
    for i, n in enumerate(names):
        os.mkdir(n)
        os.chdir(n)
        if i == LEVELS // 2:
            with open("mid", "w") as f:
                f.write("mid\n")
    with open("file", "w") as f:
        f.write("lower\n")

def work(root):
    out = []
    down(root)
    out.append(("listed", sorted(os.listdir("."))))
    out.append(("read", open("file").read()))
    with open("file", "a") as f:  # copy-up
        f.write("appended\n")
    os.mkdir("newdir")
    with open("newdir/new", "w") as f:
        f.write("new\n")
    os.symlink("file", "link")
    os.mkfifo("fifo")
    os.rename("file", "renamed")
    os.rename("newdir", "moved")
    out.append(("after", sorted(os.listdir("."))))
    out.append(("renamed", open("renamed").read()))
    out.append(("link", os.readlink("link")))
    down(root, LEVELS // 2 + 1)
    os.unlink("mid")
    out.append(("mid level", sorted(os.listdir("."))))
    return out

def show(root):
    down(root)
    return [("listed", sorted(os.listdir("."))), ("renamed", open("renamed").read()),
            ("moved/new", open("moved/new").read())]

if __name__ == "__main__":
    what, root = sys.argv[1], sys.argv[2]
    if what == "make":
        make(root)
    else:
        print(repr(work(root) if what == "work" else show(root)))
"#;

fn deep(what: &str, root: &Path) -> String {
    sh(Command::new("python3").arg("-c").arg(DEEP).arg(what).arg(root))
}

#[test]
fn a_tree_deeper_than_path_max_works_as_on_kernel_overlayfs() {
    let mut results = Vec::new();
    for style in ["strata", "kernel"] {
        let s = Scratch::new();
        let lower = s.mkdir("lower");
        deep("make", &lower);
        let (upper, work, mnt) = (s.mkdir("upper"), s.mkdir("work"), s.mkdir("mnt"));
        let opts = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        let done = if style == "strata" {
            let m = Mount::new(&[&opts], &mnt);
            let done = deep("work", &mnt);
            m.unmount();
            // A fresh mount (no cache) sees what the first one left in the upper branch.
            let m = Mount::new(&[&opts], &mnt);
            let again = deep("show", &mnt);
            m.unmount();
            assert!(again.contains("'renamed', 'lower\\nappended\\n'"), "{again}");
            assert!(again.contains("'moved/new', 'new\\n'"), "{again}");
            done
        } else {
            sh(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(&mnt));
            let done = deep("work", &mnt);
            sh(Command::new("umount").arg(&mnt));
            done
        };
        // The lower tree is untouched, and the copy-up landed in the upper branch.
        assert!(deep("show", &upper).contains("'renamed', 'lower\\nappended\\n'"), "{style}");
        results.push(done);
    }
    assert!(results[0].contains("('listed', ['file'])"), "the deepest entries are listed: {}", results[0]);
    assert_eq!(results[0], results[1], "strata, then kernel overlayfs");
}

/// A container whose process made a tree deeper than `PATH_MAX`: `diff` lists it,
/// `commit` carries it into a layer, and `save` and `load` keep it.
#[test]
fn a_deep_tree_in_a_container_is_diffed_and_committed() {
    let s = Scratch::new();
    let Some(root) = store_with_app(&s) else { return };
    let script = "a=nnnnnnnnnn; n=$a$a$a$a$a$a$a$a$a$a$a$a$a$a$a$a$a$a$a$a$a$a$a$a; \
                  cd /tmp && i=0 && while [ $i -lt 40 ]; do mkdir $i$n && cd -P $i$n || exit 1; i=$((i+1)); done \
                  && echo deep > file";
    let o = go(&root, &["run", "--name", "c", "app", "sh", "-c", script]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let diff = sh(st(&root).args(["diff", "c"]));
    let deepest = diff.lines().max_by_key(|l| l.len()).unwrap_or_default();
    assert!(deepest.starts_with("A /tmp/0n") && deepest.ends_with("/file"), "{diff}");
    assert!(deepest.len() > 9_000, "{} bytes", deepest.len());
    assert_eq!(deepest.matches('/').count(), 42, "{deepest}");

    sh(st(&root).args(["commit", "c", "deep:img"]));
    let layers = |img: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&sh(st(&root).args(["inspect", img]))).unwrap();
        v[0]["GraphDriver"]["Data"]["Layers"].as_array().unwrap().iter().map(|l| l.to_string()).collect()
    };
    let before = layers("app");
    let new: Vec<String> = layers("deep:img").into_iter().filter(|l| !before.contains(l)).collect();
    assert_eq!(new.len(), 1, "{new:?}");
    let top = new[0].trim_matches('"');
    // find walks by directory, so it reads at any depth.
    let files = sh(Command::new("find").arg(top).args(["-name", "file", "-type", "f"]));
    let file = files.lines().next().unwrap_or_else(|| panic!("no file committed in {top}"));
    assert_eq!(file.matches('/').count() - top.matches('/').count(), 42, "{file}");
    // And it runs: the committed file reads back in a new container.
    let walk = "cd -P /tmp/0n* && for i in $(seq 1 39); do cd -P $i* || exit 1; done; cat file";
    let o = go(&root, &["run", "--rm", "deep:img", "sh", "-c", walk]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "deep\n"), "{}", o.stderr);
    // Saved and loaded into another store, it still does.
    let archive = s.path("deep.tar");
    sh(st(&root).args(["save", "-o"]).arg(&archive).arg("deep:img"));
    let other = s.path("other");
    sh(st(&other).args(["load", "-i"]).arg(&archive));
    let o = go(&other, &["run", "--rm", "deep:img", "sh", "-c", walk]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "deep\n"), "{}", o.stderr);
}
