"""Reads of top-ups and payouts (a client sees its own, an admin every one; others' ids are 404), and of an x402
payer's credit."""

from decimal import Decimal

from django.db.models import QuerySet, Sum

from clients import ledger
from clients.models import Client
from core.errors import NotFound
from payments.choices import X402PaymentStatus
from payments.models import Payout, TopUp, X402Payer, X402Payment


def topup_list_visible(*, viewer: Client) -> QuerySet[TopUp]:
    qs = TopUp.objects.all()
    return qs if viewer.is_admin else qs.filter(client=viewer)


def payout_list_visible(*, viewer: Client) -> QuerySet[Payout]:
    qs = Payout.objects.all()
    return qs if viewer.is_admin else qs.filter(client=viewer)


def payout_get_visible(*, viewer: Client, payout_id: int) -> Payout:
    payout = payout_list_visible(viewer=viewer).filter(pk=payout_id).first()
    if payout is None:
        raise NotFound("No payout with this id.")
    return payout


def x402_credit_of(*, payer: X402Payer) -> Decimal:
    """What of the address's balance may pay a request without a settled payment of its own: the balance less the
    payments credited but not settled yet (`verified`: their requests are in flight, and a failed settlement takes
    them back), so a request paid from credit never spends money that may not arrive."""
    unsettled = X402Payment.objects.filter(payer=payer, status=X402PaymentStatus.VERIFIED).aggregate(s=Sum("amount"))
    return ledger.balance_of(client_id=payer.client_id) - (unsettled["s"] or Decimal(0))
