//! strata-union: a union filesystem with AUFS semantics, served through FUSE.
//!
//! Layers: [`options`] turns mount options into a [`MountSpec`]; [`mount`] checks and opens
//! the branches and runs the FUSE session; [`union`] holds the semantics (resolution,
//! copy-up, whiteouts) over the [`inode`] table; [`fs`] answers the kernel.

pub mod branch;
pub mod copyup;
pub mod error;
pub mod fileattr;
pub mod fs;
pub mod inode;
pub mod links;
pub mod listings;
pub mod mount;
pub mod names;
pub mod options;
pub mod persist;
pub mod reply;
pub mod restack;
pub mod sys;
pub mod union;
pub mod uring;
pub mod view;
pub mod whiteout;

pub use branch::{BranchSpec, Perm};
pub use error::{MountError, OptionError};
pub use mount::{Prepared, branches_of, change_branches, is_strata_mount, prepare, unmount};
pub use options::MountSpec;
pub use restack::BranchChange;
pub use whiteout::Format;
