from pathlib import Path

import pytest

from gpuhive.serve.errors import CatalogError, ChecksumRequired
from gpuhive.serve.models.catalog import BUILTIN_CATALOG, load_catalog, resolve


def write(tmp_path: Path, text: str, name: str = "models.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_builtin_catalog_has_tiny_and_llama() -> None:
    cat = load_catalog()
    assert BUILTIN_CATALOG.exists()
    tiny, llama = cat.get("tiny-test"), cat.get("llama-7b")
    assert tiny.generate == "tiny-llama" and tiny.ctx == 512
    assert llama.url and llama.url.startswith("https://") and llama.url.endswith(".gguf")
    assert llama.require_sha256() == (
        "08a5566d61d7cb6b420c3e4387a39e0078e1f2fe5f055f3a03887385304d4bfa")
    assert llama.chat_format == "llama-2" and llama.chat_template
    assert "[INST]" in llama.chat_template


def test_user_file_merges_field_by_field_and_replaces_sources(tmp_path: Path) -> None:
    user = write(tmp_path, """
models:
  llama-7b:
    ctx: 8192
  tiny-test:
    path: my.gguf
  mine:
    url: https://example.com/m.gguf
  gone: null
""")
    cat = load_catalog(user=user)
    assert cat.get("llama-7b").ctx == 8192
    assert cat.get("llama-7b").sha256 is not None  # kept from the built-in entry
    tiny = cat.get("tiny-test")
    assert tiny.generate is None and tiny.path == tmp_path / "my.gguf"
    assert tiny.ctx == 512
    assert cat.get("mine").origin == str(user)


def test_a_user_file_that_is_missing_is_fine(tmp_path: Path) -> None:
    assert "tiny-test" in load_catalog(user=tmp_path / "nope.yaml").names()


def test_null_entry_removes_a_builtin(tmp_path: Path) -> None:
    cat = load_catalog(user=write(tmp_path, "models:\n  llama-7b: null\n"))
    assert "llama-7b" not in cat.names()


@pytest.mark.parametrize(("text", "key"), [
    ("models:\n  x:\n    url: https://a/b.gguf\n    sha256: abc\n", "models.x.sha256"),
    ("models:\n  x:\n    url: ftp://a/b.gguf\n", "models.x.url"),
    ("models:\n  x:\n    url: https://a/b.gguf\n    ctx: 0\n", "models.x.ctx"),
    ("models:\n  x:\n    url: https://a/b.gguf\n    ctx: true\n", "models.x.ctx"),
    ("models:\n  x:\n    url: https://a/b.gguf\n    colour: red\n", "models.x.colour"),
    ("models:\n  x:\n    generate: huge\n", "models.x.generate"),
    ("models:\n  x:\n    url: https://a/b.gguf\n    path: /a.gguf\n", "models.x"),
    ("models:\n  x: {}\n", "models.x"),
    ("models:\n  Bad Name:\n    path: a.gguf\n", "models.Bad Name"),
    ("models:\n  x:\n    path: a.gguf\n    size_bytes: -1\n", "models.x.size_bytes"),
    ("models: [1, 2]\n", "models"),
])
def test_invalid_entries_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(CatalogError) as info:
        load_catalog(user=write(tmp_path, text))
    assert info.value.data.get("key") == key
    assert key in str(info.value)


def test_broken_yaml_and_bad_top_level(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(user=write(tmp_path, "models: [\n"))
    with pytest.raises(CatalogError, match="top level"):
        load_catalog(user=write(tmp_path, "other: 1\n"))


def test_resolve_name_path_and_unknown(tmp_path: Path) -> None:
    cat = load_catalog()
    assert resolve(cat, "tiny-test").name == "tiny-test"
    f = tmp_path / "My Model.Q4.gguf"
    f.write_bytes(b"GGUF")
    ref = resolve(cat, str(f))
    assert ref.path == f.resolve() and ref.name == "my-model.q4" and ref.sha256 is None
    with pytest.raises(CatalogError) as info:
        resolve(cat, "nope")
    assert "tiny-test" in info.value.hint
    with pytest.raises(CatalogError, match="no such model file"):
        resolve(cat, str(tmp_path / "missing.gguf"))


def test_sha256_is_required_at_use(tmp_path: Path) -> None:
    cat = load_catalog(user=write(tmp_path, "models:\n  x:\n    url: https://a/b.gguf\n"))
    with pytest.raises(ChecksumRequired) as info:
        cat.get("x").require_sha256()
    assert "models.x" in info.value.hint
