"""WireGuard overlay: one private network across friends behind NAT (docs/networking.md).

Pure (no I/O, no clock): ``keys`` (X25519, WireGuard base64), ``addressing`` (allocation),
``config`` (records, wg-quick text, argv), ``parse`` (``wg show dump``), ``sync`` (live diffs),
``direct`` (which pairs may go direct), ``paths`` (keep / fall back / retry), ``check``
(reachability matrix). I/O: ``driver`` (ip / wg / wireguard-go, optionally in a netns),
``spoke`` (the direct-path loop), ``check_io`` (ping + TCP bulk per pair, through a runner:
the controller's node sessions or lab namespaces), ``bulk`` and ``gloo_probe`` (run on nodes).
Commands run through ``gpuhive.sysrun``; nothing here imports the lab (``gpuhive.lab.labnet``
builds the overlay on it, ``gpuhive.lab.netcheck`` checks it there).
"""
