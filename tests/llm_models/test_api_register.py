"""POST /api/v1/llm_models/register/ (API.md §3): approved providers add nodes; the endpoint must be safe to call."""

from decimal import Decimal

import pytest
from django.forms.models import model_to_dict

from core.crypto import decrypt
from core.tokens import hash_secret
from llm_models.choices import NodeStatus
from llm_models.models import LlmModel, Node, NodeModel
from tests.conftest import bearer
from tests.factories import GpuFactory
from tests.llm_models.conftest import (
    ALL_MODELS_URL,
    BACKEND_API_KEY,
    HEARTBEAT_URL,
    PUBLIC_ENDPOINT,
    REGISTER_URL,
    errors_of,
)


def test_approved_provider_registers_a_node(register, provider):
    client, key = provider

    r = register(key)

    assert r.status_code == 201, r.json()
    body = r.json()
    node = Node.objects.get()
    assert body["node_id"] == node.pk
    assert body["node_token"].startswith("gmn_")
    assert body["name"] == "gpu-7"
    assert body["status"] == "offline"
    assert body["region"] == "eu-west"
    assert body["gpu"] is None
    assert body["heartbeat_interval_s"] == 30
    assert body["models"] == [
        {
            "name": "meta-llama/Llama-3.1-8B-Instruct",
            "input_price_per_million": "0.200000",
            "output_price_per_million": "0.600000",
            "context_window": 131072,
        }
    ]
    assert node.owner == client
    assert node.status == NodeStatus.OFFLINE
    assert node.endpoint_url == PUBLIC_ENDPOINT
    assert node.last_heartbeat_at is None


def test_node_token_is_stored_only_as_a_hash(register, provider):
    r = register(provider[1])

    raw = r.json()["node_token"]
    node = Node.objects.get()
    assert node.token_digest == hash_secret(raw)
    assert node.token_last4 == raw[-4:]
    assert raw not in repr(model_to_dict(node))
    assert not Node.objects.filter(token_digest=raw).exists()


def test_each_registration_gets_its_own_token(register, provider):
    first = register(provider[1]).json()["node_token"]
    second = register(provider[1]).json()["node_token"]

    assert first != second
    assert Node.objects.count() == 2


def test_backend_api_key_is_stored_encrypted(register, provider):
    register(provider[1])

    node = Node.objects.get()
    assert node.backend_api_key_encrypted
    assert BACKEND_API_KEY not in node.backend_api_key_encrypted
    assert BACKEND_API_KEY not in repr(model_to_dict(node))
    assert decrypt(node.backend_api_key_encrypted) == BACKEND_API_KEY


def test_backend_api_key_is_never_returned(api_client, register, provider):
    r = register(provider[1])
    token = r.json()["node_token"]
    beat = api_client.post(HEARTBEAT_URL, {"metrics": {}}, format="json", **bearer(token))
    menu = api_client.get(ALL_MODELS_URL)

    for response in (r, beat, menu):
        assert response.status_code in (200, 201)
        assert BACKEND_API_KEY not in response.content.decode()
        assert "api_key" not in response.content.decode()


def test_backend_api_key_is_not_shown_on_the_admin_site(client, register, provider, admin):
    register(provider[1])
    node = Node.objects.get()
    client.force_login(admin[0].user)

    r = client.get(f"/admin/llm_models/node/{node.pk}/change/")

    assert r.status_code == 200
    assert BACKEND_API_KEY not in r.content.decode()
    assert node.backend_api_key_encrypted not in r.content.decode()


def test_node_without_backend_api_key_stores_none(register, provider):
    body_without_key = {"api_key": ""}

    r = register(provider[1], **body_without_key)

    assert r.status_code == 201
    assert Node.objects.get().backend_api_key_encrypted == ""


def test_plain_user_cannot_register_a_node(register, user_client):
    r = register(user_client[1])

    assert r.status_code == 403
    assert errors_of(r) == [("permission_denied", None)]
    assert not Node.objects.exists()


def test_unapproved_applicant_cannot_register_a_node(register, applicant):
    r = register(applicant[1])

    assert r.status_code == 403
    assert not Node.objects.exists()


def test_anonymous_client_cannot_register_a_node(register):
    r = register(None)

    assert r.status_code == 401
    assert errors_of(r) == [("not_authenticated", None)]
    assert not Node.objects.exists()


def test_a_node_token_cannot_register_another_node(register, provider):
    token = register(provider[1]).json()["node_token"]

    r = register(token)

    assert r.status_code == 401
    assert Node.objects.count() == 1


def test_admin_may_register_a_node(register, admin):
    r = register(admin[1])

    assert r.status_code == 201
    assert Node.objects.get().owner == admin[0]


def test_node_on_own_gpu_takes_the_gpus_region(register, provider):
    gpu = GpuFactory(user=provider[0].user, region="ap-south")

    r = register(provider[1], gpu=gpu.pk, region="")

    assert r.status_code == 201
    assert r.json()["gpu"] == gpu.pk
    node = Node.objects.get()
    assert node.gpu == gpu
    assert node.region == "ap-south"


