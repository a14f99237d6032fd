//! mapreg: a self-hosted registry of API Gateway v2 style API mappings, served over gRPC.
//!
//! # Layout
//!
//! - [`pb`]: the generated protobuf and gRPC code of `proto/mapreg/v1/*.proto`.
//! - [`api`]: the gRPC edge: one file per service, request validation, `rpc` logging.
//! - [`domain`]: pure rules: names, keys, domain names (`validate`) and the constraints of
//!   SPEC.md section 2 (`rules`), unit-tested without a server; route resolution (`resolve`)
//!   and the in-memory `replica` it runs on, shared by the server and `MappingCache`.
//! - [`store`]: the `Store` engine trait and its sled adapter, the records and indexes (`Db`),
//!   and the single writer thread with group commit (`writer`).
//! - [`feed`]: the change feed: the hub that fans durable revisions out to the route table
//!   `ResolveRoute` answers from (`routes`) and to watchers, catch-up from the log for slow
//!   ones, exact snapshots under concurrent writes, compaction.
//! - [`auth`], [`config`]: bearer tokens by SHA-256, roles, dev mode; the TOML configuration.
//! - [`server`]: wires it all together and shuts down gracefully.
//! - [`error`]: the one error type and its mapping to `tonic::Status` with `ErrorInfo`.
//! - [`cli`]: the `mapreg` command line.
//! - [`client`]: what gateways embed: `MappingCache`, a watched in-memory replica that resolves
//!   routes locally with the same `domain::resolve` module as the server.
#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod domain;
pub mod error;
pub mod feed;
pub mod server;
pub mod store;

/// Generated code of `mapreg.v1`, and its file descriptor set for reflection.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    tonic::include_proto!("mapreg.v1");

    /// The encoded descriptors of every mapreg proto file, with imports, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mapreg_descriptor");
}
