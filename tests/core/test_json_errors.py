"""Every error under /api/ and /v1/ is JSON in the mount's shape, whatever DEBUG says (API.md §0, §10)."""

import pytest
from django.test import Client as DjangoClient

from tests.conftest import bearer
from tests.inference.conftest import MODEL, live_node, stale

API_SHAPE = {"type", "errors"}


def api_error(r) -> dict:  # type: ignore[no-untyped-def]
    assert r["Content-Type"].startswith("application/json"), r.content[:200]
    body = r.json()
    assert set(body) == API_SHAPE and len(body["errors"]) == 1
    return body["errors"][0]


def openai_error(r) -> dict:  # type: ignore[no-untyped-def]
    assert r["Content-Type"].startswith("application/json"), r.content[:200]
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request, settings):  # type: ignore[no-untyped-def]
    settings.DEBUG = request.param
    return request.param


@pytest.fixture
def http() -> DjangoClient:
    """Django's test client, answering a crash as the server would (a response, not a raised exception)."""
    return DjangoClient(raise_request_exception=False)


MALFORMED_IDS = [
    "/api/v1/nope/",
    "/api/v1/gpu/list/abc/",
    "/api/v1/gpu/list/%C2%84/",
    "/api/v1/client/list/-1/",
    "/api/v1/client/keys/abc/",
    "/api/v1/inference/abc/",
    "/api/v1/inference/batch/%C2%84/",
    "/api/v1/rentals/abc/",
    "/api/v1/rentals/abc/start/",
    "/api/v1/jobs/abc/",
    "/api/v1/models/null,null/",
    "/api/v1/models/null,null/providers/",
    "/api/v1/nodes/null,null/monitoring/",
]


@pytest.mark.django_db
@pytest.mark.parametrize("path", MALFORMED_IDS)
def test_an_unknown_path_or_malformed_id_under_api_is_a_json_404(http, debug, user_client, path):
    r = http.get(path, **bearer(user_client[1]))

    assert r.status_code == 404
    assert api_error(r) == {"code": "not_found", "detail": "Not found.", "attr": None}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/v1/nope", "/v1/", "/v1/chat/completion", "/v1/models/"])
def test_an_unknown_path_under_v1_is_an_openai_404(http, debug, user_client, path):
    r = http.get(path, **bearer(user_client[1]))

    assert r.status_code == 404
    error = openai_error(r)
    assert (error["code"], error["type"]) == ("not_found", "invalid_request_error")


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), [("post", "/api/docs/"), ("post", "/api/schema/"), ("put", "/api/redoc/")])
def test_a_method_not_allowed_on_the_docs_is_json(http, debug, method, path):
    r = getattr(http, method)(path)

    assert r.status_code == 405
    assert api_error(r)["code"] == "method_not_allowed"
    assert r.has_header("Allow")


@pytest.mark.django_db
def test_a_method_not_allowed_under_v1_is_an_openai_error(http, debug, user_client):
    r = http.delete("/v1/chat/completions", **bearer(user_client[1]))

    assert r.status_code == 405
    assert openai_error(r)["code"] == "method_not_allowed"


@pytest.mark.django_db
def test_a_post_missing_its_trailing_slash_is_redirected_with_its_method_not_a_500(http, debug, user_client):
    r = http.post("/api/v1/client/keys", {"name": "k"}, content_type="application/json", **bearer(user_client[1]))

    assert r.status_code == 308
    assert r["Location"] == "/api/v1/client/keys/"


# --- GET /v1/models/{id} ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_v1_model_detail_is_an_openai_model_object(http, user_client, provider):
    live_node(owner=provider[0], model="meta-llama/Llama-3.1-8B-Instruct")

    r = http.get("/v1/models/meta-llama/Llama-3.1-8B-Instruct", **bearer(user_client[1]))

    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"id", "object", "created", "owned_by"}
    assert (body["id"], body["object"]) == ("meta-llama/Llama-3.1-8B-Instruct", "model")
    assert isinstance(body["created"], int)


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["org/unknown", "no-slash", MODEL])
def test_v1_model_detail_of_an_unknown_or_unserved_model_is_model_not_found(http, debug, user_client, provider, name):
    stale(live_node(owner=provider[0], model=MODEL))  # known, but no live node serves it: not in the list either

    r = http.get(f"/v1/models/{name}", **bearer(user_client[1]))

    assert r.status_code == 404
    error = openai_error(r)
    assert (error["code"], error["param"], error["type"]) == ("model_not_found", "model", "invalid_request_error")


@pytest.mark.django_db
def test_v1_model_detail_needs_a_key(http):
    r = http.get("/v1/models/org/anything")

    assert r.status_code == 401
    assert openai_error(r)["code"] == "invalid_api_key"


# --- A crash (500): the database is gone, over real HTTP, with the service's own settings ------------------


@pytest.fixture(scope="module", params=["false", "true"], ids=["debug-off", "debug-on"])
def service_without_database(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    """`make run`'s settings (config.settings.local) with a database file that cannot be opened: every query
    fails, as it would with the disk gone. DEBUG as the parameter says."""
    from tests.inference.conftest import start_service
    from tests.llm_models.conftest import _stop

    process = start_service(
        tmp_path_factory.mktemp("nodb") / "server.log",
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DATABASE_URL="sqlite:////nonexistent-directory/db.sqlite3",
        DEBUG=request.param,
    )
    try:
        yield process
    finally:
        _stop(process)


@pytest.mark.live_server
def test_a_crash_under_api_is_a_json_500(service_without_database):
    import httpx

    r = httpx.get(f"{service_without_database.base_url}/api/v1/models/", timeout=30)

    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"type": "server_error", "errors": [{"code": "error", "detail": "Server Error (500)",
                                                           "attr": None}]}  # fmt: skip


@pytest.mark.live_server
@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/models"), ("POST", "/v1/chat/completions")])
def test_a_crash_under_v1_is_an_openai_500(service_without_database, method, path):
    import httpx

    r = httpx.request(
        method,
        f"{service_without_database.base_url}{path}",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": "Bearer gmk_not-looked-up-because-the-database-is-gone"},
        timeout=30,
    )

    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {
        "error": {"message": "Server Error (500)", "type": "server_error", "param": None, "code": "error"}
    }
