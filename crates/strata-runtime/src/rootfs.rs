//! Inside the new namespaces (as pid 1): /proc, a minimal /dev, a read-only /sys, the
//! bind-mounted files, the hostname, then pivot_root into the rootfs (chroot when the
//! current root cannot be pivoted away, e.g. an initramfs).

use std::path::Path;

use rustix::fs::{FileType, Mode};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use crate::{Network, RunSpec, RuntimeError, sys};

/// Character devices a container gets: name, major, minor.
const DEVICES: [(&str, u32, u32); 6] =
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

fn mkdir_p(p: &Path) {
    // A missing mount point is made (the init layer normally has them all).
    let _ = std::fs::create_dir_all(p);
}

fn mount(src: &str, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> Result<(), RuntimeError> {
    let data = std::ffi::CString::new(data).unwrap_or_default();
    rustix::mount::mount(src, target, fstype, flags, Some(data.as_c_str()))
        .map_err(sys(format!("mount {fstype} on {}", target.display())))
}

pub fn prepare(spec: &RunSpec) -> Result<(), RuntimeError> {
    rustix::process::umask(Mode::empty());
    let root = spec.rootfs.as_path();
    rustix::mount::mount_change("/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)
        .map_err(sys("making / private"))?;
    rustix::mount::mount_bind_recursive(root, root).map_err(sys(format!("bind {}", root.display())))?;
    let nodev = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;

    let proc = root.join("proc");
    mkdir_p(&proc);
    mount("proc", &proc, "proc", nodev, "")?;

    let dev = root.join("dev");
    mkdir_p(&dev);
    mount("tmpfs", &dev, "tmpfs", MountFlags::NOSUID | MountFlags::STRICTATIME, "mode=755,size=65536k")?;
    for (name, major, minor) in DEVICES {
        let p = dev.join(name);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &p,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(major, minor),
        )
        .map_err(sys(format!("mknod {}", p.display())))?;
    }
    let pts = dev.join("pts");
    mkdir_p(&pts);
    mount("devpts", &pts, "devpts", MountFlags::NOSUID | MountFlags::NOEXEC, "newinstance,ptmxmode=0666,mode=0620")?;
    let shm = dev.join("shm");
    mkdir_p(&shm);
    mount("shm", &shm, "tmpfs", nodev, "mode=1777,size=65536k")?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let p = dev.join(link);
        std::os::unix::fs::symlink(target, &p)
            .map_err(|e| RuntimeError::Sys { what: format!("symlink {}", p.display()), cause: e })?;
    }

    let sysfs = root.join("sys");
    mkdir_p(&sysfs);
    if mount("sysfs", &sysfs, "sysfs", nodev | MountFlags::RDONLY, "").is_err() {
        // With the host's network, sysfs may refuse a new instance: bind it read-only.
        rustix::mount::mount_bind_recursive("/sys", &sysfs).map_err(sys("bind /sys"))?;
        rustix::mount::mount_remount(&sysfs, MountFlags::BIND | MountFlags::RDONLY | nodev, "")
            .map_err(sys("remount /sys read-only"))?;
    }

    for (host, path) in &spec.binds {
        let target = root.join(path.trim_start_matches('/'));
        if !target.exists() {
            let _ = std::fs::write(&target, b"");
        }
        rustix::mount::mount_bind(host, &target).map_err(sys(format!(
            "bind {} on {}",
            host.display(),
            target.display()
        )))?;
    }

    rustix::system::sethostname(spec.hostname.as_bytes()).map_err(sys("sethostname"))?;
    if spec.network == Network::None {
        loopback_up()?;
    }

    std::env::set_current_dir(root)
        .map_err(|e| RuntimeError::Sys { what: format!("chdir {}", root.display()), cause: e })?;
    match rustix::process::pivot_root(".", ".") {
        Ok(()) => {
            // The old root is now stacked on "."; detach it.
            rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(sys("detaching the old root"))?;
        }
        Err(e) => {
            tracing::debug!("pivot_root failed ({e}); using chroot");
            rustix::process::chroot(".").map_err(sys("chroot"))?;
        }
    }
    std::env::set_current_dir("/").map_err(|e| RuntimeError::Sys { what: "chdir /".into(), cause: e })?;
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
