"""Serving models: catalog, placement fit, replicas on nodes, and the OpenAI gateway.

    catalog.py      models.yaml (+ the user's) → ModelRef; names or a direct .gguf path
    fetch.py        a ModelRef's file in the controller's cache (generate / download, hashed)
    tinymodel.py    the tiny LLaMA GGUF behind the `tiny-test` entry
    gguf_fit.py     GGUF header → memory estimate (weights + KV cache + overhead), fits()
    transfer.py     push a model file to a node over SFTP: resumable, hash-checked, atomic
    engine.py       the engine's argv (llama-server or llama-cpp-python), pure
    worker.py       WorkerSupervisor: one engine on a node, health, restarts, clean stop
    local.py        replicas as local engine processes (one-machine hive, tests, benches)

    api.py          Replica, ModelProfile, ReplicaSource: all the gateway sees of the hive
    gateway.py      FastAPI app + Gateway (keys, limits, routing, relay) + GatewayServer
    relay.py        one request to replicas and back: failover, streaming continuation
    routing.py      replica ranking and passive health (pure)
    failover.py     what to do after a replica fails (pure)
    ratelimit.py    per-key token buckets (pure)
    continuation.py the request that continues a broken stream elsewhere (pure)
    chunks.py, sse.py, schemas.py, upstream_errors.py   OpenAI wire formats (pure)
    upstream.py, http1.py   HTTP to replicas (own HTTP/1.1 keep-alive client)
    apikeys.py      API keys in SQLite, hashed
    metrics.py      the gateway's counters
    errors.py       ServeError tree (ApiError subclasses are the gateway's error answers)
"""
