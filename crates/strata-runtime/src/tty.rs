//! `-t`: a pseudo-terminal from the container's own devpts (so `tty` and `ttyname` work
//! inside), opened in the container's root; the command gets the slave as stdio and
//! controlling terminal, and the master goes (over a socket) to the `strata` process
//! outside the container, which relays it to its own stdin and stdout.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::thread::JoinHandle;

use rustix::fs::{Mode, OFlags};

use crate::{RuntimeError, sys};

pub struct Pty {
    master: OwnedFd,
    /// The other side, for the command (none on the relaying side).
    slave: Option<OwnedFd>,
}

/// Gives terminal `master` the size of ours (stdout). Two ioctls, async-signal-safe: the
/// SIGWINCH handler calls it too.
pub(crate) fn copy_winsize(master: BorrowedFd<'_>) {
    if let Ok(size) = rustix::termios::tcgetwinsize(rustix::stdio::stdout()) {
        let _ = rustix::termios::tcsetwinsize(master, size);
    }
}

impl Pty {
    /// Opens the container's own devpts instance: `dev/pts/ptmx` resolved inside the
    /// current directory, which is the container's root (before or after entering it),
    /// so that no link of the container's leads elsewhere; the slave comes from the master
    /// itself (TIOCGPTPEER), never by path. Sized like our terminal.
    fn open() -> Result<Pty, RuntimeError> {
        use rustix::fs::ResolveFlags;
        let master = rustix::fs::openat2(
            rustix::fs::CWD,
            "dev/pts/ptmx",
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(sys("opening the container's /dev/pts/ptmx"))?;
        rustix::pty::unlockpt(&master).map_err(sys("unlockpt"))?;
        let flags =
            rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY | rustix::pty::OpenptFlags::CLOEXEC;
        let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags).map_err(sys("opening the terminal's other side"))?;
        copy_winsize(master.as_fd());
        Ok(Pty { master, slave: Some(slave) })
    }

    /// [`Pty::open`], its master sent to the process that relays it (the `strata` process
    /// outside the container: the command's side has no thread, or no place, to relay).
    pub fn open_for(socket: &OwnedFd) -> Result<Pty, RuntimeError> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let pty = Pty::open()?;
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds = [pty.master.as_fd()];
        control.push(SendAncillaryMessage::ScmRights(&fds));
        rustix::net::sendmsg(socket, &[io::IoSlice::new(b"t")], &mut control, SendFlags::empty())
            .map_err(sys("sending the terminal"))?;
        Ok(pty)
    }

    /// In the command: a new session with the terminal as controlling terminal and
    /// stdin, stdout, stderr.
    pub fn attach(&self) -> Result<(), RuntimeError> {
        let slave = self.slave.as_ref().ok_or_else(|| RuntimeError::Other("no terminal to attach".into()))?;
        rustix::process::setsid().map_err(sys("setsid"))?;
        rustix::process::ioctl_tiocsctty(slave).map_err(sys("TIOCSCTTY"))?;
        rustix::stdio::dup2_stdin(slave).map_err(sys("dup2"))?;
        rustix::stdio::dup2_stdout(slave).map_err(sys("dup2"))?;
        rustix::stdio::dup2_stderr(slave).map_err(sys("dup2"))?;
        Ok(())
    }

    /// Relays our stdin to the terminal (with `stdin`) and the terminal to our stdout;
    /// resizes of our terminal follow.
    pub fn relay(self, stdin: bool) -> Output {
        crate::signals::resize_into(self.master.as_raw_fd());
        if stdin && let Ok(fd) = self.master.try_clone() {
            let mut to = File::from(fd);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut input = io::stdin();
                while let Ok(n) = input.read(&mut buf) {
                    if n == 0 || to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
        let mut from = File::from(self.master);
        Output(std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut out = io::stdout();
            // EIO once nothing holds the slave side any more.
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
        }))
    }
}

/// Receives the master [`Pty::open_for`] sent; `None` if the sender went away first.
pub fn receive_master(socket: &OwnedFd) -> Option<Pty> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let msg =
        rustix::net::recvmsg(socket, &mut [io::IoSliceMut::new(&mut byte)], &mut control, RecvFlags::CMSG_CLOEXEC)
            .ok()?;
    if msg.bytes == 0 {
        return None;
    }
    control.drain().find_map(|m| match m {
        RecvAncillaryMessage::ScmRights(mut fds) => fds.next().map(|master| Pty { master, slave: None }),
        _ => None,
    })
}

pub struct Output(JoinHandle<()>);

impl Output {
    /// Waits (briefly) for the command's last output to be relayed.
    pub fn finish(self) {
        for _ in 0..50 {
            if self.0.is_finished() {
                let _ = self.0.join();
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
