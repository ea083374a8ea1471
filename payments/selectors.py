"""Reads of top-ups and payouts: a client sees its own, an admin every one; others' ids are 404."""

from django.db.models import QuerySet

from clients.models import Client
from core.errors import NotFound
from payments.models import Payout, TopUp


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
