"""The model catalog: ``inference/models.yaml`` plus the user's file merged over it.

``load_catalog`` validates every entry (errors name the file and the key, e.g.
``models.llama-7b.sha256``); ``resolve`` turns what the user typed (a catalog name or a direct
path to a ``.gguf`` file) into a ``ModelRef``. Nothing here downloads or generates a file:
``gpuhive.serve.models.fetch.materialize`` does that.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from gpuhive.serve.errors import CatalogError, ChecksumRequired

BUILTIN_CATALOG = Path(__file__).resolve().parents[3] / "inference" / "models.yaml"
DEFAULT_CTX = 2048
GENERATORS = ("tiny-llama",)
SOURCE_KEYS = ("url", "path", "generate")
_KEYS = {*SOURCE_KEYS, "sha256", "size_bytes", "ctx", "chat_format", "chat_template",
         "description"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ModelRef:
    """One servable model: where its GGUF comes from and how to run it."""

    name: str
    url: str | None = None
    path: Path | None = None
    generate: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    ctx: int = DEFAULT_CTX
    chat_format: str | None = None
    chat_template: str | None = None
    description: str = ""
    origin: str = field(default="", compare=False)  # the catalog file it came from

    def require_sha256(self) -> str:
        """The expected hash, or ``ChecksumRequired`` naming the entry to fix."""
        if self.sha256 is None:
            raise ChecksumRequired(
                f"model {self.name!r} has no sha256, and a file is only loaded or pushed "
                "when its hash is known",
                hint=f"add `sha256: <64 hex digits>` to models.{self.name} in your "
                "$GPUHIVE_HOME/models.yaml (run `sha256sum FILE` on a copy you trust)",
                model=self.name, origin=self.origin)
        return self.sha256


@dataclass(frozen=True)
class Catalog:
    models: Mapping[str, ModelRef]

    def names(self) -> list[str]:
        return sorted(self.models)

    def get(self, name: str) -> ModelRef:
        try:
            return self.models[name]
        except KeyError:
            raise CatalogError(f"no model named {name!r} in the catalog",
                               hint="known: " + ", ".join(self.names())
                               + "; or give a path to a .gguf file", model=name) from None


def load_catalog(builtin: Path = BUILTIN_CATALOG, user: Path | None = None) -> Catalog:
    """The built-in catalog with ``user`` (when it exists) merged over it, validated."""
    raw: dict[str, tuple[dict[str, Any], str]] = {}
    for path in (builtin, user):
        if path is None or (path is user and not path.exists()):
            continue
        for name, entry in _read_models(path).items():
            if entry is None:
                raw.pop(name, None)
                continue
            base = raw.get(name, ({}, ""))[0]
            if any(k in entry for k in SOURCE_KEYS):
                base = {k: v for k, v in base.items() if k not in SOURCE_KEYS}
            raw[name] = ({**base, **entry}, str(path))
    return Catalog({name: _validate(name, entry, origin) for name, (entry, origin) in raw.items()})


def resolve(catalog: Catalog, what: str) -> ModelRef:
    """A catalog name, or a direct path to a ``.gguf`` file (named after its stem)."""
    if what.endswith(".gguf") or "/" in what:
        path = Path(what).expanduser()
        if not path.is_file():
            raise CatalogError(f"no such model file: {path}", hint="check the path",
                               path=str(path))
        name = re.sub(r"[^a-z0-9._-]", "-", path.stem.lower()).strip("-._") or "model"
        return ModelRef(name=name, path=path.resolve(), origin=str(path))
    return catalog.get(what)


def with_sha256(ref: ModelRef, sha256: str) -> ModelRef:
    return replace(ref, sha256=sha256)


def _read_models(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CatalogError(f"cannot read the model catalog {path}: {exc}",
                           hint="check the file and its permissions", file=str(path)) from exc
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path} is not valid YAML: {exc}",
                           hint="fix the syntax at the line shown", file=str(path)) from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict) or set(doc) - {"models"}:
        raise CatalogError(f"{path}: the top level must be a single `models:` mapping",
                           hint="see inference/models.yaml for the format", file=str(path))
    models = doc.get("models") or {}
    if not isinstance(models, dict):
        raise CatalogError(f"{path}: `models` must map names to entries",
                           hint="see inference/models.yaml for the format", key="models",
                           file=str(path))
    for name, entry in models.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise CatalogError(f"{path}: invalid model name models.{name}",
                               hint="names are lowercase letters, digits, '.', '_' and '-'",
                               key=f"models.{name}", file=str(path))
        if entry is not None and not isinstance(entry, dict):
            raise CatalogError(f"{path}: models.{name} must be a mapping (or null to remove it)",
                               hint="see inference/models.yaml for the format",
                               key=f"models.{name}", file=str(path))
    return models


def _validate(name: str, e: dict[str, Any], origin: str) -> ModelRef:
    def bad(key: str, expected: str) -> CatalogError:
        return CatalogError(f"{origin}: models.{name}.{key}={e.get(key)!r} is invalid",
                            hint=f"expected {expected}", key=f"models.{name}.{key}",
                            file=origin)

    unknown = sorted(set(e) - _KEYS)
    if unknown:
        raise CatalogError(f"{origin}: unknown key models.{name}.{unknown[0]}",
                           hint="valid keys: " + ", ".join(sorted(_KEYS)),
                           key=f"models.{name}.{unknown[0]}", file=origin)
    sources = [k for k in SOURCE_KEYS if e.get(k) is not None]
    if len(sources) != 1:
        raise CatalogError(f"{origin}: models.{name} needs exactly one of url, path, generate "
                           f"(has {', '.join(sources) or 'none'})",
                           hint="say where the GGUF file comes from", key=f"models.{name}",
                           file=origin)
    url = e.get("url")
    if url is not None and not (isinstance(url, str) and url.startswith(("https://", "http://"))):
        raise bad("url", "an http(s) URL")
    path = e.get("path")
    if path is not None and not isinstance(path, str):
        raise bad("path", "a file path")
    gen = e.get("generate")
    if gen is not None and gen not in GENERATORS:
        raise bad("generate", "one of " + ", ".join(GENERATORS))
    sha = e.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha.lower())):
        raise bad("sha256", "64 hexadecimal digits")
    size = e.get("size_bytes")
    if size is not None and not (isinstance(size, int) and not isinstance(size, bool)
                                 and size > 0):
        raise bad("size_bytes", "a positive integer")
    ctx = e.get("ctx", DEFAULT_CTX)
    if not (isinstance(ctx, int) and not isinstance(ctx, bool) and 16 <= ctx <= 1 << 20):
        raise bad("ctx", "an integer from 16 to 1048576")
    for key in ("chat_format", "chat_template", "description"):
        if e.get(key) is not None and not isinstance(e[key], str):
            raise bad(key, "a string")
    resolved = None
    if path is not None:
        p = Path(path).expanduser()
        resolved = p if p.is_absolute() else (Path(origin).parent / p)
    return ModelRef(name=name, url=url, path=resolved, generate=gen,
                    sha256=sha.lower() if sha else None, size_bytes=size, ctx=ctx,
                    chat_format=e.get("chat_format"), chat_template=e.get("chat_template"),
                    description=(e.get("description") or "").strip(), origin=origin)
