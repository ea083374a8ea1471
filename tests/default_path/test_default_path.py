"""`make run`'s defaults are a full product (docs/API.md §10): every list and detail, the walkthrough's flows, the
market and the admin pages answer over HTTP from the service started as `make run` starts it (conftest.py)."""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from decimal import Decimal

import httpx
import pytest

from tests.default_path.conftest import ADMIN, HEARTBEAT_TIMEOUT_S, METRICS_SLOT_S, MODEL, REPO_ROOT, World, wait_for
from tests.default_path.walkthrough import GPU, METRICS

pytestmark = pytest.mark.default_path


def test_the_walkthrough_runs_and_its_money_adds_up(world: World) -> None:
    """Every ledger line of the walkthrough's two clients, by kind: each balance is the sum of its lines, nothing is
    left held, and each charge is exactly what its object says it cost."""
    api = world.api
    spent = sum(Decimal(r["cost"]) for r in world.results["completed"])
    assert spent > 0
    # Alice: a 25.00 credit, her inference (chat, completions, embeddings), the plan's 3.00, and the operator's
    # share of every charge on her nodes (Bob's three rentals and her own requests).
    alice = api.get(f"/client/list/{world.alice['id']}/", key=world.alice["key"])
    alice_lines = api.get("/client/ledger/?page_size=100", key=world.alice["key"])["results"]
    alice_by_kind = _by_kind(alice_lines)
    assert sum(alice_by_kind.values()) == Decimal(alice["balance"])
    assert Decimal(alice["held"]) == 0
    assert alice_by_kind["credit"] == Decimal("25")
    charges = [e for e in alice_lines if e["kind"] == "inference" and Decimal(e["amount"]) < 0]
    assert sum(Decimal(e["amount"]) for e in charges) == -spent
    assert alice_by_kind["subscription"] == -world.results["plan_price"]
    assert Decimal(alice["balance"]) > Decimal("25") - spent - world.results["plan_price"]  # she earned some

    # Bob: 50 + 200 credited, less exactly what each of his three rentals was charged (4 hours, a day, payg).
    rentals = [world.results[k] for k in ("cancelled_rental", "daily_rental", "payg_rental")]
    charged = sum(Decimal(r["charged"]) for r in rentals)
    bob = api.get(f"/client/list/{world.bob['id']}/", key=world.bob["key"])
    assert Decimal(bob["balance"]) == Decimal("250") - charged
    assert Decimal(bob["held"]) == 0
    ledger = api.get("/client/ledger/?page_size=100", key=world.bob["key"])["results"]
    assert sum(Decimal(e["amount"]) for e in ledger) == Decimal(bob["balance"])
    for rental in rentals:
        lines = [e for e in ledger if e["ref"] == f"rental:{rental['id']}"]
        assert sum(Decimal(e["amount"]) for e in lines) == -Decimal(rental["charged"]), rental


def _by_kind(entries: list[dict]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for entry in entries:
        totals[entry["kind"]] = totals.get(entry["kind"], Decimal(0)) + Decimal(entry["amount"])
    return totals


def _a_pending_payout(world: World) -> tuple[str, int]:
    """Carol, an approved provider with credit of her own (the walkthrough's balances stay as they are), asks for a
    payout."""
    api = world.api
    carol = api.post(
        "/client/register/",
        json={
            "username": "carol",
            "email": "carol@example.com",
            "password": "a-long-passphrase-9",
            "terms_accepted": True,
        },
        expect=201,
    )
    api.post(f"/client/list/{carol['id']}/apply-provider/", key=carol["user_token"])
    api.post(f"/client/list/{carol['id']}/approve-provider/", key=world.admin_key)
    api.post(f"/client/list/{carol['id']}/credit/", key=world.admin_key, json={"amount": "20.00"})
    payout = api.post("/client/payouts/", key=carol["user_token"], json={"amount": "10.00"}, expect=201)
    assert payout["status"] == "pending"
    return carol["user_token"], payout["id"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/client/ledger/?client={big}", 0),
        ("/rentals/?node={big}", 0),
        ("/inference/?node={big}", 0),
        ("/gpu/list/?min_gpu_memory_gb={big}", 0),
        ("/gpu/list/?min_gpu_memory_gb=-{big}", 1),
    ],
)
def test_an_integer_filter_beyond_64_bits_is_decided_not_a_500(world: World, path: str, expected: int) -> None:
    """SQLite cannot compare with an integer beyond 64 bits; no row holds one, so an id filter matches nothing (and
    a bound beyond the range everything or nothing), as on PostgreSQL."""
    body = world.api.get(path.format(big=2**70), key=world.admin_key)

    assert body["count"] == expected


