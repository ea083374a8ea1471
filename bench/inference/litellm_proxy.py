"""LiteLLM proxy, the comparison: its own virtualenv (built on first use), a config naming the stub as its backend."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "bench" / "requirements-litellm.txt"
VENV = REPO / "bench" / ".litellm-venv"
STAMP = VENV / ".installed"  # holds the sha256 of REQUIREMENTS it was built from
MASTER_KEY = "sk-bench-litellm-master-key"


def _requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def ensure_venv() -> None:
    """Create or update bench/.litellm-venv when REQUIREMENTS changed since it was built (or it is missing)."""
    if STAMP.exists() and STAMP.read_text().strip() == _requirements_digest():
        return
    print(f"bench: installing LiteLLM into {VENV.relative_to(REPO)} ({REQUIREMENTS.name}) ...", flush=True)
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    STAMP.write_text(_requirements_digest() + "\n")


def version() -> str:
    result = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "?"


def write_config(path: Path, *, stub_url: str, models: list[str]) -> None:
    """Each model served by the stub as an `openai/<model>` backend; quiet logging; no database; a master key."""
    lines = ["model_list:"]
    for model in models:
        lines += [
            f"  - model_name: {model}",
            "    litellm_params:",
            f"      model: openai/{model}",
            f"      api_base: {stub_url}/v1",
            "      api_key: dummy",
        ]
    lines += [
        "litellm_settings:",
        "  set_verbose: false",
        "  json_logs: false",
        "  drop_params: true",
        "general_settings:",
        f"  master_key: {MASTER_KEY}",
        "  disable_spend_logs: true",
    ]
    path.write_text("\n".join(lines) + "\n")


def command(config: Path, port: int, workers: int) -> list[str]:
    return [
        str(VENV / "bin" / "litellm"),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        str(workers),
    ]


def environment() -> dict[str, str]:
    """The bench's environment without anything LiteLLM would take for its own (a database above all)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "CELERY_"))}
    env.update(
        {
            "LITELLM_LOG": "ERROR",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list at start-up
            "LITELLM_MODE": "PRODUCTION",
            "DISABLE_ADMIN_UI": "True",
        }
    )
    return env
