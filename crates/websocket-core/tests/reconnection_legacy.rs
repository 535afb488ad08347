//! The legacy reconnection behaviours, through the facade's legacy names.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use websocket_core::reconnection_handler::{
    MessageBuffer, ReconnectTransport, ReconnectionConfig, ReconnectionError, ReconnectionMetrics,
    ReconnectionPhase, ReconnectionSession, ReconnectionState, SessionConfig, SessionRegistration,
    SessionRegistry, TransportError, WebSocketReconnectionHandler,
};
use websocket_core::time::{Clock, ManualClock, SharedClock};
use websocket_core::types::{MessageType, WebSocketMessage};

/// A transport that succeeds from try number `succeed_on` (0: never), and
/// records what it was asked to send.
#[derive(Default)]
struct FakeTransport {
    succeed_on: u32,
    tries: AtomicU32,
    sent: Mutex<Vec<(String, Vec<WebSocketMessage>)>>,
    gate: Option<Arc<tokio::sync::Notify>>,
}

#[async_trait]
impl ReconnectTransport for FakeTransport {
    async fn attempt_reconnection(&self, _session: &ReconnectionSession) -> bool {
        if let Some(gate) = &self.gate {
            gate.notified().await;
        }
        let n = self.tries.fetch_add(1, Ordering::SeqCst) + 1;
        self.succeed_on != 0 && n >= self.succeed_on
    }
    async fn send_messages(
        &self,
        connection_id: &str,
        messages: Vec<WebSocketMessage>,
    ) -> Result<(), TransportError> {
        self.sent
            .lock()
            .unwrap()
            .push((connection_id.to_owned(), messages));
        Ok(())
    }
}

struct NoBuffer;

#[async_trait]
impl MessageBuffer for NoBuffer {
    async fn get_buffered_messages(&self, _user_id: &str) -> Vec<WebSocketMessage> {
        Vec::new()
    }
}

fn handler(
    transport: Arc<FakeTransport>,
    buffer: Arc<dyn MessageBuffer>,
) -> (WebSocketReconnectionHandler, ManualClock) {
    let clock = ManualClock::default();
    let shared: SharedClock = clock.shared();
    (
        WebSocketReconnectionHandler::with_clock(
            ReconnectionConfig::default(),
            transport,
            buffer,
            shared,
        ),
        clock,
    )
}

#[tokio::test]
async fn register_and_lose_a_connection() {
    let (h, clock) = handler(Arc::new(FakeTransport::default()), Arc::new(NoBuffer));
    h.register_session(
        "s1",
        SessionRegistration::new("user-1", "conn-1").with_thread_id("t1"),
    )
    .await;
    assert_eq!(h.active_session_count(), 1);
    let s = h.session("s1").unwrap();
    assert!(s.is_active);
    assert_eq!(
        (s.user_id.as_str(), s.connection_id.as_str()),
        ("user-1", "conn-1")
    );
    assert_eq!(s.connected_at, clock.now());
    assert_eq!(
        h.reconnection_state("s1").unwrap().phase,
        ReconnectionPhase::Connected
    );

    h.handle_connection_lost("s1", "network error").await;
    assert!(!h.session("s1").unwrap().is_active);
    let state: ReconnectionState = h.reconnection_state("s1").unwrap();
    assert_eq!(state.phase, ReconnectionPhase::Disconnected);
    assert_eq!(state.lost_reason.as_deref(), Some("network error"));
    assert_eq!(h.reconnection_state_count(), 1);
}