def test_the_market_shows_measured_figures(world: World) -> None:
    """Medians and uptime are computed on SQLite as on PostgreSQL: the model's and node's p50 latency is the
    median of their completed requests' latencies."""
    api = world.api
    mine = [r for r in world.results["completed"] if r["desired_model"] == MODEL]  # not the embedding node's
    latencies = [r["latency_ms"] for r in mine if r["latency_ms"] is not None]
    expected = statistics.median(latencies)

    models = api.get("/models/?ordering=input_price_per_million")["results"]
    mine = next(m for m in models if m["name"] == MODEL)
    assert mine["live_nodes"] == 1
    assert mine["latency_p50_ms"] == pytest.approx(expected, abs=0.01)
    detail = api.get(f"/models/{mine['id']}/")
    assert detail["latency_p50_ms"] == pytest.approx(expected, abs=0.01)

    providers = api.get(f"/models/{mine['id']}/providers/?ordering=latency_p50_ms")["results"]
    assert [p["node_id"] for p in providers] == [world.ids["node"]]
    assert providers[0]["latency_p50_ms"] == pytest.approx(expected, abs=0.01)
    assert providers[0]["throughput_tps"] is not None

    for ordering in ("latency_p50_ms", "-uptime_1d", "price", "-throughput_tps"):
        nodes = api.get(f"/nodes/?ordering={ordering}")["results"]
        assert {n["id"] for n in nodes} >= {world.ids["node"], world.ids["rentable_node"]}, ordering
    node = api.get(f"/nodes/{world.ids['node']}/")
    assert node["latency_p50_ms"] == pytest.approx(expected, abs=0.01)
    assert set(node) >= {"uptime_5m", "uptime_30m", "uptime_1d"}
    assert api.get(f"/nodes/{world.ids['node']}/monitoring/")["count"] >= 1

    # stats/ may be MARKET_STATS_CACHE_S (10 s) old: an earlier call may have cached figures from before the walk.
    completed = len(world.results["completed"])
    stats = wait_for(
        lambda: (body := api.get("/stats/"))["inferences"]["total"] == completed and body,
        timeout=15,
        what=f"stats/ counting the walk's {completed} completed requests",
    )
    assert stats["nodes"]["live"] >= 1
    assert Decimal(stats["revenue"]["operator"]) > 0


