"""The journal's rows (inference/journal/entries.py): a batch of use entries becomes one INSERT of unnested column
arrays, each value as the ORM would store it."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from clients.choices import ClientRole
from inference.choices import InferenceChannel, InferenceStatus
from inference.journal import entries
from inference.models import InferenceRequest
from tests.factories import make_client, make_node

pytestmark = pytest.mark.django_db


def _entry(key: str, *, client_id: int, owner_id: int, node_id: int, api_key_id: int | None) -> dict:
    began = timezone.now() - timedelta(seconds=1)
    fields = {
        "finished_at": began + timedelta(milliseconds=420),
        "updated_at": began + timedelta(milliseconds=420),
        "node_id": node_id,
        "answer_text": "Hello there, é and 漢字",
        "prompt_tokens": 12,
        "completion_tokens": 7,
        "usage_estimated": False,
        "input_price_per_million": Decimal("0.500000"),
        "output_price_per_million": Decimal("1.500000"),
        "latency_ms": 420,
        "status": InferenceStatus.COMPLETED,
        "error_code": "",
        "error_detail": "",
        "cost": Decimal("0.000017"),
    }
    return entries.use_entry(
        key=key,
        lease_key="lease:test",
        client_id=client_id,
        owner_id=owner_id,
        model="org/model",
        question_text="Say hello",
        max_tokens=16,
        held=Decimal("0.000100"),
        fields=fields,
        created_at=began,
        teach_ms=None,
        api_key_id=api_key_id,
    )


@pytest.fixture
def parties() -> dict:
    client, _ = make_client()
    provider, _ = make_client(role=ClientRole.GPU_PROVIDER, approved=True)
    node, _ = make_node(owner=provider)
    return {"client_id": client.pk, "owner_id": provider.pk, "node_id": node.pk, "api_key_id": None}


def test_values_sent_as_they_are_equal_what_the_orm_would_send(parties: dict) -> None:
    """The fields the INSERT passes without the ORM's preparation are those for which it changes nothing."""
    row = entries._row(_entry("k1", **parties))
    _sql, fields, as_is = entries._insert_plan()
    passed = [f for f, plain in zip(fields, as_is, strict=True) if plain]
    assert len(passed) == len(fields)  # every column of today's model goes as it is
    for field in passed:
        value = getattr(row, field.attname)
        assert field.get_db_prep_save(value, connection) == value, field.name


def test_a_batch_is_inserted_once_with_every_value_as_journaled(parties: dict) -> None:
    batch = [_entry(f"k{i}", **parties) for i in range(3)]

    inserted = entries._insert_rows(batch)
    again = entries._insert_rows(batch)  # a batch applied twice: nothing new

    assert sorted(inserted) == ["k0", "k1", "k2"]
    assert again == {}
    rows = InferenceRequest.objects.filter(request_key__in=["k0", "k1", "k2"]).order_by("request_key")
    assert [r.pk for r in rows] == [inserted["k0"], inserted["k1"], inserted["k2"]]
    for row, entry in zip(rows, batch, strict=True):
        assert row.answer_text == "Hello there, é and 漢字"
        assert row.cost == Decimal("0.000017")
        assert row.held_amount == Decimal("0.000100")
        assert (row.prompt_tokens, row.completion_tokens, row.latency_ms) == (12, 7, 420)
        assert row.status == InferenceStatus.COMPLETED
        assert row.channel == InferenceChannel.WEB
        assert row.node_id == parties["node_id"] and row.client_id == parties["client_id"]
        assert row.created_at == parse_datetime(entry["created"])
        assert row.finished_at == parse_datetime(entry["row"]["finished_at"])
