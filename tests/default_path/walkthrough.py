"""The README's walkthrough, step by step, against the service `make run` started (tests/default_path/conftest.py).

Each step checks its status and the fields the README shows; what it made goes into the World for the tests.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import TYPE_CHECKING

from openai import OpenAI

from tests.default_path.conftest import ADMIN, MODEL, ssh_public_key, wait_for

if TYPE_CHECKING:
    from tests.default_path.conftest import Heartbeats, World

GPU = {
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
METRICS = {
    "gpu_utilization": 37,
    "gpu_memory_used_mb": 20480,
    "gpu_memory_total_mb": 81920,
    "gpu_temperature_c": 61,
    "cpu_percent": 12,
    "ram_used_mb": 64000,
    "ram_total_mb": 524288,
}


def sse_data(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


def walk(w: World, heartbeats: Heartbeats) -> None:
    api = w.api

    # 1-3. Sign up, apply to be a provider, the admin logs in and approves.
    alice = api.post(
        "/client/register/",
        json={
            "username": "alice",
            "email": "alice@example.com",
            "password": "a-long-passphrase-7",
            "terms_accepted": True,
        },
        expect=201,
    )
    w.alice = {"id": alice["id"], "key": alice["user_token"]}
    applied = api.post(f"/client/list/{alice['id']}/apply-provider/", key=w.alice["key"])
    assert applied["role"] == "gpu_provider" and applied["is_gpu_provider_approved"] is False
    w.admin_key = api.post("/client/login/", json={"username": ADMIN["username"], "password": ADMIN["password"]})[
        "user_token"
    ]
    approved = api.post(f"/client/list/{alice['id']}/approve-provider/", key=w.admin_key)
    assert approved["is_gpu_provider_approved"] is True

    # 4. A GPU machine.
    gpu = api.post("/gpu/list/", key=w.alice["key"], json=GPU, expect=201)
    assert gpu["gpu_model"] == "H100"
    w.ids["gpu"] = gpu["id"]

    # 5-7. A node (the stub node), its heartbeat, the model on the menu.
    node = api.post(
        "/llm_models/register/",
        key=w.alice["key"],
        expect=201,
        json={
            "name": "gpu-7",
            "endpoint_url": w.stub.base_url,
            "gpu": gpu["id"],
            "models": [
                {
                    "name": MODEL,
                    "input_price_per_million": "0.20",
                    "output_price_per_million": "0.60",
                    "context_window": 131072,
                }
            ],
        },
    )
    w.ids["node"] = node["node_id"]
    beat = api.post(
        "/llm_models/heartbeat/",
        key=node["node_token"],
        json={"metrics": METRICS, "active_requests": 0},
    )
    assert beat["status"] == "online" and beat["heartbeat_interval_s"] == 2
    heartbeats.tokens.append(node["node_token"])
    menu = api.get("/llm_models/all-models/")
    assert MODEL in json.dumps(menu["results"])

    # 10-11. Credit with an Idempotency-Key (a retry credits nothing more); the ledger shows it.
    credit = {"amount": "25.00", "memo": "welcome credit"}
    once = api.post(
        f"/client/list/{alice['id']}/credit/",
        key=w.admin_key,
        json=credit,
        headers={"Idempotency-Key": "topup-alice-1"},
    )
    again = api.post(
        f"/client/list/{alice['id']}/credit/",
        key=w.admin_key,
        json=credit,
        headers={"Idempotency-Key": "topup-alice-1"},
    )
    assert Decimal(once["balance"]) == Decimal(again["balance"]) == Decimal("25")
    credits = api.get("/client/ledger/?kind=credit", key=w.alice["key"])["results"]
    assert [Decimal(e["amount"]) for e in credits] == [Decimal("25")]

    # 12-13. A rentable node; Bob signs up and gets credit; the inventory shows the node.
    rentable = api.post(
        "/llm_models/register/",
        key=w.alice["key"],
        expect=201,
        json={
            "name": "gpu-8",
            "endpoint_url": w.stub.base_url,
            "gpu": gpu["id"],
            "ssh_host": "gpu-8.example.net",
            "ssh_port": 22,
            "ssh_user": "renter",
        },
    )
    w.ids["rentable_node"] = rentable["node_id"]
    rentable_token = rentable["node_token"]
    api.post("/llm_models/heartbeat/", key=rentable_token, json={"metrics": {}})
    bob = api.post(
        "/client/register/",
        json={"username": "bob", "email": "bob@example.com", "password": "b-long-passphrase-8", "terms_accepted": True},
        expect=201,
    )
    w.bob = {"id": bob["id"], "key": bob["user_token"]}
    api.post(f"/client/list/{bob['id']}/credit/", key=w.admin_key, json={"amount": "50"})
    inventory = api.get("/rentals/inventory/?gpu_model=H100")["results"]
    assert inventory, "the inventory shows the free H100 node"

    # 14. Bob rents it for 4 hours with his SSH key.
    key = ssh_public_key()
    rental = api.post(
        "/rentals/",
        key=w.bob["key"],
        expect=201,
        json={"node_id": rentable["node_id"], "hours": 4, "ssh_public_key": key},
        headers={"Idempotency-Key": "bob-rent-1"},
    )
    assert (rental["status"], Decimal(rental["total"])) == ("active", Decimal("10"))
    assert rental["access"]["ssh_host"] == "gpu-8.example.net"
    w.ids["rental"] = rental["id"]

    # 13. Bob finds his id as the README does: his own client list.
    assert api.get("/client/list/", key=w.bob["key"])["results"][0]["id"] == w.bob["id"]

    # 15. Stop and start: a job; the node gets the command in its next heartbeat reply and reports the outcome.
    job = api.post(f"/rentals/{rental['id']}/stop/", key=w.bob["key"], expect=202)
    w.ids["job"] = job["id"]
    commands = api.post("/llm_models/heartbeat/", key=rentable_token, json={})["commands"]
    by_action = {c["action"]: c for c in commands}
    assert by_action["start"]["params"]["ssh_public_key"] == key  # a rental's first command is `start`
    assert by_action["stop"]["id"] == job["id"]
    results = [{"id": job["id"], "status": "succeeded", "output": "stopped"}]
    api.post("/llm_models/heartbeat/", key=rentable_token, json={"results": results})
    polled = api.get(f"/jobs/{job['id']}/", key=w.bob["key"])
    assert (polled["kind"], polled["status"], polled["result"]) == ("stop", "succeeded", "stopped")
    started = api.post(f"/rentals/{rental['id']}/start/", key=w.bob["key"], expect=202)
    assert (started["kind"], started["status"]) == ("start", "pending")

    # 16. Cancel: the unused time comes back; the commands not reported on are withdrawn; the ledger shows both.
    cancelled = api.call("DELETE", f"/rentals/{rental['id']}/", key=w.bob["key"])
    assert cancelled["status"] == "cancelled"
    assert Decimal(cancelled["charged"]) + Decimal(cancelled["refunded"]) == Decimal("10")
    assert api.get(f"/jobs/{started['id']}/", key=w.bob["key"])["status"] == "cancelled"
    lines = api.get(f"/client/ledger/?ref=rental:{rental['id']}", key=w.bob["key"])["results"]
    assert sorted((e["kind"], Decimal(e["amount"])) for e in lines) == [
        ("refund", Decimal(cancelled["refunded"])),
        ("rental", Decimal("-10")),
    ]
    w.results["cancelled_rental"] = cancelled
    w.results["rentable_token"] = rentable_token
    w.results["ssh_key"] = key

    # 17. Inference through the seed resource: queued for the Celery worker, the call waits for the answer.
    question = {"question_text": "Name three prime numbers.", "desired_model": MODEL, "max_tokens": 64}
    answered = api.post("/inference/", key=w.alice["key"], json=question, expect=201)
    assert (answered["status"], answered["answer_text"], answered["node"]) == (
        "completed",
        "Two, three and five.",
        node["node_id"],
    )
    w.ids["inference"] = answered["id"]

    # 18. Without waiting, then poll; then a stream; then a batch.
    queued = api.post(
        "/inference/",
        key=w.alice["key"],
        json={"question_text": "Hello?", "desired_model": MODEL},
        headers={"Prefer": "respond-async"},
        expect=202,
    )
    polled = wait_for(
        lambda: (r := api.get(f"/inference/{queued['id']}/", key=w.alice["key"]))["status"] == "completed" and r,
        timeout=60,
        what="the worker answering an async request",
        log=w.service.log_path,
    )
    assert polled["answer_text"] == "Two, three and five."
    stream = api.post(
        "/inference/stream/", key=w.alice["key"], json={"question_text": "Count to five.", "desired_model": MODEL}
    )
    data = sse_data(stream)
    assert data[-1] == "[DONE]"
    record = json.loads(data[-2])
    assert record["status"] == "completed"
    batch = api.post(
        "/inference/batch/", key=w.alice["key"], json={"model": MODEL, "prompts": ["one", "two", "three"]}, expect=202
    )
    w.ids["batch"] = batch["id"]
    done = wait_for(
        lambda: (b := api.get(f"/inference/batch/{batch['id']}/", key=w.alice["key"]))["status"] == "completed" and b,
        timeout=90,
        what="the worker answering a batch",
        log=w.service.log_path,
    )
    assert all(item["answer_text"] == "Two, three and five." for item in done["items"])

    # The same key with the official openai SDK against /v1, streaming included.
    sdk = OpenAI(base_url=f"{w.service.url}/v1", api_key=w.alice["key"], max_retries=0, timeout=60)
    assert MODEL in [m.id for m in sdk.models.list()]
    completion = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Write a haiku about GPUs."}], max_tokens=64
    )
    assert completion.choices[0].message.content == "Two, three and five."
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert completion.id.startswith("chatcmpl-")  # ours: GET /api/v1/generation/?id= finds the record by it
    w.ids["generation"] = completion.id
    pieces, usage = [], None
    for chunk in sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Again, streamed."}],
        max_tokens=64,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
        elif chunk.usage:
            usage = chunk.usage
    assert "".join(pieces) == "Two, three and five."
    assert usage is not None and usage.completion_tokens > 0
    w.results["sdk_requests"] = 2

    # 19. The money of a request: its charge line, and the balance beside what is held.
    lines = api.get(f"/client/ledger/?kind=inference&ref=inference:{queued['id']}", key=w.alice["key"])["results"]
    # Alice's own node answered: beside her charge she has the operator's line of it (70%).
    assert sorted(Decimal(e["amount"]) for e in lines)[0] == -Decimal(polled["cost"]), (lines, polled)
    assert set(api.get(f"/client/list/{w.alice['id']}/", key=w.alice["key"])) >= {"balance", "held"}

    # 20. The public market: models (searched), who serves one, the totals.
    model_id = api.get("/models/?search=Llama-3.1-8B")["results"][0]["id"]
    assert api.get(f"/models/{model_id}/providers/?ordering=latency_p50_ms")["results"]
    assert api.get("/stats/")["nodes"]["live"] >= 1

    from tests.default_path.walkthrough_more import walk_instances, walk_keys_and_plans

    walk_instances(w)  # 21-27
    walk_keys_and_plans(w, heartbeats)  # 28-30

    # Every request above is recorded (the /v1 ones too), each with a measured latency.
    def all_recorded() -> list[dict] | None:
        rows = api.get("/inference/?page_size=100", key=w.alice["key"])["results"]
        done = [r for r in rows if r["status"] == "completed"]
        return done if len(done) >= 11 else None

    w.results["completed"] = wait_for(all_recorded, timeout=30, what="every inference recorded")
    # The uptime test waits from here for a whole metrics slot (NODE_METRICS_SAMPLE_EVERY_S) to have passed.
    w.results["walked_at"] = time.time()
