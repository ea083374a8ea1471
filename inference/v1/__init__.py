"""The OpenAI-compatible `/v1` API: one pipeline (`pipeline.py`: route → reserve → relay → record → teach routing)
run by two doors, the lean ASGI door (`asgi.py`) and the Django view (`views.py`, `urls.py`, `web.py`); the steps'
strategies in `routes.py`, `reserve.py` (+ `leases.py`) and `record.py`; the OpenAI protocol in `protocol.py`."""
