"""factory_boy factories for the test suite. Keys and tokens are issued through the real services."""

import itertools
from datetime import datetime, timedelta
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from clients.choices import ClientRole
from clients.models import Client
from clients.services import api_key_create
from core.tokens import NODE_TOKEN_PREFIX, issue_secret
from gpus.models import Gpu
from inference.models import InferenceRequest
from llm_models.choices import NodeStatus
from llm_models.models import LlmModel, Node, NodeModel

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):  # type: ignore[no-untyped-def]
        if create:
            obj.save()


def make_client(
    *, role: str = ClientRole.USER, approved: bool = False, staff: bool = False, **user_kwargs: object
) -> tuple[Client, str]:
    """A client (created through the User signal, like every real one) and a fresh raw API key."""
    user = UserFactory(is_staff=staff, is_superuser=staff, **user_kwargs)
    client = user.client
    client.role = ClientRole.ADMIN if staff else role
    client.is_gpu_provider_approved = approved
    client.save()
    _, raw = api_key_create(client=client, name="test")
    return client, raw


class GpuFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Gpu

    gpu_info = "NVIDIA H100 80GB HBM3"
    cpu_name = "AMD EPYC 9654"
    cpu_core = "96"
    cpu_frequency = "2.4 GHz"
    total_memory = "512 GB"
    total_swap = "8 GB"
    ram = "512 GB"
    os_name = "Ubuntu"
    os_version = "22.04"
    gpu_model = "H100"
    gpu_count = 8
    gpu_memory_gb = 80
    region = "eu-west"
    price_per_hour = Decimal("2.500000")


class LlmModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LlmModel
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"org/model-{n}")
    context_window = 8192


def make_node(
    *, owner: Client, status: str = NodeStatus.OFFLINE, models: list[str] = (), **fields: object
) -> tuple[Node, str]:
    """A node with a real token (returned raw) serving `models` at default-ish prices."""
    secret = issue_secret(NODE_TOKEN_PREFIX)
    defaults: dict = {
        "name": "node",
        "endpoint_url": "http://203.0.113.10:8000/v1",
        "region": "eu-west",
    }
    defaults.update(fields)
    node = Node.objects.create(
        owner=owner, status=status, token_digest=secret.digest, token_last4=secret.last4, **defaults
    )
    for i, name in enumerate(models):
        NodeModel.objects.create(
            node=node,
            model=LlmModelFactory(name=name),
            input_price_per_million=Decimal("0.50") + i,
            output_price_per_million=Decimal("1.50") + i,
            context_window=8192,
        )
    return node, secret.raw


_request_keys = itertools.count(1)


def make_requests(
    *,
    client: Client,
    count: int,
    status: str,
    node: Node | None = None,
    model: str = "stub/model",
    finished_at: datetime | None = None,
) -> None:
    """`count` inference rows of `client` in `status` (on `node`; finished at `finished_at`), in one INSERT: the
    volume that query-plan tests need."""
    deadline = timezone.now() + timedelta(minutes=5)
    InferenceRequest.objects.bulk_create(
        InferenceRequest(
            client=client,
            question_text="q",
            desired_model=model,
            status=status,
            node=node,
            max_tokens=16,
            request_key=f"bulk-{next(_request_keys)}",
            deadline_at=deadline,
            finished_at=finished_at,
        )
        for _ in range(count)
    )


def rows_read(sql: str, table: str) -> int:
    """Rows that running `sql` (a captured query) makes PostgreSQL's scans of `table` produce or filter out, over
    all their loops (EXPLAIN ANALYZE)."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
        (explained,) = cursor.fetchone()[0]  # psycopg reads the json column
    return _rows_read(explained["Plan"], table)


def _rows_read(plan: dict, table: str) -> int:
    rows = 0
    if plan.get("Relation Name") == table:
        loops = plan.get("Actual Loops", 1)
        rows += (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * loops
        rows += plan.get("Rows Removed by Index Recheck", 0)
    return rows + sum(_rows_read(child, table) for child in plan.get("Plans", []))
