"""Every admin page fit for an operator: money as money, no Add/Delete where it only shows, no secrets."""

from decimal import Decimal

import pytest
from django.contrib.admin import ModelAdmin, site
from django.contrib.admin.templatetags.admin_urls import admin_urlname
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import DecimalField
from django.http import HttpRequest
from django.test import RequestFactory
from django.urls import reverse

from clients import ledger
from clients.models import ApiKey
from llm_models.choices import NodeCommandAction, NodeCommandStatus
from llm_models.models import Node, NodeCommand
from tests.console.helpers import metric_samples, nodes_in_every_state, one_of_each
from tests.inference.conftest import fund


@pytest.fixture
def browser(client, admin):  # type: ignore[no-untyped-def]
    client.force_login(admin[0].user)
    return client


@pytest.fixture
def every_admin(admin, provider, user_client):  # type: ignore[no-untyped-def]
    """(model, its ModelAdmin, a superuser's request) for every model on the admin site, each with a row."""
    one_of_each(payer=user_client[0], provider=provider[0])
    request = RequestFactory().get("/admin/")
    request.user = admin[0].user
    return [(model, model_admin, request) for model, model_admin in site._registry.items()]


def ours(model_admin: ModelAdmin) -> bool:
    """An admin of this project's apps (Django's and allauth's are theirs)."""
    return not type(model_admin).__module__.startswith(("django.", "allauth."))


def only_shows(model_admin: ModelAdmin, request: HttpRequest) -> bool:
    """Whether the admin lets nothing be edited: no change permission, or every field of its form read-only."""
    if not model_admin.has_change_permission(request):
        return True
    obj = model_admin.get_queryset(request).first()
    fields = set(flatten_fieldsets(model_admin.get_fieldsets(request, obj)))
    return fields <= set(model_admin.get_readonly_fields(request, obj))


def offered(browser, model, model_admin: ModelAdmin, request: HttpRequest) -> list[str]:  # type: ignore[no-untyped-def]
    """What the admin offers to add, save or delete: by its permissions, on its list and on a row's page."""
    changelist = reverse(admin_urlname(model._meta, "changelist"))
    listed = browser.get(changelist).content.decode()
    obj = model_admin.get_queryset(request).first()
    page = browser.get(reverse(admin_urlname(model._meta, "change"), args=[obj.pk])).content.decode()
    checks = {
        "Add": model_admin.has_add_permission(request) or f'href="{changelist}add/"' in listed,
        "Delete": model_admin.has_delete_permission(request, obj) or "delete_selected" in listed,
        "Delete on its page": "deletelink" in page,
        "Save": model_admin.has_change_permission(request, obj) or 'name="_save"' in page,
    }
    return [f"{model._meta.label}: {what}" for what, shown in checks.items() if shown]


def test_every_admin_that_only_shows_offers_no_add_save_or_delete(browser, every_admin):
    view_only = {m._meta.label for m, model_admin, request in every_admin if only_shows(model_admin, request)}
    offers = [
        offer
        for model, model_admin, request in every_admin
        if model._meta.label in view_only
        for offer in offered(browser, model, model_admin, request)
    ]

    assert offers == []
    # The test sees them: the ledger, keys, requests, payments, plans' usage and training only show.
    assert {
        "clients.LedgerEntry", "clients.ApiKey", "inference.InferenceRequest", "payments.Payout",
        "plans.PlanDailyUsage", "plans.Subscription", "training.TrainingJob", "training.TrainingFile",
        "training.TrainingEvent", "rentals.Snapshot",
    } <= view_only  # fmt: skip


def test_no_changelist_shows_a_money_column_raw(browser, every_admin):
    raw, empty = [], []
    for model, model_admin, _request in every_admin:
        answer = browser.get(reverse(admin_urlname(model._meta, "changelist")))
        assert answer.status_code == 200, model._meta.label
        page = answer.content.decode()
        if ours(model_admin) and 'id="result_list"' not in page:
            empty.append(model._meta.label)
        decimals = [f.name for f in model._meta.get_fields() if isinstance(f, DecimalField)]
        raw += [f"{model._meta.label}.{name}" for name in decimals if f'class="field-{name}"' in page]

    assert empty == []  # one_of_each() makes a row of every model
    assert raw == []  # a DecimalField in list_display is shown as `10.000000`: show it through money_html


