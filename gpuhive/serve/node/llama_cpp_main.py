"""``python -m llama_cpp.server`` with weight repacking off (``use_extra_bufts = False``).

llama-cpp-python's server has no flag for it, so this sets the default model parameters
before the server builds its model, then runs the server's own ``__main__`` unchanged
(all its flags work). See ``gpuhive.serve.node.engine`` for why.
"""

from __future__ import annotations

import runpy
from typing import Any


def _patch() -> None:
    import llama_cpp.llama_cpp as lib

    default = lib.llama_model_default_params

    def no_repack() -> Any:
        params = default()
        params.use_extra_bufts = False
        return params

    lib.llama_model_default_params = no_repack


if __name__ == "__main__":
    _patch()
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
