//! Durable state: where checkpoints are kept ([`store`]: an object store, a local directory by
//! default) and how a URL or directory becomes an object store ([`location`]).
//!
//! Layout of one job's checkpoints under the storage root:
//!
//! ```text
//! <root>/<job_id>/chk-<id>/<component>/<subtask>     state, one object per piece
//! <root>/<job_id>/chk-<id>/_metadata                 written last: the commit point
//! ```
//!
//! `_metadata` is a header line `weir-checkpoint <format> sha256=<hex>` followed by the JSON of
//! [`CheckpointMetadata`](weir_engine::checkpoint::CheckpointMetadata); the hash covers the JSON,
//! and the metadata lists every piece of state with its size and SHA-256, so a torn or corrupted
//! checkpoint is detected before any of it is used.

pub mod location;
pub mod store;

pub use location::{Location, LocationError, StorageUrl};
pub use store::ObjectStoreCheckpoints;
