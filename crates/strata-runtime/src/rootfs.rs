//! Inside pid 1's own mount namespace: /proc, a minimal /dev, a read-only /sys with the
//! container's own cgroups, the bind-mounted files, the masked and read-only paths, the
//! hostname, then pivot_root into the rootfs (a move over / and chroot when the current
//! root cannot be pivoted away, e.g. an initramfs). Every target inside the rootfs is resolved there
//! ([`Root`]): the container may have made any of them a link.

use std::os::unix::fs::MetadataExt;

use rustix::fs::{FileType, Mode};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use crate::cgroup::hierarchies;
use crate::confine::{MASKED_PATHS, READ_ONLY_PATHS};
use crate::inroot::{Root, fd_path};
use crate::{Network, RunSpec, RuntimeError, sys};

/// Character devices a container gets: name, major, minor.
const DEVICES: [(&str, u32, u32); 6] =
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

const NO_SUID_DEV_EXEC: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV).union(MountFlags::NOEXEC);

/// Mounts everything the container gets inside the rootfs and changes to it.
pub fn prepare(spec: &RunSpec) -> Result<(), RuntimeError> {
    rustix::process::umask(Mode::empty());
    let c = &spec.confinement;
    rustix::mount::mount_change("/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)
        .map_err(sys("making / private"))?;
    // The store's own mount point: a path of ours, not the container's.
    let rootfs = spec.rootfs.as_path();
    rustix::mount::mount_bind_recursive(rootfs, rootfs).map_err(sys(format!("bind {}", rootfs.display())))?;
    let root = Root::open(rootfs)?;

    root.mount("proc", "proc", "proc", NO_SUID_DEV_EXEC, "")?;
    dev(&root, c)?;
    sys_fs(&root, spec)?;

    for (host, path) in &spec.binds {
        let target = root.file(path)?;
        root.bind(&host.to_string_lossy(), &target, path, false)?;
    }
    for v in &spec.volumes {
        volume(&root, v)?;
    }
    if !c.privileged {
        mask(&root)?;
    }
    if c.read_only_root {
        root.remount_read_only("", MountFlags::NODEV)?;
    }

    rustix::system::sethostname(spec.hostname.as_bytes()).map_err(sys("sethostname"))?;
    if spec.network == Network::None {
        loopback_up()?;
    }

    rustix::process::fchdir(root.fd()).map_err(sys(format!("chdir {}", rootfs.display())))?;
    Ok(())
}

/// A `-v` volume: the host path bound (with what is mounted below it, as Docker's
/// `rbind`) on its destination, resolved inside the root (an image's link to a host
/// path means the container's path), made if missing: a directory for a directory, an
/// empty file for anything else.
fn volume(root: &Root, v: &crate::Volume) -> Result<(), RuntimeError> {
    if let Some(options) = &v.tmpfs {
        let (flags, data) = tmpfs_options(options)?;
        let ro = if v.read_only { MountFlags::RDONLY } else { MountFlags::empty() };
        return root.mount("tmpfs", &v.target, "tmpfs", flags | ro, &data);
    }
    let source = v.source.to_string_lossy();
    let meta = std::fs::metadata(&v.source)
        .map_err(|e| RuntimeError::Other(format!("bind source path does not exist: {source} ({e})")))?;
    let target = if meta.is_dir() { root.mkdir_all(&v.target)? } else { root.file(&v.target)? };
    root.bind(&source, &target, &v.target, true)?;
    if v.read_only {
        root.remount_read_only(&v.target, MountFlags::empty())?;
    }
    Ok(())
}

/// A `--tmpfs` option list as mount flags and data: Docker's defaults (`noexec`,
/// `nosuid`, `nodev`) unless the list says otherwise; `size`, `mode`, `uid`, `gid`,
/// `nr_inodes`, `nr_blocks` go to tmpfs.
pub(crate) fn tmpfs_options(options: &str) -> Result<(MountFlags, String), RuntimeError> {
    let mut flags = NO_SUID_DEV_EXEC;
    let mut data = Vec::new();
    for o in options.split(',').filter(|o| !o.is_empty()) {
        let (key, _) = o.split_once('=').unwrap_or((o, ""));
        match o {
            "rw" => flags.remove(MountFlags::RDONLY),
            "ro" => flags.insert(MountFlags::RDONLY),
            "exec" => flags.remove(MountFlags::NOEXEC),
            "noexec" => flags.insert(MountFlags::NOEXEC),
            "suid" => flags.remove(MountFlags::NOSUID),
            "nosuid" => flags.insert(MountFlags::NOSUID),
            "dev" => flags.remove(MountFlags::NODEV),
            "nodev" => flags.insert(MountFlags::NODEV),
            "sync" => flags.insert(MountFlags::SYNCHRONOUS),
            "async" => flags.remove(MountFlags::SYNCHRONOUS),
            "noatime" => flags.insert(MountFlags::NOATIME),
            "atime" => flags.remove(MountFlags::NOATIME),
            _ if matches!(key, "size" | "mode" | "uid" | "gid" | "nr_inodes" | "nr_blocks") => data.push(o),
            _ => return Err(RuntimeError::Other(format!("tmpfs option '{o}' is not supported"))),
        }
    }
    Ok((flags, data.join(",")))
}

/// Makes the current directory (the prepared rootfs) the root.
pub fn enter() -> Result<(), RuntimeError> {
    match rustix::process::pivot_root(".", ".") {
        Ok(()) => {
            // The old root is now stacked on "."; detach it.
            rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(sys("detaching the old root"))?;
        }
        Err(e) => {
            // An initramfs root cannot be pivoted away. A plain chroot would leave the
            // host's tree one `chroot x; cd ../..` away (root keeps CAP_SYS_CHROOT): the
            // rootfs is moved over / first, as runc does, so there is nothing above it.
            tracing::debug!("pivot_root failed ({e}); moving the rootfs over / and chrooting");
            rustix::mount::mount_move(".", "/").map_err(sys("moving the rootfs over /"))?;
            rustix::process::chroot(".").map_err(sys("chroot"))?;
        }
    }
    std::env::set_current_dir("/").map_err(|e| RuntimeError::Sys { what: "chdir /".into(), cause: e })?;
    Ok(())
}

/// A tmpfs /dev with the usual character devices, those given with `--device`, its own
/// devpts and shm; no host device.
fn dev(root: &Root, c: &crate::Confinement) -> Result<(), RuntimeError> {
    root.mount("tmpfs", "dev", "tmpfs", MountFlags::NOSUID | MountFlags::STRICTATIME, "mode=755,size=65536k")?;
    for (name, major, minor) in DEVICES {
        root.mknod(&format!("dev/{name}"), FileType::CharacterDevice, 0o666, rustix::fs::makedev(major, minor))?;
    }
    for (host, path) in &c.device_nodes {
        let meta =
            std::fs::metadata(host).map_err(|e| RuntimeError::Sys { what: format!("device {host}"), cause: e })?;
        let kind = FileType::from_raw_mode(meta.mode());
        if kind != FileType::CharacterDevice && kind != FileType::BlockDevice {
            return Err(RuntimeError::Other(format!("device {host}: not a device node")));
        }
        root.mknod(path, kind, meta.mode() & 0o777, meta.rdev())?;
    }
    root.mount(
        "devpts",
        "dev/pts",
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    )?;
    root.mount("shm", "dev/shm", "tmpfs", NO_SUID_DEV_EXEC, "mode=1777,size=65536k")?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        root.symlink(target, &format!("dev/{link}"))?;
    }
    Ok(())
}

