"""Nodes and the market: heartbeats, metrics, endpoints, default prices, the market read API (docs/API.md §7, §9)."""

from decimal import Decimal

from config.settings.environment import env

NODE_HEARTBEAT_INTERVAL_S = env.int("NODE_HEARTBEAT_INTERVAL_S", default=30)
NODE_HEARTBEAT_TIMEOUT_S = env.int("NODE_HEARTBEAT_TIMEOUT_S", default=3 * NODE_HEARTBEAT_INTERVAL_S)
NODE_SWEEP_INTERVAL_S = env.int("NODE_SWEEP_INTERVAL_S", default=15)
# One metrics sample per node is kept per this many seconds, for this long.
NODE_METRICS_SAMPLE_EVERY_S = env.int("NODE_METRICS_SAMPLE_EVERY_S", default=60)
NODE_METRICS_RETENTION_S = env.int("NODE_METRICS_RETENTION_S", default=24 * 3600)
ALLOW_PRIVATE_NODE_ENDPOINTS = env.bool("ALLOW_PRIVATE_NODE_ENDPOINTS", default=False)
# all-models is served from the cache for this long (0: computed on every request).
ALL_MODELS_CACHE_S = env.int("ALL_MODELS_CACHE_S", default=2)
# The heartbeat's common case is answered beside Django in one statement (llm_models/heartbeat_fastpath.py),
# on PostgreSQL, over its own pool of this many connections per web process.
HEARTBEAT_FAST_PATH = env.bool("HEARTBEAT_FAST_PATH", default=True)
HEARTBEAT_FAST_PATH_POOL_SIZE = env.int("HEARTBEAT_FAST_PATH_POOL_SIZE", default=4)
# Prices a node's model gets when its registration names none (US dollars per million tokens).
DEFAULT_INPUT_PRICE_PER_MILLION = Decimal(env("DEFAULT_INPUT_PRICE_PER_MILLION", default="0.50"))
DEFAULT_OUTPUT_PRICE_PER_MILLION = Decimal(env("DEFAULT_OUTPUT_PRICE_PER_MILLION", default="1.50"))

# --- Market read API (docs/API.md §7, §9) -------------------------------------------------------------
# Measured latency and throughput are taken over completed requests that finished within this window.
MARKET_TRAFFIC_WINDOW_S = env.int("MARKET_TRAFFIC_WINDOW_S", default=24 * 3600)
# The public market endpoints, for anonymous callers, per address (DRF rate: "<n>/<second|minute|hour|day>").
MARKET_ANON_THROTTLE_RATE = env("MARKET_ANON_THROTTLE_RATE", default="120/min")
# stats/ (all-time totals over every request and ledger line) is served from the cache for this long (0: computed on
# every request).
MARKET_STATS_CACHE_S = env.int("MARKET_STATS_CACHE_S", default=10)
