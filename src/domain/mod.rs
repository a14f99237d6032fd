//! Pure domain rules: what a valid name, key or domain is, and the constraints of SPEC.md
//! section 2. Nothing here does I/O; the store applies these functions inside its transactions,
//! and they are unit-tested without a server.

pub mod ids;
pub mod replica;
pub mod resolve;
pub mod rules;
pub mod validate;

pub use rules::{DomainCounters, Family, RefCounts};
