"""Bulk setup rows written straight through the ORM (setup speed), with real node tokens."""

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

# 50 model names of the kind nodes actually serve (vLLM / llama.cpp / Ollama catalogues).
MODEL_NAMES: tuple[str, ...] = (
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Llama-3.1-405B-Instruct",
    "meta-llama/Llama-3.2-1B-Instruct",
    "meta-llama/Llama-3.2-3B-Instruct",
    "meta-llama/Llama-3.2-11B-Vision-Instruct",
    "meta-llama/Llama-3.3-70B-Instruct",
    "meta-llama/Meta-Llama-3-8B-Instruct",
    "mistralai/Mistral-7B-Instruct-v0.3",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "mistralai/Mixtral-8x22B-Instruct-v0.1",
    "mistralai/Mistral-Nemo-Instruct-2407",
    "mistralai/Mistral-Small-24B-Instruct-2501",
    "mistralai/Codestral-22B-v0.1",
    "Qwen/Qwen2.5-0.5B-Instruct",
    "Qwen/Qwen2.5-1.5B-Instruct",
    "Qwen/Qwen2.5-3B-Instruct",
    "Qwen/Qwen2.5-7B-Instruct",
    "Qwen/Qwen2.5-14B-Instruct",
    "Qwen/Qwen2.5-32B-Instruct",
    "Qwen/Qwen2.5-72B-Instruct",
    "Qwen/Qwen2.5-Coder-7B-Instruct",
    "Qwen/Qwen2.5-Coder-32B-Instruct",
    "Qwen/QwQ-32B",
    "Qwen/Qwen3-8B",
    "Qwen/Qwen3-32B",
    "Qwen/Qwen3-30B-A3B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
    "deepseek-ai/DeepSeek-V2-Lite-Chat",
    "deepseek-ai/deepseek-coder-6.7b-instruct",
    "google/gemma-2-2b-it",
    "google/gemma-2-9b-it",
    "google/gemma-2-27b-it",
    "google/gemma-3-4b-it",
    "google/gemma-3-12b-it",
    "google/gemma-3-27b-it",
    "microsoft/Phi-3-mini-4k-instruct",
    "microsoft/Phi-3.5-mini-instruct",
    "microsoft/phi-4",
    "01-ai/Yi-1.5-34B-Chat",
    "CohereForAI/c4ai-command-r-v01",
    "NousResearch/Hermes-3-Llama-3.1-8B",
    "NousResearch/Hermes-3-Llama-3.1-70B",
    "allenai/OLMo-2-1124-13B-Instruct",
    "ibm-granite/granite-3.1-8b-instruct",
    "tiiuae/falcon-7b-instruct",
    "HuggingFaceH4/zephyr-7b-beta",
    "openchat/openchat-3.5-0106",
)
CONTEXT_WINDOWS = (4096, 8192, 32768, 131072)
GPU_MEMORY_MB = (24576, 49152, 81920, 143360)
REGIONS = ("us-east", "us-west", "eu-west", "eu-central", "ap-south", "ap-northeast")


@dataclass(frozen=True)
class SeededNode:
    pk: int
    raw_token: str
    heartbeat_body: bytes  # JSON, ready to POST; empty for nodes that never heartbeat over HTTP


def create_provider(username: str) -> int:
    """An approved GPU provider (its user post_save signal makes the client row). Returns the client id."""
    from django.contrib.auth import get_user_model

    from clients.choices import ClientRole
    from clients.models import Client

    user = get_user_model().objects.create(username=username, email=f"{username}@bench.example")
    Client.objects.filter(user=user).update(role=ClientRole.GPU_PROVIDER, is_gpu_provider_approved=True)
    return Client.objects.get(user=user).pk


def create_models(rng: random.Random) -> dict[str, int]:
    from llm_models.models import LlmModel

    rows = [LlmModel(name=name, context_window=rng.choice(CONTEXT_WINDOWS)) for name in MODEL_NAMES]
    LlmModel.objects.bulk_create(rows)
    return {m.name: m.pk for m in LlmModel.objects.all()}


def _metrics(rng: random.Random) -> dict[str, float]:
    gpu_total = rng.choice(GPU_MEMORY_MB)
    ram_total = rng.choice((65536, 131072, 262144, 524288))
    return {
        "gpu_utilization": round(rng.uniform(0, 100), 1),
        "gpu_memory_used_mb": round(rng.uniform(0.2, 0.95) * gpu_total, 1),
        "gpu_memory_total_mb": gpu_total,
        "gpu_temperature_c": round(rng.uniform(35, 84), 1),
        "cpu_percent": round(rng.uniform(2, 90), 1),
        "ram_used_mb": round(rng.uniform(0.1, 0.8) * ram_total, 1),
        "ram_total_mb": ram_total,
    }


