"""Model files, on the controller: which file a name means, getting it, fitting it, pushing it.

    catalog.py      models.yaml (+ the user's) → ModelRef; names or a direct .gguf path
    fetch.py        a ModelRef's file in the controller's cache (generate / download, hashed)
    tinymodel.py    the tiny LLaMA GGUF behind the `tiny-test` entry
    gguf_fit.py     GGUF header → memory estimate (weights + KV cache + overhead), fits()
    hashing.py      sha256 of a file, checked
    profiles.py     a model's gateway profile (chat template, BOS/EOS) from catalog + GGUF
    transfer.py     push a model file to a node (``transport.api.RemoteFiles``): resumable,
                    hash-checked, atomic
"""
