//! Progress of long work, reported to whoever shows it (the CLI draws bars).

use std::io::{self, Read};

pub trait Progress {
    /// A new stage of work, `total` bytes long when known.
    fn begin(&self, label: &str, total: Option<u64>);
    fn advance(&self, bytes: u64);
    fn end(&self);
    /// A line for the user, e.g. "Loaded image: app:latest".
    fn note(&self, line: &str);
}

/// Shows nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn begin(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn end(&self) {}
    fn note(&self, _: &str) {}
}

/// Reports the bytes read through it.
pub struct ProgressReader<'a, R> {
    pub inner: R,
    pub progress: &'a dyn Progress,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
