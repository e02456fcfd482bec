//! FUSE passthrough: open files bypass the daemon; a copy-up while a reader holds the
//! lower file open gives writers the upper file and leaves the reader on the lower one.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;

use common::*;

#[test]
fn copy_up_while_a_reader_holds_the_lower_file() {
    let s = Scratch::new();
    s.mkdir("upper");
    s.write("lower", "f", "lower data\n");
    let br = format!("br={}=rw:{}=ro", s.path("upper").display(), s.path("lower").display());
    let m = Mount::new(&[&br], &s.path("mnt"));
    let mut reader = fs::File::open(m.p("f")).unwrap();
    let mut writer = OpenOptions::new().append(true).open(m.p("f")).expect("write open after a read-only open");
    writer.write_all(b"appended\n").unwrap();
    drop(writer);
    assert_eq!(read(m.p("f")), "lower data\nappended\n");
    assert_eq!(read(s.path("upper/f")), "lower data\nappended\n");
    // The early reader keeps the file it opened, as with kernel overlayfs.
    let mut old = String::new();
    reader.read_to_string(&mut old).unwrap();
    assert_eq!(old, "lower data\n");
    // Truncating by path while the lower file is open works too.
    let r2 = fs::File::open(m.p("f")).unwrap();
    fs::write(s.path("lower/g"), "gg").unwrap();
    let r3 = fs::File::open(m.p("g")).unwrap();
    OpenOptions::new().write(true).open(m.p("g")).unwrap().set_len(1).unwrap();
    assert_eq!(read(m.p("g")), "g");
    drop((r2, r3));
}

#[test]
fn large_file_round_trip_and_random_access() {
    let s = Scratch::new();
    s.mkdir("upper");
    let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    fs::create_dir_all(s.path("lower")).unwrap();
    fs::write(s.path("lower/big"), &data).unwrap();
    let br = format!("br={}=rw:{}=ro", s.path("upper").display(), s.path("lower").display());
    let m = Mount::new(&[&br], &s.path("mnt"));
    assert_eq!(fs::read(m.p("big")).unwrap(), data);
    let mut f = OpenOptions::new().read(true).write(true).open(m.p("big")).unwrap();
    for off in [0u64, 4095, 1 << 20, (8 << 20) - 3] {
        f.seek(SeekFrom::Start(off)).unwrap();
        f.write_all(b"XYZ").unwrap();
    }
    f.sync_all().unwrap();
    let mut expect = data.clone();
    for off in [0usize, 4095, 1 << 20, (8 << 20) - 3] {
        expect[off..off + 3].copy_from_slice(b"XYZ");
    }
    let mut back = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut back).unwrap();
    assert!(back == expect, "data read back differs");
    assert_eq!(fs::read(s.path("upper/big")).unwrap(), expect);
    assert_eq!(fs::read(s.path("lower/big")).unwrap(), data);
    assert_eq!(fs::metadata(m.p("big")).unwrap().size(), 8 << 20);
    // When the kernel offers passthrough, none of that I/O went through the daemon.
    let stats = stats(&m);
    if stats["passthrough"] == 1 {
        assert!(stats["passthrough_opens"] >= 2, "{stats:?}");
        assert_eq!((stats["daemon_reads"], stats["daemon_writes"]), (0, 0), "{stats:?}");
    }
}

fn stats(m: &Mount) -> std::collections::HashMap<String, u64> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::getxattr(&m.mnt, "trusted.strata.stats", &mut buf[..]).unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_string(), v.parse().unwrap())))
        .collect()
}

/// Without passthrough (`-o nopassthrough`, or a kernel without it) the daemon serves I/O.
#[test]
fn daemon_served_io_without_passthrough() {
    let s = Scratch::new();
    s.mkdir("upper");
    s.write("lower", "f", "lower data\n");
    let br = format!("br={}=rw:{}=ro", s.path("upper").display(), s.path("lower").display());
    let m = Mount::new(&[&br, "nopassthrough"], &s.path("mnt"));
    OpenOptions::new().append(true).open(m.p("f")).unwrap().write_all(b"more\n").unwrap();
    fs::write(m.p("new"), "new\n").unwrap();
    assert_eq!(read(m.p("f")), "lower data\nmore\n");
    assert_eq!(read(m.p("new")), "new\n");
    let stats = stats(&m);
    assert_eq!(stats["passthrough"], 0);
    assert!(stats["daemon_reads"] > 0 && stats["daemon_writes"] > 0, "{stats:?}");
}

#[test]
fn many_threads_at_once() {
    let s = Scratch::new();
    s.mkdir("upper");
    for i in 0..50 {
        s.write("lower", &format!("d{}/f{i}", i % 5), &format!("{i}"));
    }
    let br = format!("br={}=rw:{}=ro+wh", s.path("upper").display(), s.path("lower").display());
    let m = Mount::new(&[&br], &s.path("mnt"));
    std::thread::scope(|sc| {
        for t in 0..8 {
            let m = &m;
            sc.spawn(move || {
                for i in 0..50 {
                    let p = m.p(&format!("d{}/f{i}", i % 5));
                    if (i + t) % 3 == 0 {
                        let _ = OpenOptions::new().append(true).open(&p).and_then(|mut f| f.write_all(b"+"));
                    } else {
                        let _ = fs::read(&p);
                    }
                    let n = m.p(&format!("d{}/t{t}-{i}", i % 5));
                    fs::write(&n, "x").unwrap();
                    if i % 2 == 0 {
                        fs::remove_file(&n).unwrap();
                    }
                    let _ = fs::read_dir(m.p(&format!("d{}", i % 5))).unwrap().count();
                }
            });
        }
    });
    for i in 0..50 {
        let content = read(m.p(&format!("d{}/f{i}", i % 5)));
        assert!(content.starts_with(&format!("{i}")));
        assert!(content.trim_start_matches(char::is_numeric).chars().all(|c| c == '+'));
    }
    let total: usize = (0..5).map(|d| fs::read_dir(m.p(&format!("d{d}"))).unwrap().count()).sum();
    assert_eq!(total, 50 + 8 * 25);
}
