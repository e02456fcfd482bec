//! Content digests (`sha256:<hex>`), digesting readers and chain IDs.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::StoreError;

/// A validated `sha256:` digest: 64 lowercase hex digits (image-spec `descriptor.md`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(h: Sha256) -> Digest {
        let sum = h.finalize();
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        for b in sum {
            s.push_str(&format!("{b:02x}"));
        }
        Digest(s)
    }

    /// The 64 hex digits, without `sha256:`.
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, as `docker images` shows them.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

impl FromStr for Digest {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Digest, StoreError> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| StoreError::Format(format!("digest '{s}': only sha256 digests are supported")))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(StoreError::Format(format!("digest '{s}': not 64 lowercase hex digits")));
        }
        Ok(Digest(s.to_string()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln)).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => Digest::of(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// A running digest shared between the reader or writer that feeds it and the code that
/// reads the result once the stream (often owned by a decoder) is done.
#[derive(Clone, Default)]
pub struct Digester(Rc<RefCell<(Sha256, u64)>>);

impl Digester {
    fn update(&self, bytes: &[u8]) {
        let mut s = self.0.borrow_mut();
        s.0.update(bytes);
        s.1 += bytes.len() as u64;
    }

    /// The digest and byte count of everything seen so far.
    pub fn result(&self) -> (Digest, u64) {
        let s = self.0.borrow();
        (Digest::from_hasher(s.0.clone()), s.1)
    }
}

/// Reads through, digesting every byte.
pub struct DigestReader<R> {
    inner: R,
    digester: Digester,
}

impl<R: Read> DigestReader<R> {
    pub fn new(inner: R) -> (DigestReader<R>, Digester) {
        let digester = Digester::default();
        (DigestReader { inner, digester: digester.clone() }, digester)
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

/// Writes through, digesting every byte.
pub struct DigestWriter<W> {
    inner: W,
    digester: Digester,
}

impl<W: Write> DigestWriter<W> {
    pub fn new(inner: W) -> (DigestWriter<W>, Digester) {
        let digester = Digester::default();
        (DigestWriter { inner, digester: digester.clone() }, digester)
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_sha256() {
        let ok = format!("sha256:{}", "a".repeat(64));
        assert_eq!(ok.parse::<Digest>().map(|d| d.hex().len()).ok(), Some(64));
        for bad in ["sha512:aa", "sha256:ABC", "aaaa", "sha256:../../etc/passwd"] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn chain_id_matches_the_fixture() {
        // The app fixture's first two diff IDs and their chain ID (research/formats.md).
        let a: Digest = "sha256:47185da97beabd156ea2bd5022ffc7f577ebeae17e46bf3832791f354ae99a35".parse().unwrap();
        let b: Digest = "sha256:37283a14b7864099939cd07466b384318f6cedd2255982cb627547204e55d135".parse().unwrap();
        let chain = chain_ids(&[a.clone(), b]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1].hex(), "afc5acea2442368dfd2441ed63754868aad58e0c3d9d37c4407f9be9828b12d6");
    }
}
