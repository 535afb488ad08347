"""The legacy ``websocket_core`` package, backed by Rust.

Code written against ``netra_backend.app.websocket_core`` runs with the
prefix ``websocket_core``: the modules ``types``, ``event_monitor``,
``performance_monitor_core``, ``rate_limiter`` and ``reconnection_handler``
keep their names, classes, keyword arguments and ``async`` methods. Each rule
(missing critical events and event order, window counts and ``retry_after``,
latency statistics, alert severities and ratings, backoff delays) is decided
by the wsc crates through the compiled ``websocket_core._native``.
"""

__all__ = [
    "event_monitor",
    "performance_monitor_core",
    "rate_limiter",
    "reconnection_handler",
    "types",
]
