//! The monitor's metrics for Prometheus, written by the `prometheus-client`
//! crate (OpenMetrics text): [`MonitorCollector`] scrapes a monitor into any
//! `prometheus_client` registry, [`ProcessCollector`] adds the standard
//! `process_*` metrics of the running process.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::monitor::PerformanceMonitor;
use crate::report::PerfSnapshot;
use crate::state::PROMETHEUS_BUCKETS;

/// A counter without labels; OpenMetrics adds `_total` to `name`.
pub(crate) fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: u64,
) -> fmt::Result {
    let c = ConstCounter::new(v);
    let m = e.encode_descriptor(name, help, None, c.metric_type())?;
    c.encode(m)
}

/// A counter with one label, a sample per value.
pub(crate) fn counter_by(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    samples: &[(&str, u64)],
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in samples {
        let labels = [(label, *value)];
        let family = m.encode_family(&labels)?;
        ConstCounter::new(*n).encode(family)?;
    }
    Ok(())
}

/// A gauge without labels.
pub(crate) fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: f64) -> fmt::Result {
    let g = ConstGauge::new(v);
    let m = e.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

/// A gauge with one label, a sample per value.
pub(crate) fn gauge_by(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    samples: &[(&str, f64)],
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, v) in samples {
        let labels = [(label, *value)];
        let family = m.encode_family(&labels)?;
        ConstGauge::new(*v).encode(family)?;
    }
    Ok(())
}

/// A histogram from per-bucket (not cumulative) counts, one per upper
/// bound, the last bound `+Inf`.
pub(crate) fn histogram(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    buckets: &[(f64, u64)],
    sum: f64,
) -> fmt::Result {
    let count = buckets.iter().map(|(_, n)| n).sum();
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(sum, count, buckets, None)
}

impl Collector for PerfSnapshot {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let t = &self.totals;
        counter(
            &mut e,
            "wsc_messages_processed",
            "Messages processed by tracked connections.",
            t.messages,
        )?;
        counter_by(
            &mut e,
            "wsc_bytes",
            "Bytes on tracked connections, by direction.",
            "direction",
            &[("sent", t.bytes_sent), ("received", t.bytes_received)],
        )?;
        counter(
            &mut e,
            "wsc_connection_errors",
            "Errors recorded on tracked connections.",
            t.errors,
        )?;
        counter_by(
            &mut e,
            "wsc_latency_unmeasured",
            "Messages without a latency sample, by reason.",
            "reason",
            &[("missing", t.latency_missing), ("skewed", t.latency_skewed)],
        )?;
        counter(
            &mut e,
            "wsc_untracked",
            "Connections or records past the tracking bound or for unknown connections.",
            self.untracked,
        )?;
        counter_by(
            &mut e,
            "wsc_alerts_raised",
            "Alerts raised, by kind.",
            "kind",
            &self.alerts_raised,
        )?;
        gauge(
            &mut e,
            "wsc_tracked_connections",
            "Connections tracked.",
            self.tracked as f64,
        )?;
        gauge(
            &mut e,
            "wsc_active_connections",
            "Connections established and not closed.",
            self.active as f64,
        )?;
        gauge(
            &mut e,
            "wsc_connection_state_bytes",
            "Heap bytes held for tracked connections' measurements (state, histograms, windows).",
            self.state_bytes as f64,
        )?;
        gauge_by(
            &mut e,
            "wsc_active_alerts",
            "Alerts active now, by severity.",
            "severity",
            &[
                ("warning", self.alerts_warning as f64),
                ("critical", self.alerts_critical as f64),
            ],
        )?;
        histogram(
            &mut e,
            "wsc_message_latency_seconds",
            "Message latency (now minus the message's timestamp).",
            &PROMETHEUS_BUCKETS
                .iter()
                .copied()
                .chain(std::iter::once(f64::INFINITY))
                .zip(t.latency_buckets.iter().copied())
                .collect::<Vec<_>>(),
            t.latency_sum_us as f64 / 1e6,
        )
    }
}

/// Scrapes a [`PerformanceMonitor`] on every encode: register it in your
/// own `prometheus_client` registry to export the monitor beside your
/// metrics.
///
/// ```
/// use std::sync::Arc;
/// use prometheus_client::registry::Registry;
/// use wsc_perf_monitor::{MonitorCollector, PerformanceMonitor, PerformanceMonitorConfig};
///
/// let monitor = Arc::new(PerformanceMonitor::new(PerformanceMonitorConfig::default()));
/// let mut registry = Registry::default();
/// registry.register_collector(Box::new(MonitorCollector::new(monitor)));
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains("wsc_messages_processed_total 0"));
/// ```
#[derive(Clone, Debug)]
pub struct MonitorCollector(Arc<PerformanceMonitor>);

impl MonitorCollector {
    /// A collector of `monitor`.
    pub fn new(monitor: Arc<PerformanceMonitor>) -> Self {
        MonitorCollector(monitor)
    }
}

impl Collector for MonitorCollector {
    fn encode(&self, e: DescriptorEncoder<'_>) -> fmt::Result {
        self.0.metrics_snapshot().encode(e)
    }
}

/// The standard `process_*` metrics of the running process, read from
/// `/proc/self` on each scrape (Linux; elsewhere nothing is exported):
/// `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
/// `process_cpu_seconds_total`, `process_open_fds`, `process_max_fds`,
/// `process_start_time_seconds`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let p = crate::sampler::process_stats();
        if let Some(rss) = p.resident_bytes {
            gauge(
                &mut e,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss as f64,
            )?;
        }
        if let Some(vsize) = p.virtual_bytes {
            gauge(
                &mut e,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                vsize as f64,
            )?;
        }
        if let Some(cpu) = p.cpu_seconds {
            let c = ConstCounter::new(cpu);
            let m = e.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                c.metric_type(),
            )?;
            c.encode(m)?;
        }
        if let Some(fds) = p.open_fds {
            gauge(
                &mut e,
                "process_open_fds",
                "Number of open file descriptors.",
                fds as f64,
            )?;
        }
        if let Some(max) = p.max_fds {
            gauge(
                &mut e,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max as f64,
            )?;
        }
        if let Some(start) = p.start_time_seconds {
            gauge(
                &mut e,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds.",
                start,
            )?;
        }
        Ok(())
    }
}

impl PerformanceMonitor {
    /// The monitor's metrics in the Prometheus text format (0.0.4), with
    /// the standard `process_*` metrics of this process; see the crate docs
    /// for the names. Written by the `prometheus-client` crate; to export
    /// the monitor from your own registry (and as OpenMetrics text), register
    /// a [`MonitorCollector`] there instead.
    pub fn render_prometheus(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(self.metrics_snapshot()));
        registry.register_collector(Box::new(ProcessCollector));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }
}
