//! Property: over any sequence of losses, reconnection attempts (some
//! called by several callers at once) and successful reconnections — some
//! of them landing while an attempt is running — `is_reconnecting` is true
//! exactly between a loss and the next success or final failure, and at
//! most one transport attempt is ever in flight per session.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use proptest::prelude::*;
use websocket_core::reconnection_handler::{
    MessageBuffer, ReconnectTransport, ReconnectionConfig, ReconnectionSession,
    SessionRegistration, TransportError, WebSocketReconnectionHandler,
};
use websocket_core::time::ManualClock;
use websocket_core::types::WebSocketMessage;

const MAX_TRIES: u32 = 3;

/// Answers tries from a script (false once it runs out); yields inside each
/// try so other tasks run while it is in flight; counts tries in flight.
#[derive(Default)]
struct ScriptedTransport {
    outcomes: Mutex<VecDeque<bool>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    tries: AtomicUsize,
}

#[async_trait]
impl ReconnectTransport for ScriptedTransport {
    async fn attempt_reconnection(&self, _session: &ReconnectionSession) -> bool {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        self.tries.fetch_add(1, Ordering::SeqCst);
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.outcomes.lock().unwrap().pop_front().unwrap_or(false)
    }
    async fn send_messages(&self, _: &str, _: Vec<WebSocketMessage>) -> Result<(), TransportError> {
        Ok(())
    }
}

struct NoBuffer;

#[async_trait]
impl MessageBuffer for NoBuffer {
    async fn get_buffered_messages(&self, _: &str) -> Vec<WebSocketMessage> {
        Vec::new()
    }
}

/// Something that happens while the first try of an attempt is running.
#[derive(Clone, Copy, Debug)]
enum During {
    Nothing,
    Lose,
    Succeed,
}

#[derive(Clone, Debug)]
enum Op {
    Lose,
    Attempt {
        callers: usize,
        outcomes: Vec<bool>,
        during: During,
    },
    Succeed,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let during = prop_oneof![
        2 => Just(During::Nothing),
        1 => Just(During::Lose),
        1 => Just(During::Succeed),
    ];
    prop_oneof![
        Just(Op::Lose),
        (
            1usize..=3,
            proptest::collection::vec(any::<bool>(), 0..4),
            during
        )
            .prop_map(|(callers, outcomes, during)| Op::Attempt {
                callers,
                outcomes,
                during,
            }),
        Just(Op::Succeed),
        (1u64..30).prop_map(Op::Advance),
    ]
}

/// What the handler must show, kept by hand.
#[derive(Debug, Default)]
struct Model {
    lost: bool,
    reconnecting: bool,
    failed: bool,
    retry_count: u32,
    reconnections: u32,
    disconnections: u64,
    tries: usize,
}

impl Model {
    fn lose(&mut self, attempt_running: bool) {
        if !self.lost {
            self.disconnections += 1;
        }
        self.lost = true;
        self.reconnecting = true;
        self.failed = false;
        if !attempt_running {
            self.retry_count = 0;
        }
    }

    fn succeed(&mut self) {
        self.lost = false;
        self.reconnecting = false;
        self.failed = false;
        self.reconnections += 1;
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let clock = ManualClock::default();
    let transport = Arc::new(ScriptedTransport::default());
    let h = Arc::new(WebSocketReconnectionHandler::with_clock(
        ReconnectionConfig {
            max_retry_attempts: MAX_TRIES,
            ..ReconnectionConfig::default()
        },
        transport.clone(),
        Arc::new(NoBuffer),
        clock.shared(),
    ));
    h.register_session("s", SessionRegistration::new("u", "c0"))
        .await;
    let mut m = Model::default();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Lose => {
                h.handle_connection_lost("s", "cut").await;
                m.lose(false);
            }
            Op::Succeed => {
                h.handle_successful_reconnection("s", &format!("c{}", step + 1))
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                m.succeed();
            }
            Op::Advance(s) => clock.advance(Duration::from_secs(s)),
            Op::Attempt {
                callers,
                outcomes,
                during,
            } => {
                *transport.outcomes.lock().unwrap() = outcomes.iter().copied().collect();
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..callers {
                    let h = h.clone();
                    tasks.spawn(async move { h.attempt_reconnection("s").await });
                }
                // Let the first caller enter its first try (bounded, so a
                // handler that refuses every caller fails instead of hanging).
                for _ in 0..100 {
                    if transport.in_flight.load(Ordering::SeqCst) > 0 {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                prop_assert_eq!(
                    transport.in_flight.load(Ordering::SeqCst),
                    1,
                    "one caller is in its first try"
                );
                prop_assert!(
                    h.reconnection_state("s").unwrap().is_reconnecting,
                    "an attempt is running"
                );
                // The model: the attempt's tries up to the first success.
                let first_ok = outcomes.iter().take(MAX_TRIES as usize).position(|&ok| ok);
                match during {
                    During::Nothing => {}
                    During::Lose => {
                        h.handle_connection_lost("s", "cut again").await;
                        m.lose(true);
                    }
                    During::Succeed => {
                        h.handle_successful_reconnection("s", &format!("c{}", step + 1))
                            .await
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        m.succeed();
                    }
                }
                let mut settled = 0;
                let mut refused = 0;
                while let Some(joined) = tasks.join_next().await {
                    match joined.expect("no panic") {
                        Ok(false) => refused += 1,
                        _ => settled += 1,
                    }
                }
                prop_assert_eq!(settled, 1, "one caller ran the attempt");
                prop_assert_eq!(refused, callers - 1);
                if matches!(during, During::Succeed) {
                    // Reconnected during the first try: no further try, no
                    // second count.
                    m.tries += 1;
                    m.retry_count = 1;
                } else if let Some(i) = first_ok {
                    m.tries += i + 1;
                    m.retry_count = i as u32 + 1;
                    m.succeed();
                } else {
                    m.tries += MAX_TRIES as usize;
                    m.retry_count = MAX_TRIES;
                    m.reconnecting = false;
                    m.failed = true;
                }
            }
        }
        let state = h.reconnection_state("s").unwrap();
        let session = h.session("s").unwrap();
        let metrics = h.get_session_metrics("s").await.unwrap();
        prop_assert_eq!(state.is_reconnecting, m.reconnecting, "step {}", step);
        prop_assert_eq!(state.failed_permanently, m.failed, "step {}", step);
        prop_assert_eq!(state.retry_count, m.retry_count, "step {}", step);
        prop_assert_eq!(session.is_active, !m.lost, "step {}", step);
        prop_assert_eq!(session.reconnection_count, m.reconnections);
        prop_assert_eq!(metrics.successful_reconnections, u64::from(m.reconnections));
        prop_assert_eq!(metrics.total_disconnections, m.disconnections);
        prop_assert_eq!(transport.tries.load(Ordering::SeqCst), m.tries);
        prop_assert_eq!(
            transport.max_in_flight.load(Ordering::SeqCst),
            1.min(m.tries)
        );
        prop_assert_eq!(transport.in_flight.load(Ordering::SeqCst), 0);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn reconnecting_exactly_between_loss_and_outcome(ops in proptest::collection::vec(op(), 1..24)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(run(ops))?;
    }
}
