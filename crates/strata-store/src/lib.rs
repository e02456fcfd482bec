//! strata-store: the layer and image store.
//!
//! [`store`] owns the on-disk layout, locking and crash safety; [`apply`] unpacks an
//! untrusted layer tar safely and [`pack`] makes one from a directory; [`split`] keeps
//! what is needed to rebuild a loaded tar byte for byte; [`load`], [`import`] and [`save`]
//! move images in and out in the OCI and docker-archive formats.

pub mod apply;
pub mod buildcache;
pub mod changes;
pub mod commit;
pub mod compress;
pub mod container;
pub mod digest;
pub mod error;
pub mod import;
pub mod load;
pub mod pack;
pub mod progress;
pub mod refs;
pub mod save;
pub mod split;
pub mod store;
pub mod volume;

pub use digest::Digest;
pub use error::StoreError;
pub use progress::{Progress, Quiet};
pub use store::{DEFAULT_ROOT, Image, Store};
