"""What the console tests build: nodes in each state, paid requests with their ledger charges, a row of each model
the admin shows."""

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


def one_of_each(*, payer: Client, provider: Client) -> None:
    """At least one row of every model the admin shows (the clients, users and keys come from the fixtures), so that
    each changelist and change page renders a row: money, actions and buttons included."""
    from console.services import reconciliation_run
    from inference.models import InferenceBatch
    from llm_models.choices import NodeCommandAction, NodeCommandStatus
    from llm_models.models import NodeCommand
    from payments.models import Payout, TopUp, X402Payer, X402Payment
    from plans.models import Plan, PlanDailyUsage, Subscription
    from rentals.models import Rental, Snapshot
    from tests.factories import GpuFactory
    from training.models import TrainingEvent, TrainingFile, TrainingJob

    now = timezone.now()
    ledger.credit(client_id=payer.pk, amount=Decimal("50.123456"), key="every:fund", memo="test top-up")
    node = nodes_in_every_state(provider)["live"]
    paid_request(payer=payer, node=node, cost="1.234567", key="every:request")
    metric_samples(node, [50.0])
    GpuFactory(user=provider.user, price_per_hour=Decimal("2.345678"))
    rental = Rental.objects.create(
        client=payer, node=node, status="cancelled", hours=1, price_per_hour=Decimal("1.234567"),
        total=Decimal("1.234567"), refunded=Decimal("0.617283"), starts_at=now - timedelta(minutes=30),
        ends_at=now + timedelta(minutes=30), ended_at=now,
    )  # fmt: skip
    NodeCommand.objects.create(
        node=node, rental=rental, action=NodeCommandAction.START, status=NodeCommandStatus.RUNNING
    )
    Snapshot.objects.create(client=payer, rental=rental, node=node, image_ref="registry.example/snap:1")
    InferenceBatch.objects.create(client=payer, model="org/a", max_tokens=16)
    reconciliation_run(trigger="operator")
    TopUp.objects.create(client=payer, amount=Decimal("20.000000"), stripe_session_id="cs_test_every")
    Payout.objects.create(client=provider, amount=Decimal("1.234567"))
    x402 = X402Payer.objects.create(address="0x" + "ab" * 20, client=payer)
    X402Payment.objects.create(payer=x402, network="base-sepolia", nonce="0x01", amount=Decimal("0.012345"))
    plan = Plan.objects.create(name="Pro", price_per_month=Decimal("19.990000"), daily_requests=100)
    subscription = Subscription.objects.create(
        client=payer, plan=plan, price_per_month=plan.price_per_month, started_at=now, renews_at=now + timedelta(30)
    )
    PlanDailyUsage.objects.create(subscription=subscription, day=now.date(), requests=3)
    dataset = TrainingFile.objects.create(
        client=payer, filename="train.jsonl", bytes=10, lines=1, file="training_files/train.jsonl"
    )
    job = TrainingJob.objects.create(
        client=payer, node=node, base_model="org/a", training_file=dataset, epochs=1, learning_rate=1e-4,
        batch_size=1, price_per_hour=Decimal("2.000000"), held_amount=Decimal("2.000000"), charged=Decimal("0.333333"),
    )  # fmt: skip
    TrainingEvent.objects.create(job=job, step=1, epoch=0.5, loss=0.25, message="step 1")
