from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import F, Q

from clients.choices import (
    BudgetPeriod,
    ClientRole,
    HoldStatus,
    KeyScope,
    LedgerAccountKind,
    LedgerEntryKind,
    LedgerTransactionKind,
)
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

    def save(self, *args: Any, **kwargs: Any) -> None:
        # `balance` is the ledger's cache, written only by clients/ledger/ (an UPDATE under the row lock, in the
        # transaction that posts the entries). A full save() of an instance loaded earlier would overwrite a
        # concurrent posting with a stale figure, so it never writes the balance.
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "balance" in update_fields:
            raise ValueError("Client.balance is written only by clients/ledger/.")
        if update_fields is None and not self._state.adding and not kwargs.get("force_insert"):
            kwargs["update_fields"] = [
                f.name for f in self._meta.concrete_fields if not f.primary_key and f.name != "balance"
            ]
        super().save(*args, **kwargs)

    @property
    def is_admin(self) -> bool:
        return self.user.is_staff

    @property
    def is_approved_provider(self) -> bool:
        return self.role == ClientRole.GPU_PROVIDER and self.is_gpu_provider_approved


def all_scopes() -> list[str]:
    return list(KeyScope.values)


class ApiKey(models.Model):
    """A named bearer key of a client (one per app). Only its SHA-256 digest is stored."""

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=64, default="default")
    digest = models.CharField(max_length=64, unique=True)
    last4 = models.CharField(max_length=4)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Limits (API.md §12; enforced by clients/key_limits.py). Empty `models` and null limits mean "no limit".
    scopes = models.JSONField(default=all_scopes, help_text="Any of inference, rentals, training, account.")
    allowed_models = models.JSONField(default=list, blank=True, help_text="Model allow-list (`models`); empty: any.")
    budget = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    budget_period = models.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.TOTAL)
    rpm = models.PositiveIntegerField(null=True, blank=True)
    tpm = models.PositiveIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # The key's spend in its current budget period (since `spent_since`), added to as its requests finish.
    spent = models.DecimalField(max_digits=20, decimal_places=6, default=Decimal("0"))
    spent_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["client", "revoked_at"], name="apikey_client_active_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(budget__isnull=True) | Q(budget__gte=0), name="apikey_budget_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(budget_period__in=BudgetPeriod.values), name="apikey_budget_period_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return mask(CLIENT_KEY_PREFIX, self.last4)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


# --- The ledger (written only by clients/ledger/; STYLE.md §5) ------------------------------------------------


class LedgerAccount(models.Model):
    """Where ledger entries land: a client's own account, or one of the system accounts (one row per kind)."""

    kind = models.CharField(max_length=16, choices=LedgerAccountKind.choices)
    client = models.OneToOneField(
        Client, on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_account"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind=LedgerAccountKind.CLIENT) & Q(client__isnull=False))
                | (~Q(kind=LedgerAccountKind.CLIENT) & Q(client__isnull=True)),
                name="ledger_account_client_iff_kind_client",
            ),
            models.CheckConstraint(condition=Q(kind__in=LedgerAccountKind.values), name="ledger_account_kind_valid"),
            models.UniqueConstraint(
                fields=["kind"], condition=Q(client__isnull=True), name="ledger_account_one_per_system_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"client:{self.client_id}" if self.client_id else self.kind


class Hold(models.Model):
    """Money moved from a client's balance to escrow until the work it pays for is settled or released."""

    key = models.CharField(max_length=200, unique=True)
    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="holds")
    amount = models.DecimalField(max_digits=20, decimal_places=6)
    consumed = models.DecimalField(
        max_digits=20,
        decimal_places=6,
        default=0,
        help_text="Charged from the hold while it stays open (a lease); what is still held is amount - consumed.",
    )
    status = models.CharField(max_length=16, choices=HoldStatus.choices, default=HoldStatus.HELD)
    kind = models.CharField(
        max_length=32,
        default=LedgerEntryKind.HOLD,
        help_text="`hold`: a reservation (counted in the client's `held`); a charge's kind (`rental`): paid up front.",
    )
    ref = models.CharField(  # noqa: DJ001 - null where the hold names no object (a lease)
        max_length=64, null=True, blank=True, help_text="The object it is for: `inference:12`, `rental:3`."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True, help_text="When it was settled or released.")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="hold_amount_positive"),
            models.CheckConstraint(
                condition=Q(consumed__gte=0, consumed__lte=F("amount")), name="hold_consumed_within_amount"
            ),
            models.CheckConstraint(condition=Q(status__in=HoldStatus.values), name="hold_status_valid"),
            models.CheckConstraint(
                condition=Q(status=HoldStatus.HELD, settled_at__isnull=True)
                | (~Q(status=HoldStatus.HELD) & Q(settled_at__isnull=False)),
                name="hold_settled_at_iff_closed",
            ),
        ]
        indexes = [
            # reconcile() sums the open holds against escrow.
            models.Index(fields=["status"], condition=Q(status=HoldStatus.HELD), name="hold_open_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"


class LedgerTransaction(models.Model):
    """One balanced posting: its entries sum to zero (a deferred trigger checks at commit). Never changed."""

    key = models.CharField(max_length=255, unique=True, help_text="`<kind>:<caller key>`: a retry posts nothing.")
    kind = models.CharField(max_length=16, choices=LedgerTransactionKind.choices)
    memo = models.CharField(max_length=255, blank=True, default="")
    fingerprint = models.CharField(  # noqa: DJ001 - transactions posted before fingerprints existed have none
        max_length=64,
        null=True,
        blank=True,
        help_text="Digest of the posting's arguments: a retry with its key must match it (clients/ledger.py).",
    )
    hold = models.ForeignKey(Hold, on_delete=models.PROTECT, null=True, blank=True, related_name="transactions")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=LedgerTransactionKind.values), name="ledger_transaction_kind_valid"
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="ledger_txn_created_idx")]

    def __str__(self) -> str:
        return self.key


class LedgerEntry(models.Model):
    """One leg of a transaction: `amount` is its signed effect on the account's balance. Never changed."""

    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="entries")
    amount = models.DecimalField(max_digits=20, decimal_places=6)
    # No `choices`: new kinds of charge are added in clients/choices.py without a migration (ledger.py checks).
    kind = models.CharField(max_length=32, default="", db_default="", help_text="What this line is (LedgerEntryKind).")
    ref = models.CharField(  # noqa: DJ001 - null where nothing is named (an admin credit)
        max_length=64, null=True, blank=True, help_text="The object this line is for: `inference:12`, `rental:3`."
    )

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "ledger entries"
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="ledger_entry_amount_not_zero")]
        indexes = [
            # A client's statement: its account's entries, newest first.
            models.Index(fields=["account", "-id"], name="ledger_entry_account_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.account}: {self.amount}"


class KeyRateWindow(models.Model):
    """Requests and tokens of one key in one minute: the rpm/tpm counters where there is no Redis (key_limits)."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="rate_windows")
    window_start = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "window_start"], name="key_rate_window_unique")]

    def __str__(self) -> str:
        return f"{self.api_key_id}@{self.window_start}"
