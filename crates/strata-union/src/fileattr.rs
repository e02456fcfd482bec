//! File attributes: the inode flags of `lsattr`/`chattr` and the XFS-style `fsxattr`
//! (project id, extent size). The kernel asks for them with ioctls on a union file
//! (`fileattr_get`/`fileattr_set`), and the daemon asks the file below the same way.

use std::os::fd::AsFd;

use rustix::io::Errno;
use rustix::ioctl::{Getter, Opcode, Setter, opcode};

/// `struct fsxattr`: five 32-bit fields and 8 bytes of padding.
type FsXattr = [u8; 28];

const GETFLAGS: Opcode = opcode::read::<libc::c_long>(b'f', 1);
const SETFLAGS: Opcode = opcode::write::<libc::c_long>(b'f', 2);
const FSGETXATTR: Opcode = opcode::read::<FsXattr>(b'X', 31);
const FSSETXATTR: Opcode = opcode::write::<FsXattr>(b'X', 32);

/// One file-attribute ioctl, with its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    GetFlags,
    SetFlags(u32),
    GetFsXattr,
    SetFsXattr(FsXattr),
}

impl Op {
    /// The operation an ioctl command asks for; `None` for every other ioctl (ENOTTY).
    pub fn parse(cmd: u32, input: &[u8]) -> Option<Op> {
        match cmd as Opcode {
            GETFLAGS => Some(Op::GetFlags),
            // The kernel sends the flags as a 32-bit int, whatever the command's size says.
            SETFLAGS => Some(Op::SetFlags(u32::from_ne_bytes(input.get(..4)?.try_into().ok()?))),
            FSGETXATTR => Some(Op::GetFsXattr),
            FSSETXATTR => Some(Op::SetFsXattr(input.get(..28)?.try_into().ok()?)),
            _ => None,
        }
    }

    /// Whether it changes the file (which must then be copied up first).
    pub fn changes(&self) -> bool {
        matches!(self, Op::SetFlags(_) | Op::SetFsXattr(_))
    }

    /// Runs it on `file` (any open descriptor of the file below); returns the output.
    pub fn run(&self, file: impl AsFd) -> Result<Vec<u8>, Errno> {
        match *self {
            Op::GetFlags => Ok(rustix::fs::ioctl_getflags(file)?.bits().to_ne_bytes().to_vec()),
            Op::SetFlags(f) => {
                rustix::fs::ioctl_setflags(file, rustix::fs::IFlags::from_bits_retain(f))?;
                Ok(Vec::new())
            }
            Op::GetFsXattr => {
                // SAFETY: FSGETXATTR writes exactly one `struct fsxattr` (28 bytes).
                let out = unsafe { rustix::ioctl::ioctl(file, Getter::<FSGETXATTR, FsXattr>::new())? };
                Ok(out.to_vec())
            }
            Op::SetFsXattr(x) => {
                // SAFETY: FSSETXATTR reads exactly one `struct fsxattr` (28 bytes).
                unsafe { rustix::ioctl::ioctl(file, Setter::<FSSETXATTR, FsXattr>::new(x))? };
                Ok(Vec::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_the_kernels() {
        assert_eq!(GETFLAGS, 0x8008_6601);
        assert_eq!(SETFLAGS, 0x4008_6602);
        assert_eq!(FSGETXATTR, 0x801c_581f);
        assert_eq!(FSSETXATTR, 0x401c_5820);
        assert_eq!(Op::parse(0x4008_6602, &8u32.to_ne_bytes()), Some(Op::SetFlags(8)));
        assert_eq!(Op::parse(0x4008_6602, &[1]), None, "short input");
        assert_eq!(Op::parse(0x5401, &[]), None, "TCGETS is not ours");
    }
}
