"""Reads of the public market: models, the nodes serving them, their measured latency and uptime, and totals.

Every figure comes from what the marketplace saw itself, never from what a node claims:

- **latency** is the median (core.db.Median: `percentile_cont(0.5)`, interpolated) of `latency_ms` of the node's
  (or model's) completed inference requests that finished within the last MARKET_TRAFFIC_WINDOW_S (24 h);
- **throughput** is output tokens per second over the same requests: sum(completion_tokens) / sum(latency_ms / 1000);
- **uptime over a window** is the fraction of NODE_METRICS_SAMPLE_EVERY_S slots (aligned to the Unix epoch) in
  which the node heartbeat. The heartbeat already keeps one NodeMetricSample in each slot it is heard in
  (llm_models.selectors.metrics_slot_start), so counting samples is the whole measurement: nothing more is written
  on the hot path. Only whole slots count: the window is the N slots before the current one, and a node
  registered less than N slots ago is measured over the slots since its registration (null before it has one).

Each is a correlated subquery over an index (inference_done_node_idx, node_sample_node_time_idx), so a list is
one query however many nodes it shows, and `?ordering=` on any of them is done by the database.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, TypedDict

from django.conf import settings
from django.db.models import (
    Avg,
    BooleanField,
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    FloatField,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Value,
)
from django.db.models.functions import Cast, Coalesce, NullIf
from django.shortcuts import get_object_or_404
from django.utils import timezone

from clients.choices import LedgerAccountKind, LedgerTransactionKind
from clients.models import Client, LedgerEntry
from core.caching import computed_at_most_every
from core.db import Median, scalar_subquery
from gpus.models import Gpu
from inference.choices import InferenceStatus
from inference.models import InferenceRequest
from llm_models.choices import NodeStatus
from llm_models.models import LlmModel, Node, NodeMetricSample, NodeModel
from llm_models.selectors import node_live_q
from llm_models.uptime import node_uptime_annotations

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class LiveFlag(TypedDict):
    live: bool


# Uptime windows shown for every node: name -> seconds.
PRICE = DecimalField(max_digits=13, decimal_places=6)
MONEY = DecimalField(max_digits=20, decimal_places=6)


def traffic_since(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.MARKET_TRAFFIC_WINDOW_S)


def _completed(*, now: datetime) -> QuerySet[InferenceRequest]:
    """Completed requests that finished within the traffic window and carry a measured latency."""
    return InferenceRequest.objects.filter(
        status=InferenceStatus.COMPLETED,
        finished_at__gte=traffic_since(now),
        finished_at__lte=now,
        latency_ms__isnull=False,
    )


def _throughput() -> ExpressionWrapper:
    tokens = Cast(Sum("completion_tokens"), FloatField())
    seconds = Cast(Sum("latency_ms"), FloatField()) / Value(1000.0)
    return ExpressionWrapper(tokens / NullIf(seconds, Value(0.0)), output_field=FloatField())


def node_traffic_annotations(*, now: datetime, node_ref: str = "pk") -> dict:
    """latency_p50_ms and throughput_tps of the node at `node_ref` (an outer field) over the traffic window."""
    mine = _completed(now=now).filter(node_id=OuterRef(node_ref))
    return {
        "latency_p50_ms": scalar_subquery(mine, "node_id", Median("latency_ms"), FloatField()),
        "throughput_tps": scalar_subquery(mine, "node_id", _throughput(), FloatField()),
    }


def _live(now: datetime, prefix: str = "") -> ExpressionWrapper:
    return ExpressionWrapper(node_live_q(now=now, prefix=prefix), output_field=BooleanField())


# --- Models --------------------------------------------------------------------------------------------------------


def _live_offers(*, now: datetime, region: str = "", gpu_model: str = "") -> QuerySet[NodeModel]:
    """NodeModel rows of live nodes, optionally only in a region / on a GPU model (case-insensitive)."""
    qs = NodeModel.objects.filter(node_live_q(now=now, prefix="node__"), model__owner__isnull=True)
    if region:
        qs = qs.filter(node__region__iexact=region)
    if gpu_model:
        qs = qs.filter(node__gpu__gpu_model__iexact=gpu_model)
    return qs


def model_list(*, now: datetime | None = None, region: str = "", gpu_model: str = "") -> QuerySet[LlmModel]:
    """Every model with its live node count, lowest live prices, context window and measured latency.

    With `region` / `gpu_model`, only models with a live node there / on that GPU, counted and priced over those
    nodes."""
    now = now or timezone.now()
    offers = _live_offers(now=now, region=region, gpu_model=gpu_model).filter(model_id=OuterRef("pk"))
    model_traffic = _completed(now=now).filter(desired_model=OuterRef("name"))
    qs = (
        LlmModel.objects.filter(owner__isnull=True)
        .annotate(  # private (fine-tuned) models are never listed
            live_nodes=Coalesce(scalar_subquery(offers, "model_id", Count("id"), IntegerField()), Value(0)),
            input_price_per_million=scalar_subquery(offers, "model_id", Min("input_price_per_million"), PRICE),
            output_price_per_million=scalar_subquery(offers, "model_id", Min("output_price_per_million"), PRICE),
            node_context_window=scalar_subquery(offers, "model_id", Max("context_window"), IntegerField()),
            latency_p50_ms=scalar_subquery(model_traffic, "desired_model", Median("latency_ms"), FloatField()),
        )
        .annotate(context_window_served=Coalesce("node_context_window", "context_window", output_field=IntegerField()))
    )
    if region or gpu_model:
        qs = qs.filter(live_nodes__gt=0)
    return qs


def model_providers(*, model: LlmModel, now: datetime | None = None) -> QuerySet[NodeModel]:
    """The live nodes serving `model`, as NodeModel rows with their node's public figures."""
    now = now or timezone.now()
    return (
        _live_offers(now=now)
        .filter(model=model)
        .select_related("node__owner__user", "node__gpu")
        .annotate(
            price=ExpressionWrapper(F("input_price_per_million") + F("output_price_per_million"), output_field=PRICE),
            **node_traffic_annotations(now=now, node_ref="node_id"),
            **node_uptime_annotations(now=now, node_ref="node_id", registered_ref="node__registered_at"),
        )
    )


