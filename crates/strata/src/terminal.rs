//! `-t`: while the container runs, our terminal is in raw mode, so keys (Ctrl-C included)
//! reach the command's pseudo-terminal as they are typed; it comes back as it was.

use std::io;
use std::os::fd::AsFd;

use rustix::termios::{OptionalActions, Termios};

pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    /// Raw mode on stdin if it is a terminal (else nothing to do).
    pub fn enter() -> RawMode {
        let stdin = io::stdin();
        let saved = rustix::termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            raw.make_raw();
            let _ = rustix::termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = rustix::termios::tcsetattr(io::stdin().as_fd(), OptionalActions::Now, t);
        }
    }
}
