//! Directory listings kept between the readdir requests of one pass over a directory.
//!
//! The daemon declines OPENDIR: the kernel then stops sending OPENDIR and RELEASEDIR (two
//! round trips per directory open) and still caches listings (`FOPEN_CACHE_DIR` is its
//! default without opendir). With no open handle to hold a listing, the offsets handed to
//! the kernel name it instead: entry `i` of listing `id` has offset `id << 32 | (i + 3)`
//! (1 and 2 are `.` and `..`). A pass from offset 0 takes a fresh listing; the following
//! requests find it again by the offset the kernel sends back. A listing whose pass reached
//! its end is kept a while longer among the recently finished ones: the kernel caches the
//! entries it got (with their offsets) and another reader of that cache asks for the rest
//! at the last cached offset, which must still name that listing (a fresh listing read
//! from the same index would repeat or skip names when the directory changed meanwhile:
//! `os.listdir` saw a name twice a few times a minute under concurrent renames). A request
//! naming a listing that was dropped anyway (too many kept: passes abandoned half-way)
//! lists the directory again and goes on from the same index.

use std::collections::BTreeMap;
use std::sync::Arc;

use fuser::Errno;
use parking_lot::Mutex;

use crate::inode::Ino;
use crate::union::DirEntry;

/// Listings kept at most, and entries in all of them: a bound on abandoned passes.
const MAX_KEPT: usize = 512;
const MAX_ENTRIES: usize = 1 << 20;
/// Finished listings kept at most, and entries in them.
const MAX_FINISHED: usize = 64;
const MAX_FINISHED_ENTRIES: usize = 1 << 16;
/// Listing ids stay below 2^31, so offsets stay below 2^63 (the kernel's `loff_t`).
const ID_MASK: u32 = 0x7fff_ffff;

/// One listing of one directory.
pub struct Listing {
    pub dir: Ino,
    pub entries: Vec<DirEntry>,
}

#[derive(Default)]
pub struct Listings {
    inner: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    next: u32,
    /// By id: ids grow, so the first is the oldest (but for a wrap every 2^31 listings,
    /// which only makes one pass list again).
    by_id: BTreeMap<u32, Arc<Listing>>,
    entries: usize,
    /// Listings whose pass reached its end, by id, oldest first.
    finished: BTreeMap<u32, Arc<Listing>>,
    finished_entries: usize,
}

/// Where a readdir request goes on: the listing, its id and the index of the next entry.
pub struct Resume {
    pub id: u32,
    pub next: usize,
    pub listing: Arc<Listing>,
}

/// The offset the kernel gets for entry `index` of listing `id`: the request that follows
/// it resumes at `index + 1`.
pub fn offset_of(id: u32, index: usize) -> u64 {
    (u64::from(id) << 32) | (index as u64 + 3)
}

impl Listings {
    /// The listing a request for `dir` at `offset` continues, or a fresh one from `list`.
    pub fn resume(
        &self,
        dir: Ino,
        offset: u64,
        list: impl FnOnce() -> Result<Vec<DirEntry>, Errno>,
    ) -> Result<Resume, Errno> {
        let (id, next) = match offset {
            0..=2 => (None, 0),
            off => (Some((off >> 32) as u32), (off & 0xffff_ffff).saturating_sub(2) as usize),
        };
        if let Some(id) = id {
            let kept = self.inner.lock();
            let found = kept.by_id.get(&id).or_else(|| kept.finished.get(&id)).filter(|l| l.dir == dir);
            if let Some(listing) = found {
                return Ok(Resume { id, next, listing: listing.clone() });
            }
        }
        let listing = Arc::new(Listing { dir, entries: list()? });
        let mut kept = self.inner.lock();
        let id = kept.next & ID_MASK;
        kept.next = kept.next.wrapping_add(1);
        kept.entries += listing.entries.len();
        kept.by_id.insert(id, listing.clone());
        while kept.by_id.len() > MAX_KEPT || (kept.entries > MAX_ENTRIES && kept.by_id.len() > 1) {
            let Some((_, old)) = kept.by_id.pop_first() else { break };
            kept.entries -= old.entries.len();
        }
        Ok(Resume { id, next, listing })
    }

    /// The pass over listing `id` has reached its end: the listing moves to the recently
    /// finished ones.
    pub fn finished(&self, id: u32) {
        let mut kept = self.inner.lock();
        let Some(done) = kept.by_id.remove(&id) else { return };
        kept.entries -= done.entries.len();
        if done.entries.len() > MAX_FINISHED_ENTRIES {
            return;
        }
        kept.finished_entries += done.entries.len();
        kept.finished.insert(id, done);
        while kept.finished.len() > MAX_FINISHED || kept.finished_entries > MAX_FINISHED_ENTRIES {
            let Some((_, old)) = kept.finished.pop_first() else { break };
            kept.finished_entries -= old.entries.len();
        }
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.inner.lock().by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn entries(n: usize) -> Vec<DirEntry> {
        (0..n)
            .map(|i| DirEntry { name: OsString::from(format!("f{i}")), kind: fuser::FileType::RegularFile, pos: 0 })
            .collect()
    }

    #[test]
    fn a_pass_resumes_its_own_listing_even_after_its_end() {
        let l = Listings::default();
        let first = l.resume(7, 0, || Ok(entries(5))).unwrap();
        assert_eq!(first.next, 0);
        // The directory changed meanwhile: the pass keeps the listing it started with.
        let off = offset_of(first.id, 2);
        let again = l.resume(7, off, || Ok(entries(1))).unwrap();
        assert_eq!((again.id, again.next, again.listing.entries.len()), (first.id, 3, 5));
        l.finished(first.id);
        assert_eq!(l.kept(), 0);
        // A reader of the kernel's cache asks for the rest at the last cached offset: the
        // finished listing answers (the end), not a fresh one from the same index.
        let cached = l.resume(7, offset_of(first.id, 4), || Ok(entries(9))).unwrap();
        assert_eq!((cached.id, cached.next, cached.listing.entries.len()), (first.id, 5, 5));
    }

    #[test]
    fn a_dropped_or_foreign_listing_is_taken_again_at_the_same_index() {
        let l = Listings::default();
        let first = l.resume(7, 0, || Ok(entries(5))).unwrap();
        let off = offset_of(first.id, 1);
        // Another directory's request carrying this offset does not get its listing.
        let other = l.resume(8, off, || Ok(entries(3))).unwrap();
        assert_ne!(other.id, first.id);
        assert_eq!((other.next, other.listing.entries.len()), (2, 3));
        l.finished(first.id);
        // Pushed out of the recently finished ones by newer passes.
        for _ in 0..MAX_FINISHED {
            let p = l.resume(9, 0, || Ok(entries(1))).unwrap();
            l.finished(p.id);
        }
        let relisted = l.resume(7, off, || Ok(entries(4))).unwrap();
        assert_eq!((relisted.next, relisted.listing.entries.len()), (2, 4));
    }

    #[test]
    fn abandoned_passes_are_bounded() {
        let l = Listings::default();
        for _ in 0..MAX_KEPT + 10 {
            l.resume(1, 0, || Ok(entries(1))).unwrap();
        }
        assert_eq!(l.kept(), MAX_KEPT);
        let big = l.resume(2, 0, || Ok(entries(MAX_ENTRIES))).unwrap();
        assert_eq!(l.kept(), 1, "only the newest survives an overflow of entries");
        assert_eq!(l.inner.lock().entries, big.listing.entries.len());
    }
}
