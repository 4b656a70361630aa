"""STOP training on a tiny Llama with a learnable synthetic labelling."""

from __future__ import annotations

import json
import random

import pytest
import torch

from stoplib.engines.hf import load_model_and_tokenizer
from stoplib.stop import StopConfig, StopScorer
from stoplib.train import LabelRecord, TrainConfig, evaluate, load_label_records, train_stop

MARK = 7  # label: does the prefix contain token 7?


def synthetic(n: int, seed: int) -> list[LabelRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ids = [1] + [rng.randrange(8, 40) for _ in range(rng.randrange(4, 12))]
        good = rng.random() < 0.5
        if good:
            ids[rng.randrange(1, len(ids))] = MARK
        soft = 0.9 if good else 0.1
        out.append(LabelRecord(tuple(ids), soft, int(good), problem_id=str(i % 10)))
    return out


def make_scorer(model_dir, **kw):
    model, tok = load_model_and_tokenizer(model_dir)
    torch.manual_seed(0)
    return StopScorer(model, tok, StopConfig(num_tokens=2, lora_r=4, lora_alpha=8, base_model=str(model_dir), **kw))


CONFIG = TrainConfig(lr=2e-2, epochs=4, batch_size=32, warmup_steps=2, seed=0)


def test_training_learns_a_learnable_labelling(tiny_model_dir, tmp_path):
    train, val = synthetic(256, 0), synthetic(64, 1)
    scorer = make_scorer(tiny_model_dir)
    before = evaluate(scorer, val)
    result = train_stop(scorer, train, val, CONFIG, tmp_path / "run", progress=False)
    best = min(h["val_mse"] for h in result.history)
    assert best < 0.6 * before["mse"], (before, result.history)
    assert result.history[-1]["val_auroc"] > 0.8
    assert {"val_mse", "val_brier", "val_auroc", "val_within_auroc", "train_loss"} <= set(result.history[0])
    # the best checkpoint reloads to the recorded validation MSE
    reloaded = StopScorer.from_pretrained(result.best_dir)
    assert evaluate(reloaded, val)["mse"] == pytest.approx(best, abs=1e-6)


def test_resume_at_epoch_boundary_gives_the_same_model(tiny_model_dir, tmp_path):
    train, val = synthetic(96, 2), synthetic(32, 3)
    config = TrainConfig(lr=1e-2, epochs=2, batch_size=32, warmup_steps=1, seed=1)
    full = make_scorer(tiny_model_dir)
    train_stop(full, train, val, config, tmp_path / "a", progress=False)
    split = make_scorer(tiny_model_dir)
    first = train_stop(split, train, val, config, tmp_path / "b", progress=False, stop_after_epochs=1)
    assert len(first.history) == 1
    split2 = make_scorer(tiny_model_dir)
    second = train_stop(split2, train, val, config, tmp_path / "b", progress=False)
    assert len(second.history) == 2
    probe = [list(r.prefix_token_ids) for r in val]
    torch.testing.assert_close(split2.score(probe), full.score(probe), atol=1e-5, rtol=1e-4)


def test_label_files_accept_the_authors_schema_and_reject_bad_rows(tmp_path):
    path = tmp_path / "labels.jsonl"
    rows = [{"prefix_token_ids": [1, 2, 3], "Soft_label": 0.25, "Hard_label": 1},
            {"prefix_token_ids": [1, 4], "good_probability": 1.0},
            {"prefix_token_ids": [1, 5], "score": 0, "label": 0, "problem_id": 7}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    recs = load_label_records(path)
    assert [r.soft_label for r in recs] == [0.25, 1.0, 0.0]
    assert [r.hard_label for r in recs] == [1, None, 0] and recs[2].problem_id == "7"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"prefix_token_ids": [1], "soft_label": 1.5}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl line 2: field 'soft_label'"):
        load_label_records(bad)
    bad.write_text(json.dumps({"prefix_token_ids": [1, 2]}) + "\n")
    with pytest.raises(ValueError, match="line 1: no soft label"):
        load_label_records(bad)


def test_over_long_prefix_is_an_error_unless_truncation_is_asked(tiny_model_dir, tmp_path):
    train = synthetic(8, 4)
    long = LabelRecord(tuple(range(1, 30)), 0.5, 1, "x")
    scorer = make_scorer(tiny_model_dir)
    with pytest.raises(ValueError, match="record 8 .* > max_length 16"):
        train_stop(scorer, train + [long], train, TrainConfig(max_length=16, epochs=1), tmp_path / "r", progress=False)
    result = train_stop(scorer, train + [long], train, TrainConfig(max_length=16, epochs=1, truncate="left"),
                        tmp_path / "t", progress=False)
    assert len(result.history) == 1


def test_stop_hard_and_stop_probe_variants_train(tiny_model_dir, tmp_path):
    train, val = synthetic(64, 5), synthetic(16, 6)
    probe = make_scorer(tiny_model_dir, use_adapter=False)
    head_before = probe.head.weight.detach().clone()
    emb_before = probe.stop_embedding.detach().clone()
    train_stop(probe, train, val, TrainConfig(epochs=1, batch_size=16, hard_labels=True), tmp_path / "p", progress=False)
    assert not torch.equal(head_before, probe.head.weight) and torch.equal(emb_before, probe.stop_embedding)


def test_training_on_cached_prefix_states_equals_reencoding(tiny_model_dir, tmp_path):
    """The stage-1 caches are computed once (PrefixStates) instead of every step: same run."""
    shared = [1, 30, 31, 32, 33, 34, 35, 36, 37, 38]  # a common beginning (the prompt's shared part)
    train = [LabelRecord(tuple(shared + list(r.prefix_token_ids[1:])), r.soft_label, r.hard_label, r.problem_id)
             for r in synthetic(64, 4)]
    val = [LabelRecord(tuple(shared + list(r.prefix_token_ids[1:])), r.soft_label, r.hard_label, r.problem_id)
           for r in synthetic(24, 5)]
    config = TrainConfig(lr=1e-2, epochs=2, batch_size=16, warmup_steps=1, seed=0)
    cached = train_stop(make_scorer(tiny_model_dir), train, val, config, tmp_path / "cached", progress=False)
    plain = train_stop(make_scorer(tiny_model_dir), train, val, config, tmp_path / "plain", progress=False,
                       cache_bytes=0)
    for a, b in zip(cached.history, plain.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["val_mse"] == pytest.approx(b["val_mse"], abs=1e-5)
    one, two = StopScorer.from_pretrained(cached.best_dir), StopScorer.from_pretrained(plain.best_dir)
    seqs = [list(r.prefix_token_ids) for r in val]
    assert torch.allclose(one.score(seqs), two.score(seqs), atol=1e-5)


def test_trainings_on_the_same_records_build_the_prefix_states_once(tiny_model_dir, tmp_path, monkeypatch):
    """Seeds, variants and ablations trained one after another in a process share the stage-1
    states; a run on shared states is the run on fresh ones, bit for bit."""
    from stoplib import train as train_module

    built = []

    class Counting(train_module.PrefixStates):
        def __init__(self, scorer, records, batch_size=32):
            built.append(len(records))
            super().__init__(scorer, records, batch_size)

    monkeypatch.setattr(train_module, "PrefixStates", Counting)
    monkeypatch.setattr(train_module, "_LAST_STATES", {})
    records, val = synthetic(48, 6), synthetic(16, 7)
    config = TrainConfig(lr=1e-2, epochs=2, batch_size=16, warmup_steps=1, seed=0)
    first = train_stop(make_scorer(tiny_model_dir), records, val, config, tmp_path / "first", progress=False)
    seed1 = TrainConfig(**{**config.__dict__, "seed": 1})
    shared = train_stop(make_scorer(tiny_model_dir, lora_dropout=0.2), records, val, seed1, tmp_path / "shared",
                        progress=False)
    assert built == [48, 16]  # the second training reused the first one's states
    train_module._LAST_STATES.clear()
    fresh = train_stop(make_scorer(tiny_model_dir, lora_dropout=0.2), records, val, seed1, tmp_path / "fresh",
                       progress=False)
    assert built == [48, 16, 48, 16]
    assert [h["train_loss"] for h in shared.history] == [h["train_loss"] for h in fresh.history]
    assert [h["val_mse"] for h in shared.history] == [h["val_mse"] for h in fresh.history]
    train_stop(make_scorer(tiny_model_dir), synthetic(48, 8), val, config, tmp_path / "other", progress=False)
    assert built[-2:] == [48, 16]  # other records: built anew
    assert first.history and len(train_module._LAST_STATES) == 1  # one set kept, the last


def test_prefix_states_rebuild_the_stage_one_cache(tiny_model_dir):
    from stoplib.prefix_scorer import left_pad
    from stoplib.prefix_states import PrefixStates

    scorer = make_scorer(tiny_model_dir)
    records = [LabelRecord(tuple([1, 9, 9, 9] + [10 + i] * (i % 5 + 1)), 0.5) for i in range(7)]
    states = PrefixStates(scorer, records, batch_size=3)
    assert states.shared == 4
    cache, mask = states.batch([6, 0, 3])
    ids, full_mask = left_pad([list(records[i].prefix_token_ids) for i in (6, 0, 3)], scorer.pad_id)
    reference = scorer.encode_prefix(ids, full_mask)
    # same logits from the assembled cache as from encoding the three prefixes whole
    with torch.no_grad():
        got = scorer.score_cache(cache, mask)
        want = scorer.score_cache(reference, full_mask)
    assert torch.allclose(got, want, atol=1e-5)


class Killed(Exception):
    """Stands for kill -9 at one step of an epoch's commit."""


def _weights(directory):
    from safetensors.torch import load_file

    out = {}
    for path in sorted(directory.rglob("*.safetensors")):
        out.update({f"{path.relative_to(directory)}:{k}": v for k, v in load_file(str(path)).items()})
    return out


def _outcome(run_dir):
    epoch = json.loads((run_dir / "progress.json").read_text())["epoch"]
    history = json.loads((run_dir / "epochs" / f"{epoch:04d}" / "history.json").read_text())
    return _weights(run_dir / "last"), _weights(run_dir / "best"), [
        {k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.mark.slow
def test_a_run_killed_at_any_step_of_any_epoch_resumes_to_the_same_checkpoint(tiny_model_dir, tmp_path, monkeypatch):
    import stoplib.epoch_commits as commits

    train, val = synthetic(48, 7), synthetic(16, 8)
    config = TrainConfig(lr=1e-2, epochs=2, batch_size=16, warmup_steps=1, seed=3)
    train_stop(make_scorer(tiny_model_dir), train, val, config, tmp_path / "reference", progress=False)
    reference = _outcome(tmp_path / "reference")
    steps = ["checkpoint", "train_state", "written", "renamed", "committed", "linked"]
    for epoch in (1, 2):
        for step in steps:
            run = tmp_path / f"killed-{epoch}-{step}"
            seen = []

            def hook(name, epoch=epoch, step=step):
                seen.append(name)
                if name == step and seen.count(step) == epoch:
                    raise Killed(f"epoch {epoch} at {step}")

            monkeypatch.setattr(commits, "_COMMIT_HOOK", hook)
            with pytest.raises(Killed):
                train_stop(make_scorer(tiny_model_dir), train, val, config, run, progress=False)
            monkeypatch.setattr(commits, "_COMMIT_HOOK", None)
            result = train_stop(make_scorer(tiny_model_dir), train, val, config, run, progress=False)
            assert len(result.history) == 2
            last, best, history = _outcome(run)
            assert history == reference[2], (epoch, step)
            for got, want in ((last, reference[0]), (best, reference[1])):
                assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), (epoch, step)
            assert {p.name for p in (run / "epochs").iterdir()} <= {"0001", "0002"}  # nothing unfinished left


def test_a_full_disk_is_a_clear_error(tiny_model_dir, tmp_path, monkeypatch):
    import errno

    import stoplib.epoch_commits as commits

    def full(name):
        if name == "train_state":
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(commits, "_COMMIT_HOOK", full)
    with pytest.raises(OSError, match=r"no space left on the device of .*run.*resumes from the last complete epoch"):
        train_stop(make_scorer(tiny_model_dir), synthetic(16, 9), synthetic(8, 10),
                   TrainConfig(epochs=1, batch_size=8), tmp_path / "run", progress=False)


def test_bad_files_and_foreign_token_ids_are_named(tiny_model_dir, tmp_path):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes('{"prefix_token_ids": [1], "soft_label": 0.5, "note": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"label file .*latin1.jsonl is not UTF-8"):
        load_label_records(bad)
    with pytest.raises(FileNotFoundError, match=r"label file .*missing.jsonl does not exist"):
        load_label_records(tmp_path / "missing.jsonl")
    train = synthetic(8, 11) + [LabelRecord((1, 2, 100_000), 0.5, 1, "foreign")]
    with pytest.raises(ValueError, match=r"training record 8 \(problem 'foreign'\) has token id 100000, outside"):
        train_stop(make_scorer(tiny_model_dir), train, synthetic(4, 12), TrainConfig(epochs=1), tmp_path / "r",
                   progress=False)


def test_a_directory_of_the_older_layout_is_replaced(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    (run / "best" / "stale.txt").write_text("from an older layout")
    result = train_stop(make_scorer(tiny_model_dir), synthetic(16, 13), synthetic(8, 14), TrainConfig(epochs=1, batch_size=8),
                        run, progress=False)
    assert (run / "best").is_symlink() and not (result.best_dir / "stale.txt").exists()
    StopScorer.from_pretrained(result.best_dir)


def test_label_fraction_trains_on_a_nested_share_of_the_problems(tiny_model_dir, tmp_path):
    from dataclasses import replace

    from stoplib.label_records import label_subset

    train, val = synthetic(96, 4), synthetic(32, 5)
    quarter, half = label_subset(train, 0.25), label_subset(train, 0.5)
    assert set(map(id, quarter)) <= set(map(id, half)) and 0 < len(quarter) < len(half) < len(train)
    assert {r.problem_id for r in half} < {r.problem_id for r in train}  # whole problems go or stay
    assert label_subset(train, 1.0) == train
    config = replace(CONFIG, epochs=1)
    on_half = train_stop(make_scorer(tiny_model_dir), train, val, replace(config, label_fraction=0.5),
                         tmp_path / "half", progress=False)
    subset = train_stop(make_scorer(tiny_model_dir), half, val, config, tmp_path / "subset", progress=False)
    assert on_half.history[0]["train_loss"] == subset.history[0]["train_loss"]
    assert on_half.history[0]["val_mse"] == subset.history[0]["val_mse"]
    with pytest.raises(ValueError, match="no problem id"):
        label_subset([replace(r, problem_id=None) for r in train], 0.5)
    with pytest.raises(ValueError, match="keeps none"):
        label_subset(train[:1], 1e-9)
    with pytest.raises(ValueError, match="label_fraction"):
        TrainConfig(label_fraction=0)
