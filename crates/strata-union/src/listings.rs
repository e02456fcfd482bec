//! Directory listings kept between the readdir requests of one pass over a directory.
//!
//! The daemon declines OPENDIR: the kernel then stops sending OPENDIR and RELEASEDIR (two
//! round trips per directory open) and still caches listings (`FOPEN_CACHE_DIR` is its
//! default without opendir). With no open handle to hold a listing, the offsets handed to
//! the kernel name it instead: an entry's offset is `id << 43 | key`, where `id` names the
//! listing and `key` is the entry's own: a hash of its name (keyed per mount), and a
//! listing is ordered by key (1 and 2 are `.` and `..`). A pass from offset 0 takes a
//! fresh listing; the following requests find it again by the offset the kernel sends
//! back, and go on after the key. A listing whose pass reached its end is kept a while
//! longer among the recently finished ones: the kernel caches the entries it got (with
//! their offsets) and another reader of that cache asks for the rest at the last cached
//! offset, which then still names that listing (`os.listdir` saw a name twice a few times
//! a minute under concurrent renames when a fresh listing answered).
//!
//! A request naming a listing that is gone (too many kept, or a position saved with
//! `telldir` long ago) lists the directory again and goes on after the same key, as ext4
//! goes on after a hash: names that were there before and still are are neither skipped
//! nor repeated, whatever was added or removed meanwhile, and the listing never ends
//! early.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
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
/// An offset is a listing id (20 bits, wrapping) above an entry key (43 bits): below
/// 2^63, the kernel's `loff_t`.
const KEY_BITS: u32 = 43;
const KEY_MASK: u64 = (1 << KEY_BITS) - 1;
const ID_MASK: u32 = (1 << 20) - 1;
/// Keys start above `.` and `..` and leave room below the top for the rare collision.
const FIRST_KEY: u64 = 3;
const KEY_SPAN: u64 = KEY_MASK - FIRST_KEY - (1 << 20);

/// One listing of one directory, ordered by key.
pub struct Listing {
    pub dir: Ino,
    pub entries: Vec<DirEntry>,
    keys: Vec<u64>,
}

impl Listing {
    fn new(dir: Ino, entries: Vec<DirEntry>, hasher: &RandomState) -> Listing {
        let keyed = entries.into_iter().map(|e| (hasher.hash_one(&e.name) % KEY_SPAN + FIRST_KEY, e)).collect();
        let (keys, entries) = in_key_order(keyed);
        Listing { dir, entries, keys }
    }

    /// The offset of entry `index`, in listing `id`: the request that follows it goes on
    /// after that entry's key.
    pub fn offset_of(&self, id: u32, index: usize) -> u64 {
        (u64::from(id) << KEY_BITS) | self.keys[index]
    }

    /// The index of the first entry after `key`.
    fn after(&self, key: u64) -> usize {
        self.keys.partition_point(|k| *k <= key)
    }
}

/// Sorts entries by key; two names with one key (a 43-bit collision) get distinct keys,
/// in name order.
fn in_key_order(mut keyed: Vec<(u64, DirEntry)>) -> (Vec<u64>, Vec<DirEntry>) {
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    for i in 1..keyed.len() {
        if keyed[i].0 <= keyed[i - 1].0 {
            keyed[i].0 = keyed[i - 1].0 + 1;
        }
    }
    keyed.into_iter().unzip()
}

