"""The OpenAI-compatible gateway, in the controller process.

    app.py          FastAPI app + Gateway (keys, limits, requests) + GatewayServer
    relay.py        one request to replicas and back: failover, streaming continuation
    routing.py      replica ranking and passive health (pure)
    failover.py     what to do after a replica fails (pure)
    continuation.py the request that continues a broken stream elsewhere (pure)
    chunks.py, sse.py, schemas.py, upstream_errors.py   OpenAI wire formats (pure)
    upstream.py, http1.py, aio.py   HTTP to replicas (own HTTP/1.1 keep-alive client)
    ratelimit.py    per-key token buckets (pure)
    apikeys.py      API keys in SQLite, hashed
    metrics.py      the gateway's counters
"""
