//! Layer compression, recognised by magic bytes rather than trusted from a media type
//! (`docker load` takes compressed layers in archives that call them plain tars).

use std::io::{self, BufReader, Cursor, Read};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The OCI layer media type for this compression.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Reads the first bytes of `r` to tell its compression, and returns a reader that still
/// yields every byte.
pub fn sniff<R: Read>(mut r: R) -> io::Result<(Compression, impl Read)> {
    let mut head = [0u8; 4];
    let got = read_full(&mut r, &mut head)?;
    let kind = match &head[..got] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    };
    Ok((kind, Cursor::new(head[..got].to_vec()).chain(r)))
}

/// The decompressed stream of `r`, whatever its compression.
pub fn decompress<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(decompress_sniffed(r)?.1)
}

/// The decompressed stream of `r`, and the compression it had.
pub fn decompress_sniffed<'a, R: Read + 'a>(r: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let (kind, r) = sniff(r)?;
    Ok((
        kind,
        match kind {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, r))),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
        },
    ))
}

/// Fills `buf` as far as the stream goes; returns how much it got (less only at the end).
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
