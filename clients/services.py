"""Writes for clients: sign-up, sign-in, keys, provider onboarding, password reset, Google sign-in."""

import re
import secrets
from dataclasses import dataclass
from typing import Any

from allauth.account import app_settings as allauth_settings
from allauth.account.internal.flows.email_verification import send_verification_email_to_address
from allauth.account.models import EmailAddress
from allauth.account.utils import setup_user_email
from allauth.socialaccount.adapter import get_adapter as get_social_adapter
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User as AuthUser
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode

from clients.choices import ClientRole
from clients.errors import (
    GoogleNotConfigured,
    InvalidCredentials,
    InvalidGoogleToken,
    InvalidResetToken,
    NotAnApplicant,
)
from clients.key_scopes import scopes_grantable
from clients.login_throttle import (
    login_throttle_check,
    login_throttle_record_failure,
    login_throttle_reset,
)
from clients.models import ApiKey, Client
from clients.signals import client_deactivated, provider_revoked
from core.errors import DomainError, NotFound
from core.tokens import CLIENT_KEY_PREFIX, issue_secret

User = get_user_model()


@dataclass(frozen=True)
class SignedIn:
    """A client and the full API key just issued to it (shown once)."""

    client: Client
    raw_key: str


# --- API keys -------------------------------------------------------------------------------------


def api_key_create(
    *, client: Client, name: str = "default", granting: ApiKey | None = None, **limits: Any
) -> tuple[ApiKey, str]:
    """Issue a new key; returns the row and the raw key, which is never stored. `limits` are ApiKey's limit fields
    (API.md §12); a key (`granting`) cannot make a key with scopes it lacks."""
    if "scopes" in limits:
        scopes_grantable(granting=granting, scopes=limits["scopes"])
    elif granting is not None:
        limits["scopes"] = list(granting.scopes)
    secret = issue_secret(CLIENT_KEY_PREFIX)
    key = ApiKey.objects.create(client=client, name=name, digest=secret.digest, last4=secret.last4, **limits)
    return key, secret.raw


def api_key_update(*, client: Client, key_id: int, granting: ApiKey | None = None, **changes: Any) -> ApiKey:
    """Change a key's name or limits (a changed budget period counts spend from its own start)."""
    key = ApiKey.objects.filter(pk=key_id, client=client, revoked_at__isnull=True).first()
    if key is None:
        raise NotFound("No active API key with this id.")
    if "scopes" in changes:
        scopes_grantable(granting=granting, scopes=changes["scopes"])
    for name, value in changes.items():
        setattr(key, name, value)
    key.save(update_fields=list(changes))
    return key


