from celery import shared_task

from rentals import payg, services


@shared_task(name="rentals.tasks.rentals_complete_ended")
def rentals_complete_ended() -> int:
    """Beat: complete and settle rentals whose time is up (safe to overlap: row locks, see the service)."""
    return services.rentals_complete_ended()


@shared_task(name="rentals.tasks.rentals_payg_charge")
def rentals_payg_charge() -> int:
    """Beat, each minute: charge pay-as-you-go rentals' started minutes and renew their holds (safe to overlap)."""
    return payg.rentals_payg_charge()
