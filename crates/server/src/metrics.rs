//! `/metrics`: one `prometheus-client` registry per gateway holding the
//! performance monitor's collector, the standard process metrics and the
//! gateway's own collector below; users add theirs with
//! `Gateway::register_metrics`. Served as OpenMetrics text to scrapers that
//! ask for it (Prometheus does), else as Prometheus text 0.0.4.

use std::fmt;
use std::sync::Weak;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::state::AppState;

/// The OpenMetrics media type (what `Accept` must name to get it).
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text";

/// Encodes `registry` as OpenMetrics text when `accept` names it, else as
/// Prometheus text 0.0.4; returns the content type and the body.
pub(crate) fn encode(registry: &Registry, accept: Option<&str>) -> (&'static str, String) {
    let mut text = String::new();
    // Writing into a String cannot fail.
    if accept.is_some_and(|a| a.contains(OPENMETRICS)) {
        let _ = prometheus_client::encoding::text::encode(&mut text, registry);
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text,
        )
    } else {
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, registry);
        (
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            text,
        )
    }
}

/// One metric without labels (a counter gets `_total` from the encoder).
fn metric<M: EncodeMetric>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    m: M,
) -> fmt::Result {
    let encoder = e.encode_descriptor(name, help, None, m.metric_type())?;
    m.encode(encoder)
}

/// The gateway's counters, gauges and delivery-latency histogram, read on
/// every scrape. Holds the state weakly: the registry lives in the state.
#[derive(Debug)]
pub(crate) struct GatewayCollector(pub(crate) Weak<AppState>);

