"""config/settings/production.py passes Django's deployment checks, each HTTPS knob settable from the environment
(docs/API.md §8)."""

import os
import subprocess
import sys

from tests.llm_models.conftest import REPO_ROOT

PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "SECRET_KEY": "a-test-secret-that-is-long-enough-for-the-deploy-check-0123456789",
    "ALLOWED_HOSTS": "api.example.com",
}


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "SILENCED_", "DJANGO_SETTINGS"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={**clean, **PRODUCTION, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy_at_warning_level():
    result = run("check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stderr


def test_turning_https_off_from_the_environment_is_flagged_unless_silenced():
    off = {"SECURE_SSL_REDIRECT": "false", "SECURE_HSTS_SECONDS": "0"}

    flagged = run("check", "--deploy", "--fail-level", "WARNING", **off)
    silenced = run(
        "check", "--deploy", "--fail-level", "WARNING", SILENCED_SYSTEM_CHECKS="security.W004,security.W008", **off
    )

    assert flagged.returncode != 0
    assert "security.W004" in flagged.stderr and "security.W008" in flagged.stderr
    assert silenced.returncode == 0, silenced.stderr


def test_the_proxy_header_and_https_knobs_come_from_the_environment():
    show = (
        "from django.conf import settings as s; "
        "print(s.SECURE_PROXY_SSL_HEADER, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_REDIRECT_EXEMPT)"
    )

    default = run("shell", "-v", "0", "-c", show)
    custom = run(
        "shell",
        "-v",
        "0",
        "-c",
        show,
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_SCHEME,https",
        SECURE_HSTS_SECONDS="600",
        SECURE_REDIRECT_EXEMPT=r"^healthz$",
    )
    no_proxy = run("shell", "-v", "0", "-c", show, SECURE_PROXY_SSL_HEADER="")

    assert default.stdout.split() == [
        "('HTTP_X_FORWARDED_PROTO',", "'https')", "True", "31536000", "['^healthz$',", "'^readyz$']"
    ]  # fmt: skip
    assert custom.stdout.split() == ["('HTTP_X_FORWARDED_SCHEME',", "'https')", "True", "600", "['^healthz$']"]
    assert no_proxy.stdout.split()[0] == "None"
