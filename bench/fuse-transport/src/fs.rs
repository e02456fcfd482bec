//! The tiny filesystem both transports serve: a root directory holding one regular file.
//! Attribute timeouts are 0, so every stat(2) of the file reaches the daemon as a GETATTR;
//! the name's entry timeout is configurable (long by default: "stat of a cached name").

use std::sync::atomic::{AtomicU64, Ordering};

use crate::abi::*;

pub const FILE_NAME: &str = "file";
pub const FILE_INO: u64 = 2;
pub const FILE_CONTENT: &[u8] = b"strata fuse-transport bench\n";

/// Where a request was served from; counted per opcode so the bench can prove which transport
/// carried the measured requests.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Via {
    DevFuse,
    Uring,
}

pub struct Fs {
    pub entry_timeout_s: u64,
    /// Backing id from FUSE_DEV_IOC_BACKING_OPEN: OPEN of the file answers FOPEN_PASSTHROUGH.
    pub backing_id: std::sync::Mutex<Option<i32>>,
    pub counts_devfuse: [AtomicU64; MAX_OPCODE],
    pub counts_uring: [AtomicU64; MAX_OPCODE],
}

pub enum Reply {
    /// Reply with this many body bytes (already written to the out buffer).
    Ok(usize),
    /// Reply with -errno and no body.
    Err(i32),
    /// Send no reply at all (FORGET, BATCH_FORGET, INTERRUPT).
    None,
}

impl Fs {
    pub fn new(entry_timeout_s: u64) -> Fs {
        Fs {
            entry_timeout_s,
            backing_id: std::sync::Mutex::new(None),
            counts_devfuse: std::array::from_fn(|_| AtomicU64::new(0)),
            counts_uring: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    pub fn count(&self, via: Via, opcode: u32) -> u64 {
        let i = (opcode as usize).min(MAX_OPCODE - 1);
        match via {
            Via::DevFuse => self.counts_devfuse[i].load(Ordering::Relaxed),
            Via::Uring => self.counts_uring[i].load(Ordering::Relaxed),
        }
    }

    fn attr_of(&self, ino: u64) -> Option<Attr> {
        match ino {
            FUSE_ROOT_ID => Some(Attr { ino, size: 4096, mode: libc::S_IFDIR | 0o755, nlink: 2 }),
            FILE_INO => Some(Attr { ino, size: FILE_CONTENT.len() as u64, mode: libc::S_IFREG | 0o644, nlink: 1 }),
            _ => None,
        }
    }

    /// Answer one request. `op_in` is the fixed per-opcode argument, `payload` what follows it
    /// (a name, for LOOKUP); the reply body goes to `out`.
    pub fn handle(&self, via: Via, h: &InHeader, op_in: &[u8], payload: &[u8], out: &mut [u8]) -> Reply {
        let i = (h.opcode as usize).min(MAX_OPCODE - 1);
        match via {
            Via::DevFuse => self.counts_devfuse[i].fetch_add(1, Ordering::Relaxed),
            Via::Uring => self.counts_uring[i].fetch_add(1, Ordering::Relaxed),
        };
        match h.opcode {
            FUSE_LOOKUP => {
                // The name is NUL-terminated; before the io_uring work it was in_args[0].
                let raw = if payload.is_empty() { op_in } else { payload };
                let name = raw.split(|&c| c == 0).next().unwrap_or(&[]);
                if h.nodeid != FUSE_ROOT_ID || name != FILE_NAME.as_bytes() {
                    return Reply::Err(libc::ENOENT);
                }
                let attr = self.attr_of(FILE_INO).expect("file exists");
                out[..40].fill(0);
                put_u64(out, 0, FILE_INO);
                put_u64(out, 16, self.entry_timeout_s); // entry_valid
                // attr_valid (24) and both nsec fields stay 0.
                encode_attr(&mut out[40..], &attr);
                Reply::Ok(ENTRY_OUT_LEN)
            }
            FUSE_GETATTR => match self.attr_of(h.nodeid) {
                Some(attr) => {
                    out[..16].fill(0); // attr_valid 0, nsec 0
                    encode_attr(&mut out[16..], &attr);
                    Reply::Ok(ATTR_OUT_LEN)
                }
                None => Reply::Err(libc::ENOENT),
            },
            FUSE_STATFS => {
                out[..STATFS_OUT_LEN].fill(0);
                put_u64(out, 0, 1000); // blocks
                put_u64(out, 8, 500); // bfree
                put_u64(out, 16, 500); // bavail
                put_u64(out, 24, 100); // files
                put_u64(out, 32, 98); // ffree
                put_u32(out, 40, 4096); // bsize
                put_u32(out, 44, 255); // namelen
                put_u32(out, 48, 4096); // frsize
                Reply::Ok(STATFS_OUT_LEN)
            }
            FUSE_OPEN => {
                if h.nodeid != FILE_INO {
                    return Reply::Err(libc::EISDIR);
                }
                out[..OPEN_OUT_LEN].fill(0);
                put_u64(out, 0, 1);
                if let Some(id) = *self.backing_id.lock().expect("lock") {
                    put_u32(out, 8, FOPEN_PASSTHROUGH);
                    put_u32(out, 12, id as u32);
                }
                Reply::Ok(OPEN_OUT_LEN)
            }
            FUSE_OPENDIR => {
                out[..OPEN_OUT_LEN].fill(0);
                put_u64(out, 0, 2);
                Reply::Ok(OPEN_OUT_LEN)
            }
            FUSE_READ => {
                if op_in.len() < READ_IN_LEN {
                    return Reply::Err(libc::EINVAL);
                }
                let off = get_u64(op_in, 8) as usize;
                let size = get_u32(op_in, 16) as usize;
                let start = off.min(FILE_CONTENT.len());
                let end = (start + size).min(FILE_CONTENT.len()).min(start + out.len());
                out[..end - start].copy_from_slice(&FILE_CONTENT[start..end]);
                Reply::Ok(end - start)
            }
            FUSE_READDIR => {
                if op_in.len() < READ_IN_LEN {
                    return Reply::Err(libc::EINVAL);
                }
                let off = get_u64(op_in, 8);
                let size = (get_u32(op_in, 16) as usize).min(out.len());
                let entries: [(u64, &[u8], u32); 3] = [
                    (FUSE_ROOT_ID, b".", libc::DT_DIR as u32),
                    (FUSE_ROOT_ID, b"..", libc::DT_DIR as u32),
                    (FILE_INO, FILE_NAME.as_bytes(), libc::DT_REG as u32),
                ];
                let mut n = 0;
                for (idx, (ino, name, typ)) in entries.iter().enumerate().skip(off as usize) {
                    // struct fuse_dirent: ino u64, off u64, namelen u32, type u32, name[], padded to 8.
                    let rec = (24 + name.len()).next_multiple_of(8);
                    if n + rec > size {
                        break;
                    }
                    let b = &mut out[n..n + rec];
                    b.fill(0);
                    put_u64(b, 0, *ino);
                    put_u64(b, 8, idx as u64 + 1);
                    put_u32(b, 16, name.len() as u32);
                    put_u32(b, 20, *typ);
                    b[24..24 + name.len()].copy_from_slice(name);
                    n += rec;
                }
                Reply::Ok(n)
            }
            FUSE_RELEASE | FUSE_RELEASEDIR | FUSE_FLUSH | FUSE_ACCESS | FUSE_DESTROY => Reply::Ok(0),
            FUSE_FORGET | FUSE_BATCH_FORGET | FUSE_INTERRUPT => Reply::None,
            _ => Reply::Err(libc::ENOSYS),
        }
    }
}
