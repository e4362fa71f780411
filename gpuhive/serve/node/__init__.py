"""The node side of serving: what runs on a friend's box for one replica.

    worker.py          ``python -m gpuhive.serve.node.worker``: the controller starts it over
                       the node's session and reads its JSON status lines
    supervisor.py      WorkerSupervisor: one engine, health checks, restarts, clean stop
    engine.py          the engine's argv (llama-server or llama-cpp-python), pure
    llama_cpp_main.py  ``python -m gpuhive.serve.node.llama_cpp_main``: llama-cpp-python's
                       server with weight repacking off
    local.py           replicas as local engine processes (one-machine hive, tests, benches)
"""
