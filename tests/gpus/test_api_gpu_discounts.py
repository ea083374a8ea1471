"""The GPU record's discounts for rentals by the day, week or month (API.md §14), each 0..0.5."""

from decimal import Decimal

import pytest

from gpus.models import Gpu
from tests.conftest import bearer
from tests.factories import GpuFactory
from tests.gpus.test_api_gpus import LIST_URL, errors_of, gpu_body


def test_a_new_gpu_has_no_discounts(api_client, provider):
    r = api_client.post(LIST_URL, gpu_body(), format="json", **bearer(provider[1]))

    assert r.status_code == 201, r.json()
    assert r.json()["discounts"] == {"daily": "0.000", "weekly": "0.000", "monthly": "0.000"}


def test_the_owner_sets_discounts_one_at_a_time(api_client, provider):
    gpu = GpuFactory(user=provider[0].user)

    r = api_client.patch(
        f"{LIST_URL}{gpu.pk}/",
        {"discounts": {"weekly": "0.15", "monthly": "0.5"}},
        format="json",
        **bearer(provider[1]),
    )

    assert r.status_code == 200, r.json()
    assert r.json()["discounts"] == {"daily": "0.000", "weekly": "0.150", "monthly": "0.500"}
    gpu.refresh_from_db()
    assert (gpu.discount_weekly, gpu.discount_monthly) == (Decimal("0.15"), Decimal("0.5"))


@pytest.mark.parametrize(
    ("discounts", "code", "attr"),
    [
        ({"daily": "0.6"}, "max_value", "discounts.daily"),
        ({"weekly": "-0.1"}, "min_value", "discounts.weekly"),
        ({"monthly": 0.1}, "invalid", "discounts.monthly"),
        ({"yearly": "0.1"}, "read_only_field", "discounts.yearly"),
        ("0.1", "invalid", "discounts.non_field_errors"),
    ],
)
def test_a_discount_outside_0_to_half_is_a_400_naming_it(api_client, provider, discounts, code, attr):
    gpu = GpuFactory(user=provider[0].user)

    r = api_client.patch(f"{LIST_URL}{gpu.pk}/", {"discounts": discounts}, format="json", **bearer(provider[1]))

    assert r.status_code == 400
    assert errors_of(r)[0] == (code, attr)
    assert Gpu.objects.get(pk=gpu.pk).discounts == {"daily": 0, "weekly": 0, "monthly": 0}