/// The legacy test reads: register, lose, and the state says reconnecting.
#[tokio::test]
async fn a_lost_connection_is_reconnecting() {
    let transport = Arc::new(FakeTransport {
        succeed_on: 1,
        ..Default::default()
    });
    let (h, clock) = handler(transport.clone(), Arc::new(NoBuffer));
    h.register_session("s1", SessionRegistration::new("user-1", "conn-1"))
        .await;
    assert!(!h.reconnection_state("s1").unwrap().is_reconnecting);
    h.handle_connection_lost("s1", "network error").await;
    let state = h.reconnection_state("s1").unwrap();
    assert!(state.is_reconnecting);
    assert_eq!(state.retry_count, 0);
    assert_eq!(state.lost_reason.as_deref(), Some("network error"));
    assert!(!state.failed_permanently);
    assert_eq!(state.reconnected_at, None);
    assert!(!h.session("s1").unwrap().is_active);

    // The attempt that follows still runs (the loss is not an attempt).
    assert_eq!(h.attempt_reconnection("s1").await, Ok(true));
    assert_eq!(transport.tries.load(Ordering::SeqCst), 1);
    let state = h.reconnection_state("s1").unwrap();
    assert!(!state.is_reconnecting);
    assert_eq!(state.reconnected_at, Some(clock.now()));

    // A second loss starts over: reconnecting, no reconnection yet.
    clock.advance(Duration::from_secs(3));
    h.handle_connection_lost("s1", "server restart").await;
    let state = h.reconnection_state("s1").unwrap();
    assert!(state.is_reconnecting && !state.failed_permanently);
    assert_eq!((state.retry_count, state.reconnected_at), (0, None));
    assert_eq!(state.lost_reason.as_deref(), Some("server restart"));
}

/// After the last failed try the session is no longer reconnecting: it
/// failed permanently.
#[tokio::test]
async fn the_final_failure_ends_reconnecting() {
    let (h, _) = handler(Arc::new(FakeTransport::default()), Arc::new(NoBuffer));
    h.register_session("s1", SessionRegistration::new("u", "c1"))
        .await;
    h.handle_connection_lost("s1", "gone").await;
    assert!(h.attempt_reconnection("s1").await.is_err());
    let state = h.reconnection_state("s1").unwrap();
    assert!(!state.is_reconnecting && state.failed_permanently);
}

/// The legacy test reads: register, lose, reconnect by other means, and
/// the session shows the reconnection.
#[tokio::test]
async fn a_successful_reconnection_updates_the_session() {
    let (h, clock) = handler(Arc::new(FakeTransport::default()), Arc::new(NoBuffer));
    h.register_session("s1", SessionRegistration::new("user-1", "conn-1"))
        .await;
    clock.advance(Duration::from_secs(10));
    h.handle_connection_lost("s1", "drop").await;
    clock.advance(Duration::from_secs(4));
    assert_eq!(
        h.handle_successful_reconnection("s1", "conn-2").await,
        Ok(0)
    );
    let s = h.session("s1").unwrap();
    assert_eq!(s.connection_id, "conn-2");
    assert!(s.is_active);
    assert_eq!(s.reconnected_at, Some(clock.now()));
    assert_eq!(s.reconnection_count, 1);
    assert_eq!(s.total_downtime, Duration::from_secs(4));
    let state = h.reconnection_state("s1").unwrap();
    assert!(!state.is_reconnecting);
    assert_eq!(state.phase, ReconnectionPhase::Connected);
    assert_eq!(state.reconnected_at, Some(clock.now()));
    let m = h.get_session_metrics("s1").await.unwrap();
    assert_eq!((m.successful_reconnections, m.total_disconnections), (1, 1));
    assert!((m.average_reconnection_time_seconds - 4.0).abs() < 1e-9);

    // Twice more: the downtime sums, the average follows.
    for (down, conn) in [(2, "conn-3"), (6, "conn-4")] {
        h.handle_connection_lost("s1", "drop").await;
        clock.advance(Duration::from_secs(down));
        h.handle_successful_reconnection("s1", conn).await.unwrap();
    }
    let s = h.session("s1").unwrap();
    assert_eq!(s.connection_id, "conn-4");
    assert_eq!(s.reconnection_count, 3);
    assert_eq!(s.total_downtime, Duration::from_secs(12));
    let m = h.get_session_metrics("s1").await.unwrap();
    assert_eq!((m.successful_reconnections, m.total_disconnections), (3, 3));
    assert!((m.average_reconnection_time_seconds - 4.0).abs() < 1e-9);
    assert!(matches!(
        h.handle_successful_reconnection("ghost", "c").await,
        Err(ReconnectionError::UnknownSession(_))
    ));
}

#[test]
fn backoff_one_two_four_capped_at_thirty() {
    let (h, _) = handler(Arc::new(FakeTransport::default()), Arc::new(NoBuffer));
    let s = Duration::from_secs;
    let delays: Vec<Duration> = (0..7).map(|n| h.calculate_backoff_delay(n)).collect();
    assert_eq!(delays, [s(1), s(2), s(4), s(8), s(16), s(30), s(30)]);
}

