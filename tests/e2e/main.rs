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

mod auth;
mod bad_input;
mod bench;
mod cache;
mod cfn;
mod cli;
mod connections;
mod console;
mod crash;
mod external;
mod feed;
mod gateway;
mod history;
mod lists;
mod races;
mod resolve;
mod restart;
mod rules;
mod tls;
