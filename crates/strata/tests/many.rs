//! Many layers: 500 and 1000 lower branches (kernel overlayfs stops at 500, Docker at 128).

mod common;

use std::fs;

use common::*;

fn many_branches(n: usize) {
    let s = Scratch::new();
    let mut lowers = Vec::new();
    for i in 0..n {
        let l = s.mkdir(&format!("l{i:04}"));
        fs::write(l.join(format!("only-{i}")), format!("{i}\n")).unwrap();
        fs::create_dir_all(l.join("shared")).unwrap();
        fs::write(l.join("shared").join(format!("s{i}")), "").unwrap();
        fs::write(l.join("top"), format!("layer {i}\n")).unwrap();
        lowers.push(l.display().to_string());
    }
    // A whiteout in the middle hides what lies below it.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        s.path(&format!("l{:04}/only-{}", n / 2, n - 1)),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    s.mkdir("u");
    s.mkdir("w");
    let opts =
        format!("lowerdir={},upperdir={},workdir={}", lowers.join(":"), s.path("u").display(), s.path("w").display());
    let m = Mount::new(&[&opts], &s.path("mnt"));
    assert_eq!(read(m.p("top")), "layer 0\n");
    assert_eq!(read(m.p(&format!("only-{}", n - 2))), format!("{}\n", n - 2));
    assert!(!m.p(&format!("only-{}", n - 1)).exists(), "whited out in a middle layer");
    assert!(!m.p("nothing").exists());
    assert_eq!(fs::read_dir(m.p("shared")).unwrap().count(), n);
    assert_eq!(fs::read_dir(&m.mnt).unwrap().count(), n - 1 + 2);
    // Changes through the mount keep the name index exact.
    fs::write(m.p("new"), "new").unwrap();
    assert_eq!(read(m.p("new")), "new");
    fs::remove_file(m.p(&format!("only-{}", n - 2))).unwrap();
    assert!(!m.p(&format!("only-{}", n - 2)).exists());
    fs::rename(m.p("only-3"), m.p("renamed")).unwrap();
    assert!(!m.p("only-3").exists());
    assert_eq!(read(m.p("renamed")), "3\n");
    fs::write(m.p("shared/s5"), "changed").unwrap();
    assert_eq!(read(m.p("shared/s5")), "changed");
    let listed = names(&m.mnt);
    assert!(listed.contains(&"new".to_string()) && listed.contains(&"renamed".to_string()));
    assert_eq!(listed.len(), n + 1, "n - 1 only-*, shared, top, new, renamed, minus two removed");
}

#[test]
fn five_hundred_lower_branches() {
    many_branches(500);
}

#[test]
fn a_thousand_lower_branches() {
    many_branches(1000);
}