def test_balances_and_ledger_amounts_are_money(browser, provider, user_client):
    fund(user_client[0], "25.029155")

    clients = browser.get("/admin/clients/client/").content.decode()
    entries = browser.get("/admin/clients/ledgerentry/").content.decode()

    assert '<span class="money">25.03</span>' in clients
    assert "25.0291550000000" not in clients and "25.029155" not in clients
    assert '<span class="money">25.029155</span>' in entries  # the ledger keeps its 6 places


def test_the_nodes_list_shows_health_heartbeat_models_and_gpu_metrics(browser, provider):
    nodes = nodes_in_every_state(provider[0])
    Node.objects.filter(pk=nodes["live"].pk).update(
        latest_metrics={"gpu_utilization": 37.0, "gpu_memory_used_mb": 20480, "gpu_memory_total_mb": 81920}
    )

    page = browser.get("/admin/llm_models/node/").content.decode()
    failing = browser.get("/admin/llm_models/node/?health=failing").content.decode()

    assert ">live<" in page and ">offline<" in page and ">live · failing<" in page
    assert "failing: no new work for 4" in page
    assert "org/a" in page
    assert "37 %" in page and "20/80 GB" in page
    assert " s ago</time>" in page and "2 h ago</time>" in page
    assert "live-failing" in failing and "live-a" not in failing


def test_a_node_page_has_its_metrics_history_and_no_digests_or_internal_counters(browser, provider):
    node = nodes_in_every_state(provider[0])["live"]
    Node.objects.filter(pk=node.pk).update(
        latency_ewma_ms=1.3361399999999999, models_digest="d" * 64, unsupported_actions=["reset", "snapshot"]
    )
    metric_samples(node, [10.0, 55.5, 90.0])
    node.refresh_from_db()

    page = browser.get(f"/admin/llm_models/node/{node.pk}/change/").content.decode()

    assert '<canvas id="node-metrics-chart"' in page
    assert '"gpu_utilization": 55.5' in page  # the samples the chart is drawn from
    assert "3 samples" in page
    assert node.token_digest not in page and "d" * 64 not in page
    assert "1.3361399999999999" not in page and "1 ms" in page
    assert "deletelink" not in page and "Delete?" not in page
    # What the node's agent refused is shown, not an editable JSON box (its command reports keep it).
    assert 'name="unsupported_actions"' not in page
    assert '<div class="readonly">reset, snapshot</div>' in page


def test_api_keys_show_masked_never_their_digest(browser, user_client):
    key = ApiKey.objects.get(client=user_client[0])

    page = browser.get(f"/admin/clients/apikey/{key.pk}/change/").content.decode()

    assert key.digest not in page
    assert key.masked in page


def test_a_command_of_an_ended_rental_shows_both_statuses_as_they_are(browser, provider, user_client):
    from datetime import timedelta

    from django.utils import timezone

    from rentals.models import Rental

    node = nodes_in_every_state(provider[0])["live"]
    now = timezone.now()
    rental = Rental.objects.create(
        client=user_client[0], node=node, status="cancelled", hours=1, price_per_hour=Decimal("1"), total=Decimal("1"),
        starts_at=now - timedelta(minutes=30), ends_at=now + timedelta(minutes=30), ended_at=now,
    )  # fmt: skip
    NodeCommand.objects.create(
        node=node, rental=rental, action=NodeCommandAction.START, status=NodeCommandStatus.RUNNING
    )

    page = browser.get("/admin/llm_models/nodecommand/?rental_state=ended").content.decode()

    assert '<td class="field-status">Running</td>' in page
    assert '<td class="field-rental_status">Cancelled</td>' in page


def test_hold_pages_show_what_is_still_held(browser, user_client):
    fund(user_client[0], "5.00")
    ledger.hold_place(client_id=user_client[0].pk, amount=Decimal("1.5"), key="still-held")

    page = browser.get("/admin/clients/hold/").content.decode()

    assert page.count('<span class="money">1.500000</span>') == 2  # amount and still held


def test_keys_are_still_revoked_from_their_view_only_list(browser, user_client):
    key = ApiKey.objects.get(client=user_client[0])

    r = browser.post("/admin/clients/apikey/", {"action": "revoke_keys", "_selected_action": [key.pk], "index": 0})

    assert r.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
