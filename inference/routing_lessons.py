"""The one rule by which a relayed request teaches routing (inference/routing.py ranks by it): every node at fault
cools down (llm_models' failure counter), and the node that answered cleanly folds its first-byte latency into its
EWMA. Every path that relays applies it: the worker and the Django /v1 path at once (`teach_now`), the lean /v1
path its failures at once and its latencies when its usage journal is applied (`teach_latencies`)."""

from collections import defaultdict
from dataclasses import dataclass

from inference.metering import Delivery
from llm_models import services as node_services


@dataclass(frozen=True)
class Lessons:
    failed: tuple[int, ...]  # nodes at fault, each once, in the order they failed
    latency: tuple[int, int] | None  # (node id, first-byte ms) of the node that answered without error


def lessons(delivery: Delivery) -> Lessons:
    """What this delivery teaches: nodes that failed before relaying, or broke while relaying, by their fault; the
    answering node's first-byte latency when its answer did not fail (a client that left still measured it)."""
    failed = [node_id for node_id, error in delivery.failures if error.node_fault]
    candidate = delivery.candidate
    if delivery.error is not None and delivery.error.node_fault and candidate is not None:
        failed.append(candidate.node_id)
    latency = None
    if candidate is not None and delivery.started and delivery.error is None and delivery.first_byte_ms is not None:
        latency = (candidate.node_id, delivery.first_byte_ms)
    return Lessons(failed=tuple(dict.fromkeys(failed)), latency=latency)


def teach_failures(failed: tuple[int, ...]) -> None:
    for node_id in failed:
        node_services.node_record_failure(node_id=node_id)


def teach_latencies(latencies: list[tuple[int, int]]) -> None:
    """Fold each node's mean first-byte latency of these requests into its EWMA, one write per node."""
    by_node: dict[int, list[int]] = defaultdict(list)
    for node_id, ms in latencies:
        by_node[node_id].append(ms)
    for node_id, values in sorted(by_node.items()):
        node_services.node_record_success(node_id=node_id, latency_ms=sum(values) / len(values))


def teach_now(taught: Lessons) -> None:
    teach_failures(taught.failed)
    teach_latencies([taught.latency] if taught.latency is not None else [])
