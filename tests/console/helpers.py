"""What the console tests build: nodes in each state, paid requests with their ledger charges, a rental."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from clients import ledger
from clients.models import Client
from inference.choices import InferenceStatus
from inference.models import InferenceRequest
from llm_models.choices import NodeStatus
from llm_models.models import Node, NodeMetricSample
from tests.factories import make_node


def paid_request(*, payer: Client, node: Node, cost: str, key: str, tokens: tuple[int, int] = (10, 5)) -> Decimal:
    """A completed request of `payer` served by `node`, charged `cost` through the ledger (hold, then settle)."""
    amount = Decimal(cost)
    ledger.hold_place(client_id=payer.pk, amount=amount, key=key)
    ledger.hold_settle(key=key, charge=amount, operator_id=node.owner_id, kind="inference")
    InferenceRequest.objects.create(
        client=payer,
        question_text="q",
        desired_model="org/console",
        node=node,
        status=InferenceStatus.COMPLETED,
        max_tokens=64,
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        cost=amount,
        request_key=key,
        deadline_at=timezone.now(),
        finished_at=timezone.now(),
    )
    return amount


def nodes_in_every_state(owner: Client) -> dict[str, Node]:
    """Two live nodes (one of them failing), one offline (silent), one deregistered."""
    now = timezone.now()
    live, _ = make_node(owner=owner, name="live-a", status=NodeStatus.ONLINE, last_heartbeat_at=now, models=["org/a"])
    failing, _ = make_node(
        owner=owner,
        name="live-failing",
        status=NodeStatus.ONLINE,
        last_heartbeat_at=now,
        cooldown_until=now + timedelta(minutes=5),
        consecutive_failures=3,
    )
    offline, _ = make_node(
        owner=owner, name="silent", status=NodeStatus.ONLINE, last_heartbeat_at=now - timedelta(hours=2)
    )
    gone, _ = make_node(owner=owner, name="gone", status=NodeStatus.DEREGISTERED)
    return {"live": live, "failing": failing, "offline": offline, "gone": gone}


def metric_samples(node: Node, utilizations: list[float]) -> None:
    """One kept sample a minute for each utilization, the last one a minute ago."""
    now = timezone.now()
    for i, value in enumerate(utilizations):
        NodeMetricSample.objects.create(
            node=node,
            recorded_at=now - timedelta(minutes=len(utilizations) - i),
            metrics={"gpu_utilization": value, "gpu_temperature_c": 60 + i},
            active_requests=i,
        )