def test_uptime_counts_the_slots_a_node_heartbeat_in(world: World) -> None:
    """After a whole metrics slot of heartbeats the node's uptime is measured (not null): slot arithmetic on the
    epoch (core.db.EpochSeconds) works on SQLite."""
    every = METRICS_SLOT_S
    first_whole_slot_end = (int(world.results["walked_at"]) // every + 2) * every
    time.sleep(max(0.0, first_whole_slot_end - time.time() + 1))

    node = world.api.get(f"/nodes/{world.ids['node']}/")

    assert node["uptime_5m"] is not None and 0 < node["uptime_5m"] <= 1
    assert node["uptime_1d"] is not None and 0 < node["uptime_1d"] <= 1


def test_a_silent_node_goes_offline_and_its_model_leaves_the_menu(world: World) -> None:
    """Beat's sweep runs through the filesystem broker and the worker: expiry works on the default path."""
    api = world.api
    node = api.post(
        "/llm_models/register/",
        key=world.alice["key"],
        expect=201,
        json={"name": "gpu-9", "endpoint_url": world.stub.base_url, "models": [{"name": "stub/expiring"}]},
    )
    api.post("/llm_models/heartbeat/", key=node["node_token"], json={"metrics": {}})
    assert "stub/expiring" in str(api.get("/llm_models/all-models/")["results"])

    waited = wait_for(
        lambda: api.get(f"/nodes/{node['node_id']}/")["status"] == "offline",
        timeout=HEARTBEAT_TIMEOUT_S + 30,
        what="the sweep marking the silent node offline",
        log=world.service.log_path,
    )

    assert waited
    assert "stub/expiring" not in str(api.get("/llm_models/all-models/")["results"])
    back = api.post("/llm_models/heartbeat/", key=node["node_token"], json={"metrics": {}})
    assert back["status"] == "online"
    api.call("DELETE", "/llm_models/deregister/", key=node["node_token"], expect=204)


def test_the_admin_pages_answer_for_a_logged_in_operator(world: World) -> None:
    """Every changelist the admin index links to, and the first change page of each, are 200 with no traceback;
    the node pages the README sends operators to among them."""
    with httpx.Client(base_url=world.service.url, timeout=30, follow_redirects=False) as browser:
        login = browser.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        r = browser.post(
            "/admin/login/?next=/admin/",
            data={"csrfmiddlewaretoken": token, "username": ADMIN["username"], "password": ADMIN["password"]},
            headers={"Referer": f"{world.service.url}/admin/login/"},
        )
        assert r.status_code == 302, r.text[:2000]
        index = browser.get("/admin/")
        assert index.status_code == 200
        changelists = sorted(set(re.findall(r'href="(/admin/[a-z_]+/[a-z_]+/)"', index.text)))
        assert "/admin/llm_models/node/" in changelists, changelists
        pages = []
        for url in changelists:
            page = browser.get(url)
            assert page.status_code == 200, f"{url}: {page.status_code}"
            assert "Traceback" not in page.text, url
            pages.append(url)
            change = re.search(rf'href="({re.escape(url)}\d+/change/)', page.text)
            if change:
                detail = browser.get(change.group(1))
                assert detail.status_code == 200, f"{change.group(1)}: {detail.status_code}"
                pages.append(change.group(1))
        node_page = browser.get(f"/admin/llm_models/node/{world.ids['node']}/change/")
        assert node_page.status_code == 200 and "gpu-7" in node_page.text
    assert f"/admin/llm_models/node/{world.ids['node']}/change/" in pages or node_page.status_code == 200


def test_beat_sends_no_usage_drain_without_the_lean_path(world: World) -> None:
    """The /v1 lean path is off on SQLite, so there is no journal to drain: beat does not send that task (once a
    second it would fill the worker's log)."""
    log = world.service.log()

    assert "Sending due task node-mark-stale-offline" in log  # beat's task lines are in this log
    assert "Sending due task inference-usage-drain" not in log
    assert "Sending due task inference-leases-release-stale" not in log


def test_the_service_warns_when_the_heartbeat_timeout_is_not_above_the_interval() -> None:
    """`make run`'s first step (migrate) prints the system check's warning for the walkthrough's old numbers."""
    env = {"NODE_HEARTBEAT_INTERVAL_S": "30", "NODE_HEARTBEAT_TIMEOUT_S": "20"}
    r = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO_ROOT,
        env={**_plain_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert r.returncode == 0, r.stderr
    assert "core.W001" in r.stderr and "NODE_HEARTBEAT_TIMEOUT_S (20)" in r.stderr, r.stderr


def _plain_env() -> dict[str, str]:
    import os

    from tests.default_path.conftest import NOT_INHERITED

    return {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}


def _a_training_job(world: World) -> tuple[str, int]:
    """Dave fine-tunes on Erin's training node (a node of its own: the walkthrough's node keeps serving)."""
    api = world.api

    def sign_up(name: str) -> dict:
        body = {
            "username": name,
            "email": f"{name}@example.com",
            "password": f"a-long-passphrase-{name}",
            "terms_accepted": True,
        }
        return api.post("/client/register/", json=body, expect=201)

    erin, dave = sign_up("erin"), sign_up("dave")
    api.post(f"/client/list/{erin['id']}/apply-provider/", key=erin["user_token"])
    api.post(f"/client/list/{erin['id']}/approve-provider/", key=world.admin_key)
    api.post(f"/client/list/{dave['id']}/credit/", key=world.admin_key, json={"amount": "20.00"})
    gpu = api.post("/gpu/list/", key=erin["user_token"], json=GPU, expect=201)
    node = api.post(
        "/llm_models/register/",
        key=erin["user_token"],
        expect=201,
        json={"name": "gpu-train", "endpoint_url": world.stub.base_url, "gpu": gpu["id"], "models": [{"name": MODEL}]},
    )
    api.post(
        "/llm_models/heartbeat/",
        key=node["node_token"],
        json={"metrics": METRICS, "capabilities": ["inference", "training"]},
    )
    job = api.post(
        "/training/create/",
        key=dave["user_token"],
        expect=201,
        json={
            "model": MODEL,
            "dataset_url": "https://example.com/train.jsonl",
            "epochs": 1,
            "learning_rate": 0.0002,
            "batch_size": 8,
            "max_hours": 1,
            "node_id": node["node_id"],
        },
    )
    assert job["status"] == "queued"
    return dave["user_token"], job["id"]


def _a_capped_key_and_a_plan(world: World) -> dict[str, tuple[str | None, int]]:
    """A key of Alice's with limits; a free plan the admin made and subscribed to (client/subscription/ is then
    the admin's)."""
    api = world.api
    key = api.post("/client/keys/", key=world.alice["key"], json={"name": "capped", "rpm": 5}, expect=201)
    plan = api.post(
        "/plans/", key=world.admin_key, json={"name": "Free", "price_per_month": "0", "daily_requests": 10}, expect=201
    )
    api.post(f"/plans/{plan['id']}/subscribe/", key=world.admin_key, expect=201)
    return {"/api/v1/client/keys/{id}/": (world.alice["key"], key["id"]), "/api/v1/plans/{id}/": (None, plan["id"])}


def test_a_key_rpm_holds_on_the_embedded_default(world: World) -> None:
    """Without Redis the rpm counter is a database row (SQLite here): the second request of the minute is a 429."""
    key = world.api.post("/client/keys/", key=world.alice["key"], json={"name": "one-a-minute", "rpm": 1}, expect=201)
    body = {"model": "nobody/has-this", "messages": [{"role": "user", "content": "hi"}]}

    first = httpx.post(
        f"{world.service.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key['key']}"}
    )
    second = httpx.post(
        f"{world.service.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key['key']}"}
    )

    assert first.status_code == 404 and first.headers["x-ratelimit-remaining-requests"] == "0"
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limited"
    assert int(second.headers["retry-after"]) >= 1


