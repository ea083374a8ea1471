"""Inference and the /v1 paths (docs/API.md §4, §8, §9, §10)."""

from decimal import Decimal

from config.settings.celery import CELERY_BROKER_URL
from config.settings.environment import env

# Nodes tried per request before giving up (failover happens only before anything was relayed).
INFERENCE_MAX_ATTEMPTS = env.int("INFERENCE_MAX_ATTEMPTS", default=3)
INFERENCE_CONNECT_TIMEOUT_S = env.float("INFERENCE_CONNECT_TIMEOUT_S", default=5.0)
# A hung node is dropped fast (docs/API.md §10): a node that has sent no first token (its first streamed event;
# non-stream requests are streamed from the node too) this long after the call began is given up, cooled down and
# the request failed over. Once tokens flow, a stream is cut only after a gap between two reads of this long.
INFERENCE_FIRST_TOKEN_TIMEOUT_S = env.float("INFERENCE_FIRST_TOKEN_TIMEOUT_S", default=15.0)
INFERENCE_STREAM_IDLE_TIMEOUT_S = env.float("INFERENCE_STREAM_IDLE_TIMEOUT_S", default=60.0)
# A /v1 stream sends the SSE comment `: keep-alive` this often before its first token (API.md §11: at most 10 s;
# inference/v1/protocol.KEEP_ALIVE_INTERVAL_S). Its first one commits the response to 200.
INFERENCE_KEEPALIVE_S = env.float("INFERENCE_KEEPALIVE_S", default=10.0)
# Longest a single answer may take, and most bytes a node may send for it.
INFERENCE_MAX_DURATION_S = env.float("INFERENCE_MAX_DURATION_S", default=300.0)
INFERENCE_MAX_RESPONSE_BYTES = env.int("INFERENCE_MAX_RESPONSE_BYTES", default=4 * 1024 * 1024)
# How long POST /api/v1/inference/ waits for the worker before answering 202.
INFERENCE_SYNC_WAIT_S = env.float("INFERENCE_SYNC_WAIT_S", default=30.0)
# A request not finished this long after it was queued or claimed is re-queued (worker path) or failed.
INFERENCE_DEADLINE_S = env.float("INFERENCE_DEADLINE_S", default=INFERENCE_MAX_DURATION_S + 60)
# Dispatches (claims) per request before the sweeper fails it for good and releases its hold.
INFERENCE_MAX_DISPATCHES = env.int("INFERENCE_MAX_DISPATCHES", default=3)
INFERENCE_SWEEP_INTERVAL_S = env.int("INFERENCE_SWEEP_INTERVAL_S", default=30)
INFERENCE_DEFAULT_MAX_TOKENS = env.int("INFERENCE_DEFAULT_MAX_TOKENS", default=512)
INFERENCE_MAX_TOKENS_LIMIT = env.int("INFERENCE_MAX_TOKENS_LIMIT", default=32768)
# Price (USD per 1M tokens, input and output) used for a hold when no routable node names one.
INFERENCE_DEFAULT_PRICE_PER_MILLION = Decimal(env("INFERENCE_DEFAULT_PRICE_PER_MILLION", default="10.00"))
# Routing: a node's latency estimate before it has answered, smoothing of measured latency, score weights.
INFERENCE_LATENCY_PRIOR_MS = env.float("INFERENCE_LATENCY_PRIOR_MS", default=1000.0)
INFERENCE_LATENCY_EWMA_ALPHA = env.float("INFERENCE_LATENCY_EWMA_ALPHA", default=0.3)
INFERENCE_WEIGHT_LATENCY = env.float("INFERENCE_WEIGHT_LATENCY", default=1.0)
INFERENCE_WEIGHT_LOAD = env.float("INFERENCE_WEIGHT_LOAD", default=1.0)
INFERENCE_WEIGHT_PRICE = env.float("INFERENCE_WEIGHT_PRICE", default=1.0)
# A failing node sits out base * 2^(failures-1) seconds, at most max.
INFERENCE_COOLDOWN_BASE_S = env.float("INFERENCE_COOLDOWN_BASE_S", default=5.0)
INFERENCE_COOLDOWN_MAX_S = env.float("INFERENCE_COOLDOWN_MAX_S", default=300.0)
# /v1/ remembers a verified API key this long per process (a revoked key works at most this much longer there).
INFERENCE_KEY_CACHE_S = env.float("INFERENCE_KEY_CACHE_S", default=5.0)
# Retry-After of a 503 no_capacity when no cooling-down node says better.
INFERENCE_RETRY_AFTER_S = env.int("INFERENCE_RETRY_AFTER_S", default=10)

# --- The lean /v1/chat/completions path (inference/v1/asgi.py; docs/API.md §8) ---------------------------
# On PostgreSQL with a usage journal, POST /v1/chat/completions is served beside Django without a database round
# trip per request. The journal is a Redis stream: by default the Celery broker's Redis, if that is Redis.
INFERENCE_LEAN_PATH = env.bool("INFERENCE_LEAN_PATH", default=True)
USAGE_JOURNAL_URL = env(
    "USAGE_JOURNAL_URL", default=CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
)
# Journal entries are applied to PostgreSQL this often; entries a dead drainer left are taken over after this long.
USAGE_DRAIN_INTERVAL_S = env.float("USAGE_DRAIN_INTERVAL_S", default=1.0)
USAGE_DRAIN_CLAIM_IDLE_S = env.float("USAGE_DRAIN_CLAIM_IDLE_S", default=30.0)
# A web process holds a client's money in leases of this much (or this many requests' most possible cost, if more,
# or all the client has, if less), taking new requests on one lease for INFERENCE_LEASE_TTL_S.
INFERENCE_LEASE_AMOUNT = Decimal(env("INFERENCE_LEASE_AMOUNT", default="2.00"))
INFERENCE_LEASE_REQUESTS = env.int("INFERENCE_LEASE_REQUESTS", default=20)
INFERENCE_LEASE_TTL_S = env.float("INFERENCE_LEASE_TTL_S", default=30.0)
# --- Ledger readability: a lease no request has used for this long gives its money back (API.md §10) ---------
INFERENCE_LEASE_IDLE_S = env.float("INFERENCE_LEASE_IDLE_S", default=0.5)
# A model's route (live nodes, ranked) is reused this long per process.
INFERENCE_ROUTE_CACHE_S = env.float("INFERENCE_ROUTE_CACHE_S", default=1.0)
