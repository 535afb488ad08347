//! The tests' Redis: see `wsc_redis::testing`.

#![allow(unused_imports, unreachable_pub)]

pub use wsc_redis::testing::{cluster_url, shared_url, unique_prefix, urls};
