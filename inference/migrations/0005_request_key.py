"""`hold_key` becomes `request_key`: the row's unique key, which /v1 rows of the lean path had too without holding
anything. Existing keys lose their prefix (`inference:` of a per-request hold, `v1:` of a lean-path row), so that
`ledger_hold_key` (`inference:<request_key>`) still names each per-request hold."""

from django.db import migrations, models
from django.db.models import Value
from django.db.models.functions import Concat, Substr


def strip_prefixes(apps, schema_editor):  # type: ignore[no-untyped-def]
    InferenceRequest = apps.get_model("inference", "InferenceRequest")
    for prefix in ("inference:", "v1:"):
        rows = InferenceRequest.objects.filter(request_key__startswith=prefix)
        rows.update(request_key=Substr("request_key", len(prefix) + 1))


def add_prefixes(apps, schema_editor):  # type: ignore[no-untyped-def]
    InferenceRequest = apps.get_model("inference", "InferenceRequest")
    InferenceRequest.objects.update(request_key=Concat(Value("inference:"), "request_key"))


class Migration(migrations.Migration):
    dependencies = [("inference", "0004_request_api_key_and_plan")]

    operations = [
        migrations.RenameField("inferencerequest", "hold_key", "request_key"),
        migrations.AlterField(
            model_name="inferencerequest",
            name="request_key",
            field=models.CharField(
                help_text="The request's unique key: its /v1 id is `chatcmpl-<key>`; a retry with the same "
                "Idempotency-Key derives the same one. A per-request hold is the ledger hold `inference:<key>`.",
                max_length=64,
                unique=True,
            ),
        ),
        migrations.RunPython(strip_prefixes, add_prefixes),
    ]
