//! Transport B: FUSE over io_uring (Documentation/filesystems/fuse/fuse-io-uring.rst).
//!
//! One queue per possible CPU (the kernel's ring has `num_possible_cpus()` queues and only
//! switches the connection to io_uring once every queue has an entry registered). Each queue
//! is a thread pinned to its CPU with its own SQE128/CQE32 ring. Each ring entry is a pair of
//! buffers, [struct fuse_uring_req_header, payload], handed to the kernel by an
//! IORING_OP_URING_CMD with cmd_op FUSE_IO_URING_CMD_REGISTER; the CQE of that SQE means "a
//! request is in your buffers". The answer goes back, and the next request is fetched, with one
//! FUSE_IO_URING_CMD_COMMIT_AND_FETCH SQE carrying the request's commit_id.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::mpsc::Sender;

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use crate::abi::*;
use crate::fs::{Fs, Reply, Via};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingSetup {
    /// No setup flags besides SQE128|CQE32: task work is signalled (IPI/TWA_SIGNAL).
    Plain,
    /// IORING_SETUP_COOP_TASKRUN|TASKRUN_FLAG.
    Coop,
    /// IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN: task work runs only inside io_uring_enter.
    Defer,
}

impl RingSetup {
    pub fn parse(s: &str) -> Option<RingSetup> {
        match s {
            "plain" => Some(RingSetup::Plain),
            "coop" => Some(RingSetup::Coop),
            "defer" => Some(RingSetup::Defer),
            _ => None,
        }
    }
}

pub struct QueueConfig {
    pub qid: u16,
    pub depth: usize,
    pub payload_len: usize,
    pub setup: RingSetup,
    pub pin: bool,
}

struct Ent {
    hdr: Vec<u8>,
    payload: Vec<u8>,
    iov: Box<[libc::iovec; 2]>,
}

fn set_sqe_len(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    // The io-uring crate's UringCmd80 builder sets addr but not len; FUSE wants the number of
    // iovecs (2) in sqe->len (fuse_uring_get_iovec_from_sqe checks sqe->len == 2).
    // SAFETY: Entry128 is #[repr(C)] { struct io_uring_sqe (64 bytes of integer fields and unions
    // of integers, no padding), [u8; 64] }, 128 bytes in all; every bit pattern of it and of
    // [u8; 128] is valid, and transmute checks the sizes match.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute::<squeue::Entry128, [u8; 128]>(sqe) };
    // struct io_uring_sqe: opcode u8 @0, flags u8 @1, ioprio u16 @2, fd i32 @4, off u64 @8,
    // addr u64 @16, len u32 @24.
    raw[24..28].copy_from_slice(&len.to_le_bytes());
    // SAFETY: as above, the bytes came from a valid Entry128 and only `len` changed.
    unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(raw) }
}

/// struct fuse_uring_cmd_req { u64 flags; u64 commit_id; u16 qid; u8 padding[6]; } at the start
/// of the SQE's 80-byte command area; the rest stays zero.
fn cmd_sqe(
    fd: RawFd,
    cmd_op: u32,
    qid: u16,
    commit_id: u64,
    iov: Option<*const libc::iovec>,
    ent: usize,
) -> squeue::Entry128 {
    let mut cmd = [0u8; 80];
    put_u64(&mut cmd, 0, 0);
    put_u64(&mut cmd, 8, commit_id);
    put_u16(&mut cmd, 16, qid);
    let mut b = opcode::UringCmd80::new(types::Fd(fd), cmd_op).cmd(cmd);
    if let Some(p) = iov {
        b = b.addr(Some(p as u64));
    }
    let sqe = b.build().user_data(ent as u64);
    if iov.is_some() { set_sqe_len(sqe, 2) } else { sqe }
}

fn errno_name(res: i32) -> String {
    format!("{} ({})", std::io::Error::from_raw_os_error(-res), -res)
}

