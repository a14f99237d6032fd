//! End-to-end tests: a real server on 127.0.0.1:0 with a real data dir in a temp folder, driven
//! through real gRPC clients. One test binary, one module per area.
//!
//! Tests that need an external tool (grpcurl, Python grpcio) are `#[ignore]`d by default; CI
//! installs the tools and runs them with `--include-ignored`.

// Shared by the area modules: the harness and call helpers (`common`) and the random write
// workload of the heavy change-feed tests (`workload`); `history`, the feed checker, too.
mod common;
mod pki;
mod workload;

mod api_fields;
mod audit;
mod auth;
mod aws;
mod bad_input;
mod bench;
mod cache;
mod cfn;
mod cli;
mod cli_aws;
mod connections;
mod console;
mod continuity;
mod crash;
mod disk_full;
mod dry_run;
mod etcd;
mod external;
mod failover;
mod feed;
mod gateway;
mod gateways;
mod history;
mod limits;
mod lists;
mod metrics;
mod nodes;
mod prop_requests;
mod races;
mod read_revision;
mod resolve;
mod restart;
mod rules;
mod snapshot;
mod tls;
mod watch_bounds;
mod writer_node;
