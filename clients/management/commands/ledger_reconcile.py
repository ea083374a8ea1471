"""Compare every cached balance with the ledger; exit 1 if any disagrees (for cron, CI and operators)."""

from django.core.management.base import BaseCommand, CommandError

from clients import ledger


class Command(BaseCommand):
    help = "Check that each client's cached balance equals its ledger entries and escrow equals the open holds."

    def handle(self, *args: object, **options: object) -> None:
        mismatches = ledger.reconcile()
        for mismatch in mismatches:
            self.stderr.write(str(mismatch))
        if mismatches:
            raise CommandError(f"{len(mismatches)} balance(s) disagree with the ledger.", returncode=1)
        self.stdout.write("The ledger and the cached balances agree.")
