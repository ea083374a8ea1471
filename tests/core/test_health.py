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


def test_docs_pages_load_only_local_assets(api_client):
    for url in ("/api/docs/", "/api/redoc/"):
        body = api_client.get(url).content.decode()

        assert "/static/drf_spectacular_sidecar/" in body
        assert "https://" not in body, url