#[tokio::test]
async fn success_on_the_third_try_after_two_sleeps() {
    let transport = Arc::new(FakeTransport {
        succeed_on: 3,
        ..Default::default()
    });
    let (h, clock) = handler(transport.clone(), Arc::new(NoBuffer));
    h.register_session("s1", SessionRegistration::new("u", "c1"))
        .await;
    h.handle_connection_lost("s1", "timeout").await;
    let lost_at = clock.now();
    assert_eq!(h.attempt_reconnection("s1").await, Ok(true));
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 2);
    assert!(
        sleeps[0] <= Duration::from_secs(1) && sleeps[1] <= Duration::from_secs(2),
        "{sleeps:?}"
    );
    let state = h.reconnection_state("s1").unwrap();
    assert_eq!(state.retry_count, 3);
    assert_eq!(state.phase, ReconnectionPhase::Connected);
    assert!(!state.is_reconnecting && !state.failed_permanently);
    let s = h.session("s1").unwrap();
    assert!(s.is_active);
    assert_eq!(s.reconnection_count, 1);
    assert_eq!(s.reconnected_at, Some(clock.now()));
    assert_eq!(s.total_downtime, clock.now().duration_since(lost_at));
    let m: ReconnectionMetrics = h.get_session_metrics("s1").await.unwrap();
    assert_eq!(
        (
            m.total_reconnection_attempts,
            m.successful_reconnections,
            m.total_disconnections
        ),
        (3, 1, 1)
    );
    assert!((m.average_reconnection_time_seconds - s.total_downtime.as_secs_f64()).abs() < 1e-9);
}

#[tokio::test]
async fn max_retries_fails_permanently() {
    let transport = Arc::new(FakeTransport::default());
    let (h, clock) = handler(transport.clone(), Arc::new(NoBuffer));
    h.register_session("s1", SessionRegistration::new("u", "c1"))
        .await;
    h.handle_connection_lost("s1", "gone").await;
    let err = h.attempt_reconnection("s1").await.unwrap_err();
    assert!(matches!(err, ReconnectionError::MaxRetriesExceeded(_)));
    assert!(err.to_string().contains("max retry attempts"), "{err}");
    assert_eq!(transport.tries.load(Ordering::SeqCst), 5);
    assert_eq!(clock.sleeps().len(), 4, "no sleep after the last try");
    let state = h.reconnection_state("s1").unwrap();
    assert!(state.failed_permanently);
    assert_eq!(state.phase, ReconnectionPhase::Failed);
    assert_eq!(
        h.get_session_metrics("s1")
            .await
            .unwrap()
            .failed_reconnections,
        1
    );
    assert!(matches!(
        h.attempt_reconnection("ghost").await,
        Err(ReconnectionError::UnknownSession(_))
    ));
}

#[tokio::test]
async fn buffered_messages_are_replayed_to_the_new_connection() {
    let registry = Arc::new(SessionRegistry::new(SessionConfig::default()));
    let session = registry.open("user-1").await.unwrap();
    for t in [MessageType::AgentStarted, MessageType::AgentThinking] {
        registry
            .publish(&session.session_id, WebSocketMessage::new(t, json!({})))
            .await
            .unwrap();
    }
    let transport = Arc::new(FakeTransport::default());
    let (h, _) = handler(transport.clone(), registry.clone());
    h.register_session("s1", SessionRegistration::new("user-1", "conn-1"))
        .await;
    h.handle_connection_lost("s1", "drop").await;
    assert_eq!(
        h.handle_successful_reconnection("s1", "conn-2").await,
        Ok(2)
    );
    let sent = transport.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "conn-2");
    assert_eq!(
        sent[0].1.iter().map(|m| m.seq.unwrap()).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(h.session("s1").unwrap().connection_id, "conn-2");
}