# --- Nodes ---------------------------------------------------------------------------------------------------------


def node_list(*, now: datetime | None = None) -> QuerySet[Node]:
    """Every registered node (deregistered ones are gone from the market), with its public figures."""
    now = now or timezone.now()
    cheapest = NodeModel.objects.filter(node_id=OuterRef("pk"))
    return (
        Node.objects.exclude(status=NodeStatus.DEREGISTERED)
        .select_related("owner__user", "gpu")
        .annotate(
            live=_live(now),
            price=scalar_subquery(
                cheapest, "node_id", Min(F("input_price_per_million") + F("output_price_per_million")), PRICE
            ),
            **node_traffic_annotations(now=now),
            **node_uptime_annotations(now=now),
        )
    )


def node_get_live(*, pk: int, now: datetime | None = None) -> "WithAnnotations[Node, LiveFlag]":
    """A registered node with only its `live` flag (no figures): 404 for an unknown or deregistered one."""
    now = now or timezone.now()
    return get_object_or_404(Node.objects.exclude(status=NodeStatus.DEREGISTERED).annotate(live=_live(now)), pk=pk)


def node_metric_samples(
    *, node: Node, since: datetime | None = None, until: datetime | None = None
) -> QuerySet[NodeMetricSample]:
    """The node's kept metric samples, newest first, within [since, until]."""
    qs = NodeMetricSample.objects.filter(node=node).order_by("-recorded_at", "-id")
    if since is not None:
        qs = qs.filter(recorded_at__gte=since)
    if until is not None:
        qs = qs.filter(recorded_at__lte=until)
    return qs


# --- Provider names --------------------------------------------------------------------------------------------------


def provider_public_name(client: Client) -> str:
    """The name a provider is shown by: its username, unless that is an email address (never shown)."""
    username = client.user.username
    return f"provider-{client.pk}" if "@" in username else username


# --- Revenue ---------------------------------------------------------------------------------------------------------


# The transactions that charge a hold: a settle (which closes it) and a usage (a lease's or a pay-as-you-go
# rental's charge, hold kept open). Their lines (clients/ledger/) are the payer's (`release`, `refund` and minus
# the charge) and the shares (the operator's, the platform's and the treasury's lines of the charge's kind); money
# in and out (`topup`, `x402`, `payout`), holds and releases are other transactions and never revenue.
CHARGE_KINDS = (LedgerTransactionKind.SETTLE, LedgerTransactionKind.USAGE)


