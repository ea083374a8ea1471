"""docs/API.md §8 lists every setting the service reads from the environment: each name read in
config/settings/ (django-environ's `env(...)`, `env.int(...)`, ...) or by a migration (`os.environ.get`) is named in
the first column of a row of §8's table."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READ = re.compile(r"""(?:\benv(?:\.\w+)?|os\.environ\.get|os\.getenv)\(\s*["']([A-Z][A-Z0-9_]*)["']""")


def names_read() -> set[str]:
    sources = [*(ROOT / "config" / "settings").glob("*.py"), *ROOT.glob("*/migrations/*.py")]
    return {name for path in sources for name in READ.findall(path.read_text())}


def names_in_section_8() -> set[str]:
    api = (ROOT / "docs" / "API.md").read_text()
    section = api[api.index("## 8. ") : api.index("## 9. ")]
    first_columns = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for cell in first_columns for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", cell)}


def test_every_setting_read_from_the_environment_has_a_row_in_section_8():
    read = names_read()
    assert {"NODE_METRICS_SAMPLE_EVERY_S", "SITE_DOMAIN", "DATABASE_URL"} <= read  # the scan finds them

    missing = sorted(read - names_in_section_8())

    assert missing == [], f"settings read but not in docs/API.md §8: {missing}"
