//! Client-side libraries for gateways: [`MappingCache`], an in-memory replica of the registry
//! kept current by `ChangeFeed.Watch`, answering route resolution locally; [`connect`],
//! how every mapreg client reaches a server (TLS, CA bundle, client certificate); and
//! [`failover`], how a client given several endpoints moves from one to the next.

pub mod cache;
pub mod connect;
pub mod failover;
pub mod report;

pub use cache::{CacheOptions, CacheStatus, MappingCache, Resolution, ResolveError};