/// Serve one queue until the connection goes away. `ready` gets Ok once all REGISTER SQEs were
/// submitted without an immediate error, or Err with the reason.
pub fn serve_queue(dev: Arc<OwnedFd>, fs: Arc<Fs>, cfg: QueueConfig, ready: Sender<Result<(), String>>) {
    match setup(&dev, &cfg) {
        Ok((ring, ents, early)) => {
            let _ = ready.send(Ok(()));
            run(ring, ents, early, &dev, &fs, &cfg);
        }
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
}

type Ring = IoUring<squeue::Entry128, cqueue::Entry32>;
/// (entry index, CQE result) of completions seen while setting up.
type Early = Vec<(usize, i32)>;

fn setup(dev: &Arc<OwnedFd>, cfg: &QueueConfig) -> Result<(Ring, Vec<Ent>, Early), String> {
    if cfg.pin {
        let mut set = rustix::thread::CpuSet::new();
        set.set(cfg.qid as usize);
        rustix::thread::sched_setaffinity(None, &set).map_err(|e| format!("queue {}: pin: {e}", cfg.qid))?;
    }
    let mut b = IoUring::<squeue::Entry128, cqueue::Entry32>::builder();
    match cfg.setup {
        RingSetup::Plain => {}
        RingSetup::Coop => {
            b.setup_coop_taskrun().setup_taskrun_flag();
        }
        RingSetup::Defer => {
            b.setup_single_issuer().setup_defer_taskrun();
        }
    }
    let mut ring = b.build(cfg.depth as u32 * 2).map_err(|e| format!("queue {}: io_uring_setup: {e}", cfg.qid))?;
    let mut ents: Vec<Ent> = (0..cfg.depth)
        .map(|_| {
            let mut hdr = vec![0u8; URING_REQ_HEADER_LEN];
            let mut payload = vec![0u8; cfg.payload_len];
            let iov = Box::new([
                libc::iovec { iov_base: hdr.as_mut_ptr().cast(), iov_len: hdr.len() },
                libc::iovec { iov_base: payload.as_mut_ptr().cast(), iov_len: payload.len() },
            ]);
            Ent { hdr, payload, iov }
        })
        .collect();
    let fd = dev.as_raw_fd();
    for (i, ent) in ents.iter_mut().enumerate() {
        let sqe = cmd_sqe(fd, FUSE_IO_URING_CMD_REGISTER, cfg.qid, 0, Some(ent.iov.as_ptr()), i);
        // SAFETY: the iovec array and both buffers it points to live in `ents`, whose heap storage
        // never moves; run() drops the ring first and leaks `ents` if any entry may still be
        // registered (so may the error path below), so the kernel never writes to freed memory.
        unsafe { ring.submission().push(&sqe) }.map_err(|_| "submission queue full".to_string())?;
    }
    ring.submit().map_err(|e| format!("queue {}: io_uring_enter(REGISTER): {e}", cfg.qid))?;
    // A REGISTER that the kernel accepts stays pending (-EIOCBQUEUED) until a request arrives;
    // one that it refuses completes at once with the errno. A request can also arrive already
    // (the ring turns ready as soon as every queue has one entry, and a waiting request is then
    // delivered at once): those completions are kept for run().
    let early: Early = ring.completion().map(|c| (c.user_data() as usize, c.result())).collect();
    let errs: Vec<String> = early
        .iter()
        .filter(|(_, res)| *res < 0)
        .map(|(i, res)| format!("queue {} entry {i}: FUSE_IO_URING_CMD_REGISTER: {}", cfg.qid, errno_name(*res)))
        .collect();
    if !errs.is_empty() {
        // Entries that were accepted stay registered: keep their buffers alive for good.
        drop(ring);
        std::mem::forget(ents);
        return Err(errs.join("; "));
    }
    Ok((ring, ents, early))
}

fn run(mut ring: Ring, mut ents: Vec<Ent>, early: Early, dev: &Arc<OwnedFd>, fs: &Fs, cfg: &QueueConfig) {
    let fd = dev.as_raw_fd();
    let mut live = ents.len();
    let mut done: Vec<(usize, i32)> = early;
    let mut scratch: Vec<u8> = Vec::with_capacity(4096);
    'outer: while live > 0 {
        if done.is_empty() {
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => {
                    eprintln!("queue {}: io_uring_enter: {e}", cfg.qid);
                    break;
                }
            }
            done.extend(ring.completion().map(|c| (c.user_data() as usize, c.result())));
        }
        for &(i, res) in &done {
            if res < 0 {
                if res != -libc::ENOTCONN && res != -libc::ECANCELED {
                    eprintln!("queue {} entry {i}: {}", cfg.qid, errno_name(res));
                }
                live -= 1;
                continue;
            }
            let ent = &mut ents[i];
            let Some(h) = InHeader::parse(&ent.hdr[..IN_HEADER_LEN]) else { continue };
            let commit_id = get_u64(&ent.hdr, URING_OFF_ENT_IN_OUT + 8);
            let in_sz = (get_u32(&ent.hdr, URING_OFF_ENT_IN_OUT + 16) as usize).min(ent.payload.len());
            let mut op_in = [0u8; URING_OP_IN_OUT_SZ];
            let op_len = op_in_len(h.opcode).min(URING_OP_IN_OUT_SZ);
            op_in[..op_len].copy_from_slice(&ent.hdr[URING_OFF_OP_IN..URING_OFF_OP_IN + op_len]);
            scratch.clear();
            scratch.extend_from_slice(&ent.payload[..in_sz]);
            let (error, out_sz) = match fs.handle(Via::Uring, &h, &op_in[..op_len], &scratch, &mut ent.payload) {
                Reply::Ok(n) => (0, n),
                Reply::None => (0, 0),
                Reply::Err(e) => (-e, 0),
            };
            encode_out_header(&mut ent.hdr[..OUT_HEADER_LEN], (OUT_HEADER_LEN + out_sz) as u32, error, h.unique);
            put_u32(&mut ent.hdr, URING_OFF_ENT_IN_OUT + 16, out_sz as u32);
            let sqe = cmd_sqe(fd, FUSE_IO_URING_CMD_COMMIT_AND_FETCH, cfg.qid, commit_id, None, i);
            // SAFETY: as in setup(): the entry's buffers stay registered and alive in `ents`.
            if unsafe { ring.submission().push(&sqe) }.is_err() {
                eprintln!("queue {}: submission queue full", cfg.qid);
                break 'outer;
            }
        }
        done.clear();
    }
    drop(ring);
    if live > 0 {
        // Some entry may still be registered with the kernel, which could copy a request into
        // its buffers: never hand that memory back to the allocator.
        std::mem::forget(ents);
    }
}