def test_node_on_another_owners_gpu_is_400(register, provider, other_provider):
    gpu = GpuFactory(user=other_provider[0].user)

    r = register(provider[1], gpu=gpu.pk)

    assert r.status_code == 400
    assert [attr for _, attr in errors_of(r)] == ["gpu"]
    assert not Node.objects.exists()


def test_node_on_a_gpu_that_does_not_exist_is_400(register, provider):
    r = register(provider[1], gpu=999999)

    assert r.status_code == 400
    assert errors_of(r) == [("does_not_exist", "gpu")]


def test_models_are_stored_with_their_prices(register, provider):
    models = [
        {"name": "org/a", "input_price_per_million": "0.1", "output_price_per_million": "0.3", "context_window": 4096},
        {"name": "org/b", "input_price_per_million": "0", "output_price_per_million": "0"},
    ]

    r = register(provider[1], models=models)

    assert r.status_code == 201
    stored = {nm.model.name: nm for nm in NodeModel.objects.select_related("model")}
    assert set(stored) == {"org/a", "org/b"}
    assert stored["org/a"].input_price_per_million == Decimal("0.1")
    assert stored["org/a"].output_price_per_million == Decimal("0.3")
    assert stored["org/a"].context_window == 4096
    assert stored["org/b"].input_price_per_million == Decimal("0")
    assert stored["org/b"].context_window is None
    assert LlmModel.objects.get(name="org/a").context_window == 4096


def test_model_prices_default_from_settings_when_omitted(register, provider, settings):
    settings.DEFAULT_INPUT_PRICE_PER_MILLION = Decimal("0.25")
    settings.DEFAULT_OUTPUT_PRICE_PER_MILLION = Decimal("0.75")

    r = register(provider[1], models=[{"name": "org/default-priced"}])

    assert r.status_code == 201
    assert r.json()["models"][0]["input_price_per_million"] == "0.250000"
    assert r.json()["models"][0]["output_price_per_million"] == "0.750000"
    nm = NodeModel.objects.get()
    assert nm.input_price_per_million == Decimal("0.25")
    assert nm.output_price_per_million == Decimal("0.75")


def test_an_empty_model_list_serves_nothing_yet(register, provider):
    r = register(provider[1], models=[])

    assert r.status_code == 201
    assert r.json()["models"] == []
    assert not NodeModel.objects.exists()


def test_registering_without_the_models_key_serves_nothing_yet(api_client, provider):
    body = {"name": "bare", "endpoint_url": PUBLIC_ENDPOINT}

    r = api_client.post(REGISTER_URL, body, format="json", **bearer(provider[1]))

    assert r.status_code == 201, r.json()
    assert r.json()["models"] == []
    assert Node.objects.get().region == ""


def test_a_model_already_known_is_reused(register, provider):
    register(provider[1])
    register(provider[1])

    assert LlmModel.objects.count() == 1
    assert NodeModel.objects.count() == 2


def test_duplicate_model_names_are_400(register, provider):
    r = register(provider[1], models=[{"name": "org/a"}, {"name": "org/a", "input_price_per_million": "1"}])

    assert r.status_code == 400
    assert errors_of(r) == [("duplicate_model", "models")]
    assert not Node.objects.exists()
    assert not LlmModel.objects.exists()


@pytest.mark.parametrize(
    ("model", "attr"),
    [
        ({"name": "org/a", "input_price_per_million": "-1"}, "models.0.input_price_per_million"),
        ({"name": "org/a", "output_price_per_million": "abc"}, "models.0.output_price_per_million"),
        ({"name": "org/a", "context_window": 0}, "models.0.context_window"),
        ({"name": "x" * 256}, "models.0.name"),
        ({}, "models.0.name"),
        ({"name": "org/a", "owner": 1}, "models.0.owner"),
    ],
)
def test_bad_model_entry_is_400_naming_it(register, provider, model, attr):
    r = register(provider[1], models=[model])

    assert r.status_code == 400
    assert attr in [a for _, a in errors_of(r)]
    assert not Node.objects.exists()


def test_too_many_models_is_400(register, provider):
    r = register(provider[1], models=[{"name": f"org/m{i}"} for i in range(257)])

    assert r.status_code == 400
    assert [attr for _, attr in errors_of(r)] == ["models"]


@pytest.mark.parametrize(
    ("overrides", "attr"),
    [
        ({"name": "x" * 129}, "name"),
        ({"name": ""}, "name"),
        ({"region": "x" * 65}, "region"),
        ({"api_key": "k" * 513}, "api_key"),
        ({"endpoint_url": "http://node.example.com/" + "v" * 500}, "endpoint_url"),
        ({"status": "online"}, "status"),
        ({"owner": 1}, "owner"),
        ({"node_token": "gmn_mine"}, "node_token"),
    ],
)
def test_bad_or_server_owned_field_is_400_naming_it(register, provider, overrides, attr):
    r = register(provider[1], **overrides)

    assert r.status_code == 400
    assert [a for _, a in errors_of(r)] == [attr]
    assert not Node.objects.exists()


