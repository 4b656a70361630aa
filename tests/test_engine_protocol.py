"""Every engine implements the protocol of engines/base.py with the protocol's signatures.

``isinstance(engine, Engine)`` only checks that the names exist (a runtime-checkable Protocol does
not look at parameters), so the signatures are compared here."""

from __future__ import annotations

import inspect

import pytest

from stoplib.engines.base import Engine
from stoplib.engines.hf import HFEngine
from stoplib.engines.vllm import VLLMEngine

PROTOCOL_METHODS = ("generate", "launch", "resume")
# Optional methods the pipeline uses when present, with the parameters it passes.
OPTIONAL = {"prune": ["launch", "keep"], "resume_many": ["launches", "keeps"],
            "advance_many": ["launches", "keeps", "prefix_len"]}


def shape(function) -> list[tuple[str, object, object]]:
    """(name, kind, default) of each parameter after ``self``."""
    params = list(inspect.signature(function).parameters.values())[1:]
    return [(p.name, p.kind, p.default) for p in params]


def mismatches(cls) -> list[str]:
    out = []
    for name in PROTOCOL_METHODS:
        method = getattr(cls, name, None)
        if method is None:
            out.append(f"{name}: missing")
        elif shape(method) != shape(getattr(Engine, name)):
            out.append(f"{name}: {inspect.signature(method)} != {inspect.signature(getattr(Engine, name))}")
    for name, params in OPTIONAL.items():
        method = getattr(cls, name, None)
        if method is not None and [p[0] for p in shape(method)] != params:
            out.append(f"{name}: {inspect.signature(method)}, the pipeline passes {params}")
    return out


@pytest.mark.parametrize("cls", [HFEngine, VLLMEngine], ids=lambda c: c.__name__)
def test_engines_have_the_protocols_signatures(cls):
    assert mismatches(cls) == []


def test_pooling_methods_come_together():
    """The pipeline pools resumes only when an engine has both prune and resume_many."""
    for cls in (HFEngine, VLLMEngine):
        assert hasattr(cls, "prune") == hasattr(cls, "resume_many"), cls.__name__
    assert all(hasattr(HFEngine, name) for name in OPTIONAL)  # progressive pruning needs the HF engine


def test_the_signature_check_catches_what_isinstance_does_not():
    class Positional:  # seeds positional, launch without prefix_len
        tokenizer = None

        def generate(self, prompts, n, params, seeds=None):
            return []

        def launch(self, prompts, n, params):
            return None

        def resume(self, launch, keep):
            return []

    assert isinstance(Positional(), Engine)
    assert [m.split(":")[0] for m in mismatches(Positional)] == ["generate", "launch"]
