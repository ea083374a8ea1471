"""Journal entries for tests of the usage drain (inference/journal/): a use entry as the lean door writes one."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from inference.choices import InferenceStatus
from inference.journal import entries


def use_entry(
    key: str, *, client_id: int, owner_id: int, node_id: int, api_key_id: int | None, cost: str = "0.000017"
) -> dict:
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
        "cost": Decimal(cost),
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