def api_key_revoke(*, client: Client, key_id: int) -> None:
    updated = ApiKey.objects.filter(pk=key_id, client=client, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if not updated:
        raise NotFound("No active API key with this id.")


# --- Sign-up and sign-in --------------------------------------------------------------------------


def _password_errors(password: str, user: AuthUser, *, attr: str = "password") -> None:
    """Django's password validators; a failure is a 400 naming `attr`, the request field that held it."""
    try:
        validate_password(password, user=user)
    except DjangoValidationError as exc:
        raise DomainError(" ".join(exc.messages), attr=attr) from exc


@transaction.atomic
def client_register(
    *,
    request: HttpRequest,
    username: str,
    email: str,
    password: str,
    phone_no: str | None = None,
    ip: str | None = None,
) -> SignedIn:
    """Create a user (through allauth's email bookkeeping), its client record and a first API key."""
    if User.objects.filter(username__iexact=username).exists():
        raise DomainError("A user with this username already exists.", attr="username")
    if email_taken(email=email):
        raise DomainError("A user with this email already exists.", attr="email")
    user = User(username=username, email=email)
    _password_errors(password, user)
    user.set_password(password)
    user.save()
    client = user.client  # created by the post_save signal
    client.phone_no = phone_no
    client.terms_accepted = True
    client.ip = ip
    client.save(update_fields=["phone_no", "terms_accepted", "ip", "updated_at"])
    address = setup_user_email(request, user, [])
    if address and allauth_settings.EMAIL_VERIFICATION != allauth_settings.EmailVerificationMethod.NONE:
        transaction.on_commit(lambda: send_verification_email_to_address(request, address, signup=True))
    _, raw = api_key_create(client=client, name="default")
    return SignedIn(client=client, raw_key=raw)


def email_taken(*, email: str, exclude_user_id: int | None = None) -> bool:
    users = User.objects.filter(Q(email__iexact=email) | Q(emailaddress__email__iexact=email))
    if exclude_user_id is not None:
        users = users.exclude(pk=exclude_user_id)
    return users.exists()


def client_login(*, identifier: str, password: str, ip: str | None = None, key_name: str = "login") -> SignedIn:
    """Check a username-or-email and password; on success issue a new key. One message for every failure."""
    # Usernames cannot contain "@" (serializers refuse it), so an identifier names one field only.
    match = Q(email__iexact=identifier) if "@" in identifier else Q(username__iexact=identifier)
    user = User.objects.filter(match, is_active=True).select_related("client").first()
    # Count failures per account, not per spelling: its username and its email share one counter.
    throttle_id = f"user-id:{user.pk}" if user is not None else identifier
    login_throttle_check(identifier=throttle_id, ip=ip)
    if user is None:
        User().set_password(password)  # spend the hashing time anyway: no timing oracle for unknown users
        ok = False
    else:
        ok = user.check_password(password)
    if not ok or user is None:
        login_throttle_record_failure(identifier=throttle_id, ip=ip)
        raise InvalidCredentials("Unable to log in with the provided credentials.")
    login_throttle_reset(identifier=throttle_id)
    return _sign_in(user=user, ip=ip, key_name=key_name)


@transaction.atomic
def _sign_in(*, user: AuthUser, ip: str | None, key_name: str) -> SignedIn:
    client = user.client
    client.ip = ip
    client.save(update_fields=["ip", "updated_at"])
    User.objects.filter(pk=user.pk).update(last_login=timezone.now())
    _, raw = api_key_create(client=client, name=key_name)
    return SignedIn(client=client, raw_key=raw)


# --- Profile --------------------------------------------------------------------------------------


@transaction.atomic
def client_update(*, client: Client, user: dict | None = None, **fields: object) -> Client:
    """Change the fields a client owns; server-owned fields never reach here (serializers refuse them)."""
    user_data = user or {}
    if "username" in user_data:
        username = user_data["username"]
        if User.objects.filter(username__iexact=username).exclude(pk=client.user_id).exists():
            raise DomainError("A user with this username already exists.", attr="user.username")
        client.user.username = username
    if "email" in user_data:
        email = user_data["email"]
        if email_taken(email=email, exclude_user_id=client.user_id):
            raise DomainError("A user with this email already exists.", attr="user.email")
        if email.lower() != (client.user.email or "").lower():
            client.user.email = email
            EmailAddress.objects.filter(user=client.user).delete()
            EmailAddress.objects.create(user=client.user, email=email.lower(), primary=True, verified=False)
    if user_data:
        client.user.save(update_fields=["username", "email"])
    for name, value in fields.items():
        setattr(client, name, value)
    if fields:
        client.save(update_fields=[*fields, "updated_at"])
    return client


@transaction.atomic
def client_create_by_admin(*, user: dict, **fields: Any) -> SignedIn:
    """An operator creates an account for someone; it has no password until they reset it."""
    username, email = user["username"], user.get("email", "")
    if User.objects.filter(username__iexact=username).exists():
        raise DomainError("A user with this username already exists.", attr="user.username")
    if email and email_taken(email=email):
        raise DomainError("A user with this email already exists.", attr="user.email")
    new_user = User(username=username, email=email)
    new_user.set_unusable_password()
    new_user.save()
    if email:
        EmailAddress.objects.create(user=new_user, email=email.lower(), primary=True, verified=False)
    client = new_user.client
    client_update(client=client, **fields)
    _, raw = api_key_create(client=client, name="default")
    return SignedIn(client=client, raw_key=raw)


@transaction.atomic
def client_deactivate(*, client: Client) -> None:
    """Close an account: sign-in stops and keys die, but its records (and money) stay for the books."""
    User.objects.filter(pk=client.user_id).update(is_active=False)
    ApiKey.objects.filter(client=client, revoked_at__isnull=True).update(revoked_at=timezone.now())
    client_deactivated.send(sender=Client, client=client)


# --- Provider onboarding --------------------------------------------------------------------------


def client_apply_provider(*, client: Client) -> Client:
    """Ask to become a GPU provider; an admin must approve before any GPU or node can be registered."""
    if client.role == ClientRole.GPU_PROVIDER and client.is_gpu_provider_approved:
        return client
    if client.role == ClientRole.ADMIN:
        raise NotAnApplicant("Admins do not apply to be providers.")
    client.role = ClientRole.GPU_PROVIDER
    client.is_gpu_provider_approved = False
    client.provider_registration_date = timezone.now()
    client.save(update_fields=["role", "is_gpu_provider_approved", "provider_registration_date", "updated_at"])
    return client


def client_approve_provider(*, client: Client) -> Client:
    if client.role != ClientRole.GPU_PROVIDER:
        raise NotAnApplicant("This client has not applied to be a GPU provider.")
    client.is_gpu_provider_approved = True
    client.save(update_fields=["is_gpu_provider_approved", "updated_at"])
    return client


def client_revoke_provider(*, client: Client) -> Client:
    """Withdraw approval: the provider's nodes are skipped by routing from now on (selectors check approval)."""
    if client.role != ClientRole.GPU_PROVIDER:
        raise NotAnApplicant("This client is not a GPU provider.")
    with transaction.atomic():
        client.is_gpu_provider_approved = False
        client.save(update_fields=["is_gpu_provider_approved", "updated_at"])
        provider_revoked.send(sender=Client, client_id=client.pk)
    return client


# --- Password reset -------------------------------------------------------------------------------


def password_reset_request(*, email: str) -> None:
    """Email a reset link if an active user has this address. Says nothing either way to the caller."""
    for user in User.objects.filter(email__iexact=email, is_active=True):
        uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
        token = default_token_generator.make_token(user)
        link = settings.PASSWORD_RESET_URL.format(uidb64=uidb64, token=token)
        send_mail(
            subject="Reset your GPU Marketplace password",
            message=(
                f"Hello {user.username},\n\nSomeone asked to reset the password of your account. "
                f"To choose a new password, open:\n\n{link}\n\n"
                "If it was not you, ignore this email; your password stays as it is.\n"
            ),
            from_email=None,
            recipient_list=[user.email],
        )


def password_reset_confirm(*, uidb64: str, token: str, new_password: str) -> None:
    """Set a new password from an emailed link. A token works once: changing the password invalidates it."""
    try:
        user = User.objects.get(pk=int(force_str(urlsafe_base64_decode(uidb64))), is_active=True)
    except (ValueError, TypeError, OverflowError, User.DoesNotExist):
        user = None
    if user is None or not default_token_generator.check_token(user, token):
        raise InvalidResetToken("The reset link is invalid or has already been used.")
    _password_errors(new_password, user, attr="new_password")
    user.set_password(new_password)
    user.save(update_fields=["password"])


# --- Google sign-in -------------------------------------------------------------------------------


def _unique_username(base: str) -> str:
    base = re.sub(r"[^\w.+-]", "", base)[:120] or "user"
    candidate = base
    while User.objects.filter(username__iexact=candidate).exists():
        candidate = f"{base}{secrets.randbelow(10**6)}"
    return candidate


def google_sign_in(*, request: HttpRequest, id_token: str = "", access_token: str = "", ip: str | None) -> SignedIn:
    """Verify a Google token with allauth's Google provider; sign in, creating the account on first use."""
    adapter = get_social_adapter()
    try:
        provider = adapter.get_provider(request, "google")
    except Exception as exc:  # allauth raises SocialApp.DoesNotExist / ImproperlyConfigured
        raise GoogleNotConfigured("Google sign-in is not configured on this server.") from exc
    token = {"id_token": id_token} if id_token else {"access_token": access_token}
    try:
        if id_token:
            login = provider.verify_token(request, token)
        else:
            login = _google_login_from_access_token(request, provider, access_token)
    except Exception as exc:  # allauth raises ValidationError/OAuth2Error for every kind of bad token
        raise InvalidGoogleToken("The Google token could not be verified.") from exc
    with transaction.atomic():
        login.lookup()
        if login.is_existing:
            user = login.user
            if not user.is_active:
                raise InvalidCredentials("This account is disabled.")
        else:
            email = login.user.email or ""
            if email and email_taken(email=email):
                # Never attach a Google identity to an existing password account by email alone.
                raise DomainError(
                    "An account with this email already exists; log in with its password.", attr="id_token"
                )
            login.user.username = _unique_username(email.split("@")[0] if email else "google")
            login.user.set_unusable_password()
            login.save(request)
            user = login.user
            picture = login.account.extra_data.get("picture")
            if picture:
                Client.objects.filter(user=user).update(profile_image_url=picture[:500])
        user = User.objects.select_related("client").get(pk=user.pk)
        return _sign_in(user=user, ip=ip, key_name="google")


def _google_login_from_access_token(request: HttpRequest, provider: Any, access_token: str) -> Any:
    from allauth.socialaccount.models import SocialToken
    from allauth.socialaccount.providers.google.views import GoogleOAuth2Adapter

    app = provider.app
    oauth_adapter = GoogleOAuth2Adapter(request)
    social_token = SocialToken(app=app if app.pk else None, token=access_token)
    return oauth_adapter.complete_login(request, app, social_token, response={"access_token": access_token})
