//! The tests' Redis: see `wsc_redis::testing`.

#![allow(unused_imports, unreachable_pub)]

pub use wsc_redis::testing::{shared_url, unique_prefix};
