//! Concurrent work in shared directories, through Strata and through kernel overlayfs
//! over the same lower tree: six workers create, append, rename and unlink names (their
//! own and shared ones) and list the directories. On Strata a listing never shows a name
//! twice, an open of a name never fails with ESTALE, and every worker's own names are
//! exactly where its model says (its own names change only by its own hand). Strata runs
//! it twice: as mounted by default and with `metacopy=on` (the store's containers). Kernel
//! overlayfs runs the same work as the reference: its faults are printed, not failed on.

mod common;

use std::process::Command;

use common::*;

const WORKERS: &str = r#"
import errno, multiprocessing as mp, os, random, sys, time

def worker(root, wid, seconds, q):
    rnd = random.Random(wid)
    bad = []
    ops = 0
    shared = [f"s{i}" for i in range(12)]
    mine = {f"w{wid}-{i}": False for i in range(8)}
    for n in mine:
        mine[n] = os.path.exists(os.path.join(root, "d0", n))
    end = time.time() + seconds
    while time.time() < end and len(bad) < 20:
        d = os.path.join(root, f"d{rnd.randrange(2)}")
        op = rnd.random()
        try:
            if op < 0.25:
                fd = os.open(os.path.join(d, rnd.choice(shared)), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                os.write(fd, b"x")
                os.close(fd)
            elif op < 0.4:
                os.rename(os.path.join(d, rnd.choice(shared)), os.path.join(d, rnd.choice(shared)))
            elif op < 0.5:
                os.unlink(os.path.join(d, rnd.choice(shared)))
            elif op < 0.65:
                n = rnd.choice(list(mine))
                p = os.path.join(root, "d0", n)
                if mine[n]:
                    os.unlink(p)
                else:
                    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                    os.write(fd, b"m")
                    os.close(fd)
                mine[n] = not mine[n]
            else:
                listed = os.listdir(d)
                if len(listed) != len(set(listed)):
                    bad.append(f"a name twice in {d}: {sorted(x for x in set(listed) if listed.count(x) > 1)}")
                if d.endswith("d0"):
                    have = set(listed)
                    for n, exists in mine.items():
                        if exists != (n in have):
                            bad.append(f"{n}: the model says {exists}, the listing says {n in have}")
        except OSError as e:
            if e.errno == errno.ESTALE:
                bad.append(f"ESTALE: {e}")
            elif e.errno != errno.ENOENT:
                bad.append(f"unexpected: {e}")
        ops += 1
    q.put((ops, bad))

if __name__ == "__main__":
    root, seconds = sys.argv[1], float(sys.argv[2])
    q = mp.Queue()
    ps = [mp.Process(target=worker, args=(root, w, seconds, q)) for w in range(6)]
    [p.start() for p in ps]
    results = [q.get() for _ in ps]
    [p.join() for p in ps]
    print(sum(r[0] for r in results))
    for r in results:
        for b in r[1]:
            print(b)
"#;

fn stress(root: &std::path::Path, seconds: u32) -> (u64, Vec<String>) {
    let out = sh(Command::new("python3").arg("-c").arg(WORKERS).arg(root).arg(seconds.to_string()));
    let mut lines = out.lines();
    let ops = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    (ops, lines.map(str::to_string).collect())
}

#[test]
fn concurrent_work_in_shared_directories_keeps_listings_and_opens_right() {
    for style in ["strata", "strata metacopy=on", "kernel"] {
        let s = Scratch::new();
        for d in ["d0", "d1"] {
            for i in 0..12 {
                s.write("lower", &format!("{d}/s{i}"), "lower\n");
            }
            s.write("lower", &format!("{d}/w0-0"), "lower\n");
        }
        let (upper, work, mnt) = (s.mkdir("upper"), s.mkdir("work"), s.mkdir("mnt"));
        let opts =
            format!("lowerdir={},upperdir={},workdir={}", s.path("lower").display(), upper.display(), work.display());
        let m = if let Some(extra) = style.strip_prefix("strata") {
            let opts = format!("{opts}{}", extra.replace(' ', ","));
            Some(Mount::new(&[&opts], &mnt))
        } else {
            sh(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(&mnt));
            None
        };
        let (ops, bad) = stress(&mnt, 15);
        match m {
            Some(m) => m.unmount(),
            None => {
                sh(Command::new("umount").arg(&mnt));
            }
        }
        println!("{style}: {ops} operations, {} faults", bad.len());
        assert!(ops > 1000, "{style}: the workers ran ({ops} operations)");
        if style.starts_with("strata") {
            assert!(bad.is_empty(), "{style}: {bad:#?}");
        } else if !bad.is_empty() {
            // The reference, not what is tested: kernel overlayfs itself was seen here once
            // with one fault in about a million operations (which one was not caught).
            println!("kernel overlayfs: {bad:#?}");
        }
    }
}
