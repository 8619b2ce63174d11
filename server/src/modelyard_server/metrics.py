"""Prometheus metrics: what the server does, in the text format GET /metrics serves.

Requests are counted by route template, model and status class, and timed, by an ASGI middleware
that sits outside every route (so refusals are counted too). LLM routes add time to first token and
generated tokens. The models' own state (status, restarts, load time, calls in flight, requests
waiting for a load, each worker's RSS) is read from the supervisor when scraped. Every label is
bounded: a route's template (never its path), a model uid only while that model is known to the
supervisor, and "2xx"-style status classes.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

MODEL_KEY = "modelyard.model"  # in the ASGI scope: the uid of the model a request called
STARTED_KEY = "modelyard.started"  # in the ASGI scope: when the request arrived (perf_counter)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Metrics:
    """One app's metrics, in a registry of its own (two apps in one process never mix)."""

    def __init__(self, models: Callable[[], Iterable[Any]]):
        """`models`: the supervisor's model records, read at each scrape."""
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("modelyard_requests", "HTTP requests answered, by route template, model and "
                                "status class.", ["route", "model", "status"], registry=self.registry)
        self.latency = Histogram("modelyard_request_duration_seconds", "Time to answer (to the end of a streamed "
                                 "answer), by route template and model.", ["route", "model"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_progress = Gauge("modelyard_requests_in_progress", "HTTP requests being answered now.",
                                 registry=self.registry)
        self.ttft = Histogram("modelyard_time_to_first_token_seconds", "From an LLM request's arrival to its first "
                              "generated text, streamed requests.", ["model"], buckets=TTFT_BUCKETS,
                              registry=self.registry)
        self.tokens = Counter("modelyard_generated_tokens", "Tokens LLMs generated.", ["model"],
                              registry=self.registry)
        self.registry.register(_ModelCollector(models))

    def scrape(self) -> bytes:
        return generate_latest(self.registry)

    def known(self, uid: str | None, models: dict[str, Any]) -> str:
        """The model label: the uid while the supervisor knows it, else empty (so labels stay bounded)."""
        return uid if uid is not None and uid in models else ""

    def count_tokens(self, uid: str, items: list[dict[str, Any]]) -> None:
        """An LLM's whole answer (neutral chunks): its usage item's completion tokens."""
        for item in reversed(items):
            if "usage" in item:
                self.tokens.labels(uid).inc(item["usage"]["completion_tokens"])
                return

    async def watch_llm_stream(self, uid: str, scope: dict[str, Any],
                               batches: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[list[dict[str, Any]]]:
        """Pass an LLM's streamed chunks on, timing its first text and counting its tokens."""
        first = True
        async for batch in batches:
            if first and any(item.get("text") or item.get("reasoning") for item in batch):
                first = False
                self.ttft.labels(uid).observe(time.perf_counter() - scope.get(STARTED_KEY, time.perf_counter()))
            self.count_tokens(uid, batch)
            yield batch


class LlmMeter:
    """One LLM request's share of the metrics; does nothing with metrics off."""

    def __init__(self, metrics: Metrics | None, uid: str, scope: dict[str, Any]):
        self.metrics, self.uid, self.scope = metrics, uid, scope

    def whole(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.metrics is not None:
            self.metrics.count_tokens(self.uid, items)
        return items

    def stream(self, batches: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[list[dict[str, Any]]]:
        if self.metrics is None:
            return batches
        return self.metrics.watch_llm_stream(self.uid, self.scope, batches)


class MetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI: a streamed answer is timed to its end)."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = scope[STARTED_KEY] = time.perf_counter()
        status = 500  # unless the app answers: it raised

        async def send_counted(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics = self.metrics
        metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_counted)
        finally:
            metrics.in_progress.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            uid = scope.get(MODEL_KEY) or scope.get("path_params", {}).get("model_uid")
            state = getattr(scope["app"].state, "modelyard", None)
            model = metrics.known(uid, state.supervisor.models if state is not None else {})
            metrics.requests.labels(template, model, f"{status // 100}xx").inc()
            metrics.latency.labels(template, model).observe(time.perf_counter() - started)


class _ModelCollector:
    """The models' state, read from the supervisor at each scrape."""

    def __init__(self, models: Callable[[], Iterable[Any]]):
        self.models = models

    def collect(self) -> Iterable[Metric]:
        from modelyard_server.supervisor import Status

        state = GaugeMetricFamily("modelyard_model_state", "1 for each model's current status.",
                                  labels=["model", "status"])
        replicas = GaugeMetricFamily("modelyard_model_replicas_ready", "Replicas ready to serve.", labels=["model"])
        restarts = CounterMetricFamily("modelyard_model_restarts", "Times a model's workers were started again "
                                       "after they died.", labels=["model"])
        load = GaugeMetricFamily("modelyard_model_load_seconds", "A model's last load, from its workers' start.",
                                 labels=["model"])
        loads = CounterMetricFamily("modelyard_model_loads", "Times a model was loaded (launch, reload).",
                                    labels=["model"])
        in_flight = GaugeMetricFamily("modelyard_model_requests_in_flight", "Calls a model is answering now.",
                                      labels=["model"])
        waiting = GaugeMetricFamily("modelyard_model_requests_waiting", "Requests waiting for a model to load.",
                                    labels=["model"])
        rss = GaugeMetricFamily("modelyard_worker_rss_bytes", "Resident memory of each worker process.",
                                labels=["model", "replica"])
        for record in list(self.models()):
            uid = record.uid
            current = record.status
            for status in Status:
                state.add_metric([uid, status.value], 1.0 if status == current else 0.0)
            replicas.add_metric([uid], sum(1 for r in record.replicas if r.status == Status.READY and r.pid))
            restarts.add_metric([uid], record.restarts)
            loads.add_metric([uid], record.loads)
            if record.load_seconds is not None:
                load.add_metric([uid], record.load_seconds)
            in_flight.add_metric([uid], record.in_flight)
            waiting.add_metric([uid], record.waiting)
            for replica in record.replicas:
                resident = _rss(replica.pid)
                if resident is not None:
                    rss.add_metric([uid, str(replica.index)], resident)
        return [state, replicas, restarts, load, loads, in_flight, waiting, rss]


def _rss(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None
