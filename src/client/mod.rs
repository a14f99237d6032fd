//! Client-side libraries for gateways: [`MappingCache`], an in-memory replica of the registry
//! kept current by `ChangeFeed.Watch`, answering route resolution locally; and [`connect`],
//! how every mapreg client reaches a server (TLS, CA bundle, client certificate).

pub mod cache;
pub mod connect;
pub mod report;

pub use cache::{CacheOptions, CacheStatus, MappingCache, Resolution, ResolveError};
