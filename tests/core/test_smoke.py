def test_healthz_answers_ok(api_client):
    r = api_client.get("/healthz")

    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_unknown_api_path_is_json_404(api_client):
    r = api_client.get("/api/v1/no-such-thing/")

    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] == "not_found"
