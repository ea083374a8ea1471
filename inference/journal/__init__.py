"""The billing journal of the lean /v1 door: usage entries in a Redis stream (`stream.py`), applied to PostgreSQL
exactly once by the drain task (`entries.py`: the rows and the charges)."""
