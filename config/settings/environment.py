"""The environment every settings module reads (API.md §8), and where the project and `make run`'s files are."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

# Where `make run`'s defaults keep their files: the SQLite database, the filesystem broker, beat's schedule.
DATA_DIR = Path(env("DATA_DIR", default=str(BASE_DIR / ".data")))
