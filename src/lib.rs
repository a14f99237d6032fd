//! mapreg: a self-hosted registry of API Gateway v2 style API mappings, served over gRPC.
//!
//! # Layout
//!
//! - [`pb`]: the generated protobuf and gRPC code of `proto/mapreg/v1/*.proto`.
//! - [`api`]: the gRPC edge: one file per service, request validation, `rpc` logging.
//! - [`domain`]: pure logic, no I/O:
//!   - `validate`: request shape (names, keys, domain names, tags; rule 3 of SPEC.md section 2);
//!   - `state`: the registry at one revision, as an immutable version with its indexes
//!     (persistent `imbl` maps: cheap to keep while readers hold an older one); reads, lists
//!     and route lookups over it; also what `MappingCache` keeps;
//!   - `rules`: SPEC.md section 2, one function per rule over a version, each returning a
//!     typed `Violation`: rules 1–2 `api_in_account` / `domain_in_account` / `stage_of`,
//!     rule 4 `multi_level_allowed`, rule 5 `key_free`, rule 6 `family_free`, rule 7
//!     `endpoint_suits` and `configuration_suits`, rule 8 `api_deletable` / `stage_deletable`,
//!     optimistic concurrency `revision_matches`;
//!   - `apply`: each write per resource kind (`api`, `stage`, `domain_name`, `mapping`): every
//!     check first, then the change, so a refused write leaves no trace (rules 9 and 10);
//!   - `resolve`: route resolution, shared by `ResolveRoute` and `MappingCache`;
//!   - `arn`: API Gateway resource ARNs (the tagged resource of TagResource / UntagResource).
//! - [`store`]: the `Engine` trait (commit a batch if still at revision R, read a log range,
//!   scan records, compact, flush, follow a shared store) with its `sled` (default), `etcd`
//!   (several nodes) and `memory` adapters and one conformance suite; the `Registry` that
//!   loads the state at startup and holds the current durable version; the single `writer`
//!   that applies writes in memory, commits one batch per group and catches up with other
//!   nodes' commits; `cascade`: a cascading delete as one cleared key prefix (one etcd
//!   DeleteRange); `check` for `mapreg check`; `snapshot` files; the high-water mark.
//! - [`cluster`]: several nodes, one writer: the writes of a node that is not its shared
//!   store's elected writer go to the one that is (`mapreg.peer.v1.Peer`); the election itself
//!   is the engine's (`store::etcd`'s lease on `meta/writer`).
//! - [`feed`]: the change feed: the hub that fans durable revisions out to watchers, catch-up
//!   from the log for slow ones, snapshots read from one immutable version, compaction.
//! - [`fleet`]: the gateways that report what they applied (`mapreg.v1.Gateways`), kept in
//!   memory until they expire; [`metrics`]: `/metrics` for Prometheus, the gRPC layer that
//!   counts every call, the mapreg and `process_*` gauges.
//! - [`rest`]: the AWS edge on the same port: API Gateway v2's REST API (`rest-json`) for
//!   the aws CLI, boto3 and the SDKs, SigV4-authenticated; each operation runs through the
//!   gRPC handler of the same name.
//! - [`audit`]: who made each revision (principal, account, RPC, request id, commit time),
//!   carried from the RPC to the writer and into the change log; the `x-request-id` layer.
//! - [`auth`], [`config`]: bearer tokens by SHA-256 and client certificates by subject, roles,
//!   dev mode, reloads; the TOML configuration.
//! - [`transport`]: accepting connections: TLS (reloadable), the connection limit, the
//!   first-request timeout, back-off when out of file descriptors.
//! - [`server`]: wires it all together, applies reloads and shuts down gracefully.
//! - [`error`]: the one error type and its mapping to `tonic::Status` with `ErrorInfo`.
//! - [`console`]: the web console at `/` on the same port: server-rendered pages over the
//!   gRPC handlers (as the REST edge), login sessions and CSRF tokens, live updates by
//!   Server-Sent Events from the change feed.
//! - [`cfn`]: CloudFormation templates, pure: parsing (YAML short tags, JSON), the four
//!   supported types, checks, dependency order, change sets; `cli::deploy` applies them.
//! - [`cli`]: the `mapreg` command line.
//! - [`client`]: what gateways embed: `MappingCache`, a watched in-memory `State` that resolves
//!   routes locally with the same `domain::resolve` module as the server; `failover`: the
//!   rules by which the CLI and the cache move between several endpoints.
#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod audit;
pub mod auth;
pub mod cfn;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod console;
pub mod domain;
pub mod error;
pub mod feed;
pub mod fleet;
pub mod metrics;
pub mod rest;
pub mod server;
pub mod store;
pub mod transport;

/// Generated code of `mapreg.v1`, and its file descriptor set for reflection.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    tonic::include_proto!("mapreg.v1");

    /// The encoded descriptors of every mapreg proto file, with imports, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mapreg_descriptor");
}