def test_every_get_operation_of_the_schema_answers_json(world: World) -> None:
    """Each GET of the live OpenAPI schema, with its path ids filled from what the walkthrough made, is a 200 in
    JSON for the object's owner; a path nobody here can fill fails the test, so a new one gets covered. Last in the
    module: it makes objects of its own (a payout, a training node and job) that would change the figures above."""
    schema = httpx.get(f"{world.service.url}/api/schema/?format=json", timeout=30).json()
    a, b, admin = world.alice["key"], world.bob["key"], world.admin_key
    ids = world.ids
    model_id = next(m["id"] for m in world.api.get("/models/")["results"] if m["name"] == MODEL)
    filled = {
        "/api/v1/client/list/{id}/": (a, world.alice["id"]),
        "/api/v1/gpu/list/{id}/": (a, ids["gpu"]),
        "/api/v1/inference/{id}/": (a, ids["inference"]),
        "/api/v1/inference/batch/{batch_id}/": (a, ids["batch"]),
        "/api/v1/jobs/{id}/": (b, ids["job"]),
        "/api/v1/models/{id}/": (None, model_id),
        "/api/v1/models/{id}/providers/": (None, model_id),
        "/api/v1/nodes/{id}/": (None, ids["node"]),
        "/api/v1/nodes/{id}/monitoring/": (None, ids["node"]),
        "/api/v1/rentals/{id}/": (b, ids["rental"]),
        "/api/v1/snapshots/{id}/": (b, ids["snapshot"]),
    }
    filled["/api/v1/client/payouts/{id}/"] = _a_pending_payout(world)
    job = _a_training_job(world)
    filled["/api/v1/training/jobs/{id}/"] = filled["/api/v1/training/jobs/{id}/events/"] = job
    filled.update(_a_capped_key_and_a_plan(world))
    # Objects the default path cannot make: a top-up needs a Stripe account (STRIPE_SECRET_KEY), and a training
    # dataset is served to its job's node alone (a client's key is refused). Their GETs are still JSON answers.
    unmade = {"/api/v1/client/topups/{id}/": (a, 404), "/api/v1/llm_models/files/{file_id}/": (a, 401)}
    # GETs of no path id that need a query: who asks, and with what.
    queried = {"/api/v1/generation/": (a, {"id": ids["generation"]})}
    checked = []
    for path, operations in schema["paths"].items():
        if "get" not in operations:
            continue
        if path in unmade:
            key, status = unmade[path]
            r = httpx.get(
                f"{world.service.url}{re.sub(r'{[^}]+}', '1', path)}", headers={"Authorization": f"Bearer {key}"}
            )
            assert r.status_code == status and r.headers["content-type"].startswith("application/json"), path
            checked.append(path)
            continue
        if "{" in path:
            assert path in filled, f"no object to GET {path} with: add it to the walkthrough and this table"
            key, pk = filled[path]
            url = re.sub(r"\{[^}]+\}", str(pk), path)
        else:
            key, url = admin, path
        key, params = queried.get(path, (key, {}))
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        r = httpx.get(f"{world.service.url}{url}", params=params, headers=headers, timeout=30)
        assert r.status_code == 200, f"GET {url}: {r.status_code} {r.text[:1000]}"
        assert r.headers["content-type"].startswith("application/json"), url
        body = r.json()
        if "results" in body:  # a list: each item's fields are there, and some list shows what was made
            assert isinstance(body["results"], list), url
        if path in queried:
            assert body["id"] == ids["generation"] and body["status"] == "completed", body
        checked.append(path)
    assert len(checked) >= 20, checked
