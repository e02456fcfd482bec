//! Transport A: classic read(2)/write(2) on /dev/fuse. This loop also answers INIT for both
//! transports (the kernel sends INIT through /dev/fuse before any ring can be registered),
//! and keeps serving FORGET/INTERRUPT, which the kernel still queues on /dev/fuse when the
//! connection runs over io_uring.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc::Sender;

use rustix::io::Errno;

use crate::abi::*;
use crate::fs::{Fs, Reply, Via};

pub const MAX_WRITE: u32 = 128 * 1024;
pub const MAX_PAGES: u16 = (MAX_WRITE / 4096) as u16;
/// Read buffer: the largest request (a WRITE of max_write) plus headers.
pub const BUF_LEN: usize = MAX_WRITE as usize + 4096;

/// What INIT negotiated.
#[derive(Debug, Clone, Copy)]
pub struct Negotiated {
    pub kernel_minor: u32,
    pub kernel_flags: u64,
    pub minor: u32,
    pub flags: u64,
}

pub struct InitWish {
    pub uring: bool,
    pub passthrough: bool,
}

fn init_reply(h: &InHeader, args: &[u8], wish: &InitWish, out: &mut [u8]) -> Result<Negotiated, String> {
    if args.len() < 16 {
        return Err(format!("INIT too short: {} bytes", args.len()));
    }
    let major = get_u32(args, 0);
    let kminor = get_u32(args, 4);
    if major != FUSE_KERNEL_VERSION {
        return Err(format!("kernel speaks FUSE {major}.{kminor}, we need 7.x"));
    }
    let mut kflags = get_u32(args, 12) as u64;
    if kflags & FUSE_INIT_EXT != 0 && args.len() >= 20 {
        kflags |= (get_u32(args, 16) as u64) << 32;
    }
    let mut want = FUSE_INIT_EXT | FUSE_MAX_PAGES | FUSE_BIG_WRITES | FUSE_PARALLEL_DIROPS | FUSE_ASYNC_READ;
    if wish.uring {
        if kminor < FUSE_URING_MIN_MINOR || kflags & FUSE_OVER_IO_URING == 0 {
            return Err(format!(
                "kernel did not offer FUSE_OVER_IO_URING (protocol 7.{kminor}, flags {kflags:#x}); \
                 is /sys/module/fuse/parameters/enable_uring Y?"
            ));
        }
        want |= FUSE_OVER_IO_URING;
    }
    if wish.passthrough {
        if kflags & FUSE_PASSTHROUGH == 0 {
            return Err(format!("kernel did not offer FUSE_PASSTHROUGH (flags {kflags:#x})"));
        }
        want |= FUSE_PASSTHROUGH;
    }
    let flags = want & kflags;
    let minor = kminor.min(FUSE_KERNEL_MINOR_VERSION);
    let init = InitOut {
        minor,
        flags,
        max_write: MAX_WRITE,
        max_pages: MAX_PAGES,
        max_stack_depth: if wish.passthrough { 1 } else { 0 },
    };
    encode_init_out(&mut out[OUT_HEADER_LEN..], &init);
    encode_out_header(out, (OUT_HEADER_LEN + INIT_OUT_LEN) as u32, 0, h.unique);
    Ok(Negotiated { kernel_minor: kminor, kernel_flags: kflags, minor, flags })
}

/// Serve /dev/fuse until the connection goes away (ENODEV after unmount). The first thread
/// to see INIT reports the negotiation on `init_tx`.
pub fn serve(fd: Arc<OwnedFd>, fs: Arc<Fs>, wish: InitWish, init_tx: Option<Sender<Result<Negotiated, String>>>) {
    let mut buf = vec![0u8; BUF_LEN];
    let mut out = vec![0u8; BUF_LEN];
    let mut init_tx = init_tx;
    loop {
        let n = match rustix::io::read(fd.as_fd(), &mut buf) {
            Ok(n) => n,
            // ENOENT: the request was interrupted before we read it; EINTR/EAGAIN: retry.
            Err(Errno::NOENT) | Err(Errno::INTR) | Err(Errno::AGAIN) => continue,
            // The connection is gone (unmounted, or aborted).
            Err(Errno::NODEV) | Err(Errno::CONNABORTED) => return,
            Err(e) => {
                eprintln!("devfuse: read: {e}");
                return;
            }
        };
        let Some(h) = InHeader::parse(&buf[..n]) else {
            eprintln!("devfuse: short read of {n} bytes");
            continue;
        };
        if h.len as usize != n {
            eprintln!("devfuse: header says {} bytes, read {n}", h.len);
            continue;
        }
        let args = &buf[IN_HEADER_LEN..n];
        if h.opcode == FUSE_INIT {
            let res = init_reply(&h, args, &wish, &mut out);
            let len = match &res {
                Ok(_) => OUT_HEADER_LEN + INIT_OUT_LEN,
                Err(_) => {
                    encode_out_header(&mut out, OUT_HEADER_LEN as u32, -libc::EPROTO, h.unique);
                    OUT_HEADER_LEN
                }
            };
            if let Err(e) = rustix::io::write(fd.as_fd(), &out[..len]) {
                eprintln!("devfuse: INIT reply: {e}");
            }
            if let Some(tx) = init_tx.take() {
                let _ = tx.send(res);
            }
            continue;
        }
        let split = op_in_len(h.opcode).min(args.len());
        let (op_in, payload) = args.split_at(split);
        let (hdr, body) = out.split_at_mut(OUT_HEADER_LEN);
        let len = match fs.handle(Via::DevFuse, &h, op_in, payload, body) {
            Reply::None => continue,
            Reply::Ok(len) => {
                encode_out_header(hdr, (OUT_HEADER_LEN + len) as u32, 0, h.unique);
                OUT_HEADER_LEN + len
            }
            Reply::Err(errno) => {
                encode_out_header(hdr, OUT_HEADER_LEN as u32, -errno, h.unique);
                OUT_HEADER_LEN
            }
        };
        match rustix::io::write(fd.as_fd(), &out[..len]) {
            // ENOENT: the request was interrupted/aborted meanwhile.
            Ok(_) | Err(Errno::NOENT) => {}
            Err(Errno::NODEV) => return,
            Err(e) => eprintln!("devfuse: write reply to opcode {}: {e}", h.opcode),
        }
    }
}
