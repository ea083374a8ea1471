"""The inference fixtures that start the service over real HTTP (uvicorn) and real stub nodes, for core's tests of
what every path shares (request bodies, error shapes)."""

from tests.inference.conftest import live_service, node_on, usage_journal_clean  # noqa: F401  (fixtures)
