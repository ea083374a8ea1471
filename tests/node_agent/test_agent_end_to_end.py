"""The real `gpu-node` command against the real service (a uvicorn subprocess) and a real backend stub."""

import json
import signal
import stat
from decimal import Decimal

import pytest

from clients.choices import ClientRole
from core.tokens import hash_secret
from gpus.models import Gpu
from llm_models.choices import NodeStatus
from llm_models.models import Node, NodeMetricSample, NodeModel
from tests.factories import make_client
from tests.llm_models.conftest import wait_until
from tests.node_agent.backend_stub import BackendStub
from tests.node_agent.conftest import log_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live_server]

MODELS = ["Qwen/Qwen2.5-7B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"]


@pytest.fixture
def provider_key() -> str:
    return make_client(role=ClientRole.GPU_PROVIDER, approved=True)[1]


def the_node() -> Node:
    return Node.objects.get()


def served_names(node: Node) -> list[str]:
    return sorted(NodeModel.objects.filter(node=node).values_list("model__name", flat=True))


def test_register_detects_the_hardware_and_creates_the_gpu_record_and_node(service, backend, agent, provider_key):
    r = agent.register(
        service, backend, provider_key, "--name", "rig-1", "--region", "eu-west", "--price-per-hour", "2.75"
    )

    gpu = Gpu.objects.get()
    assert (gpu.gpu_count, gpu.gpu_model, gpu.gpu_memory_gb) == (2, "H100", 80)
    assert gpu.gpu_info == "NVIDIA H100 80GB HBM3 (81559 MiB, driver 550.54.15)"
    assert (gpu.region, gpu.price_per_hour) == ("eu-west", Decimal("2.75"))
    assert gpu.cpu_name and gpu.cpu_core.isdigit() and gpu.ram.endswith("GB") and gpu.os_name
    node = the_node()
    assert (node.name, node.endpoint_url, node.gpu_id, node.region) == ("rig-1", backend.url, gpu.pk, "eu-west")
    assert node.status == NodeStatus.OFFLINE
    assert served_names(node) == MODELS
    assert f"node {node.pk} registered" in r.stdout


def test_register_saves_the_node_token_in_a_0600_config_file(service, backend, agent, provider_key):
    agent.register(service, backend, provider_key)

    assert stat.S_IMODE(agent.config_path.stat().st_mode) == 0o600
    saved = json.loads(agent.config_path.read_text())
    node = the_node()
    assert saved["node_id"] == node.pk
    assert hash_secret(saved["node_token"]) == node.token_digest
    assert (saved["server_url"], saved["backend_url"], saved["heartbeat_interval_s"]) == (service.url, backend.url, 1)


def test_run_sends_live_metrics_that_land_on_the_server(service, backend, agent, provider_key):
    agent.register(service, backend, provider_key)
    node = the_node()

    process = agent.start("run")

    wait_until(lambda: NodeMetricSample.objects.filter(node=node).count() >= 2, timeout=15, process=process)
    node.refresh_from_db()
    assert node.status == NodeStatus.ONLINE
    metrics = node.latest_metrics
    assert metrics["gpu_utilization"] == 39  # the mean of 37 and 41
    assert (metrics["gpu_memory_used_mb"], metrics["gpu_memory_total_mb"]) == (21504, 2 * 81559)
    assert metrics["gpu_temperature_c"] == 61
    assert [g["utilization"] for g in metrics["gpus"]] == [37, 41]
    assert 0 <= metrics["cpu_percent"] <= 100
    assert 0 < metrics["ram_used_mb"] <= metrics["ram_total_mb"]


def test_run_follows_the_backends_model_list(service, backend, agent, provider_key):
    agent.register(service, backend, provider_key)
    node = the_node()
    process = agent.start("run")
    wait_until(lambda: the_node().status == NodeStatus.ONLINE, timeout=15, process=process)

    backend.models = ["mistralai/Mistral-7B-Instruct-v0.3"]

    wait_until(lambda: served_names(node) == ["mistralai/Mistral-7B-Instruct-v0.3"], timeout=15, process=process)


def test_sigterm_deregisters_the_node_and_exits_0(service, backend, agent, provider_key):
    agent.register(service, backend, provider_key)
    process = agent.start("run")
    wait_until(lambda: the_node().status == NodeStatus.ONLINE, timeout=15, process=process)

    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=15) == 0, log_of(process)
    assert the_node().status == NodeStatus.DEREGISTERED
    assert "deregistered node" in log_of(process)


def test_heartbeats_resume_after_the_server_restarts(service, backend, agent, provider_key):
    agent.register(service, backend, provider_key)
    process = agent.start("run")
    wait_until(lambda: the_node().status == NodeStatus.ONLINE, timeout=15, process=process)

    service.stop()
    try:
        wait_until(lambda: "retrying in" in log_of(process), timeout=15, process=process)
        silent_since = the_node().last_heartbeat_at
    finally:
        service.start()

    wait_until(lambda: the_node().last_heartbeat_at > silent_since, timeout=15, process=process)
    assert "server reachable again" in log_of(process)


def test_a_revoked_provider_stops_the_agent_with_a_clear_message(service, backend, agent):
    client, key = make_client(role=ClientRole.GPU_PROVIDER, approved=True)
    agent.register(service, backend, key)
    process = agent.start("run")
    wait_until(lambda: the_node().status == NodeStatus.ONLINE, timeout=15, process=process)

    client.is_gpu_provider_approved = False
    client.save(update_fields=["is_gpu_provider_approved"])

    assert process.wait(timeout=15) == 3
    assert "provider account behind this node is not approved" in log_of(process)


def test_wrong_api_key_is_a_one_line_error(service, backend, agent):
    r = agent("register", "--server", service.url, "--api-key", "gmk_not-a-real-key", "--backend", backend.url)

    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "gpu-node: error: the server refused the API key (HTTP 401 invalid_api_key); check --api-key"
    ]
    assert not Gpu.objects.exists()


def test_an_unapproved_provider_is_told_so(service, backend, agent):
    _, key = make_client(role=ClientRole.GPU_PROVIDER, approved=False)

    r = agent("register", "--server", service.url, "--api-key", key, "--backend", backend.url)

    assert r.returncode == 2
    assert "not an approved GPU provider" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_an_unreachable_server_is_a_one_line_error(backend, agent, provider_key):
    r = agent("register", "--server", "http://127.0.0.1:9", "--api-key", provider_key, "--backend", backend.url)

    assert r.returncode == 2
    assert r.stderr.startswith("gpu-node: error: cannot reach the server at http://127.0.0.1:9")
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_backend_that_is_not_openai_compatible_is_a_one_line_error(service, agent, provider_key):
    with BackendStub(openai=False) as web_page:
        r = agent("register", "--server", service.url, "--api-key", provider_key, "--backend", web_page.url)

    assert r.returncode == 2
    assert "is not OpenAI-compatible" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not Node.objects.exists()


def test_status_masks_the_token_and_checks_server_and_backend(service, backend, agent, provider_key):
    agent.register(service, backend, provider_key)
    token = json.loads(agent.config_path.read_text())["node_token"]

    r = agent("status")

    assert r.returncode == 0, r.stdout + r.stderr
    assert token not in r.stdout
    assert f"node_token: gmn_...{token[-4:]}" in r.stdout
    assert f"server: ok ({service.url})" in r.stdout
    assert "backend: ok, 2 model(s)" in r.stdout


def test_run_without_a_config_says_to_register_first(agent):
    r = agent("run")

    assert r.returncode == 2
    assert r.stderr.strip() == f"gpu-node: error: no config at {agent.config_path}; run `gpu-node register` first"
