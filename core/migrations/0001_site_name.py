"""Name the default Site: allauth's emails show it ("[example.com] ..." otherwise)."""

import os

from django.db import migrations


def name_site(apps, schema_editor):
    Site = apps.get_model("sites", "Site")
    Site.objects.update_or_create(
        pk=1,
        defaults={"domain": os.environ.get("SITE_DOMAIN", "127.0.0.1:8000"), "name": "GPU Marketplace"},
    )


class Migration(migrations.Migration):
    dependencies = [("sites", "0002_alter_domain_unique")]

    operations = [migrations.RunPython(name_site, migrations.RunPython.noop)]
