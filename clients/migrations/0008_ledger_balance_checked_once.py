"""The ledger's balance trigger (0003) checks each ledger transaction once per firing, not once per line.

The check is a deferred row trigger: at commit it fires for the transaction's row and for each of its lines, and
each firing summed all of the transaction's lines, so a transaction of n lines cost n² row reads. The /v1 usage
drain posts one line per request, up to 500 to a transaction: its commit took 35 ms in the trigger. Now a firing
remembers the transaction it checked (a setting local to the database transaction) and the next firing for the
same transaction in the same statement (the COMMIT, or a SET CONSTRAINTS ... IMMEDIATE) skips the sum: the first
firing already saw every line. A firing in a later statement checks again, so lines added after a forced check
are still checked at commit.

PostgreSQL only, as 0003; tests/conftest.py applies FORWARD_SQL after 0003's (the test database is built without
migrations).
"""

import importlib

from django.db import migrations

_triggers = importlib.import_module("clients.migrations.0003_ledger_triggers")

FORWARD_SQL = """
CREATE OR REPLACE FUNCTION clients_ledger_check_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    txn_id bigint;
    n integer;
    total numeric;
    checked text;
BEGIN
    IF TG_TABLE_NAME = 'clients_ledgerentry' THEN
        txn_id := NEW.transaction_id;
    ELSE
        txn_id := NEW.id;
    END IF;
    -- The transaction's row and each of its lines fire this in a row at commit: the first sums every line.
    checked := txn_id::text || '@' || statement_timestamp()::text;
    IF current_setting('clients_ledger.checked', true) = checked THEN
        RETURN NULL;
    END IF;
    SELECT count(*), coalesce(sum(amount), 0) INTO n, total
      FROM clients_ledgerentry WHERE transaction_id = txn_id;
    IF n < 2 OR total <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % is unbalanced: % entries summing to %', txn_id, n, total
            USING ERRCODE = 'check_violation';
    END IF;
    PERFORM set_config('clients_ledger.checked', checked, true);
    RETURN NULL;
END;
$$;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("clients", "0007_api_key_limits"),
    ]

    operations = [
        # Backwards: 0003's SQL again (idempotent), which restores the check of every line.
        _triggers.PostgresRunSQL(FORWARD_SQL, _triggers.FORWARD_SQL),
    ]