#[derive(Default)]
pub struct Listings {
    inner: Mutex<Kept>,
    /// Keys names by hash: random per mount, so no one can make names collide on purpose.
    hasher: RandomState,
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

impl Listings {
    /// The listing a request for `dir` at `offset` continues, or a fresh one from `list`.
    pub fn resume(
        &self,
        dir: Ino,
        offset: u64,
        list: impl FnOnce() -> Result<Vec<DirEntry>, Errno>,
    ) -> Result<Resume, Errno> {
        let (id, key) = match offset {
            0..=2 => (None, 0),
            off => (Some((off >> KEY_BITS) as u32), off & KEY_MASK),
        };
        if let Some(id) = id {
            let kept = self.inner.lock();
            let found = kept.by_id.get(&id).or_else(|| kept.finished.get(&id)).filter(|l| l.dir == dir);
            if let Some(listing) = found {
                return Ok(Resume { id, next: listing.after(key), listing: listing.clone() });
            }
        }
        let listing = Arc::new(Listing::new(dir, list()?, &self.hasher));
        let next = listing.after(key);
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

    fn named(names: &[&str]) -> Vec<DirEntry> {
        names.iter().map(|n| DirEntry { name: OsString::from(n), kind: fuser::FileType::RegularFile, pos: 0 }).collect()
    }

    fn entries(n: usize) -> Vec<DirEntry> {
        let names: Vec<String> = (0..n).map(|i| format!("f{i}")).collect();
        named(&names.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn names_from(r: &Resume) -> Vec<String> {
        r.listing.entries[r.next..].iter().map(|e| e.name.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn a_pass_resumes_its_own_listing_even_after_its_end() {
        let l = Listings::default();
        let first = l.resume(7, 0, || Ok(entries(5))).unwrap();
        assert_eq!(first.next, 0);
        // The directory changed meanwhile: the pass keeps the listing it started with.
        let off = first.listing.offset_of(first.id, 2);
        let again = l.resume(7, off, || Ok(entries(1))).unwrap();
        assert_eq!((again.id, again.next, again.listing.entries.len()), (first.id, 3, 5));
        l.finished(first.id);
        assert_eq!(l.kept(), 0);
        // A reader of the kernel's cache asks for the rest at the last cached offset: the
        // finished listing answers (the end), not a fresh one.
        let cached = l.resume(7, first.listing.offset_of(first.id, 4), || Ok(entries(9))).unwrap();
        assert_eq!((cached.id, cached.next, cached.listing.entries.len()), (first.id, 5, 5));
    }

    #[test]
    fn a_gone_listing_goes_on_after_the_same_name() {
        let l = Listings::default();
        let all: Vec<String> = (0..50).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let first = l.resume(7, 0, || Ok(named(&refs))).unwrap();
        let seen: Vec<String> = names_from(&first)[..20].to_vec();
        let off = first.listing.offset_of(first.id, 19);
        l.finished(first.id);
        // Pushed out of the recently finished ones by newer passes.
        for _ in 0..MAX_FINISHED + 1 {
            let p = l.resume(9, 0, || Ok(entries(1))).unwrap();
            l.finished(p.id);
        }
        // Meanwhile half the names seen went, and new ones came.
        let mut now: Vec<&str> = refs.iter().copied().filter(|n| !seen[..10].iter().any(|s| s == n)).collect();
        now.extend(["new1", "new2", "new3"]);
        let relisted = l.resume(7, off, || Ok(named(&now))).unwrap();
        assert_ne!(relisted.id, first.id);
        let rest = names_from(&relisted);
        // Every name not yet seen that is still there comes, once; none seen comes again.
        for n in refs.iter().filter(|n| !seen.iter().any(|s| s == *n)) {
            assert_eq!(rest.iter().filter(|r| r == n).count(), 1, "{n} in {rest:?}");
        }
        assert!(rest.iter().all(|r| !seen.contains(r)), "{rest:?}");
        // Another directory's request carrying this offset does not get this listing.
        let other = l.resume(8, off, || Ok(entries(3))).unwrap();
        assert_ne!(other.id, relisted.id);
    }

    #[test]
    fn colliding_keys_are_made_distinct() {
        let (keys, entries) = in_key_order(entries(100).into_iter().rev().map(|e| (FIRST_KEY, e)).collect());
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert!(entries.windows(2).all(|w| w[0].name < w[1].name), "in name order");
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