/// /sys read-only (unless privileged), and /sys/fs/cgroup showing the container's own
/// cgroups only (the cgroup namespace is rooted at them), read-only too.
fn sys_fs(root: &Root, spec: &RunSpec) -> Result<(), RuntimeError> {
    let privileged = spec.confinement.privileged;
    let ro = if privileged { MountFlags::empty() } else { MountFlags::RDONLY };
    if root.mount("sysfs", "sys", "sysfs", NO_SUID_DEV_EXEC | ro, "").is_err() {
        // With the host's network, sysfs may refuse a new instance: bind it, without
        // what is mounted below it.
        let target = root.mkdir_all("sys")?;
        root.bind("/sys", &target, "sys", false)?;
        if !privileged {
            root.remount_read_only("sys", NO_SUID_DEV_EXEC)?;
        }
    }
    if crate::cgroup::unified_only() {
        // v2 only: the unified hierarchy itself, as the cgroup namespace shows it.
        return root.mount("cgroup2", "sys/fs/cgroup", "cgroup2", NO_SUID_DEV_EXEC | ro, "");
    }
    root.mount("tmpfs", "sys/fs/cgroup", "tmpfs", NO_SUID_DEV_EXEC, "mode=755")?;
    for h in hierarchies() {
        let Some(name) = h.path.file_name() else { continue };
        let rel = format!("sys/fs/cgroup/{}", name.to_string_lossy());
        root.mount(&h.fstype, &rel, &h.fstype, NO_SUID_DEV_EXEC | ro, &h.options)?;
    }
    // The host's aliases (cpu -> cpu,cpuacct).
    for e in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_symlink())
            && let Ok(target) = std::fs::read_link(e.path())
        {
            root.symlink(&target.to_string_lossy(), &format!("sys/fs/cgroup/{}", e.file_name().to_string_lossy()))?;
        }
    }
    if !privileged {
        let fd = root.resolve("sys/fs/cgroup")?.ok_or_else(|| RuntimeError::Other("/sys/fs/cgroup vanished".into()))?;
        rustix::mount::mount_remount(fd_path(&fd).as_str(), NO_SUID_DEV_EXEC | MountFlags::RDONLY, "")
            .map_err(sys("making /sys/fs/cgroup read-only"))?;
    }
    Ok(())
}

