"""The README walkthrough's steps 21-30, as written: an instance with an image and Jupyter rented by the day,
extended, stopped with a snapshot and cancelled; a pay-as-you-go rental from the snapshot, billed by Celery beat;
a key with limits and a budget on /v1 chat, completions and embeddings; a plan subscribed and cancelled; usage by
key and by day and model. Called by walkthrough.walk after step 20."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx

from tests.default_path.conftest import MODEL, wait_for

if TYPE_CHECKING:
    from tests.default_path.conftest import Heartbeats, World

EMBEDDING_MODEL = "BAAI/bge-small-en-v1.5"
IMAGE = "pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime"
ACCESS = {
    "ssh_host": "gpu-8.example.net",
    "ssh_port": 40022,
    "ssh_user": "root",
    "jupyter_url": "http://gpu-8.example.net:48888/lab?token=s3cret",
    "ports": {"6006": "gpu-8.example.net:46006", "8888": "gpu-8.example.net:48888"},
}


def walk_instances(w: World) -> None:
    """Steps 21-27."""
    api, bob, token = w.api, w.bob["key"], w.results["rentable_token"]
    node_id = w.ids["rentable_node"]

    # 21. Discounts on Alice's GPU; her node declares containers (and is live again); Bob gets more credit.
    api.post(f"/client/list/{w.bob['id']}/credit/", key=w.admin_key, json={"amount": "200"})
    discounts = {"daily": "0.1", "weekly": "0.2", "monthly": "0.3"}
    patched = api.call("PATCH", f"/gpu/list/{w.ids['gpu']}/", key=w.alice["key"], json={"discounts": discounts})
    assert {k: Decimal(v) for k, v in patched["discounts"].items()} == {k: Decimal(v) for k, v in discounts.items()}
    api.post("/llm_models/heartbeat/", key=token, json={"capabilities": ["inference", "containers"]})

    # 22. Regions and offers (public).
    regions = api.get("/regions/")["results"]
    assert any(r["region"] == "eu-west" and r["nodes_available"] >= 1 for r in regions), regions
    offers = api.get("/rentals/offers/?gpu_model=H100&gpu_count__gte=1&price_per_hour__lte=5&ordering=-reliability")
    offer = next(o for o in offers["results"] if o["node_id"] == node_id)
    assert "containers" in offer["capabilities"] and 0 <= offer["reliability"] <= 1

    # 23-26. A day of PyTorch with Jupyter, its start and access, a day more, stopped with a snapshot, cancelled.
    daily = _rent_a_day_and_snapshot(w, token)
    w.results["daily_rental"] = daily

    # 27. Pay as you go from the snapshot: beat charges the started minutes; the cancel settles them.
    payg = api.post(
        "/rentals/",
        key=bob,
        expect=201,
        json={"node_id": node_id, "billing": "payg", "snapshot_id": w.ids["snapshot"], "jupyter": True},
    )
    assert (payg["billing"], payg["ends_at"], payg["total"]) == ("payg", None, "0.000000")
    assert payg["image"] == f"gpu-node-snapshots:rental-{daily['id']}-1"

    def beat_charged() -> list[dict] | None:
        lines = api.get(f"/client/ledger/?ref=rental:{payg['id']}&ordering=id", key=bob)["results"]
        return lines if any(e["kind"] == "rental" for e in lines) else None

    lines = wait_for(beat_charged, timeout=60, what="beat charging the payg rental's first minute", log=None)
    kinds = [e["kind"] for e in lines]
    assert kinds[:3] == ["hold", "release", "rental"], kinds  # held, then minute 1 released and charged
    charged_so_far = api.get(f"/rentals/{payg['id']}/", key=bob)
    assert (charged_so_far["status"], Decimal(charged_so_far["total"]) > 0) == ("active", True)
    ended = api.call("DELETE", f"/rentals/{payg['id']}/", key=bob)
    assert ended["status"] == "cancelled" and Decimal(ended["charged"]) >= Decimal(charged_so_far["total"])
    mine = api.get(f"/client/ledger/?ref=rental:{payg['id']}&page_size=100", key=bob)["results"]
    assert sum(Decimal(e["amount"]) for e in mine) == -Decimal(ended["charged"])
    w.results["payg_rental"] = ended


def _rent_a_day_and_snapshot(w: World, token: str) -> dict:
    """Steps 23-26: the daily rental, its `start` and reported access, `extend`, stop with a snapshot, cancel."""
    api, bob = w.api, w.bob["key"]
    body = {
        "node_id": w.ids["rentable_node"],
        "billing": "daily",
        "periods": 1,
        "image": IMAGE,
        "jupyter": True,
        "ports": [6006],
        "volumes": [{"path": "/workspace", "size_gb": 50}],
        "env": {"WANDB_MODE": "offline"},
        "ssh_public_key": w.results["ssh_key"],
    }
    rental = api.post("/rentals/", key=bob, json=body, headers={"Idempotency-Key": "bob-box-1"}, expect=201)
    assert (rental["billing"], rental["hours"], rental["image"]) == ("daily", 24, IMAGE)
    assert (Decimal(rental["price_per_hour"]), Decimal(rental["total"])) == (Decimal("2.25"), Decimal("54"))

    # 24. `start` with the workload and the key; the node reports access, which the rental shows.
    commands = api.post("/llm_models/heartbeat/", key=token, json={})["commands"]
    [start] = [c for c in commands if c["action"] == "start" and c["params"]["rental_id"] == rental["id"]]
    params = start["params"]
    assert (params["image"], params["jupyter"], params["ports"]) == (IMAGE, True, [6006])
    assert (params["volumes"], params["env"]) == (body["volumes"], body["env"])
    assert params["ssh_public_key"] == w.results["ssh_key"]
    result = {"id": start["id"], "status": "succeeded", "output": "container up", "access": ACCESS}
    api.post("/llm_models/heartbeat/", key=token, json={"results": [result]})
    assert api.get(f"/rentals/{rental['id']}/", key=bob)["access"] == ACCESS

    # 25. Another day at the same discounted rate, charged at once.
    extended = api.post(f"/rentals/{rental['id']}/extend/", key=bob, json={"hours": 24})
    assert (extended["hours"], Decimal(extended["total"])) == (48, Decimal("108"))

    # 26. Stop with a snapshot; the node reports the image; it is Bob's snapshot; cancel.
    stop = api.post(f"/rentals/{rental['id']}/stop/", key=bob, json={"snapshot": True}, expect=202)
    ref = f"gpu-node-snapshots:rental-{rental['id']}-1"
    results = [{"id": stop["id"], "status": "succeeded", "snapshot_ref": ref}]
    api.post("/llm_models/heartbeat/", key=token, json={"results": results})
    snapshot = api.get("/snapshots/", key=bob)["results"][0]
    assert snapshot["image_ref"] == ref
    w.ids["snapshot"] = snapshot["id"]
    cancelled = api.call("DELETE", f"/rentals/{rental['id']}/", key=bob)
    assert cancelled["status"] == "cancelled"
    assert Decimal(cancelled["charged"]) + Decimal(cancelled["refunded"]) == Decimal("108")
    return cancelled


def walk_keys_and_plans(w: World, heartbeats: Heartbeats) -> None:
    """Steps 28-30."""
    api, alice, v1 = w.api, w.alice["key"], f"{w.service.url}/v1"

    # 28. A key for an app, with limits; its /v1 answers carry x-ratelimit-* headers.
    expires = (datetime.now(UTC) + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    app = api.post(
        "/client/keys/",
        key=alice,
        expect=201,
        json={
            "name": "chatbot",
            "scopes": ["inference"],
            "models": [MODEL],
            "budget": "1.00",
            "budget_period": "day",
            "rpm": 30,
            "tpm": 20000,
            "expires_at": expires,
        },
    )
    app_auth = {"Authorization": f"Bearer {app['key']}"}
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16}
    r = httpx.post(f"{v1}/chat/completions", json=chat, headers=app_auth, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["x-ratelimit-limit-requests"] == "30" and "x-ratelimit-remaining-tokens" in r.headers
    current = api.get("/client/keys/current/", key=app["key"])
    assert (current["name"], current["rpm"], Decimal(current["budget"])) == ("chatbot", 30, Decimal("1"))

    # A text completion with the app key; embeddings from a node registered for the embedding model.
    text = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 16}
    r = httpx.post(f"{v1}/completions", json=text, headers=app_auth, timeout=60)
    assert r.status_code == 200 and r.json()["id"].startswith("cmpl-"), r.text
    embed_node = api.post(
        "/llm_models/register/",
        key=alice,
        expect=201,
        json={
            "name": "gpu-7-embed",
            "endpoint_url": w.stub.base_url,
            "models": [{"name": EMBEDDING_MODEL, "input_price_per_million": "0.02", "output_price_per_million": "0"}],
        },
    )
    beat = api.post("/llm_models/heartbeat/", key=embed_node["node_token"], json={"metrics": {}})
    assert beat["status"] == "online"
    heartbeats.tokens.append(embed_node["node_token"])  # the README's `while sleep 5` loop
    embed = {"model": EMBEDDING_MODEL, "input": ["first text", "second text"], "encoding_format": "float"}
    r = httpx.post(f"{v1}/embeddings", json=embed, headers={"Authorization": f"Bearer {alice}"}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["id"].startswith("emb-") and len(r.json()["data"]) == 2 and r.json()["usage"]["prompt_tokens"]
    w.ids["app_key"] = app["id"]

    _plan_and_usage(w)


def _plan_and_usage(w: World) -> None:
    """Steps 29-30: a plan made, subscribed (charged at once) and cancelled (kept to renews_at); usage roll-ups."""
    api, alice = w.api, w.alice["key"]
    plan = api.post(
        "/plans/",
        key=w.admin_key,
        expect=201,
        json={"name": "Starter", "price_per_month": "3.00", "daily_requests": 1000, "overage": "block"},
    )
    assert plan["name"] in [p["name"] for p in api.get("/plans/")["results"]]
    subscribed = api.post(f"/plans/{plan['id']}/subscribe/", key=alice, expect=201)
    assert subscribed["status"] == "active" and subscribed["renews_at"]
    cancelled = api.call("DELETE", "/client/subscription/", key=alice)
    assert (cancelled["renew"], cancelled["renews_at"]) == (False, subscribed["renews_at"])
    w.results["plan_price"] = Decimal(plan["price_per_month"])

    by_key = {(row["key"] or {}).get("name"): row for row in _rows(api.get("/client/usage/?group_by=key", key=alice))}
    assert by_key["chatbot"]["requests"] == 2, by_key  # step 28's chat and text completion
    today = datetime.now(UTC).date().isoformat()
    by_day = _rows(api.get(f"/client/usage/?group_by=day,model&from={today}", key=alice))
    assert {MODEL, EMBEDDING_MODEL} <= {row["model"] for row in by_day}, by_day
    assert all(row["key"] is None and row["period"] for row in by_day), by_day


def _rows(body: dict | list) -> list[dict]:
    """The roll-up's rows (a list, or a page's `results`)."""
    return body if isinstance(body, list) else body["results"]
