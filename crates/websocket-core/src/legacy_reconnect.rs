//! The legacy reconnection handler: [`WebSocketReconnectionHandler`] with
//! the legacy `async` methods, over `wsc-reconnection`'s handler.

use std::ops::Deref;
use std::sync::Arc;

use wsc_core::SharedClock;
use wsc_reconnection as rc;
use wsc_reconnection::{
    MessageBuffer, ReconnectTransport, ReconnectionConfig, ReconnectionMetrics, SessionRegistration,
};

/// The legacy reconnection handler (legacy `WebSocketReconnectionHandler`):
/// the legacy coroutines that wait on nothing are `async` here, thin
/// wrappers of the synchronous methods of
/// [`rc::WebSocketReconnectionHandler`] of the same names;
/// `attempt_reconnection`, `handle_successful_reconnection` and the rest
/// are reached through `Deref`.
#[derive(Debug)]
pub struct WebSocketReconnectionHandler {
    inner: rc::WebSocketReconnectionHandler,
}

impl Deref for WebSocketReconnectionHandler {
    type Target = rc::WebSocketReconnectionHandler;
    fn deref(&self) -> &rc::WebSocketReconnectionHandler {
        &self.inner
    }
}

impl WebSocketReconnectionHandler {
    /// A handler on the system clock.
    pub fn new(
        config: ReconnectionConfig,
        transport: Arc<dyn ReconnectTransport>,
        buffer: Arc<dyn MessageBuffer>,
    ) -> Self {
        WebSocketReconnectionHandler {
            inner: rc::WebSocketReconnectionHandler::new(config, transport, buffer),
        }
    }

    /// A handler on `clock` (tests pass a `ManualClock`).
    pub fn with_clock(
        config: ReconnectionConfig,
        transport: Arc<dyn ReconnectTransport>,
        buffer: Arc<dyn MessageBuffer>,
        clock: SharedClock,
    ) -> Self {
        WebSocketReconnectionHandler {
            inner: rc::WebSocketReconnectionHandler::with_clock(config, transport, buffer, clock),
        }
    }

    /// See [`rc::WebSocketReconnectionHandler::register_session`].
    pub async fn register_session(&self, session_id: &str, registration: SessionRegistration) {
        self.inner.register_session(session_id, registration);
    }

    /// See [`rc::WebSocketReconnectionHandler::handle_connection_lost`].
    pub async fn handle_connection_lost(&self, session_id: &str, reason: &str) {
        self.inner.handle_connection_lost(session_id, reason);
    }

    /// See [`rc::WebSocketReconnectionHandler::cleanup_expired_sessions`].
    pub async fn cleanup_expired_sessions(&self) -> usize {
        self.inner.cleanup_expired_sessions()
    }

    /// See [`rc::WebSocketReconnectionHandler::get_session_metrics`].
    pub async fn get_session_metrics(&self, session_id: &str) -> Option<ReconnectionMetrics> {
        self.inner.get_session_metrics(session_id)
    }
}