/// Docker's masked paths (an empty read-only tmpfs on a directory, /dev/null on a file)
/// and read-only paths.
fn mask(root: &Root) -> Result<(), RuntimeError> {
    let null = root.resolve("dev/null")?.ok_or_else(|| RuntimeError::Other("/dev/null is missing".into()))?;
    for rel in MASKED_PATHS {
        let Some(fd) = root.resolve(rel)? else { continue };
        let st = rustix::fs::fstat(&fd).map_err(sys(format!("stat /{rel}")))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            root.mount("tmpfs", rel, "tmpfs", NO_SUID_DEV_EXEC | MountFlags::RDONLY, "size=0")?;
        } else {
            root.bind(&fd_path(&null), &fd, rel, false)?;
        }
    }
    for rel in READ_ONLY_PATHS {
        let Some(fd) = root.resolve(rel)? else { continue };
        root.bind(&fd_path(&fd), &fd, rel, true)?;
        root.remount_read_only(rel, NO_SUID_DEV_EXEC)?;
    }
    Ok(())
}

/// Brings up `lo` in a new network namespace.
fn loopback_up() -> Result<(), RuntimeError> {
    // SAFETY: a socket for the interface ioctls, closed below; ifreq is plain data with
    // a NUL-terminated name.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(RuntimeError::Sys { what: "socket".into(), cause: std::io::Error::last_os_error() });
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let ok = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) == 0 && {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) == 0
        };
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if !ok {
            return Err(RuntimeError::Sys { what: "bringing up lo".into(), cause: err });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_option_lists() {
        let (flags, data) = tmpfs_options("size=64m,mode=1777,exec").expect("valid");
        assert_eq!(data, "size=64m,mode=1777");
        assert!(!flags.contains(MountFlags::NOEXEC) && flags.contains(MountFlags::NOSUID | MountFlags::NODEV));
        assert!(tmpfs_options("ro").expect("valid").0.contains(MountFlags::RDONLY));
        assert!(tmpfs_options("size=1m,bogus").is_err());
    }
}
