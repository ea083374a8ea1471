"""0005: `hold_key` became `request_key`, without the prefixes, so each per-request hold keeps its key."""

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from inference.models import InferenceRequest
from tests.factories import make_client

migration = importlib.import_module("inference.migrations.0005_request_key")


@pytest.mark.django_db
def test_old_keys_lose_their_prefix_and_a_held_request_keeps_its_hold_key():
    client, _ = make_client()
    for key in ("inference:idem:7", "v1:0123abcd", "plain"):
        InferenceRequest.objects.create(
            client=client,
            question_text="q",
            desired_model="m",
            max_tokens=1,
            request_key=key,
            deadline_at=timezone.now() + timedelta(minutes=5),
        )

    migration.strip_prefixes(apps, None)

    keys = sorted(InferenceRequest.objects.values_list("request_key", flat=True))
    assert keys == ["0123abcd", "idem:7", "plain"]
    held = InferenceRequest.objects.get(request_key="idem:7")
    assert held.ledger_hold_key == "inference:idem:7"  # what the hold was placed under before the migration
