"""The operator's admin site: provider applications are approved and revoked there."""

from clients.choices import ClientRole
from clients.models import Client
from tests.factories import make_client, make_node


def _admin_browser(client, admin):  # type: ignore[no-untyped-def]
    client.force_login(admin[0].user)
    return client


def test_admin_lists_pending_provider_applications_only_with_the_filter(client, admin, applicant, provider):
    browser = _admin_browser(client, admin)

    r = browser.get("/admin/clients/client/?provider_application=pending")

    assert r.status_code == 200
    assert applicant[0].user.username in r.content.decode()
    assert provider[0].user.username not in r.content.decode()


def test_admin_action_approves_selected_applications(client, admin, applicant):
    browser = _admin_browser(client, admin)

    r = browser.post(
        "/admin/clients/client/",
        {"action": "approve_providers", "_selected_action": [applicant[0].pk]},
    )

    assert r.status_code == 302
    applicant[0].refresh_from_db()
    assert applicant[0].is_gpu_provider_approved is True


def test_admin_action_revokes_a_provider(client, admin, provider):
    browser = _admin_browser(client, admin)

    browser.post("/admin/clients/client/", {"action": "revoke_providers", "_selected_action": [provider[0].pk]})

    provider[0].refresh_from_db()
    assert provider[0].is_gpu_provider_approved is False
    assert provider[0].role == ClientRole.GPU_PROVIDER


def test_admin_node_page_shows_status_metrics_and_models_but_no_secrets(client, admin, provider):
    node, raw_token = make_node(owner=provider[0], status="online", models=["org/llama"])
    node.latest_metrics = {"gpu_utilization": 42.5}
    node.backend_api_key_encrypted = "ENCRYPTED-BLOB"
    node.save()
    browser = _admin_browser(client, admin)

    page = browser.get(f"/admin/llm_models/node/{node.pk}/change/").content.decode()

    assert "42.5" in page
    assert "org/llama" in page
    assert raw_token not in page
    assert "ENCRYPTED-BLOB" not in page


def test_admin_cannot_edit_a_client_balance(client, admin, user_client):
    browser = _admin_browser(client, admin)

    page = browser.get(f"/admin/clients/client/{user_client[0].pk}/change/").content.decode()

    assert 'name="balance"' not in page
    assert Client.objects.get(pk=user_client[0].pk).balance == 0


def test_non_staff_cannot_open_the_admin(client):
    user, _ = make_client()
    client.force_login(user.user)

    r = client.get("/admin/clients/client/")

    assert r.status_code == 302
    assert "/admin/login/" in r["Location"]


def test_admin_shows_each_nodes_revenue_from_completed_inferences(client, admin, provider, user_client):
    from decimal import Decimal

    from django.utils import timezone

    from inference.choices import InferenceStatus
    from inference.models import InferenceRequest

    node, _ = make_node(owner=provider[0], name="earner")
    for i, (status, cost) in enumerate(
        [
            (InferenceStatus.COMPLETED, "1.000000"),
            (InferenceStatus.COMPLETED, "0.500000"),
            (InferenceStatus.FAILED, "9"),
        ]
    ):
        InferenceRequest.objects.create(
            client=user_client[0],
            question_text="q",
            desired_model="org/a",
            node=node,
            status=status,
            max_tokens=16,
            prompt_tokens=10,
            completion_tokens=5,
            cost=Decimal(cost),
            request_key=f"admin-revenue-{i}",
            deadline_at=timezone.now(),
        )
    browser = _admin_browser(client, admin)

    r = browser.get("/admin/inference/noderevenue/")

    assert r.status_code == 200
    page = r.content.decode()
    assert "earner" in page
    # What clients paid for the two completed requests (the failed one earned nothing), and the operator's 70%: as
    # money, right-aligned.
    assert '<span class="money">1.50</span>' in page
    assert '<span class="money">1.05</span>' in page
