//! Pure domain logic: what a valid name, key or domain is (`validate`), the registry's state as
//! immutable versions (`state`), the constraints of SPEC.md section 2 as one function per rule
//! over a version (`rules`), an API's selection expressions (`selection`), the writes that apply them (`apply`), and route resolution
//! (`resolve`). Nothing here does I/O; all of it is unit-tested without a server.

pub mod apply;
pub mod arn;
pub mod ids;
pub mod resolve;
pub mod rules;
pub mod selection;
pub mod state;
pub mod validate;

#[cfg(test)]
mod prop_tests;

pub use rules::{DomainCounters, Family};
