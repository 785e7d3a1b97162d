"""Prometheus metrics, one CollectorRegistry per app (so tests can build several apps).

Request figures are observed by the API middleware as responses finish;
engine figures (queue depth, batches, upstream circuits) are read from the
served models when /metrics is scraped, so the engine needs no metrics
library and costs nothing between scrapes. Batch sizes and time in queue
come from the batcher's ``on_batch`` hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ezlink.engine.batcher import Batcher
from ezlink.engine.local_generator import LocalGenerator
from ezlink.engine.local_model import LocalModel
from ezlink.engine.registry import ModelRegistry
from ezlink.upstreams.routing import upstream_snapshots

CONTENT_TYPE = CONTENT_TYPE_LATEST
# The route whose inputs and tokens the embedding counters count.
EMBEDDINGS_ROUTE = "/v1/embeddings"

# Embedding latencies run from ~5 ms (one short text) to tens of seconds (2048
# long inputs on a CPU); the buckets cover that range with ~2x steps.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# Inter-token gaps: ~10 ms for a small local model, up to seconds for a stall.
INTER_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
QUEUE_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
CIRCUIT_STATES = ("up", "half_open", "open")

BatchHook = Callable[[int, Sequence[float]], None]


class Metrics:
    """Every ezlink metric, registered on its own registry."""

    def __init__(self, models: ModelRegistry) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ezlink_requests",
            "HTTP requests answered, by route template, model and status code.",
            ["route", "model", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ezlink_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "ezlink_requests_in_flight",
            "HTTP requests being answered now (probes and scrapes not counted).",
            registry=self.registry,
        )
        self.inputs = Counter(
            "ezlink_embedding_inputs",
            "Inputs embedded in successful requests.",
            ["model"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "ezlink_embedding_tokens",
            "Tokens embedded in successful requests (the `usage` the clients got).",
            ["model"],
            registry=self.registry,
        )
        self.first_token = Histogram(
            "ezlink_time_to_first_token_seconds",
            "Time from a streamed generation's arrival to its first piece.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inter_token = Histogram(
            "ezlink_inter_token_seconds",
            "Time between consecutive pieces of a streamed generation.",
            ["model"],
            buckets=INTER_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.streams = Gauge(
            "ezlink_streams_in_flight",
            "Streamed answers being sent now.",
            registry=self.registry,
        )
        self.generated_tokens = Counter(
            "ezlink_generation_tokens",
            "Tokens of text generation requests, by kind (prompt, completion).",
            ["model", "kind"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "ezlink_batch_size",
            "Inputs per inference batch.",
            ["model"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "ezlink_queue_wait_seconds",
            "Time an input waited in the queue before its batch started.",
            ["model"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=self.registry,
        )
        ProcessCollector(namespace="", registry=self.registry)
        self.registry.register(EngineCollector(models))

    def observe_request(
        self,
        route: str,
        model: str,
        status: int,
        seconds: float,
        inputs: int | None = None,
        tokens: int | None = None,
    ) -> None:
        self.requests.labels(route, model, str(status)).inc()
        self.latency.labels(route, model).observe(seconds)
        if status == 200 and model and route == EMBEDDINGS_ROUTE:
            if inputs is not None:
                self.inputs.labels(model).inc(inputs)
            if tokens is not None:
                self.tokens.labels(model).inc(tokens)

    def batch_hook(self, model: str) -> BatchHook:
        """A callback for one model's batcher: batch size and each input's wait."""
        size = self.batch_size.labels(model)
        wait = self.queue_wait.labels(model)

        def on_batch(inputs: int, waited: Sequence[float]) -> None:
            size.observe(inputs)
            for seconds in waited:
                wait.observe(seconds)

        return on_batch

    def attach_to_engine(self, models: ModelRegistry) -> None:
        """Hook every loaded batcher (call once the models have started)."""
        for name, batcher in local_batchers(models):
            batcher.on_batch = self.batch_hook(name)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def local_batchers(models: ModelRegistry) -> Iterable[tuple[str, Batcher]]:
    """(model id, batcher) of every local embeddings model that has started."""
    for model in models.models:
        if isinstance(model, LocalModel) and model.batcher is not None:
            yield model.card.id, model.batcher


class EngineCollector(Collector):
    """Reads the served models' own counters at scrape time."""

    def __init__(self, models: ModelRegistry) -> None:
        self.models = models

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily("ezlink_ready", "1 once every model is loaded, else 0.")
        ready.add_metric([], 1.0 if self.models.ready else 0.0)
        yield ready
        yield from self._batcher_metrics()
        yield from self._generation_metrics()
        yield from self._upstream_metrics()

    def _batcher_metrics(self) -> Iterator[Metric]:
        labels = ["model"]
        queued_tokens = GaugeMetricFamily(
            "ezlink_queue_tokens", "Tokens waiting in the model's queue.", labels=labels
        )
        queued_requests = GaugeMetricFamily(
            "ezlink_queue_requests", "Requests with inputs waiting in the queue.", labels=labels
        )
        batches = CounterMetricFamily("ezlink_batches", "Inference batches run.", labels=labels)
        tokens = CounterMetricFamily(
            "ezlink_batch_tokens",
            "Real tokens run (padding not counted), summed over batches.",
            labels=labels,
        )
        padded = CounterMetricFamily(
            "ezlink_batch_padded_tokens",
            "Padded tokens computed (batch size x longest input), summed over batches.",
            labels=labels,
        )
        dropped = CounterMetricFamily(
            "ezlink_dropped_inputs",
            "Inputs never run because their client left before their batch.",
            labels=labels,
        )
        rejected = CounterMetricFamily(
            "ezlink_overload_rejections",
            "Requests refused with 503 because the queue was full.",
            labels=labels,
        )
        for name, batcher in local_batchers(self.models):
            queued_tokens.add_metric([name], float(batcher.queued_tokens))
            queued_requests.add_metric([name], float(batcher.queued_requests))
            stats = batcher.stats
            batches.add_metric([name], float(stats.batches))
            tokens.add_metric([name], float(stats.tokens))
            padded.add_metric([name], float(stats.padded_tokens))
            dropped.add_metric([name], float(stats.dropped_inputs))
            rejected.add_metric([name], float(stats.rejected_requests))
        yield from (queued_tokens, queued_requests, batches, tokens, padded, dropped, rejected)

    def _generation_metrics(self) -> Iterator[Metric]:
        """Per local text-generation model: its scheduler's queue and counters."""
        labels = ["model"]
        queued = GaugeMetricFamily(
            "ezlink_generation_queue_requests", "Generations waiting for a context.", labels=labels
        )
        running = GaugeMetricFamily(
            "ezlink_generation_running", "Sequences being generated now.", labels=labels
        )
        tokens = CounterMetricFamily(
            "ezlink_generation_decoded_tokens", "Tokens decoded by the local model.", labels=labels
        )
        started = CounterMetricFamily(
            "ezlink_generation_sequences", "Sequences started by the local model.", labels=labels
        )
        cancelled = CounterMetricFamily(
            "ezlink_generation_cancelled_sequences",
            "Sequences stopped because their client left (queued or running).",
            labels=labels,
        )
        rejected = CounterMetricFamily(
            "ezlink_generation_overload_rejections",
            "Generations refused with 503 because the queue was full.",
            labels=labels,
        )
        for model in self.models.models:
            if not isinstance(model, LocalGenerator) or model.scheduler is None:
                continue
            scheduler, name = model.scheduler, [model.card.id]
            queued.add_metric(name, float(scheduler.queue_depth))
            running.add_metric(name, float(scheduler.in_flight))
            tokens.add_metric(name, float(scheduler.stats.tokens_generated))
            started.add_metric(name, float(scheduler.stats.sequences_started))
            cancelled.add_metric(name, float(scheduler.stats.sequences_cancelled))
            rejected.add_metric(name, float(scheduler.stats.rejected_requests))
        yield from (queued, running, tokens, started, cancelled, rejected)

    def _upstream_metrics(self) -> Iterator[Metric]:
        """Per upstream (shared by every model routed to it): circuit and call counts."""
        labels = ["upstream"]
        state = GaugeMetricFamily(
            "ezlink_upstream_circuit_state",
            "1 for the upstream's current circuit state (up, half_open, open), else 0.",
            labels=[*labels, "state"],
        )
        opened = CounterMetricFamily(
            "ezlink_upstream_circuit_opened", "Times the upstream's circuit opened.", labels=labels
        )
        calls = CounterMetricFamily(
            "ezlink_upstream_calls", "Calls made to the upstream.", labels=labels
        )
        errors = CounterMetricFamily(
            "ezlink_upstream_errors",
            "Calls to the upstream that failed (5xx, 429, timeout, connection, malformed).",
            labels=labels,
        )
        in_flight = GaugeMetricFamily(
            "ezlink_upstream_in_flight", "Calls to the upstream in flight.", labels=labels
        )
        for snapshot in upstream_snapshots(self.models.models):
            for name in CIRCUIT_STATES:
                state.add_metric([snapshot.name, name], 1.0 if snapshot.state == name else 0.0)
            opened.add_metric([snapshot.name], float(snapshot.times_opened))
            calls.add_metric([snapshot.name], float(snapshot.calls))
            errors.add_metric([snapshot.name], float(snapshot.failures))
            in_flight.add_metric([snapshot.name], float(snapshot.in_flight))
        yield from (state, opened, calls, errors, in_flight)
