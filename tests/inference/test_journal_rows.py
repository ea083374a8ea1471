"""The journal's rows (inference/journal/entries.py): a batch of use entries becomes one INSERT of unnested column
arrays, each value as the ORM would store it."""

from decimal import Decimal

import pytest
from django.db import connection
from django.utils.dateparse import parse_datetime

from inference.choices import InferenceChannel, InferenceStatus
from inference.journal import entries
from inference.models import InferenceRequest
from tests.inference.journal_helpers import use_entry

pytestmark = pytest.mark.django_db


def test_the_insert_sends_what_the_orm_would(journal_parties: dict) -> None:
    """The INSERT's values (row_fields, no model instance, and the model's defaults) equal those of an
    InferenceRequest built from the same fields, and the fields sent as they are are those whose preparation by
    the ORM changes nothing."""
    named = entries.row_fields(use_entry("k1", **journal_parties))
    row = InferenceRequest(**named)
    _sql, fields, as_is = entries._insert_plan()
    assert all(as_is)  # every column of today's model goes as it is
    assert {f.attname for f in fields} - set(named) == {"plan_covered", "endpoint", "batch_id"}  # the defaults
    for field in fields:
        value = entries.field_value(named, field)
        assert value == getattr(row, field.attname), field.name
        assert field.get_db_prep_save(value, connection) == value, field.name


def test_a_batch_is_inserted_once_with_every_value_as_journaled(journal_parties: dict) -> None:
    batch = [use_entry(f"k{i}", **journal_parties) for i in range(3)]

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
        assert row.node_id == journal_parties["node_id"] and row.client_id == journal_parties["client_id"]
        assert row.created_at == parse_datetime(entry["created"])
        assert row.finished_at == parse_datetime(entry["row"]["finished_at"])
