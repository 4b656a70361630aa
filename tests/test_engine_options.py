"""Engine parallelism options carried by the run config (vLLM's own tensor / pipeline parallelism)."""

from __future__ import annotations

import pytest

from stoplib import stage_engine, stages
from stoplib.config import resolve


def test_parallel_sizes_default_to_one_and_need_vllm():
    assert (resolve("tiny").tensor_parallel_size, resolve("tiny").pipeline_parallel_size) == (1, 1)
    config = resolve("tiny", engine="vllm", tensor_parallel_size=2, pipeline_parallel_size=2)
    assert (config.tensor_parallel_size, config.pipeline_parallel_size) == (2, 2)
    with pytest.raises(ValueError, match="tensor_parallel_size=2 needs engine='vllm'"):
        resolve("tiny", tensor_parallel_size=2)
    with pytest.raises(ValueError, match="pipeline_parallel_size"):
        resolve("tiny", engine="vllm", pipeline_parallel_size=0)


def test_engine_for_passes_the_sizes_to_vllm_only(monkeypatch):
    seen = []
    monkeypatch.setattr(stage_engine, "make_engine", lambda name, path, **kwargs: seen.append((name, kwargs)))
    stages.engine_for(resolve("tiny", engine="vllm", tensor_parallel_size=4))
    stages.engine_for(resolve("tiny"))
    assert seen[0][0] == "vllm" and (seen[0][1]["tensor_parallel_size"], seen[0][1]["pipeline_parallel_size"]) == (4, 1)
    assert seen[1][0] == "hf" and "tensor_parallel_size" not in seen[1][1]


def test_store_keys_of_unsharded_runs_do_not_depend_on_the_parallel_sizes():
    one, four = resolve("tiny", engine="vllm"), resolve("tiny", engine="vllm", tensor_parallel_size=4)
    assert stages.labels_key(one) == stages.labels_key(four) and stages.bank_key(one) == stages.bank_key(four)
