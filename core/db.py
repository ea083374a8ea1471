"""Query expressions that work on both databases the service runs on: PostgreSQL (the production database) and
SQLite (`make run`'s default, docs/API.md §9 "The embedded default").

PostgreSQL has these built in; on SQLite the same SQL is given by a function this module registers on every new
SQLite connection (`sqlite_register_functions`, connected in core/apps.py).
"""

from typing import Any

from django.db.backends.signals import connection_created
from django.db.models import Aggregate, Field, FloatField, Func, QuerySet, Subquery


class Median(Aggregate):
    """The median, interpolated between the two middle values of an even count (nulls skipped).

    PostgreSQL: `percentile_cont(0.5) WITHIN GROUP (ORDER BY x)`; SQLite: the `median(x)` aggregate below."""

    function = "percentile_cont"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> tuple[str, tuple[str | int, ...]]:
        return super().as_sql(compiler, connection, function="median", template="%(function)s(%(expressions)s)")


class EpochSeconds(Func):
    """Seconds since the Unix epoch of a datetime (whole seconds on SQLite, which stores no zone: Django keeps UTC)."""

    template = "EXTRACT(EPOCH FROM %(expressions)s)"
    output_field = FloatField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> tuple[str, tuple[str | int, ...]]:
        # Doubled twice: once for this template, once for the SQLite backend's %s -> ? conversion.
        return super().as_sql(compiler, connection, template="CAST(strftime('%%%%s', %(expressions)s) AS REAL)")


class _MedianAggregate:
    """SQLite aggregate: the interpolated median of the non-null values (what percentile_cont(0.5) gives)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value: float | None) -> None:
        if value is not None:
            self.values.append(float(value))

    def finalize(self) -> float | None:
        if not self.values:
            return None
        ordered = sorted(self.values)
        middle = len(ordered) // 2
        if len(ordered) % 2:
            return ordered[middle]
        return (ordered[middle - 1] + ordered[middle]) / 2


def sqlite_register_functions(sender: Any, connection: Any, **kwargs: Any) -> None:
    """On each new SQLite connection: the functions the expressions above use there."""
    if connection.vendor == "sqlite":
        connection.connection.create_aggregate("median", 1, _MedianAggregate)


def connect_signals() -> None:
    connection_created.connect(sqlite_register_functions, dispatch_uid="core.db.sqlite_register_functions")


def scalar_subquery(qs: QuerySet, group: str, expression: object, output_field: Field) -> Subquery:
    """One aggregate of `qs` (already narrowed to the outer row) as a correlated scalar subquery."""
    return Subquery(qs.values(group).annotate(v=expression).values("v")[:1], output_field=output_field)
