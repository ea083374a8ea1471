"""Production: every secret from the environment, DEBUG off, secure cookies, HTTPS enforced.

`manage.py check --deploy --fail-level WARNING --settings=config.settings.production` passes with these defaults
(`make check` runs it). Each knob below is an environment variable (docs/API.md §8).
"""

from config.settings.base import *  # noqa: F403
from config.settings.base import env

DEBUG = False
SECRET_KEY = env("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)

# --- HTTPS (check --deploy: security.W004, W005, W008, W021) --------------------------------------------------
# TLS is terminated at a proxy in front of uvicorn (the Procfile binds 127.0.0.1): the proxy says the client's
# scheme in this header, which it must set itself (never pass a client's own). "HEADER,value"; empty: no proxy,
# Django sees the scheme the server saw.
_proxy_header = env.list("SECURE_PROXY_SSL_HEADER", default=["HTTP_X_FORWARDED_PROTO", "https"])
SECURE_PROXY_SSL_HEADER = (_proxy_header[0], _proxy_header[1]) if len(_proxy_header) == 2 else None
# Plain-HTTP requests are redirected to HTTPS, except the probes, which a load balancer sends over HTTP.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = env.list("SECURE_REDIRECT_EXEMPT", default=[r"^healthz$", r"^readyz$"])
# HSTS: browsers keep to HTTPS for this long (a year). Lower it (or 0: off) before the site is sure to stay on
# HTTPS: a browser that saw the header refuses plain HTTP until it expires.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
# A deployment that chooses otherwise (HTTP behind a private network, no HSTS) names the checks it accepts,
# e.g. "security.W004,security.W008", so `check --deploy --fail-level WARNING` still guards the rest.
SILENCED_SYSTEM_CHECKS = env.list("SILENCED_SYSTEM_CHECKS", default=[])
