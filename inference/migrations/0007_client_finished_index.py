"""Usage roll-ups read a client's requests finished in a span: an index on (client, finished_at). The client's own
index goes: both composite indexes lead with it. Only the index is dropped (Django's AlterField would drop and
re-add the foreign key, validating every row under a lock)."""

import django.db.models.deletion
from django.db import migrations, models

CLIENT_INDEX = "inference_inferencerequest_client_id_7a415af7"


class Migration(migrations.Migration):
    dependencies = [
        ("clients", "0008_ledger_balance_checked_once"),
        ("inference", "0006_request_endpoint"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="inferencerequest",
                    name="client",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="inference_requests",
                        to="clients.client",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{CLIENT_INDEX}"',
                    reverse_sql=f'CREATE INDEX "{CLIENT_INDEX}" ON "inference_inferencerequest" ("client_id")',
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="inferencerequest",
            index=models.Index(fields=["client", "finished_at"], name="inference_client_finished_idx"),
        ),
    ]
