"""/v1 as OpenAI and OpenRouter users expect it: sticky sessions and the forwarded `user` (docs/API.md §11, §8)."""

from config.settings.environment import env
from config.settings.plans import KEY_LIMITS_REDIS_URL

# Sticky sessions (`session_id` / `prompt_cache_key`): a session keeps its node while used within this many seconds.
INFERENCE_SESSION_TTL_S = env.int("INFERENCE_SESSION_TTL_S", default=600)
# Where sessions are remembered: this Redis (by default the key limits'); empty: Django's cache (one process's).
INFERENCE_SESSION_REDIS_URL = env("INFERENCE_SESSION_REDIS_URL", default=KEY_LIMITS_REDIS_URL)
# The salt of the hash a request's `user` reaches the node as; empty: derived from SECRET_KEY.
INFERENCE_USER_HASH_SALT = env("INFERENCE_USER_HASH_SALT", default="")
