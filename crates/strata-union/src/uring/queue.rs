//! One thread's ring on one of the kernel's FUSE queues. Its entry is a pair of
//! buffers, [`struct fuse_uring_req_header`, payload], handed to the kernel with
//! `FUSE_IO_URING_CMD_REGISTER`; the completion of that command means a request sits in
//! them. The answer is written in place and goes back, fetching the next request, with
//! one `FUSE_IO_URING_CMD_COMMIT_AND_FETCH`.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use tracing::{debug, warn};

use super::abi::*;
use super::{Answer, dispatch};
use crate::fs::StrataFs;

type Ring = IoUring<squeue::Entry128, cqueue::Entry32>;

/// The entry's buffers. Boxed: their addresses are the kernel's until the ring is gone.
struct Entry {
    header: Box<[u8]>,
    payload: Box<[u8]>,
    iov: Box<[libc::iovec; 2]>,
}

impl Entry {
    fn new(payload_len: usize) -> Entry {
        let mut header = vec![0u8; REQ_HEADER_LEN].into_boxed_slice();
        let mut payload = vec![0u8; payload_len].into_boxed_slice();
        let iov = Box::new([
            libc::iovec { iov_base: header.as_mut_ptr().cast(), iov_len: header.len() },
            libc::iovec { iov_base: payload.as_mut_ptr().cast(), iov_len: payload.len() },
        ]);
        Entry { header, payload, iov }
    }
}

/// A `FUSE_IO_URING_CMD_*` command: `struct fuse_uring_cmd_req { flags, commit_id, qid }`
/// in the SQE's command area; a REGISTER also points at the entry's two iovecs.
fn command(dev: RawFd, op: u32, qid: u16, commit_id: u64, iov: Option<&[libc::iovec; 2]>) -> squeue::Entry128 {
    let mut cmd = [0u8; 80];
    put_u64(&mut cmd, 8, commit_id);
    put_u16(&mut cmd, 16, qid);
    let mut b = opcode::UringCmd80::new(types::Fd(dev), op).cmd(cmd);
    if let Some(iov) = iov {
        b = b.addr(Some(iov.as_ptr() as u64));
    }
    let sqe = b.build();
    match iov {
        Some(_) => with_len(sqe, 2),
        None => sqe,
    }
}

/// The io-uring crate's `UringCmd80` sets `addr` but not `len`, where FUSE wants the
/// number of iovecs.
fn with_len(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    // SAFETY: Entry128 is #[repr(C)] { struct io_uring_sqe (64 bytes of integers and unions
    // of integers, no padding), [u8; 64] }: 128 bytes for which every bit pattern is valid;
    // transmute checks the sizes match.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute::<squeue::Entry128, [u8; 128]>(sqe) };
    // struct io_uring_sqe: ... addr u64 @16, len u32 @24.
    raw[24..28].copy_from_slice(&len.to_le_bytes());
    // SAFETY: as above; only `len` changed.
    unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(raw) }
}

/// Sets this thread's scheduling policy. A queue thread is `SCHED_IDLE` while it answers
/// and waits: the caller it wakes with the answer then counts the CPU as free and stays
/// there, where otherwise the scheduler moves it to the idle CPU, one cross-CPU wake-up
/// a request (half the cost of a metadata request on a 2-vCPU VM). A request that may
/// take long (a change that may copy up; data served by the daemon; syncs) is served
/// as `SCHED_OTHER`, so that busy CPUs never starve it.
fn set_policy(policy: libc::c_int) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads the parameter, which outlives the call; pid 0 is
    // the calling thread.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } != 0 {
        debug!("sched_setscheduler({policy}): {}", std::io::Error::last_os_error());
    }
}

/// Requests that may take long: see [`set_policy`]. Switching costs two system calls
/// (11% of the daemon's CPU samples in an untar, where nearly every request is a change),
/// so the changes that cannot copy up stay idle: entries made or removed in a directory
/// already in the writable branch, and attribute changes but size of a file all there.
fn may_take_long(fs: &StrataFs, h: &InHeader, arg: &[u8]) -> bool {
    match h.opcode {
        LOOKUP | GETATTR | READLINK | STATFS | GETXATTR | LISTXATTR | ACCESS | FLUSH | RELEASE | OPENDIR | READDIR
        | READDIRPLUS | RELEASEDIR | LSEEK => false,
        CREATE | MKDIR | MKNOD | SYMLINK | UNLINK | RMDIR => !fs.in_writable_branch(h.nodeid),
        SETATTR => u32_at(arg, 0) & FATTR_SIZE != 0 || !fs.in_writable_branch(h.nodeid),
        _ => true,
    }
}

