//! Tar-split: a layer tar kept as its "skeleton" (every byte but the regular files'
//! contents, which the unpacked layer directory already holds), so that `save` can rebuild
//! the byte-identical tar and therefore the same diff ID, without storing each layer twice.
//!
//! The skeleton is a gzip stream of records: `R` + u32 length + raw bytes, and
//! `F` + u64 size + u16 path length + path: `size` bytes from that file of the layer.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use flate2::Compression as Level;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use crate::error::{IoContext, Result, StoreError};

const RAW: u8 = b'R';
const FILE: u8 = b'F';
const FLUSH_AT: usize = 1 << 16;

struct State {
    out: GzEncoder<BufWriter<File>>,
    /// Bytes of the tar stream seen so far.
    pos: u64,
    /// End of the file content being read now: those bytes are not recorded.
    content_end: u64,
    raw: Vec<u8>,
    error: Option<io::Error>,
}

impl State {
    fn flush_raw(&mut self) -> io::Result<()> {
        if self.raw.is_empty() {
            return Ok(());
        }
        self.out.write_all(&[RAW])?;
        self.out.write_all(&(self.raw.len() as u32).to_le_bytes())?;
        self.out.write_all(&self.raw)?;
        self.raw.clear();
        Ok(())
    }
}

/// Records a tar stream read through [`SplitRecorder::tee`].
#[derive(Clone)]
pub struct SplitRecorder(Rc<RefCell<State>>);

impl SplitRecorder {
    pub fn create(path: &Path) -> Result<SplitRecorder> {
        let file = File::create(path).at(path)?;
        let out = GzEncoder::new(BufWriter::new(file), Level::fast());
        Ok(SplitRecorder(Rc::new(RefCell::new(State { out, pos: 0, content_end: 0, raw: Vec::new(), error: None }))))
    }

    /// The tar stream, to be read by the tar parser.
    pub fn tee<R: Read>(&self, inner: R) -> Tee<R> {
        Tee { inner, rec: self.clone() }
    }

    /// Declares that the next `size` bytes, starting at `start`, are the content of the
    /// layer file `rel`. Returns false (and records them as raw bytes) when the stream is
    /// not exactly at `start`.
    pub fn file_content(&self, start: u64, size: u64, rel: &Path) -> bool {
        let mut s = self.0.borrow_mut();
        if s.pos != start || size == 0 {
            return false;
        }
        let path = rel.as_os_str().as_bytes();
        let Ok(path_len) = u16::try_from(path.len()) else { return false };
        let res = s.flush_raw().and_then(|()| {
            s.out.write_all(&[FILE])?;
            s.out.write_all(&size.to_le_bytes())?;
            s.out.write_all(&path_len.to_le_bytes())?;
            s.out.write_all(path)
        });
        if let Err(e) = res {
            s.error.get_or_insert(e);
        }
        s.content_end = start + size;
        true
    }

    /// Writes out the rest and syncs the skeleton file.
    pub fn finish(self, path: &Path) -> Result<()> {
        let state = Rc::try_unwrap(self.0)
            .map_err(|_| StoreError::Format("tar-split recorder still in use".into()))?
            .into_inner();
        let mut state = state;
        if let Some(e) = state.error.take() {
            return Err(e).at(path);
        }
        state.flush_raw().at(path)?;
        let out = state.out;
        let file = out.finish().at(path)?.into_inner().map_err(|e| e.into_error()).at(path)?;
        file.sync_all().at(path)
    }
}

pub struct Tee<R> {
    inner: R,
    rec: SplitRecorder,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut s = self.rec.0.borrow_mut();
        let skipped = s.content_end.saturating_sub(s.pos).min(n as u64) as usize;
        s.pos += n as u64;
        if skipped < n {
            s.raw.extend_from_slice(&buf[skipped..n]);
            if s.raw.len() >= FLUSH_AT {
                let res = s.flush_raw();
                if let Err(e) = res {
                    s.error.get_or_insert(e);
                }
            }
        }
        Ok(n)
    }
}

/// Rebuilds the tar recorded in `skeleton` from the files of `layer_dir` into `out`.
pub fn reassemble(skeleton: &Path, layer_dir: &Path, out: &mut dyn Write) -> Result<()> {
    let file = File::open(skeleton).at(skeleton)?;
    let mut r = GzDecoder::new(BufReader::new(file));
    let bad = |what: &str| StoreError::Format(format!("{}: corrupt tar-split ({what})", skeleton.display()));
    let mut buf = Vec::new();
    loop {
        let mut tag = [0u8; 1];
        match r.read(&mut tag).at(skeleton)? {
            0 => return Ok(()),
            _ if tag[0] == RAW => {
                let mut len = [0u8; 4];
                r.read_exact(&mut len).map_err(|_| bad("short raw record"))?;
                buf.resize(u32::from_le_bytes(len) as usize, 0);
                r.read_exact(&mut buf).map_err(|_| bad("short raw record"))?;
                out.write_all(&buf).at("<output>")?;
            }
            _ if tag[0] == FILE => {
                let mut size = [0u8; 8];
                let mut len = [0u8; 2];
                r.read_exact(&mut size).map_err(|_| bad("short file record"))?;
                r.read_exact(&mut len).map_err(|_| bad("short file record"))?;
                buf.resize(u16::from_le_bytes(len) as usize, 0);
                r.read_exact(&mut buf).map_err(|_| bad("short file record"))?;
                let rel = Path::new(std::ffi::OsStr::from_bytes(&buf));
                let size = u64::from_le_bytes(size);
                copy_layer_file(layer_dir, rel, size, out)?;
            }
            _ => return Err(bad("unknown record")),
        }
    }
}

/// Copies exactly `size` bytes of `layer_dir/rel`, never following a symlink.
fn copy_layer_file(layer_dir: &Path, rel: &Path, size: u64, out: &mut dyn Write) -> Result<()> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let path = layer_dir.join(rel);
    let dir =
        rustix::fs::open(layer_dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).at(layer_dir)?;
    let at = strata_union::sys::reach_beneath(dir.as_fd(), rel).at(&path)?;
    let fd = strata_union::sys::openat2(
        at.dir(),
        at.rel(),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .at(&path)?;
    let mut f = File::from(fd);
    let copied = io::copy(&mut (&mut f).take(size), out).at(&path)?;
    let extra = f.read(&mut [0u8; 1]).at(&path)?;
    if copied != size || extra != 0 {
        return Err(StoreError::Format(format!(
            "{}: the layer's file changed on disk (expected {size} bytes); the layer cannot be exported as loaded",
            path.display()
        )));
    }
    Ok(())
}
