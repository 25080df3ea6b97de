"""Prometheus metrics, served on their own port. One registry per server instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rpcs = Counter("router_rpcs", "RPCs by method and status code", ["rpc", "code"], registry=r)
        self.latency = Histogram(
            "router_rpc_latency_seconds", "RPC latency", ["rpc"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.decisions = Counter(
            "router_decisions", "Answered requests by level, policy (and version), experiment and arm",
            ["level", "policy", "version", "experiment", "arm"], registry=r,
        )
        self.degraded = Counter("router_degraded", "Answers marked degraded", registry=r)
        self.tokens = Counter("router_tokens", "Tokens by kind (prompt, completion)", ["kind"], registry=r)
        self.samples = Counter("router_samples", "Samples generated", registry=r)
        self.slots_in_use = Gauge("router_compute_slots_in_use", "Compute slots taken", registry=r)
        self.slots_capacity = Gauge("router_compute_slots_capacity", "Compute slots in all", registry=r)

    def watch_store(self, stats) -> None:  # noqa: ANN001 (a () -> dict[str, int] callable)
        """Report the decision store's queue: rows waiting, dropped on overflow, lost at the last crash."""
        for key, help_text in (("queued", "Store rows waiting to be written"),
                               ("dropped", "Store rows refused because the write queue was full"),
                               ("failed", "Store rows that could not be written"),
                               ("lost_at_last_start", "Store rows lost by the previous run (found at start)")):
            gauge = Gauge(f"router_store_{key}", help_text, registry=self.registry)
            gauge.set_function(lambda key=key: stats()[key])

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Start the /metrics HTTP endpoint; returns the bound port (useful with port 0)."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server.server_port
