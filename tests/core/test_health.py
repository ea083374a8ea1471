import re
from pathlib import Path

from django.contrib.staticfiles import finders


def test_readyz_reports_database_and_broker_ok(api_client):
    r = api_client.get("/readyz")

    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_is_503_naming_the_broker_when_it_is_unreachable(api_client, settings, monkeypatch):
    from config.celery import app

    unreachable = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    # Celery's `broker_url` prefers the CELERY_BROKER_URL environment variable over its configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", unreachable)
    app.conf.broker_url = unreachable
    try:
        r = api_client.get("/readyz")
    finally:
        app.conf.broker_url = settings.CELERY_BROKER_URL

    assert r.status_code == 503
    assert r.json()["checks"]["database"] == "ok"
    assert r.json()["checks"]["broker"].startswith("error")


def test_schema_is_served_as_openapi_3(api_client):
    r = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert r.status_code == 200
    schema = r.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/client/register/" in schema["paths"]
    assert "/api/v1/llm_models/heartbeat/" in schema["paths"]


def test_schema_groups_operations_by_resource(api_client):
    """Swagger UI and ReDoc group operations by tag: one per resource (the path's first part under /api/v1/)."""
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    tags = {path: {tuple(op["tags"]) for op in ops.values()} for path, ops in schema["paths"].items()}

    assert tags["/api/v1/client/register/"] == {("client",)}
    assert tags["/api/v1/gpu/list/"] == {("gpu",)}
    assert tags["/api/v1/llm_models/heartbeat/"] == {("llm_models",)}
    assert tags["/api/v1/inference/"] == {("inference",)}
    assert tags["/api/v1/rentals/"] == {("rentals",)}
    assert tags["/api/v1/models/"] == {("models",)}
    assert tags["/api/v1/stats/"] == {("stats",)}
    assert all(("api",) not in t for t in tags.values())


def test_docs_pages_load_only_local_assets(api_client):
    for url in ("/api/docs/", "/api/redoc/"):
        body = api_client.get(url).content.decode()

        assert "/static/drf_spectacular_sidecar/" in body
        assert "https://" not in body, url


def test_redoc_page_forbids_the_bundles_cdn_logo(api_client):
    """ReDoc's bundle renders cdn.redoc.ly's logo whatever its options say; the page's policy keeps the browser from
    loading images (or fonts, or data) from anywhere but this service."""
    bundle = Path(finders.find("drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js")).read_text()
    assert "https://cdn.redoc.ly/redoc/logo-mini.svg" in bundle  # what the policy is for

    body = api_client.get("/api/redoc/").content.decode()

    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', body)
    assert policy is not None, body
    directives = dict(d.strip().split(" ", 1) for d in policy.group(1).split(";"))
    assert directives["img-src"].split() == ["'self'", "data:", "blob:"]
    assert directives["font-src"].split() == ["'self'", "data:"]
    assert directives["connect-src"] == "'self'"
