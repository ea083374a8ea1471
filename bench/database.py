"""The bench's own PostgreSQL database: dropped, recreated and migrated on every run."""

import os

import psycopg
from psycopg import sql

BENCH_SETTINGS = "config.settings.production"
BENCH_SECRET_KEY = "bench-only-secret-key-not-for-any-deployment-0123456789abcdef"
BENCH_ALLOWED_HOSTS = "127.0.0.1,localhost"


def database_url(*, host: str, port: int, user: str, name: str) -> str:
    return f"postgres://{user}@{host}:{port}/{name}"


def recreate_database(*, host: str, port: int, user: str, name: str) -> None:
    """DROP ... WITH (FORCE) then CREATE, through the server's maintenance database."""
    with psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def server_environment(url: str, settings_module: str = BENCH_SETTINGS) -> dict[str, str]:
    """What a production process gets from its environment (API.md §8), pointed at the bench database."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DATABASE_URL": url,
            "SECRET_KEY": BENCH_SECRET_KEY,
            "ALLOWED_HOSTS": BENCH_ALLOWED_HOSTS,
            "DEBUG": "false",
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


def setup_django(url: str) -> None:
    """Configure this process like the server (production settings) and migrate the bench database."""
    os.environ.update(server_environment(url))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)


def postgres_settings() -> dict[str, str]:
    """The server settings that shape write throughput, for the record."""
    from django.db import connection

    names = [
        "server_version",
        "max_connections",
        "shared_buffers",
        "synchronous_commit",
        "fsync",
        "wal_level",
        "work_mem",
        "jit",
    ]
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)", [names])
        return dict(cursor.fetchall())
