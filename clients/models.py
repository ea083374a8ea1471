from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q

from clients.choices import ClientRole
from core.tokens import CLIENT_KEY_PREFIX, mask


class Client(models.Model):
    """A marketplace account: the seed's client record around a Django user, with a credit balance."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="client")
    phone_no = models.CharField(max_length=12, null=True, blank=True)  # noqa: DJ001 - the seed says "string or null"
    user_image = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(32767)])
    ip = models.GenericIPAddressField(null=True, blank=True, help_text="Address of the last sign-in.")
    terms_accepted = models.BooleanField(null=True)
    role = models.CharField(max_length=16, choices=ClientRole.choices, default=ClientRole.USER)
    profile_image_url = models.URLField(max_length=500, null=True, blank=True)  # noqa: DJ001 - seed: nullable
    is_gpu_provider_approved = models.BooleanField(default=False)
    provider_registration_date = models.DateTimeField(null=True, blank=True)
    balance = models.DecimalField(max_digits=20, decimal_places=6, default=Decimal("0"))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="client_balance_not_negative"),
            models.CheckConstraint(condition=Q(user_image__lte=32767), name="client_user_image_range"),
        ]
        indexes = [models.Index(fields=["role", "is_gpu_provider_approved"], name="client_role_approved_idx")]

    def __str__(self) -> str:
        return self.user.username

    @property
    def is_admin(self) -> bool:
        return self.user.is_staff

    @property
    def is_approved_provider(self) -> bool:
        return self.role == ClientRole.GPU_PROVIDER and self.is_gpu_provider_approved


class ApiKey(models.Model):
    """A named bearer key of a client (one per app). Only its SHA-256 digest is stored."""

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=64, default="default")
    digest = models.CharField(max_length=64, unique=True)
    last4 = models.CharField(max_length=4)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["client", "revoked_at"], name="apikey_client_active_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return mask(CLIENT_KEY_PREFIX, self.last4)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
