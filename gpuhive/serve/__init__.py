"""Serving models: model files, replicas on nodes, and the OpenAI gateway.

Three sub-packages, by who uses them, around three shared modules:

    models/     model files on the controller: catalog, fetch, GGUF fit, hashing, the tiny
                test model, profiles, the push to a node
    node/       what runs on a node for a replica: the worker, its engine supervisor, the
                engine's argv (and local engines for a one-machine hive)
    gateway/    the OpenAI gateway: app, relay, routing, failover, SSE, limits, API keys

    api.py      Replica, ModelProfile, ReplicaSource: all the gateway sees of the hive
    placement.py how many replicas go where when scaling (pure; the controller decides)
    errors.py   ServeError tree (ApiError subclasses are the gateway's error answers)
"""