fn pin_to(cpu: u16) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu as usize);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        // An offline CPU: its queue serves from wherever the thread runs.
        debug!(cpu, "queue thread not pinned: {e}");
    }
}

/// Makes a ring as the queues will, and drops it: io_uring may be disabled
/// (`kernel.io_uring_disabled`) or out of locked memory.
pub(super) fn probe() -> std::io::Result<()> {
    new_ring().map(drop)
}

fn new_ring() -> std::io::Result<Ring> {
    IoUring::builder().setup_single_issuer().setup_defer_taskrun().build(4)
}

/// Serves queue `qid` until the connection goes away.
pub(super) fn serve(qid: u16, fs: &StrataFs, dev: &Arc<OwnedFd>, payload_len: usize) {
    pin_to(qid);
    let mut ring = match new_ring() {
        Ok(r) => r,
        Err(e) => {
            warn!("FUSE over io_uring: queue {qid}: io_uring_setup: {e}");
            fs.abort_connection();
            return;
        }
    };
    let mut entry = Entry::new(payload_len);
    let fd = dev.as_raw_fd();
    let mut next = command(fd, CMD_REGISTER, qid, 0, Some(&entry.iov));
    let mut registered = false;
    let mut idle = false;
    // The request's names or data, copied out of the payload the answer overwrites.
    let mut rest = Vec::with_capacity(4096);
    loop {
        if !idle {
            set_policy(libc::SCHED_IDLE);
            idle = true;
        }
        // SAFETY: the SQE points at `entry`'s iovecs and buffers, which stay alive until the
        // kernel completed the command (the loop waits for that) or are leaked below.
        if unsafe { ring.submission().push(&next) }.is_err() {
            warn!("FUSE over io_uring: queue {qid}: submission queue full");
            break;
        }
        let res = loop {
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => {
                    warn!("FUSE over io_uring: queue {qid}: io_uring_enter: {e}");
                    // The command may still be the kernel's: never free its buffers.
                    std::mem::forget(entry);
                    return;
                }
            }
            if let Some(c) = ring.completion().next() {
                break c.result();
            }
        };
        if res < 0 {
            match -res {
                // Unmounted or aborted: the normal end.
                libc::ENOTCONN | libc::ECANCELED | libc::ENODEV | libc::ECONNABORTED => {}
                e => {
                    warn!(
                        "FUSE over io_uring: queue {qid}: {}: {}",
                        if registered { "COMMIT_AND_FETCH" } else { "REGISTER" },
                        std::io::Error::from_raw_os_error(e)
                    );
                    if !registered {
                        // Every request waits for all queues: without this one, none is served.
                        fs.abort_connection();
                    }
                }
            }
            break;
        }
        registered = true;
        let h = InHeader::parse(&entry.header[..IN_HEADER_LEN]);
        let commit_id = u64_at(&entry.header, OFF_ENT_IN_OUT + 8);
        let payload_sz = (u32_at(&entry.header, OFF_ENT_IN_OUT + 16) as usize).min(entry.payload.len());
        let arg_len = (h.len as usize).saturating_sub(IN_HEADER_LEN + payload_sz).min(OP_IN_LEN);
        let mut arg = [0u8; OP_IN_LEN];
        arg[..arg_len].copy_from_slice(&entry.header[OFF_OP_IN..OFF_OP_IN + arg_len]);
        if may_take_long(fs, &h, &arg[..arg_len]) {
            set_policy(libc::SCHED_OTHER);
            idle = false;
        }
        // The answer is written over the request's payload: serve from a copy.
        rest.clear();
        rest.extend_from_slice(&entry.payload[..payload_sz]);
        let mut out = Answer::new(&mut entry.payload, dev);
        dispatch(fs, &h, &arg[..arg_len], &rest, &mut out);
        let (error, len) = (out.error, if out.error == 0 { out.len } else { 0 });
        put_out_header(&mut entry.header[..OUT_HEADER_LEN], (OUT_HEADER_LEN + len) as u32, error, h.unique);
        put_u32(&mut entry.header, OFF_ENT_IN_OUT + 16, len as u32);
        next = command(fd, CMD_COMMIT_AND_FETCH, qid, commit_id, None);
    }
    // Every command of this ring has completed: the kernel holds no pointer into `entry`.
    drop(ring);
}
