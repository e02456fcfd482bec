//! strata-registry: images to and from registries that speak the OCI Distribution
//! Specification (Docker Hub, GHCR, Quay, Harbor, distribution, Zot).
//!
//! [`client`] holds all of the network code (the `/v2/` check, auth, retries); [`pull`]
//! streams layers into the store's own loader; [`push`] uploads what the registry
//! lacks; [`auth`] keeps credentials as containers' `auth.json` does. References are the
//! store's ([`Reference`]), which names its images by their familiar form.

pub mod auth;
pub mod blobs;
pub mod client;
pub mod config;
pub mod error;
mod parallel;
pub mod pull;
pub mod push;

pub use client::Options;
pub use error::RegistryError;
pub use pull::{Platform, PullOptions, Pulled, pull};
pub use push::{PushCompression, PushFormat, PushOptions, Pushed, push};
use strata_store::Progress;
pub use strata_store::refs::Reference;

/// Manifests and indexes are read up to this size (the limit distribution sets).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// Where transfers report: one [`Progress`] per blob, made and used on the thread that
/// moves that blob, and lines for the user.
pub trait Reporter: Sync {
    fn blob(&self) -> Box<dyn Progress>;
    fn note(&self, line: &str);
}

/// Reports nothing.
pub struct Silent;

impl Reporter for Silent {
    fn blob(&self) -> Box<dyn Progress> {
        Box::new(strata_store::Quiet)
    }
    fn note(&self, _: &str) {}
}
