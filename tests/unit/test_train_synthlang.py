"""The example's synthetic language: deterministic for a seed, with the agreement it promises."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("torch")

LLM = Path(__file__).resolve().parents[2] / "examples" / "llm.py"


def _llm() -> ModuleType:
    if "gpuhive_example_llm" in sys.modules:
        return sys.modules["gpuhive_example_llm"]
    spec = importlib.util.spec_from_file_location("gpuhive_example_llm", LLM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_same_seed_same_language_and_text() -> None:
    llm = _llm()
    a, b = llm.SyntheticLanguage(7), llm.SyntheticLanguage(7)
    assert a.nouns == b.nouns and a.transitive == b.transitive
    assert a.text(5000, seed=3) == b.text(5000, seed=3)
    assert len(a.text(5000, seed=3)) == 5000


def test_other_seeds_give_other_words_and_text() -> None:
    llm = _llm()
    a, b = llm.SyntheticLanguage(7), llm.SyntheticLanguage(8)
    assert a.nouns != b.nouns
    assert a.text(2000, seed=3) != a.text(2000, seed=4)


def test_text_uses_only_the_alphabet() -> None:
    llm = _llm()
    text = llm.SyntheticLanguage(1).text(20000, seed=1)
    assert set(text) <= set(llm.ALPHABET)
    assert llm.encode(text).max().item() < len(llm.ALPHABET)


def test_verbs_agree_with_their_subject_across_a_relative_clause() -> None:
    llm = _llm()
    lang = llm.SyntheticLanguage(1)
    rng = random.Random(5)
    checked = 0
    for _ in range(300):
        subject, number = lang.noun_phrase(rng, 0)
        verbs = lang.verb_phrase(rng, number, 0)
        if lang.RELATIVE not in subject:
            continue
        head = subject[subject.index(lang.RELATIVE) - 1]
        plural = any(head.endswith(e) and head[:-len(e)] in dict(lang.nouns)
                     for e in lang.NOUN_PL.values())
        assert number == ("pl" if plural else "sg")
        assert verbs[0].endswith(lang.VERB_END[number])
        checked += 1
    assert checked > 20


def test_determiner_and_adjectives_agree_with_the_noun() -> None:
    llm = _llm()
    lang = llm.SyntheticLanguage(2)
    rng = random.Random(1)
    genders = dict(lang.nouns)
    for _ in range(200):
        words, number = lang.noun_phrase(rng, 1)  # depth 1: no relative clause
        det, *adjectives, noun = words
        if number == "sg":
            gender = genders[noun]
        else:
            (gender,) = {g for g, end in lang.NOUN_PL.items()
                         if noun.endswith(end) and genders.get(noun[:-len(end)]) == g}
        assert det == lang.DET[gender, number]
        assert all(a.endswith(lang.ADJ_END[gender, number]) for a in adjectives)


def test_model_size_the_integration_byte_checks_rely_on() -> None:
    llm = _llm()
    assert sum(p.numel() for p in llm.GPT(llm.GPTConfig()).parameters()) == 347_424