def operator_earnings_q() -> Q:
    """Ledger entries that are an operator's share of a charge: a client's line of a settle or usage transaction,
    other than the paying client's own (its release, refund and charge lines; a provider paying its own node earns
    nothing: its share comes back to the account that paid)."""
    return Q(transaction__kind__in=CHARGE_KINDS, account__kind=LedgerAccountKind.CLIENT) & ~Q(
        account__client_id=F("transaction__hold__client_id")
    )


def operator_earnings_subquery(*, client_ref: str = "pk") -> Coalesce:
    """Sum of the operator shares credited to the client at `client_ref` (for annotations, e.g. the admin)."""
    entries = LedgerEntry.objects.filter(operator_earnings_q(), account__client_id=OuterRef(client_ref))
    return Coalesce(
        scalar_subquery(entries, "account_id", Sum("amount"), MONEY), Value(Decimal("0")), output_field=MONEY
    )


@dataclass(frozen=True)
class Revenue:
    operator: Decimal
    platform: Decimal
    treasury: Decimal


def revenue_by_share() -> Revenue:
    """What charges paid each share, from the ledger's settle and usage transactions."""
    zero = Value(Decimal("0"), output_field=MONEY)
    charged = LedgerEntry.objects.filter(transaction__kind__in=CHARGE_KINDS)
    totals = charged.aggregate(
        operator=Coalesce(Sum("amount", filter=operator_earnings_q()), zero),
        platform=Coalesce(Sum("amount", filter=Q(account__kind=LedgerAccountKind.PLATFORM)), zero),
        treasury=Coalesce(Sum("amount", filter=Q(account__kind=LedgerAccountKind.TREASURY)), zero),
    )
    return Revenue(**totals)


# --- Totals ----------------------------------------------------------------------------------------------------------


def market_stats(*, now: datetime | None = None) -> dict:
    """Marketplace-wide figures (docs/API.md §7). A handful of aggregate queries."""
    now = now or timezone.now()
    nodes = Node.objects.exclude(status=NodeStatus.DEREGISTERED).aggregate(
        total=Count("id"),
        live=Count("id", filter=node_live_q(now=now)),
    )
    # Over the GPU machines, so each live one counts once even when several nodes run on it.
    live_gpu = Q(pk__in=Node.objects.filter(node_live_q(now=now), gpu__isnull=False).values("gpu_id"))
    gpus = Gpu.objects.aggregate(
        total=Count("id"),
        live=Count("id", filter=live_gpu),
        live_gpus=Coalesce(Sum("gpu_count", filter=live_gpu), Value(0)),
    )
    live_models = NodeModel.objects.filter(node_live_q(now=now, prefix="node__")).values("model_id")
    models = LlmModel.objects.filter(owner__isnull=True).aggregate(
        total=Count("id"),
        live=Count("id", filter=Q(pk__in=live_models)),
    )
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    completed = InferenceRequest.objects.filter(status=InferenceStatus.COMPLETED)
    inferences = completed.aggregate(
        total=Count("id"),
        today=Count("id", filter=Q(finished_at__gte=midnight)),
    )
    avg = _completed(now=now).aggregate(v=Avg("latency_ms", output_field=FloatField()))["v"]
    revenue = revenue_by_share()
    return {
        "nodes": {"total": nodes["total"], "live": nodes["live"]},
        "gpus": {"live_machines": gpus["live"], "live_gpus": gpus["live_gpus"], "total_machines": gpus["total"]},
        "models": {"total": models["total"], "live": models["live"]},
        "inferences": {"today": inferences["today"], "total": inferences["total"]},
        "average_latency_ms": avg,
        "revenue": {"operator": revenue.operator, "platform": revenue.platform, "treasury": revenue.treasury},
    }


def market_stats_cached() -> dict:
    """market_stats(), computed at most once per MARKET_STATS_CACHE_S in the shared cache.

    The figures are public and the same for everyone, and the totals read every completed request and every ledger
    line (they grow with the marketplace's history): a stats page a few seconds old is a fair trade for not paying
    that on every call, by anyone, as often as they like."""
    return computed_at_most_every(settings.MARKET_STATS_CACHE_S, "market:stats", market_stats)
