"""The console's tests use the inference tests' live nodes and clean usage journal."""

from tests.inference.conftest import node_on, start_worker, usage_journal_clean  # noqa: F401  (fixtures)
