//! The tests' Redis: see `wsc_redis::testing`.

#![allow(unused_imports, unreachable_pub)]

pub use wsc_redis::testing::{cluster_url, shared_url, unique_prefix, urls};

/// Appends `message` to a store as a publish does: serialized once, with
/// its message id.
#[allow(dead_code)] // not every test file appends
pub async fn append(
    store: &dyn wsc_reconnection::SessionStore,
    session_id: &str,
    message: wsc_core::WebSocketMessage,
    now: wsc_core::Timestamp,
) -> Result<Option<wsc_reconnection::Appended>, wsc_reconnection::StoreError> {
    let frame = wsc_core::WireFrame::encode(&message);
    store
        .append(session_id, &frame, message.message_id.as_deref(), now)
        .await
}
