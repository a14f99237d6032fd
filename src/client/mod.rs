//! Client-side libraries for gateways: [`MappingCache`], an in-memory replica of the registry
//! kept current by `ChangeFeed.Watch`, answering route resolution locally.

pub mod cache;

pub use cache::{CacheOptions, CacheStatus, MappingCache, Resolution, ResolveError};
