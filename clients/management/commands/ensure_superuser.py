"""Create the operator account from DJANGO_SUPERUSER_USERNAME/_EMAIL/_PASSWORD, or keep it if it exists."""

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from clients.choices import ClientRole
from clients.models import Client


class Command(BaseCommand):
    help = "Create (or keep) the admin account named by the DJANGO_SUPERUSER_* environment variables."

    def handle(self, *args: object, **options: object) -> None:
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME")
        if not username:
            self.stdout.write("DJANGO_SUPERUSER_USERNAME is not set: no admin account created.")
            return
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
            if not password:
                self.stderr.write("DJANGO_SUPERUSER_PASSWORD is not set: cannot create the admin account.")
                return
            email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "")
            user = User.objects.create_superuser(username=username, email=email, password=password)
            self.stdout.write(f"Created admin account {username!r}.")
        else:
            self.stdout.write(f"Admin account {username!r} already exists; kept as it is.")
        Client.objects.update_or_create(user=user, defaults={"role": ClientRole.ADMIN})
