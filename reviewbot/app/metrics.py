"""Prometheus metrics on a registry passed in (never the global default one).

One `Metrics` per app: tests build their own registry and read values from it, and two apps in
one process never collide. Label sets are small and fixed: an unauthenticated request never
chooses a label value (a forged X-GitHub-Event could otherwise grow the series without bound).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from reviewbot.core.domain import Funnel, LLMUsage

STAGES = ("fetch", "context", "llm", "filter", "post")
CONTENT_TYPE = CONTENT_TYPE_LATEST

_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_REVIEW_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
_ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)


class Metrics:
    """Every metric reviewbot exports, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.stage_seconds = Histogram(
            "reviewbot_stage_seconds",
            "Time per pipeline stage.",
            ["stage"],
            registry=r,
            buckets=_STAGE_BUCKETS,
        )
        self.review_seconds = Histogram(
            "reviewbot_review_seconds", "End-to-end review latency.", registry=r, buckets=_REVIEW_BUCKETS
        )
        self.webhook_deliveries = Counter(
            "reviewbot_webhook_deliveries",
            "Webhook deliveries by event and outcome.",
            ["event", "outcome"],
            registry=r,
        )
        self.webhook_ack_seconds = Histogram(
            "reviewbot_webhook_ack_seconds",
            "Time to acknowledge a webhook.",
            registry=r,
            buckets=_ACK_BUCKETS,
        )
        self.llm_tokens = Counter("reviewbot_llm_tokens", "LLM tokens by kind.", ["kind"], registry=r)
        self.llm_requests = Counter("reviewbot_llm_requests", "LLM requests.", registry=r)
        self.llm_errors = Counter("reviewbot_llm_errors", "LLM errors by kind.", ["kind"], registry=r)
        self.llm_model_tokens = Counter(
            "reviewbot_llm_model_tokens", "LLM tokens by model and kind.", ["model", "kind"], registry=r
        )
        self.llm_cost = Counter(
            "reviewbot_llm_cost", "LLM cost by model (REVIEWBOT_LLM_PRICES currency).", ["model"], registry=r
        )
        self.llm_capped = Counter(
            "reviewbot_llm_capped_reviews", "Reviews an operator cost cap stopped early.", registry=r
        )
        self.github_calls = Counter(
            "reviewbot_github_api_calls",
            "GitHub API calls by method and status.",
            ["method", "status"],
            registry=r,
        )
        self.github_rate_limit_remaining = Gauge(
            "reviewbot_github_rate_limit_remaining",
            "Last seen x-ratelimit-remaining.",
            ["installation"],
            registry=r,
        )
        self.funnel_candidates = Counter(
            "reviewbot_funnel_candidates", "Candidate findings per repo.", ["repo"], registry=r
        )
        self.funnel_posted = Counter(
            "reviewbot_funnel_posted", "Posted findings per repo.", ["repo"], registry=r
        )
        self.funnel_suppressed = Counter(
            "reviewbot_funnel_suppressed",
            "Suppressed findings per repo and reason.",
            ["repo", "reason"],
            registry=r,
        )
        self.queue_depth = Gauge("reviewbot_queue_depth", "Jobs waiting to run.", registry=r)
        self.dead_letters = Gauge("reviewbot_dead_letters", "Jobs in the dead-letter state.", registry=r)
        self.jobs = Counter(
            "reviewbot_jobs", "Finished job attempts by kind and outcome.", ["kind", "outcome"], registry=r
        )
        self.job_seconds = Histogram(
            "reviewbot_job_seconds",
            "Job handler time by kind.",
            ["kind"],
            registry=r,
            buckets=_REVIEW_BUCKETS,
        )

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a pipeline stage (fetch, context, llm, filter, post)."""
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; expected one of {STAGES}")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(stage=name).observe(time.perf_counter() - start)

    def observe_stage_timings(self, timings: dict[str, float]) -> None:
        """Record stage timings measured elsewhere (e.g. ReviewResult's), ignoring unknown stages."""
        for name, seconds in timings.items():
            if name in STAGES:
                self.stage_seconds.labels(stage=name).observe(seconds)

    def record_funnel(self, repo: str, funnel: Funnel) -> None:
        self.funnel_candidates.labels(repo=repo).inc(funnel.candidates)
        self.funnel_posted.labels(repo=repo).inc(funnel.posted)
        for reason, n in funnel.dropped.items():
            self.funnel_suppressed.labels(repo=repo, reason=reason).inc(n)

    def record_llm_usage(self, usage: LLMUsage) -> None:
        self.llm_requests.inc(usage.requests)
        self.llm_tokens.labels(kind="prompt").inc(usage.prompt_tokens)
        self.llm_tokens.labels(kind="completion").inc(usage.completion_tokens)
        if usage.errors:
            self.llm_errors.labels(kind="request").inc(usage.errors)
        model = usage.model or "unknown"
        self.llm_model_tokens.labels(model=model, kind="prompt").inc(usage.prompt_tokens)
        self.llm_model_tokens.labels(model=model, kind="completion").inc(usage.completion_tokens)
        if usage.cost is not None:
            self.llm_cost.labels(model=model).inc(usage.cost)
        if usage.stopped_by:
            self.llm_capped.inc()

    def record_github_call(
        self, method: str, status: int, rate_remaining: int | None = None, installation_id: int | None = None
    ) -> None:
        self.github_calls.labels(method=method.upper(), status=str(status)).inc()
        if rate_remaining is not None:
            self.github_rate_limit_remaining.labels(installation=str(installation_id or "app")).set(
                rate_remaining
            )

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
