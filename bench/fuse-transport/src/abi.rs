//! The few parts of the FUSE kernel ABI (include/uapi/linux/fuse.h, protocol 7.42+ as shipped
//! with Linux 6.18) that this bench speaks. Structures are encoded and decoded field by field
//! at their C offsets, little-endian, so no `repr(C)` transmutes are needed.

pub const FUSE_KERNEL_VERSION: u32 = 7;
/// The highest minor we claim; the reply carries min(kernel's, ours).
pub const FUSE_KERNEL_MINOR_VERSION: u32 = 45;
/// FUSE over io_uring exists since 7.42.
pub const FUSE_URING_MIN_MINOR: u32 = 42;
pub const FUSE_ROOT_ID: u64 = 1;

// Opcodes (enum fuse_opcode).
pub const FUSE_LOOKUP: u32 = 1;
pub const FUSE_FORGET: u32 = 2;
pub const FUSE_GETATTR: u32 = 3;
pub const FUSE_OPEN: u32 = 14;
pub const FUSE_READ: u32 = 15;
pub const FUSE_STATFS: u32 = 17;
pub const FUSE_RELEASE: u32 = 18;
pub const FUSE_GETXATTR: u32 = 22;
pub const FUSE_LISTXATTR: u32 = 23;
pub const FUSE_FLUSH: u32 = 25;
pub const FUSE_INIT: u32 = 26;
pub const FUSE_OPENDIR: u32 = 27;
pub const FUSE_READDIR: u32 = 28;
pub const FUSE_RELEASEDIR: u32 = 29;
pub const FUSE_ACCESS: u32 = 34;
pub const FUSE_INTERRUPT: u32 = 36;
pub const FUSE_DESTROY: u32 = 38;
pub const FUSE_BATCH_FORGET: u32 = 42;
pub const MAX_OPCODE: usize = 64;

// INIT flags (low 32 bits in `flags`, bits 32..63 shifted into `flags2`).
pub const FUSE_ASYNC_READ: u64 = 1 << 0;
pub const FUSE_BIG_WRITES: u64 = 1 << 5;
pub const FUSE_PARALLEL_DIROPS: u64 = 1 << 18;
pub const FUSE_MAX_PAGES: u64 = 1 << 22;
pub const FUSE_INIT_EXT: u64 = 1 << 30;
pub const FUSE_PASSTHROUGH: u64 = 1 << 37;
pub const FUSE_OVER_IO_URING: u64 = 1 << 41;

// OPEN reply flags.
pub const FOPEN_PASSTHROUGH: u32 = 1 << 7;

/// struct fuse_in_header: len u32, opcode u32, unique u64, nodeid u64, uid u32, gid u32,
/// pid u32, total_extlen u16, padding u16.
pub const IN_HEADER_LEN: usize = 40;
/// struct fuse_out_header: len u32, error i32, unique u64.
pub const OUT_HEADER_LEN: usize = 16;
/// struct fuse_attr.
pub const ATTR_LEN: usize = 88;
/// struct fuse_entry_out: nodeid, generation, entry_valid, attr_valid (u64), two u32 nsec, attr.
pub const ENTRY_OUT_LEN: usize = 40 + ATTR_LEN;
/// struct fuse_attr_out: attr_valid u64, attr_valid_nsec u32, dummy u32, attr.
pub const ATTR_OUT_LEN: usize = 16 + ATTR_LEN;
/// struct fuse_statfs_out { struct fuse_kstatfs st; }.
pub const STATFS_OUT_LEN: usize = 80;
/// struct fuse_open_out: fh u64, open_flags u32, backing_id i32.
pub const OPEN_OUT_LEN: usize = 16;
/// struct fuse_init_in: major, minor, max_readahead, flags, flags2, unused[11] (all u32).
pub const INIT_IN_LEN: usize = 64;
/// struct fuse_init_out, see `encode_init_out`.
pub const INIT_OUT_LEN: usize = 64;
/// struct fuse_read_in: fh u64, offset u64, size u32, read_flags u32, lock_owner u64, flags u32,
/// padding u32.
pub const READ_IN_LEN: usize = 40;

// FUSE over io_uring (7.42).
/// FUSE_URING_IN_OUT_HEADER_SZ
pub const URING_IN_OUT_HEADER_SZ: usize = 128;
/// FUSE_URING_OP_IN_OUT_SZ
pub const URING_OP_IN_OUT_SZ: usize = 128;
/// struct fuse_uring_ent_in_out: flags u64, commit_id u64, payload_sz u32, padding u32,
/// reserved u64.
pub const URING_ENT_IN_OUT_LEN: usize = 32;
/// struct fuse_uring_req_header { in_out[128]; op_in[128]; struct fuse_uring_ent_in_out; }
pub const URING_REQ_HEADER_LEN: usize = URING_IN_OUT_HEADER_SZ + URING_OP_IN_OUT_SZ + URING_ENT_IN_OUT_LEN;
/// Offsets inside fuse_uring_req_header.
pub const URING_OFF_OP_IN: usize = URING_IN_OUT_HEADER_SZ;
pub const URING_OFF_ENT_IN_OUT: usize = URING_IN_OUT_HEADER_SZ + URING_OP_IN_OUT_SZ;
/// enum fuse_uring_cmd.
pub const FUSE_IO_URING_CMD_REGISTER: u32 = 1;
pub const FUSE_IO_URING_CMD_COMMIT_AND_FETCH: u32 = 2;

