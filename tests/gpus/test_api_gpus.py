"""Seed 004's `gpu` resource: /api/v1/gpu/list/ (API.md §2)."""

from decimal import Decimal

import pytest

from gpus.models import Gpu
from llm_models.models import Node
from tests.conftest import bearer
from tests.factories import GpuFactory, make_node

LIST_URL = "/api/v1/gpu/list/"


def detail_url(gpu: Gpu) -> str:
    return f"{LIST_URL}{gpu.pk}/"


def gpu_body(**overrides: object) -> dict:
    body: dict = {
        "gpu_info": "NVIDIA H100 80GB HBM3",
        "cpu_name": "AMD EPYC 9654",
        "cpu_core": "96",
        "cpu_frequency": "2.4 GHz",
        "total_memory": "512 GB",
        "total_swap": "8 GB",
        "ram": "512 GB",
        "os_name": "Ubuntu",
        "os_version": "22.04",
        "gpu_count": 8,
        "gpu_memory_gb": 80,
        "region": "eu-west",
        "price_per_hour": "2.50",
    }
    body.update(overrides)
    return body


def errors_of(response) -> list[tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    body = response.json()
    assert set(body) == {"type", "errors"}, body
    for error in body["errors"]:
        assert set(error) == {"code", "detail", "attr"}, error
    return [(e["code"], e["attr"]) for e in body["errors"]]


@pytest.fixture
def provider_gpu(provider) -> Gpu:  # type: ignore[no-untyped-def]
    client, _ = provider
    return GpuFactory(user=client.user)


# --- Reading ---------------------------------------------------------------------------------------------


def test_anonymous_client_cannot_list_gpus(api_client, provider_gpu):
    r = api_client.get(LIST_URL)

    assert r.status_code == 401
    assert errors_of(r) == [("not_authenticated", None)]


def test_anonymous_client_cannot_read_a_gpu(api_client, provider_gpu):
    r = api_client.get(detail_url(provider_gpu))

    assert r.status_code == 401


def test_any_signed_in_client_lists_every_gpu(api_client, user_client, provider_gpu, other_provider):
    GpuFactory(user=other_provider[0].user)

    r = api_client.get(LIST_URL, **bearer(user_client[1]))

    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2
    assert {g["user"] for g in body["results"]} == {provider_gpu.user_id, other_provider[0].user_id}


def test_any_signed_in_client_reads_a_gpu_with_seed_and_marketplace_fields(api_client, user_client, provider_gpu):
    r = api_client.get(detail_url(provider_gpu), **bearer(user_client[1]))

    assert r.status_code == 200
    body = r.json()
    assert body["id"] == provider_gpu.pk
    assert body["user"] == provider_gpu.user_id
    assert body["gpu_info"] == "NVIDIA H100 80GB HBM3"
    assert body["gpu_model"] == "H100"
    assert body["price_per_hour"] == "2.500000"
    for field in ("cpu_name", "cpu_core", "cpu_frequency", "total_memory", "total_swap", "ram", "os_name",
                  "os_version", "gpu_count", "gpu_memory_gb", "region", "created_at", "updated_at"):  # fmt: skip
        assert field in body


def test_unknown_gpu_is_404(api_client, user_client):
    r = api_client.get(f"{LIST_URL}999999/", **bearer(user_client[1]))

    assert r.status_code == 404
    assert errors_of(r)[0][0] == "not_found"


# --- Creating --------------------------------------------------------------------------------------------


def test_approved_provider_creates_a_gpu(api_client, provider):
    client, key = provider

    r = api_client.post(LIST_URL, gpu_body(), format="json", **bearer(key))

    assert r.status_code == 201, r.json()
    gpu = Gpu.objects.get()
    assert r.json()["id"] == gpu.pk
    assert gpu.user == client.user
    assert gpu.gpu_model == "H100"
    assert gpu.price_per_hour == Decimal("2.5")
    assert gpu.gpu_count == 8
    assert r.json()["price_per_hour"] == "2.500000"


def test_user_defaults_to_the_caller(api_client, provider):
    client, key = provider

    r = api_client.post(LIST_URL, gpu_body(), format="json", **bearer(key))

    assert r.status_code == 201
    assert r.json()["user"] == client.user_id


def test_provider_may_name_themselves_as_user(api_client, provider):
    client, key = provider

    r = api_client.post(LIST_URL, gpu_body(user=client.user_id), format="json", **bearer(key))

    assert r.status_code == 201
    assert Gpu.objects.get().user_id == client.user_id


def test_admin_creates_a_gpu(api_client, admin):
    client, key = admin

    r = api_client.post(LIST_URL, gpu_body(), format="json", **bearer(key))

    assert r.status_code == 201
    assert Gpu.objects.get().user_id == client.user_id


def test_admin_may_create_a_gpu_for_another_user(api_client, admin, provider):
    r = api_client.post(LIST_URL, gpu_body(user=provider[0].user_id), format="json", **bearer(admin[1]))

    assert r.status_code == 201
    assert Gpu.objects.get().user_id == provider[0].user_id


def test_provider_naming_another_user_gets_400_and_nothing_is_created(api_client, provider, other_provider):
    r = api_client.post(LIST_URL, gpu_body(user=other_provider[0].user_id), format="json", **bearer(provider[1]))

    assert r.status_code == 400
    assert errors_of(r) == [("not_your_user", "user")]
    assert not Gpu.objects.exists()


def test_naming_a_user_that_does_not_exist_is_400(api_client, admin):
    r = api_client.post(LIST_URL, gpu_body(user=999999), format="json", **bearer(admin[1]))

    assert r.status_code == 400
    assert errors_of(r) == [("does_not_exist", "user")]


def test_plain_user_cannot_create_a_gpu(api_client, user_client):
    r = api_client.post(LIST_URL, gpu_body(), format="json", **bearer(user_client[1]))

    assert r.status_code == 403
    assert errors_of(r) == [("permission_denied", None)]
    assert not Gpu.objects.exists()


def test_unapproved_applicant_cannot_create_a_gpu(api_client, applicant):
    r = api_client.post(LIST_URL, gpu_body(), format="json", **bearer(applicant[1]))

    assert r.status_code == 403
    assert not Gpu.objects.exists()


def test_revoked_provider_cannot_create_a_gpu(api_client, provider):
    client, key = provider
    client.is_gpu_provider_approved = False
    client.save()

    r = api_client.post(LIST_URL, gpu_body(), format="json", **bearer(key))

    assert r.status_code == 403
    assert not Gpu.objects.exists()


def test_anonymous_client_cannot_create_a_gpu(api_client):
    r = api_client.post(LIST_URL, gpu_body(), format="json")

    assert r.status_code == 401
    assert not Gpu.objects.exists()


@pytest.mark.parametrize(
    ("gpu_info", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("GeForce RTX 4090", "RTX 4090"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("AMD Instinct MI300X", "MI300X"),
    ],
)
def test_gpu_model_is_normalised_from_gpu_info(api_client, provider, gpu_info, expected):
    r = api_client.post(LIST_URL, gpu_body(gpu_info=gpu_info), format="json", **bearer(provider[1]))

    assert r.status_code == 201
    assert r.json()["gpu_model"] == expected
    assert Gpu.objects.get().gpu_model == expected


def test_a_given_gpu_model_is_normalised_too(api_client, provider):
    r = api_client.post(
        LIST_URL, gpu_body(gpu_info="custom board", gpu_model="nvidia h100 sxm"), format="json", **bearer(provider[1])
    )

    assert r.status_code == 201
    assert Gpu.objects.get().gpu_model == "H100"


@pytest.mark.parametrize("price", ["-0.01", "-5"])
def test_negative_price_per_hour_is_400(api_client, provider, price):
    r = api_client.post(LIST_URL, gpu_body(price_per_hour=price), format="json", **bearer(provider[1]))

    assert r.status_code == 400
    assert errors_of(r) == [("min_value", "price_per_hour")]
    assert not Gpu.objects.exists()


@pytest.mark.parametrize("price", ["abc", "NaN", "Infinity", "1000000", "0.0000001"])
def test_malformed_or_out_of_range_price_is_400(api_client, provider, price):
    r = api_client.post(LIST_URL, gpu_body(price_per_hour=price), format="json", **bearer(provider[1]))

    assert r.status_code == 400
    assert [attr for _, attr in errors_of(r)] == ["price_per_hour"]
    assert not Gpu.objects.exists()


@pytest.mark.parametrize(
    ("field", "length"),
    [
        ("gpu_info", 256),
        ("cpu_name", 256),
        ("cpu_core", 65),
        ("cpu_frequency", 65),
        ("total_memory", 65),
        ("total_swap", 65),
        ("ram", 65),
        ("os_name", 129),
        ("os_version", 129),
        ("region", 65),
        ("gpu_model", 65),
    ],
)
def test_oversized_string_is_400_naming_the_field(api_client, provider, field, length):
    r = api_client.post(LIST_URL, gpu_body(**{field: "x" * length}), format="json", **bearer(provider[1]))

    assert r.status_code == 400
    assert errors_of(r) == [("max_length", field)]
    assert not Gpu.objects.exists()


@pytest.mark.parametrize(("field", "value"), [("gpu_count", 0), ("gpu_count", 65), ("gpu_memory_gb", 0)])
def test_out_of_range_count_or_memory_is_400(api_client, provider, field, value):
    r = api_client.post(LIST_URL, gpu_body(**{field: value}), format="json", **bearer(provider[1]))

    assert r.status_code == 400
    assert [attr for _, attr in errors_of(r)] == [field]


def test_missing_seed_field_is_400_naming_it(api_client, provider):
    body = gpu_body()
    del body["gpu_info"]

    r = api_client.post(LIST_URL, body, format="json", **bearer(provider[1]))

    assert r.status_code == 400
    assert errors_of(r) == [("required", "gpu_info")]


@pytest.mark.parametrize("field", ["id", "created_at", "updated_at", "owner", "is_gpu_provider_approved"])
def test_server_owned_or_unknown_fields_cannot_be_written(api_client, provider, field):
    r = api_client.post(LIST_URL, gpu_body(**{field: 1}), format="json", **bearer(provider[1]))

    assert r.status_code == 400
    assert (errors_of(r)[0][1]) == field
    assert not Gpu.objects.exists()


# --- Changing and deleting -----------------------------------------------------------------------------


def test_owner_patches_their_gpu(api_client, provider, provider_gpu):
    r = api_client.patch(
        detail_url(provider_gpu), {"price_per_hour": "3.10", "region": "us-east"}, **bearer(provider[1])
    )

    assert r.status_code == 200
    assert r.json()["price_per_hour"] == "3.100000"
    provider_gpu.refresh_from_db()
    assert provider_gpu.price_per_hour == Decimal("3.1")
    assert provider_gpu.region == "us-east"


def test_owner_puts_a_full_gpu(api_client, provider, provider_gpu):
    body = gpu_body(gpu_info="NVIDIA GeForce RTX 4090", gpu_count=2, gpu_memory_gb=24, price_per_hour="0.70")

    r = api_client.put(detail_url(provider_gpu), body, format="json", **bearer(provider[1]))

    assert r.status_code == 200
    provider_gpu.refresh_from_db()
    assert provider_gpu.gpu_info == "NVIDIA GeForce RTX 4090"
    assert provider_gpu.gpu_model == "RTX 4090"
    assert provider_gpu.gpu_count == 2
    assert provider_gpu.price_per_hour == Decimal("0.7")
    assert provider_gpu.user_id == provider[0].user_id


def test_put_missing_a_seed_field_is_400(api_client, provider, provider_gpu):
    body = gpu_body()
    del body["cpu_name"]

    r = api_client.put(detail_url(provider_gpu), body, format="json", **bearer(provider[1]))

    assert r.status_code == 400
    assert errors_of(r) == [("required", "cpu_name")]


def test_changing_gpu_info_renormalises_a_derived_gpu_model(api_client, provider, provider_gpu):
    r = api_client.patch(detail_url(provider_gpu), {"gpu_info": "GeForce RTX 4090"}, **bearer(provider[1]))

    assert r.status_code == 200
    assert r.json()["gpu_model"] == "RTX 4090"
    provider_gpu.refresh_from_db()
    assert provider_gpu.gpu_model == "RTX 4090"


def test_changing_gpu_info_keeps_a_gpu_model_its_owner_chose(api_client, provider):
    gpu = GpuFactory(user=provider[0].user, gpu_info="custom board rev 2", gpu_model="L40S")

    r = api_client.patch(detail_url(gpu), {"gpu_info": "custom board rev 3"}, **bearer(provider[1]))

    assert r.status_code == 200
    gpu.refresh_from_db()
    assert gpu.gpu_model == "L40S"


def test_patched_gpu_model_is_normalised(api_client, provider, provider_gpu):
    r = api_client.patch(detail_url(provider_gpu), {"gpu_model": "nvidia h200"}, **bearer(provider[1]))

    assert r.status_code == 200
    provider_gpu.refresh_from_db()
    assert provider_gpu.gpu_model == "H200"


def test_owner_patching_a_negative_price_is_400_and_unchanged(api_client, provider, provider_gpu):
    r = api_client.patch(detail_url(provider_gpu), {"price_per_hour": "-1"}, **bearer(provider[1]))

    assert r.status_code == 400
    assert errors_of(r) == [("min_value", "price_per_hour")]
    provider_gpu.refresh_from_db()
    assert provider_gpu.price_per_hour == Decimal("2.5")


def test_owner_cannot_give_their_gpu_to_another_user(api_client, provider, provider_gpu, other_provider):
    r = api_client.patch(detail_url(provider_gpu), {"user": other_provider[0].user_id}, **bearer(provider[1]))

    assert r.status_code == 400
    assert errors_of(r) == [("not_your_user", "user")]
    provider_gpu.refresh_from_db()
    assert provider_gpu.user_id == provider[0].user_id


def test_owner_deletes_their_gpu(api_client, provider, provider_gpu):
    r = api_client.delete(detail_url(provider_gpu), **bearer(provider[1]))

    assert r.status_code == 204
    assert not Gpu.objects.filter(pk=provider_gpu.pk).exists()


def test_deleting_a_gpu_keeps_its_node_registered_without_it(api_client, provider, provider_gpu):
    node, _ = make_node(owner=provider[0], gpu=provider_gpu)

    r = api_client.delete(detail_url(provider_gpu), **bearer(provider[1]))

    assert r.status_code == 204
    node.refresh_from_db()
    assert node.gpu is None
    assert Node.objects.filter(pk=node.pk).exists()


def test_another_provider_cannot_patch_a_gpu(api_client, provider_gpu, other_provider):
    r = api_client.patch(detail_url(provider_gpu), {"price_per_hour": "0.01"}, **bearer(other_provider[1]))

    assert r.status_code == 403
    assert errors_of(r) == [("permission_denied", None)]
    provider_gpu.refresh_from_db()
    assert provider_gpu.price_per_hour == Decimal("2.5")


def test_another_provider_cannot_put_a_gpu(api_client, provider_gpu, other_provider):
    r = api_client.put(
        detail_url(provider_gpu), gpu_body(price_per_hour="0.01"), format="json", **bearer(other_provider[1])
    )

    assert r.status_code == 403
    provider_gpu.refresh_from_db()
    assert provider_gpu.price_per_hour == Decimal("2.5")


def test_another_provider_cannot_delete_a_gpu(api_client, provider_gpu, other_provider):
    r = api_client.delete(detail_url(provider_gpu), **bearer(other_provider[1]))

    assert r.status_code == 403
    assert Gpu.objects.filter(pk=provider_gpu.pk).exists()


def test_plain_user_cannot_change_a_gpu(api_client, provider_gpu, user_client):
    r = api_client.patch(detail_url(provider_gpu), {"region": "mars"}, **bearer(user_client[1]))

    assert r.status_code == 403
    provider_gpu.refresh_from_db()
    assert provider_gpu.region == "eu-west"


def test_anonymous_client_cannot_change_or_delete_a_gpu(api_client, provider_gpu):
    assert api_client.patch(detail_url(provider_gpu), {"region": "mars"}).status_code == 401
    assert api_client.delete(detail_url(provider_gpu)).status_code == 401
    provider_gpu.refresh_from_db()
    assert provider_gpu.region == "eu-west"


def test_admin_changes_and_deletes_any_gpu(api_client, provider_gpu, admin):
    r = api_client.patch(detail_url(provider_gpu), {"price_per_hour": "9"}, **bearer(admin[1]))
    assert r.status_code == 200
    provider_gpu.refresh_from_db()
    assert provider_gpu.price_per_hour == Decimal("9")

    r = api_client.delete(detail_url(provider_gpu), **bearer(admin[1]))
    assert r.status_code == 204
    assert not Gpu.objects.exists()


def test_changing_a_gpu_that_does_not_exist_is_404(api_client, provider):
    r = api_client.patch(f"{LIST_URL}999999/", {"region": "x"}, **bearer(provider[1]))

    assert r.status_code == 404


# --- Filters, ordering, search, pagination ---------------------------------------------------------------


@pytest.fixture
def catalogue(provider, other_provider) -> dict[str, Gpu]:  # type: ignore[no-untyped-def]
    return {
        "h100": GpuFactory(user=provider[0].user, gpu_model="H100", region="eu-west", price_per_hour=Decimal("2.5")),
        "4090": GpuFactory(
            user=provider[0].user,
            gpu_info="GeForce RTX 4090",
            gpu_model="RTX 4090",
            cpu_name="Intel Xeon",
            region="us-east",
            price_per_hour=Decimal("0.4"),
            gpu_count=1,
        ),
        "a100": GpuFactory(
            user=other_provider[0].user,
            gpu_info="NVIDIA A100-SXM4-80GB",
            gpu_model="A100",
            region="us-east",
            price_per_hour=Decimal("1.2"),
            gpu_count=4,
        ),
    }


def ids(response) -> list[int]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.json()
    return [g["id"] for g in response.json()["results"]]


def test_filter_by_gpu_model(api_client, user_client, catalogue):
    r = api_client.get(LIST_URL, {"gpu_model": "RTX 4090"}, **bearer(user_client[1]))

    assert ids(r) == [catalogue["4090"].pk]


def test_filter_by_region(api_client, user_client, catalogue):
    r = api_client.get(LIST_URL, {"region": "us-east"}, **bearer(user_client[1]))

    assert ids(r) == [catalogue["4090"].pk, catalogue["a100"].pk]


def test_filter_by_minimum_and_maximum_price(api_client, user_client, catalogue):
    key = bearer(user_client[1])

    assert ids(api_client.get(LIST_URL, {"min_price_per_hour": "1.2"}, **key)) == [
        catalogue["h100"].pk,
        catalogue["a100"].pk,
    ]
    assert ids(api_client.get(LIST_URL, {"max_price_per_hour": "1.2"}, **key)) == [
        catalogue["4090"].pk,
        catalogue["a100"].pk,
    ]


def test_filter_by_owner(api_client, user_client, catalogue, other_provider):
    r = api_client.get(LIST_URL, {"user": other_provider[0].user_id}, **bearer(user_client[1]))

    assert ids(r) == [catalogue["a100"].pk]


def test_malformed_filter_value_is_400_naming_it(api_client, user_client, catalogue):
    r = api_client.get(LIST_URL, {"min_price_per_hour": "cheap"}, **bearer(user_client[1]))

    assert r.status_code == 400
    assert [attr for _, attr in errors_of(r)] == ["min_price_per_hour"]


def test_ordering_by_price_descending(api_client, user_client, catalogue):
    r = api_client.get(LIST_URL, {"ordering": "-price_per_hour"}, **bearer(user_client[1]))

    assert ids(r) == [catalogue["h100"].pk, catalogue["a100"].pk, catalogue["4090"].pk]


def test_ordering_by_price_ascending(api_client, user_client, catalogue):
    r = api_client.get(LIST_URL, {"ordering": "price_per_hour"}, **bearer(user_client[1]))

    assert ids(r) == [catalogue["4090"].pk, catalogue["a100"].pk, catalogue["h100"].pk]


def test_search_matches_description_model_cpu_and_region(api_client, user_client, catalogue):
    key = bearer(user_client[1])

    assert ids(api_client.get(LIST_URL, {"search": "4090"}, **key)) == [catalogue["4090"].pk]
    assert ids(api_client.get(LIST_URL, {"search": "xeon"}, **key)) == [catalogue["4090"].pk]
    assert ids(api_client.get(LIST_URL, {"search": "a100"}, **key)) == [catalogue["a100"].pk]
    assert ids(api_client.get(LIST_URL, {"search": "nothing-like-this"}, **key)) == []


def test_list_is_paginated(api_client, user_client, catalogue):
    key = bearer(user_client[1])

    first = api_client.get(LIST_URL, {"page_size": 2}, **key)
    second = api_client.get(LIST_URL, {"page_size": 2, "page": 2}, **key)

    assert first.json()["count"] == 3
    assert len(first.json()["results"]) == 2
    assert first.json()["previous"] is None
    assert "page=2" in first.json()["next"]
    assert ids(second) == [catalogue["a100"].pk]
    assert second.json()["next"] is None


def test_page_size_is_capped_at_100(api_client, user_client, provider):
    GpuFactory.create_batch(101, user=provider[0].user)

    r = api_client.get(LIST_URL, {"page_size": 500}, **bearer(user_client[1]))

    assert r.json()["count"] == 101
    assert len(r.json()["results"]) == 100


def test_page_past_the_end_is_404(api_client, user_client, catalogue):
    r = api_client.get(LIST_URL, {"page": 9}, **bearer(user_client[1]))

    assert r.status_code == 404


def test_blanking_gpu_model_derives_it_again_from_gpu_info(api_client, provider):
    gpu = GpuFactory(user=provider[0].user, gpu_info="NVIDIA L40S", gpu_model="SOMETHING ELSE")

    r = api_client.patch(detail_url(gpu), {"gpu_model": ""}, **bearer(provider[1]))

    assert r.status_code == 200
    gpu.refresh_from_db()
    assert gpu.gpu_model == "L40S"