def _served_models(rng: random.Random) -> list[dict]:
    """1-3 of the 50 names, popular ones more often (Zipf-like), at the node's own prices."""
    weights = [1 / (rank + 1) for rank in range(len(MODEL_NAMES))]
    names: set[str] = set()
    wanted = rng.choice((1, 1, 2, 2, 3))
    while len(names) < wanted:
        names.add(rng.choices(MODEL_NAMES, weights=weights)[0])
    return [
        {
            "name": name,
            "input_price_per_million": f"{rng.uniform(0.02, 3.0):.4f}",
            "output_price_per_million": f"{rng.uniform(0.05, 9.0):.4f}",
            "context_window": rng.choice(CONTEXT_WINDOWS),
        }
        for name in sorted(names)
    ]


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def seed_heartbeat_nodes(*, owner_id: int, count: int, now: datetime, rng: random.Random) -> list[SeededNode]:
    """`count` online nodes in steady state, each serving 1-3 models, with the heartbeat body its agent sends.

    Steady state: last heartbeat within one interval, last metrics sample within one sample period, and
    `models_digest` equal to what the server computes for the body's `models`, so a heartbeat re-syncs nothing.
    """
    from django.conf import settings

    from core.tokens import NODE_TOKEN_PREFIX, issue_secret
    from llm_models.choices import NodeStatus
    from llm_models.models import Node, NodeModel
    from llm_models.serializers import HeartbeatIn
    from llm_models.services import models_digest

    model_ids = create_models(rng)
    interval = settings.NODE_HEARTBEAT_INTERVAL_S
    sample_every = settings.NODE_METRICS_SAMPLE_EVERY_S
    nodes: list[Node] = []
    tokens: list[str] = []
    bodies: list[bytes] = []
    served: list[list[dict]] = []
    for i in range(count):
        secret = issue_secret(NODE_TOKEN_PREFIX)
        body = {"metrics": _metrics(rng), "models": _served_models(rng), "active_requests": rng.randint(0, 8)}
        validated = HeartbeatIn(data=body)
        validated.is_valid(raise_exception=True)
        models = validated.validated_data["models"]
        nodes.append(
            Node(
                owner_id=owner_id,
                name=f"bench-node-{i:06d}",
                endpoint_url=f"http://gpu-{i}.bench.example:8000/v1",
                region=rng.choice(REGIONS),
                status=NodeStatus.ONLINE,
                token_digest=secret.digest,
                token_last4=secret.last4,
                last_heartbeat_at=now - timedelta(seconds=rng.uniform(0, interval)),
                latest_metrics=validated.validated_data["metrics"],
                last_metrics_sample_at=now - timedelta(seconds=rng.uniform(0, sample_every)),
                active_requests=body["active_requests"],
                models_digest=models_digest(body["models"]),
            )
        )
        tokens.append(secret.raw)
        bodies.append(json.dumps(body).encode())
        served.append(models)
    for batch in _batches(nodes, 2000):
        Node.objects.bulk_create(batch)
    node_models = [
        NodeModel(
            node_id=node.pk,
            model_id=model_ids[m["name"]],
            input_price_per_million=m["input_price_per_million"],
            output_price_per_million=m["output_price_per_million"],
            context_window=m.get("context_window"),
        )
        for node, models in zip(nodes, served, strict=True)
        for m in models
    ]
    for batch in _batches(node_models, 5000):
        NodeModel.objects.bulk_create(batch)
    return [
        SeededNode(pk=node.pk, raw_token=token, heartbeat_body=body)
        for node, token, body in zip(nodes, tokens, bodies, strict=True)
    ]


def seed_sweep_nodes(
    *, owner_id: int, count: int, now: datetime, rng: random.Random, stale: Callable[[int], bool]
) -> list[int]:
    """`count` online nodes; node i is stale (silent past the timeout) when stale(i). Returns the stale pks."""
    from django.conf import settings

    from core.tokens import NODE_TOKEN_PREFIX, issue_secret
    from llm_models.choices import NodeStatus
    from llm_models.models import Node

    timeout = settings.NODE_HEARTBEAT_TIMEOUT_S
    interval = settings.NODE_HEARTBEAT_INTERVAL_S
    nodes: list[Node] = []
    for i in range(count):
        secret = issue_secret(NODE_TOKEN_PREFIX)
        age = rng.uniform(timeout + 1, timeout + 3600) if stale(i) else rng.uniform(0, interval)
        nodes.append(
            Node(
                owner_id=owner_id,
                name=f"sweep-node-{i:06d}",
                endpoint_url=f"http://gpu-{i}.bench.example:8000/v1",
                region=rng.choice(REGIONS),
                status=NodeStatus.ONLINE,
                token_digest=secret.digest,
                token_last4=secret.last4,
                last_heartbeat_at=now - timedelta(seconds=age),
                latest_metrics=_metrics(rng),
                last_metrics_sample_at=now - timedelta(seconds=age),
            )
        )
    for batch in _batches(nodes, 5000):
        Node.objects.bulk_create(batch)
    return [node.pk for i, node in enumerate(nodes) if stale(i)]


def clear_nodes() -> None:
    """Empty the node tables (and whatever references them) between scenarios."""
    from django.db import connection

    from llm_models.models import Node

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {Node._meta.db_table} RESTART IDENTITY CASCADE")
