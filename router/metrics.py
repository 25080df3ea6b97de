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
            "router_decisions", "Answered requests by level, policy and arm", ["level", "policy", "arm"], registry=r
        )
        self.tokens = Counter("router_tokens", "Tokens by kind (prompt, completion)", ["kind"], registry=r)
        self.samples = Counter("router_samples", "Samples generated", registry=r)
        self.slots_in_use = Gauge("router_compute_slots_in_use", "Compute slots taken", registry=r)
        self.slots_capacity = Gauge("router_compute_slots_capacity", "Compute slots in all", registry=r)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Start the /metrics HTTP endpoint; returns the bound port (useful with port 0)."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server.server_port
