"""Reconciliation for operators: the `ledger_reconcile` command and the admin's read-only ledger pages."""

from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from clients import ledger
from clients.models import Client, Hold, LedgerEntry, LedgerTransaction
from tests.factories import make_client


@pytest.fixture
def books(db):  # type: ignore[no-untyped-def]
    payer, _ = make_client()
    operator, _ = make_client()
    ledger.credit(client_id=payer.pk, amount=Decimal("50"), key="fund")
    ledger.hold_place(client_id=payer.pk, amount=Decimal("20"), key="job-1")
    ledger.hold_place(client_id=payer.pk, amount=Decimal("5"), key="job-2")
    ledger.hold_settle(key="job-1", charge=Decimal("12"), kind="inference", operator_id=operator.pk)
    return payer, operator


def test_reconcile_command_passes_on_consistent_books(books, capsys):
    call_command("ledger_reconcile")

    assert "agree" in capsys.readouterr().out


def test_reconcile_command_finds_a_tampered_balance_and_exits_1(books, capsys):
    payer, _ = books
    Client.objects.filter(pk=payer.pk).update(balance=Decimal("1000"))

    with pytest.raises(CommandError) as exc:
        call_command("ledger_reconcile")

    assert exc.value.returncode == 1
    assert f"client:{payer.pk}: cached 1000.000000 != ledger 33.000000" in capsys.readouterr().err


def test_reconcile_command_finds_escrow_out_of_step_with_open_holds(books, capsys):
    Hold.objects.filter(key="job-2").update(amount=Decimal("6"))

    with pytest.raises(CommandError):
        call_command("ledger_reconcile")

    assert "escrow: cached 6.000000 != ledger 5.000000" in capsys.readouterr().err


# --- Admin -------------------------------------------------------------------------------------------------


def form_data(form) -> dict:  # type: ignore[no-untyped-def]
    """What a browser would post back for this form, unchanged."""
    values = {form.add_prefix(name): form[name].value() for name in form.fields}
    return {name: "" if value is None else value for name, value in values.items()}


@pytest.fixture
def browser(client, admin):  # type: ignore[no-untyped-def]
    client.force_login(admin[0].user)
    return client


def test_admin_reconcile_button_reports_agreement(browser, books):
    r = browser.get("/admin/clients/ledgertransaction/reconcile/", follow=True)

    assert r.status_code == 200
    assert "every cached balance agree" in r.content.decode()


def test_admin_reconcile_button_reports_a_mismatch(browser, books):
    payer, _ = books
    Client.objects.filter(pk=payer.pk).update(balance=Decimal("1"))

    page = browser.get("/admin/clients/ledgertransaction/reconcile/", follow=True).content.decode()

    assert "1 mismatch(es)" in page
    assert f"client:{payer.pk}" in page


def test_admin_ledger_pages_are_read_only(browser, books):
    txn = LedgerTransaction.objects.get(kind="settle")
    entry = LedgerEntry.objects.filter(transaction=txn).first()
    hold = Hold.objects.get(key="job-1")

    listing = browser.get("/admin/clients/ledgertransaction/").content.decode()
    detail = browser.get(f"/admin/clients/ledgertransaction/{txn.pk}/change/")

    assert "Reconcile balances with the ledger" in listing
    assert detail.status_code == 200
    assert 'name="memo"' not in detail.content.decode()
    assert browser.get("/admin/clients/ledgertransaction/add/").status_code == 403
    assert browser.get(f"/admin/clients/ledgerentry/{entry.pk}/delete/").status_code == 403
    assert browser.get(f"/admin/clients/hold/{hold.pk}/delete/").status_code == 403
    assert browser.post(f"/admin/clients/hold/{hold.pk}/change/", {"status": "released"}).status_code == 403
    assert browser.get("/admin/clients/ledgeraccount/").status_code == 200
    hold.refresh_from_db()
    assert hold.status == "settled"


def test_admin_saving_a_client_keeps_the_balance_credited_since_the_page_loaded(browser, books):
    payer, _ = books
    page = browser.get(f"/admin/clients/client/{payer.pk}/change/")
    data = form_data(page.context["adminform"].form)
    for inline in page.context["inline_admin_formsets"]:
        data.update(form_data(inline.formset.management_form))
        for inline_form in inline.formset.forms:
            data.update(form_data(inline_form))
    data["phone_no"] = "555"
    shown = Client.objects.get(pk=payer.pk).balance
    ledger.credit(client_id=payer.pk, amount=Decimal("1"), key="meanwhile")

    r = browser.post(f"/admin/clients/client/{payer.pk}/change/", data)

    assert r.status_code == 302
    assert ledger.balance_of(client_id=payer.pk) == shown + 1
    assert ledger.reconcile() == []