impl Collector for GatewayCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let Some(state) = self.0.upgrade() else {
            return Ok(());
        };
        let s = state.stats();
        let counters: [(&str, &str, u64); 19] = [
            (
                "wsc_gateway_connections",
                "WebSocket connections accepted.",
                s.connections,
            ),
            (
                "wsc_gateway_refused_handshakes",
                "Handshakes refused before the upgrade.",
                s.refused_handshakes,
            ),
            (
                "wsc_gateway_refused_at_capacity",
                "Connections and SSE streams refused because the gateway held --max-connections.",
                s.at_capacity,
            ),
            (
                "wsc_gateway_connections_shed",
                "Connections shed as accepted (503 overloaded) because the process neared its open-file limit.",
                s.connections_shed,
            ),
            (
                "wsc_gateway_rate_limited",
                "Client frames refused by the rate limiter.",
                s.rate_limited,
            ),
            ("wsc_gateway_resumes", "Sessions resumed.", s.resumes),
            (
                "wsc_gateway_resumes_refused",
                "Resumes refused (a fresh session was started).",
                s.resumes_refused,
            ),
            ("wsc_gateway_runs", "Agent runs started.", s.runs),
            (
                "wsc_gateway_runs_lost_with_gateway",
                "Runs whose gateway died before they ended, told to their client here (agent_error gateway_lost).",
                s.runs_lost_with_gateway,
            ),
            (
                "wsc_gateway_frames_sent",
                "Frames sent to clients.",
                s.frames_sent,
            ),
            (
                "wsc_gateway_bad_frames",
                "Client frames answered with an error (unparsable, not allowed, binary).",
                s.bad_frames,
            ),
            (
                "wsc_gateway_slow_clients",
                "Connections dropped for not reading fast enough (sessions kept).",
                s.slow_clients,
            ),
            (
                "wsc_gateway_sessions_moved",
                "Connections closed because another connection resumed their session.",
                s.sessions_moved,
            ),
            (
                "wsc_gateway_http_head_timeouts",
                "Connections closed for not sending a complete request head in time.",
                s.head_timeouts,
            ),
            (
                "wsc_gateway_http_heads_too_large",
                "Request heads refused with 431.",
                s.heads_too_large,
            ),
            (
                "wsc_gateway_repeated_starts",
                "start_agent frames repeating a started run's message_id (no second run).",
                s.repeated_starts,
            ),
            (
                "wsc_gateway_redis_errors",
                "Redis calls that failed.",
                s.redis_errors,
            ),
            (
                "wsc_gateway_redis_timeouts",
                "Redis calls whose reply did not come within --redis-timeout (also in redis_errors).",
                s.redis_timeouts,
            ),
            (
                "wsc_gateway_local_fallback_sessions",
                "Sessions started in memory while Redis was unreachable.",
                s.local_fallback_sessions,
            ),
        ];
        for (name, help, value) in counters {
            metric(&mut e, name, help, ConstCounter::new(value))?;
        }
        {
            let mut m = e.encode_descriptor(
                "wsc_agui_violations",
                "Runs ended because their backend broke an AG-UI rule, per rule.",
                None,
                MetricType::Counter,
            )?;
            for (rule, n) in state.counters.agui_violations() {
                ConstCounter::new(n).encode(m.encode_family(&[("rule", rule)])?)?;
            }
        }
        metric(
            &mut e,
            "wsc_agui_runs",
            "AG-UI runs held for their readers (in flight or within their retention).",
            ConstGauge::new(i64::try_from(state.ag_ui_runs.len()).unwrap_or(i64::MAX)),
        )?;
        metric(
            &mut e,
            "wsc_agui_run_bytes",
            "Bytes the held AG-UI runs' events take (bounded by --max-replay-bytes-total).",
            ConstGauge::new(i64::try_from(state.ag_ui_runs.bytes()).unwrap_or(i64::MAX)),
        )?;
        let (waiting, dropped) = state.shared.outbox_counts();
        metric(
            &mut e,
            "wsc_gateway_outbox_dropped",
            "Agent events the outbox could not deliver: their session was gone, or its queue was full (the run was then ended, told).",
            ConstCounter::new(dropped),
        )?;
        metric(
            &mut e,
            "wsc_gateway_outbox_events",
            "Agent events waiting for the session store to come back.",
            ConstGauge::new(i64::try_from(waiting).unwrap_or(i64::MAX)),
        )?;
        metric(
            &mut e,
            "wsc_gateway_open_connections",
            "WebSocket connections and AG-UI SSE streams held now.",
            ConstGauge::new(i64::try_from(state.capacity.open()).unwrap_or(i64::MAX)),
        )?;
        metric(
            &mut e,
            "wsc_gateway_max_connections",
            "The most this gateway holds at once (--max-connections).",
            ConstGauge::new(i64::try_from(state.capacity.max()).unwrap_or(i64::MAX)),
        )?;
        metric(
            &mut e,
            "wsc_gateway_runs_in_flight",
            "Agent runs started and not yet ended.",
            ConstGauge::new(state.runs.total() as i64),
        )?;
        metric(
            &mut e,
            "wsc_gateway_tracked_users",
            "Users tracked by the rate limiter.",
            ConstGauge::new(state.limiter.tracked_users() as i64),
        )?;
        // Memory as a budget: what the bounded stores hold now.
        if let Some(bytes) = state.sessions.buffered_bytes() {
            metric(
                &mut e,
                "wsc_gateway_replay_buffer_bytes",
                "Heap bytes the frames buffered for replay take in this gateway's sessions (with Redis, Redis holds them and this is absent).",
                ConstGauge::new(i64::try_from(bytes).unwrap_or(i64::MAX)),
            )?;
        }
        metric(
            &mut e,
            "wsc_event_monitor_stored_bytes",
            "Approximate bytes of the events the event monitor keeps for its tracked runs.",
            ConstGauge::new(i64::try_from(state.monitor.stored_bytes()).unwrap_or(i64::MAX)),
        )?;
        if state.shared.spans_gateways() {
            metric(
                &mut e,
                "wsc_gateway_redis_up",
                "Whether Redis answered the last health check.",
                ConstGauge::new(i64::from(state.counters.store_is_up())),
            )?;
            metric(
                &mut e,
                "wsc_gateway_limiter_local_decisions",
                "Rate-limit decisions made in memory while Redis was unreachable.",
                ConstCounter::new(state.shared.local_decisions()),
            )?;
        }
        // From the sampler's cached health (at most a second old).
        if let Some(health) = state.health.get() {
            metric(
                &mut e,
                "wsc_gateway_sessions",
                "Sessions held (attached or resumable).",
                ConstGauge::new(health.sessions as i64),
            )?;
            metric(
                &mut e,
                "wsc_event_monitor_runs",
                "Agent runs tracked.",
                ConstGauge::new(health.report.total_runs as i64),
            )?;
            metric(
                &mut e,
                "wsc_event_monitor_active_runs",
                "Agent runs tracked that have not ended.",
                ConstGauge::new(health.report.active_runs as i64),
            )?;
            metric(
                &mut e,
                "wsc_event_monitor_silent_failures",
                "Event order violations.",
                ConstCounter::new(health.report.total_silent_failures),
            )?;
        }
        let (buckets, sum) = state.telemetry.delivery_histogram();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let mut m = e.encode_descriptor(
            "wsc_gateway_delivery_latency_seconds",
            "Live agent events from the agent emitting them to their frame being written (replays excluded); up to the last one-second sample.",
            None,
            MetricType::Histogram,
        )?;
        m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}