def test_missing_endpoint_is_400(api_client, provider):
    r = api_client.post(REGISTER_URL, {"name": "n"}, format="json", **bearer(provider[1]))

    assert r.status_code == 400
    assert errors_of(r) == [("required", "endpoint_url")]


def test_endpoint_is_stored_without_a_trailing_slash(register, provider):
    r = register(provider[1], endpoint_url="https://node.example.com/v1/")

    assert r.status_code == 201
    assert Node.objects.get().endpoint_url == "https://node.example.com/v1"


# --- SSRF -------------------------------------------------------------------------------------------------

UNSAFE_ENDPOINTS = [
    "http://127.0.0.1:8000/v1",
    "http://10.0.0.5/v1",
    "http://172.16.3.4/v1",
    "http://192.168.1.10/v1",
    "http://169.254.169.254/latest",
    "http://100.64.0.1/v1",
    "http://0.0.0.0:8000/v1",
    "http://[::1]:8000/v1",
    "http://[fc00::1]/v1",
    "http://[fe80::1]/v1",
    "http://[::ffff:127.0.0.1]/v1",
    "http://2130706433/v1",
    "http://0x7f000001/v1",
    "http://0177.0.0.1/v1",
    "http://127.1/v1",
    "http://localhost:8000/v1",
    "ftp://example.com/v1",
    "file:///etc/passwd",
    "gopher://x",
    "http://user:pass@example.com/v1",
    "http://private.example.net/v1",  # fake DNS: resolves to 10.1.2.3
    "http://no-such-host.example.net/v1",  # fake DNS: does not resolve
]


@pytest.mark.parametrize("url", UNSAFE_ENDPOINTS)
def test_unsafe_endpoint_is_refused(register, provider, settings, url):
    settings.ALLOW_PRIVATE_NODE_ENDPOINTS = False

    r = register(provider[1], endpoint_url=url)

    assert r.status_code == 400, r.json()
    assert errors_of(r) == [("unsafe_endpoint", "endpoint_url")]
    assert not Node.objects.exists()


@pytest.mark.parametrize("url", ["http://gpu-7.example.net:8000/v1", "https://node.example.com/v1"])
def test_endpoint_whose_name_resolves_to_public_addresses_is_accepted(register, provider, url):
    r = register(provider[1], endpoint_url=url)

    assert r.status_code == 201, r.json()
    assert Node.objects.get().endpoint_url == url


def test_public_name_is_resolved_when_registering(register, provider, fake_dns):
    fake_dns["fresh.example.org"] = ["93.184.216.34"]
    assert register(provider[1], endpoint_url="http://fresh.example.org/v1").status_code == 201

    fake_dns["fresh.example.org"] = ["10.0.0.9"]
    r = register(provider[1], endpoint_url="http://fresh.example.org/v1")

    assert r.status_code == 400
    assert errors_of(r) == [("unsafe_endpoint", "endpoint_url")]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "http://10.0.0.5/v1", "http://localhost:8000/v1"])
def test_private_endpoints_are_accepted_when_the_operator_allows_them(register, provider, private_endpoints, url):
    r = register(provider[1], endpoint_url=url)

    assert r.status_code == 201, r.json()


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest", "http://0.0.0.0:8000/v1", "http://[fe80::1]/v1"])
def test_metadata_unspecified_and_link_local_endpoints_are_refused_even_when_private_is_allowed(
    register, provider, private_endpoints, url
):
    r = register(provider[1], endpoint_url=url)

    assert r.status_code == 400
    assert errors_of(r) == [("unsafe_endpoint", "endpoint_url")]
    assert not Node.objects.exists()


def test_a_body_that_is_not_an_object_is_400(api_client, provider):
    r = api_client.post(REGISTER_URL, [{"name": "n"}], format="json", **bearer(provider[1]))

    assert r.status_code == 400
    assert not Node.objects.exists()


@pytest.mark.parametrize(
    ("field", "price"),
    [
        ("input_price_per_million", "100000"),
        ("output_price_per_million", "100000.000000"),
        ("input_price_per_million", "123456789.5"),
    ],
)
def test_a_price_above_the_documented_cap_is_a_400_naming_the_field(register, provider, field, price):
    """docs/API.md §3: prices per 1M tokens go up to 99999.999999; above it, a 400 naming the model's field."""
    model = {"name": "org/dear", field: price}

    r = register(provider[1], models=[model])

    assert r.status_code == 400, r.json()
    assert [attr for _code, attr in errors_of(r)] == [f"models.0.{field}"]
    assert not Node.objects.exists() and not NodeModel.objects.exists()


def test_a_price_at_the_documented_cap_is_accepted(register, provider):
    r = register(provider[1], models=[{"name": "org/dearest", "input_price_per_million": "99999.999999"}])

    assert r.status_code == 201, r.json()
    assert r.json()["models"][0]["input_price_per_million"] == "99999.999999"
