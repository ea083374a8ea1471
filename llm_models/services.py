"""Writes for the node registry: register, heartbeat, deregister, and the stale-node sweep."""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from clients.models import Client
from core.crypto import encrypt
from core.errors import DomainError
from core.metrics import HEARTBEATS
from core.tokens import NODE_TOKEN_PREFIX, issue_secret
from gpus.models import Gpu
from llm_models.choices import OPEN_COMMAND_STATUSES, NodeCommandAction, NodeCommandStatus, NodeStatus
from llm_models.endpoint_guard import check_node_endpoint
from llm_models.errors import NodeDeregistered
from llm_models.models import LlmModel, Node, NodeCommand, NodeMetricSample, NodeModel
from llm_models.selectors import metrics_slot_start
from llm_models.serializers import CommandOutcomeIn
from llm_models.signals import node_command_reported, node_deregistered

# Fields a command result may carry beside `output` (API.md "structured outcomes"), kept in NodeCommand.outcome.
STRUCTURED_RESULT_FIELDS = ("access", "snapshot_ref", "progress", "metrics", "fine_tuned_model")


@dataclass(frozen=True)
class RegisteredNode:
    node: Node
    raw_token: str


def models_digest(models: object) -> str:
    """A digest of a model list exactly as a node sent it (JSON), so an unchanged list is recognised without
    validating it again: the same bytes that passed validation once pass again (heartbeat_fastpath relies on it).
    A list that differs only in spelling (`"0.2"` for `"0.20"`) is simply synced again."""
    canonical = json.dumps(models, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _default_prices() -> tuple[Decimal, Decimal]:
    return (
        Decimal(str(settings.DEFAULT_INPUT_PRICE_PER_MILLION)),
        Decimal(str(settings.DEFAULT_OUTPUT_PRICE_PER_MILLION)),
    )


def node_sync_models(*, node: Node, models: list[dict], digest: str | None = None) -> None:
    """Make the node's served models exactly `models`, creating model records for new names.

    `digest`: models_digest() of the list as the node sent it (by default, of `models`)."""
    default_in, default_out = _default_prices()
    by_name = {m["name"]: m for m in models}
    # Private models (fine-tuned, API.md §13) are added by training when a job succeeds: a model list neither
    # claims nor drops them.
    private = set(LlmModel.objects.filter(name__in=by_name, owner__isnull=False).values_list("name", flat=True))
    by_name = {name: spec for name, spec in by_name.items() if name not in private}
    known = {m.name: m for m in LlmModel.objects.filter(name__in=by_name)}
    for name, spec in by_name.items():
        if name not in known:
            known[name], _ = LlmModel.objects.get_or_create(
                name=name, defaults={"context_window": spec.get("context_window")}
            )
    NodeModel.objects.filter(node=node, model__owner__isnull=True).exclude(model__name__in=by_name).delete()
    for name, spec in by_name.items():
        NodeModel.objects.update_or_create(
            node=node,
            model=known[name],
            defaults={
                "input_price_per_million": spec.get("input_price_per_million", default_in),
                "output_price_per_million": spec.get("output_price_per_million", default_out),
                "context_window": spec.get("context_window"),
            },
        )
    Node.objects.filter(pk=node.pk).update(models_digest=digest or models_digest(models))


@transaction.atomic
def node_register(
    *,
    owner: Client,
    name: str,
    endpoint_url: str,
    api_key: str = "",
    gpu: Gpu | None = None,
    region: str = "",
    models: list[dict] | None = None,
    sent_models_digest: str | None = None,
    ssh_host: str | None = None,
    ssh_port: int | None = None,
    ssh_user: str | None = None,
    capabilities: list[str] | None = None,
) -> RegisteredNode:
    """Add a node for an approved provider. It is offline until its first heartbeat."""
    endpoint_url = check_node_endpoint(endpoint_url, allow_private=settings.ALLOW_PRIVATE_NODE_ENDPOINTS)
    if gpu is not None and gpu.user_id != owner.user_id:
        raise DomainError("This GPU is not yours.", attr="gpu")
    secret = issue_secret(NODE_TOKEN_PREFIX)
    node = Node.objects.create(
        owner=owner,
        name=name,
        endpoint_url=endpoint_url,
        backend_api_key_encrypted=encrypt(api_key),
        gpu=gpu,
        region=region or (gpu.region if gpu else ""),
        token_digest=secret.digest,
        token_last4=secret.last4,
        ssh_host=ssh_host or None,
        ssh_port=ssh_port,
        ssh_user=ssh_user or None,
        **({"capabilities": capabilities} if capabilities is not None else {}),
    )
    if models is not None:
        node_sync_models(node=node, models=models, digest=sent_models_digest)
    return RegisteredNode(node=node, raw_token=secret.raw)


def node_record_heartbeat(
    *,
    node: Node,
    metrics: dict,
    models: list[dict] | None = None,
    active_requests: int | None = None,
    sent_models_digest: str | None = None,
    now: datetime | None = None,
    capabilities: list[str] | None = None,
) -> None:
    """Mark the node live and store its latest metrics; keep a sample per NODE_METRICS_SAMPLE_EVERY_S slot.

    The hot path is one UPDATE: a sample row and a model sync are written only when due or changed.
    """
    now = now or timezone.now()
    fields: dict = {"status": NodeStatus.ONLINE, "last_heartbeat_at": now, "latest_metrics": metrics}
    if active_requests is not None:
        fields["active_requests"] = active_requests
    if capabilities is not None:
        fields["capabilities"] = capabilities
    sample_due = node.last_metrics_sample_at is None or node.last_metrics_sample_at < metrics_slot_start(now)
    if sample_due:
        fields["last_metrics_sample_at"] = now
    with transaction.atomic():
        # The status guard keeps a heartbeat racing a deregistration from resurrecting the node.
        updated = Node.objects.filter(pk=node.pk).exclude(status=NodeStatus.DEREGISTERED).update(**fields)
        if not updated:
            raise NodeDeregistered("This node has been deregistered.")
        if sample_due:
            NodeMetricSample.objects.create(
                node_id=node.pk, recorded_at=now, metrics=metrics, active_requests=active_requests or 0
            )
        if models is not None:
            digest = sent_models_digest or models_digest(models)
            if digest != node.models_digest:
                node_sync_models(node=node, models=models, digest=digest)
    HEARTBEATS.inc()


@transaction.atomic
def node_deregister(*, node: Node, now: datetime | None = None) -> None:
    """Take the node out of routing for good; its active rentals end with a refund (via `node_deregistered`).

    Its history (inferences, rentals, ledger rows) stays."""
    now = now or timezone.now()
    updated = (
        Node.objects.filter(pk=node.pk)
        .exclude(status=NodeStatus.DEREGISTERED)
        .update(status=NodeStatus.DEREGISTERED, deregistered_at=now, active_requests=0)
    )
    if updated:
        node_deregistered.send(sender=Node, node_id=node.pk, now=now)


@transaction.atomic
def node_deregister_all_of_owner(*, owner: Client) -> int:
    """Deregister every node of a closed account (their active rentals end with a refund)."""
    now = timezone.now()
    ids = list(
        Node.objects.select_for_update()
        .filter(owner=owner)
        .exclude(status=NodeStatus.DEREGISTERED)
        .values_list("pk", flat=True)
    )
    Node.objects.filter(pk__in=ids).update(status=NodeStatus.DEREGISTERED, deregistered_at=now, active_requests=0)
    for node_id in ids:
        node_deregistered.send(sender=Node, node_id=node_id, now=now)
    return len(ids)


# --- Commands: the heartbeat's `commands` and `results` (API.md §3) ------------------------------------------


def node_command_queue(*, node: Node, action: str, params: dict, rental_id: int | None = None) -> NodeCommand:
    """Queue a command; the node gets it in its next heartbeat reply, and in every one until it reports back."""
    return NodeCommand.objects.create(node=node, rental_id=rental_id, action=action, params=params)


def node_commands_deliver(*, node: Node) -> list[NodeCommand]:
    """The node's commands not yet reported on, oldest first; those sent for the first time become `running`."""
    commands = list(NodeCommand.objects.filter(node=node, status__in=OPEN_COMMAND_STATUSES).order_by("id")[:100])
    fresh = [c.pk for c in commands if c.status == NodeCommandStatus.PENDING]
    if fresh:
        NodeCommand.objects.filter(pk__in=fresh, status=NodeCommandStatus.PENDING).update(
            status=NodeCommandStatus.RUNNING, updated_at=timezone.now()
        )
    return commands


def _structured(outcome: dict) -> tuple[dict, str]:
    """The structured fields of a result (access, snapshot_ref), validated; ({}, why) when they are invalid."""
    fields = {k: outcome[k] for k in STRUCTURED_RESULT_FIELDS if k in outcome}
    if not fields:
        return {}, ""
    checked = CommandOutcomeIn(data=fields)
    if checked.is_valid():
        return dict(checked.validated_data), ""
    return {}, f"The node reported invalid {', '.join(sorted(checked.errors))}: {json.dumps(checked.errors)}"[:2000]


@transaction.atomic
def node_command_results_record(*, node: Node, results: list[dict]) -> int:
    """Record outcomes the node reported: only its own open commands, and withdrawn ones (the node had received
    them before they were withdrawn, so their final outcome is the truthful status; a `running` report leaves a
    withdrawn command withdrawn, so it is never sent again); unknown or already-closed ids are ignored (the agent
    re-sends outcomes until a heartbeat carrying them is answered). `unsupported` fails the command and is
    remembered per node and action, so later requests for it are refused (501). `running` records what came and
    leaves the command open. Structured fields (access, snapshot_ref) are kept in `outcome`; invalid ones fail the
    command. Sends `node_command_reported` for each command closed or updated. Returns how many closed."""
    by_id = {r["id"]: r for r in results}
    commands = list(
        NodeCommand.objects.select_for_update()
        .filter(node=node, pk__in=by_id, status__in=(*OPEN_COMMAND_STATUSES, NodeCommandStatus.CANCELLED))
        .order_by("id")
    )
    unsupported: set[str] = set()
    now = timezone.now()
    closed = 0
    commands = [
        c for c in commands if not (c.status == NodeCommandStatus.CANCELLED and by_id[c.pk]["status"] == "running")
    ]
    for command in commands:
        outcome = by_id[command.pk]
        output = outcome.get("output", "")
        structured, invalid = _structured(outcome)
        if invalid:
            command.status = NodeCommandStatus.FAILED
            output = f"{output}\n[{invalid}]".lstrip("\n")
        elif outcome["status"] == "running":
            command.status = NodeCommandStatus.RUNNING
        elif outcome["status"] == "succeeded":
            command.status = NodeCommandStatus.SUCCEEDED
        else:
            command.status = NodeCommandStatus.FAILED
            if outcome["status"] == "unsupported":
                unsupported.add(command.action)
                output = output or f"The node does not support {command.action!r}."
        command.result = output[:10000]
        command.outcome = {**(command.outcome or {}), **structured}
        command.updated_at = now
        closed += command.status != NodeCommandStatus.RUNNING
    NodeCommand.objects.bulk_update(commands, ["status", "result", "outcome", "updated_at"])
    for command in commands:
        node_command_reported.send(sender=NodeCommand, command=command)
    if unsupported:
        locked = Node.objects.select_for_update().only("pk", "unsupported_actions").get(pk=node.pk)
        merged = sorted(set(locked.unsupported_actions or []) | unsupported)
        if merged != locked.unsupported_actions:
            Node.objects.filter(pk=node.pk).update(unsupported_actions=merged)
    return closed


def node_commands_withdraw(*, rental_id: int, reason: str) -> int:
    """Withdraw the ended rental's commands the node has not reported on, `end` excepted: they become `cancelled`
    and no heartbeat sends them again (API.md §10). Returns how many."""
    return (
        NodeCommand.objects.filter(rental_id=rental_id, status__in=OPEN_COMMAND_STATUSES)
        .exclude(action=NodeCommandAction.END)
        .update(status=NodeCommandStatus.CANCELLED, result=reason, updated_at=timezone.now())
    )


@transaction.atomic
def node_actions_supported(*, node: Node, actions: list[str]) -> list[str]:
    """The node's agent has hooks for `actions` now (it says so when it starts): those it answered `unsupported`
    for before are accepted again, without registering anew. Returns the actions still refused."""
    locked = Node.objects.select_for_update().only("pk", "unsupported_actions").get(pk=node.pk)
    remaining = [action for action in (locked.unsupported_actions or []) if action not in set(actions)]
    if remaining != (locked.unsupported_actions or []):
        Node.objects.filter(pk=node.pk).update(unsupported_actions=remaining)
    return remaining


def node_commands_abandon(*, node_id: int, reason: str) -> int:
    """Fail the node's open commands (it left, or its rental ended before they ran)."""
    return NodeCommand.objects.filter(node_id=node_id, status__in=OPEN_COMMAND_STATUSES).update(
        status=NodeCommandStatus.FAILED, result=reason, updated_at=timezone.now()
    )


def node_mark_stale_offline(*, now: datetime | None = None) -> int:
    """Flip online nodes silent for NODE_HEARTBEAT_TIMEOUT_S to offline. One indexed UPDATE; safe to repeat."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.NODE_HEARTBEAT_TIMEOUT_S)
    return Node.objects.filter(status=NodeStatus.ONLINE, last_heartbeat_at__lt=cutoff).update(status=NodeStatus.OFFLINE)


def node_metrics_prune(*, now: datetime | None = None) -> int:
    """Delete metric samples older than NODE_METRICS_RETENTION_S."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.NODE_METRICS_RETENTION_S)
    deleted, _ = NodeMetricSample.objects.filter(recorded_at__lt=cutoff).delete()
    return deleted


def node_record_success(*, node_id: int, latency_ms: float) -> None:
    """An answer came back: fold its latency into the node's EWMA and end any cooldown. One UPDATE."""
    alpha = settings.INFERENCE_LATENCY_EWMA_ALPHA
    Node.objects.filter(pk=node_id).update(
        latency_ewma_ms=Coalesce(F("latency_ewma_ms") * (1 - alpha) + alpha * latency_ms, Value(float(latency_ms))),
        consecutive_failures=0,
        cooldown_until=None,
    )


@transaction.atomic
def node_record_failure(*, node_id: int, now: datetime | None = None) -> datetime | None:
    """The node failed a request: cool it down for base * 2^(failures-1) seconds (capped). Returns the end."""
    now = now or timezone.now()
    # The row lock makes concurrent failures count one by one.
    node = Node.objects.select_for_update().filter(pk=node_id).only("consecutive_failures").first()
    if node is None:
        return None
    failures = node.consecutive_failures + 1
    seconds = min(settings.INFERENCE_COOLDOWN_BASE_S * 2 ** min(failures - 1, 30), settings.INFERENCE_COOLDOWN_MAX_S)
    until = now + timedelta(seconds=seconds)
    Node.objects.filter(pk=node_id).update(consecutive_failures=failures, cooldown_until=until)
    return until


def node_heartbeat(
    *,
    node: Node,
    metrics: dict,
    models: list[dict] | None,
    active_requests: int | None,
    sent_models_digest: str | None,
    capabilities: list[str] | None,
    results: list[dict] | None,
    actions: list[str] | None,
) -> list[NodeCommand]:
    """A node's heartbeat: its metrics and models recorded, its command results and supported actions taken in
    (`actions` None: the agent did not say), and the commands to send it now."""
    node_record_heartbeat(
        node=node,
        metrics=metrics,
        models=models,
        active_requests=active_requests,
        sent_models_digest=sent_models_digest,
        capabilities=capabilities,
    )
    if results:
        node_command_results_record(node=node, results=results)
    if actions is not None:
        node_actions_supported(node=node, actions=actions)
    return node_commands_deliver(node=node)
