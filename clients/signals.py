"""Every Django user has a client record, however it was created (admin site, createsuperuser, allauth)."""

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models.signals import post_save
from django.dispatch import Signal, receiver

from clients.choices import ClientRole
from clients.models import Client

# Sent inside the revoking transaction (kwargs: client_id). Apps above clients react without clients importing them
# (rentals ends the rentals of the provider's nodes with a refund of unused time).
provider_revoked = Signal()
# Sent inside the deactivating transaction (kwargs: client): llm_models deregisters the account's nodes (and so
# rentals ends their rentals with a refund), without clients importing either.
client_deactivated = Signal()


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def ensure_client(sender: type[User], instance: User, created: bool, **kwargs: Any) -> None:
    if created:
        Client.objects.get_or_create(
            user=instance, defaults={"role": ClientRole.ADMIN if instance.is_staff else ClientRole.USER}
        )