#[tokio::test]
async fn a_duplicate_attempt_is_ignored() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let transport = Arc::new(FakeTransport {
        succeed_on: 1,
        gate: Some(gate.clone()),
        ..Default::default()
    });
    let (h, _) = handler(transport.clone(), Arc::new(NoBuffer));
    let h = Arc::new(h);
    h.register_session("s1", SessionRegistration::new("u", "c1"))
        .await;
    h.handle_connection_lost("s1", "drop").await;
    let first = tokio::spawn({
        let h = h.clone();
        async move { h.attempt_reconnection("s1").await }
    });
    for _ in 0..1_000 {
        if h.reconnection_state("s1").unwrap().phase == ReconnectionPhase::Reconnecting {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        h.reconnection_state("s1").unwrap().phase,
        ReconnectionPhase::Reconnecting,
        "the first call is in flight"
    );
    assert_eq!(h.attempt_reconnection("s1").await, Ok(false));
    assert_eq!(
        transport.tries.load(Ordering::SeqCst),
        0,
        "the second call did not touch the transport"
    );
    gate.notify_one();
    assert_eq!(first.await.unwrap(), Ok(true));
    assert_eq!(transport.tries.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn expired_sessions_are_cleaned_up() {
    let (h, clock) = handler(Arc::new(FakeTransport::default()), Arc::new(NoBuffer));
    h.register_session("old", SessionRegistration::new("u", "c1"))
        .await;
    clock.advance(Duration::from_secs(200));
    h.register_session("new", SessionRegistration::new("u", "c2"))
        .await;
    clock.advance(Duration::from_secs(101));
    assert_eq!(h.cleanup_expired_sessions().await, 1);
    assert!(h.session("old").is_none() && h.reconnection_state("old").is_none());
    assert!(h.session("new").is_some());
}

/// The legacy package's signatures, called as legacy code calls them.
#[allow(dead_code, clippy::type_complexity)]
fn contract_compiles(h: &WebSocketReconnectionHandler) {
    let _: fn(
        ReconnectionConfig,
        Arc<dyn ReconnectTransport>,
        Arc<dyn MessageBuffer>,
    ) -> WebSocketReconnectionHandler = WebSocketReconnectionHandler::new;
    let _: fn(
        ReconnectionConfig,
        Arc<dyn ReconnectTransport>,
        Arc<dyn MessageBuffer>,
        SharedClock,
    ) -> WebSocketReconnectionHandler = WebSocketReconnectionHandler::with_clock;
    let _: &ReconnectionConfig = h.config();
    let _: usize = h.active_session_count();
    let _: usize = h.reconnection_state_count();
    let _: Option<ReconnectionSession> = h.session("s");
    let _: Option<ReconnectionState> = h.reconnection_state("s");
    let _: Duration = h.calculate_backoff_delay(1);
    let ReconnectionConfig {
        max_retry_attempts: _,
        initial_retry_delay: _,
        max_retry_delay: _,
        backoff_multiplier: _,
        session_timeout: _,
        message_buffer_max_size: _,
        ..
    } = ReconnectionConfig::default();
    let SessionRegistration {
        user_id: _,
        connection_id: _,
        thread_id: _,
        last_message_id: _,
        user_agent: _,
        client_ip: _,
    } = SessionRegistration::new("u", "c");
    let ReconnectionMetrics {
        total_disconnections: _,
        total_reconnection_attempts: _,
        successful_reconnections: _,
        failed_reconnections: _,
        average_reconnection_time_seconds: _,
    } = ReconnectionMetrics::default();
    fn is_send<T: Send>(_: &T) {}
    is_send(&h.register_session("s", SessionRegistration::new("u", "c")));
    is_send(&h.handle_connection_lost("s", "r"));
    is_send(&h.attempt_reconnection("s"));
    is_send(&h.handle_successful_reconnection("s", "c"));
    is_send(&h.cleanup_expired_sessions());
    is_send(&h.get_session_metrics("s"));
    fn shareable<T: Send + Sync>() {}
    shareable::<WebSocketReconnectionHandler>();
    let _ = [
        ReconnectionPhase::Connected,
        ReconnectionPhase::Disconnected,
        ReconnectionPhase::Reconnecting,
        ReconnectionPhase::Failed,
        ReconnectionPhase::Abandoned,
    ];
    let _: TransportError = TransportError::new("x");
    let c = ReconnectionConfig::default();
    assert!(c.clone() == c);
}