/// FUSE_DEV_IOC_BACKING_OPEN = _IOW(229, 1, struct fuse_backing_map), the map being
/// { int32_t fd; uint32_t flags; uint64_t padding; } (16 bytes).
pub const FUSE_DEV_IOC_BACKING_OPEN: u64 = (1 << 30) | (16 << 16) | (229 << 8) | 1;

pub fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

pub fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

#[derive(Debug, Clone, Copy)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
}

impl InHeader {
    pub fn parse(b: &[u8]) -> Option<InHeader> {
        if b.len() < IN_HEADER_LEN {
            return None;
        }
        Some(InHeader { len: get_u32(b, 0), opcode: get_u32(b, 4), unique: get_u64(b, 8), nodeid: get_u64(b, 16) })
    }
}

pub fn encode_out_header(b: &mut [u8], len: u32, error: i32, unique: u64) {
    put_u32(b, 0, len);
    put_u32(b, 4, error as u32);
    put_u64(b, 8, unique);
}

/// Size of the fixed per-opcode argument (`in_args[0]`) that the kernel places in
/// `fuse_uring_req_header.op_in` on the io_uring transport; on /dev/fuse it simply comes first
/// after the in-header. Opcodes whose first argument is a name (LOOKUP) have a zero-sized
/// `in_args[0]` since the io_uring work, so their name lands in the payload.
pub fn op_in_len(opcode: u32) -> usize {
    match opcode {
        FUSE_GETATTR => 16,
        FUSE_OPEN | FUSE_OPENDIR => 8,
        FUSE_READ | FUSE_READDIR => READ_IN_LEN,
        FUSE_RELEASE | FUSE_RELEASEDIR => 24,
        FUSE_FLUSH => 24,
        FUSE_FORGET | FUSE_BATCH_FORGET | FUSE_ACCESS | FUSE_GETXATTR | FUSE_LISTXATTR | FUSE_INTERRUPT => 8,
        FUSE_INIT => INIT_IN_LEN,
        _ => 0,
    }
}

pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub mode: u32,
    pub nlink: u32,
}

pub fn encode_attr(b: &mut [u8], a: &Attr) {
    b[..ATTR_LEN].fill(0);
    put_u64(b, 0, a.ino);
    put_u64(b, 8, a.size);
    put_u64(b, 16, a.size.div_ceil(512));
    // atime, mtime, ctime (secs) at 24, 32, 40 stay 0; nsec at 48, 52, 56.
    put_u32(b, 60, a.mode);
    put_u32(b, 64, a.nlink);
    // uid 68, gid 72, rdev 76 = 0 (root).
    put_u32(b, 80, 4096); // blksize
    // flags 84 = 0
}

pub struct InitOut {
    pub minor: u32,
    pub flags: u64,
    pub max_write: u32,
    pub max_pages: u16,
    pub max_stack_depth: u32,
}

pub fn encode_init_out(b: &mut [u8], o: &InitOut) {
    b[..INIT_OUT_LEN].fill(0);
    put_u32(b, 0, FUSE_KERNEL_VERSION);
    put_u32(b, 4, o.minor);
    put_u32(b, 8, 128 * 1024); // max_readahead
    put_u32(b, 12, o.flags as u32);
    put_u16(b, 16, 16); // max_background
    put_u16(b, 18, 12); // congestion_threshold
    put_u32(b, 20, o.max_write);
    put_u32(b, 24, 1); // time_gran
    put_u16(b, 28, o.max_pages);
    // map_alignment 30 = 0
    put_u32(b, 32, (o.flags >> 32) as u32);
    put_u32(b, 36, o.max_stack_depth);
    // request_timeout 40 = 0, unused after.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_uapi_header() {
        assert_eq!(URING_REQ_HEADER_LEN, 288);
        assert_eq!(ENTRY_OUT_LEN, 128);
        assert_eq!(ATTR_OUT_LEN, 104);
        assert_eq!(FUSE_DEV_IOC_BACKING_OPEN, 0x4010_e501);
    }

    #[test]
    fn in_header_round_trip() {
        let mut b = [0u8; IN_HEADER_LEN];
        put_u32(&mut b, 0, 56);
        put_u32(&mut b, 4, FUSE_GETATTR);
        put_u64(&mut b, 8, 77);
        put_u64(&mut b, 16, 2);
        let h = InHeader::parse(&b).unwrap();
        assert_eq!((h.len, h.opcode, h.unique, h.nodeid), (56, FUSE_GETATTR, 77, 2));
        assert!(InHeader::parse(&b[..10]).is_none());
    }
}
