//! FUSE over io_uring: requests come through per-CPU io_uring queues instead of
//! `read`/`write` on `/dev/fuse` (the kernel's Documentation/filesystems/fuse/fuse-io-uring.rst).

/// A passthrough backing file registered on the `/dev/fuse` descriptor directly.
pub struct RawBacking {
    pub id: u32,
}
