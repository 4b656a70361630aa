"""The STOP module on a tiny Llama: two-stage forward, padding, cache safety, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from stoplib.engines.base import SamplingParams, keep_all
from stoplib.engines.hf import HFEngine, load_model_and_tokenizer
from stoplib.stop import StopConfig, StopScorer, left_pad

PREFIXES = [[1, 5, 6, 7, 8, 9, 10, 11], [1, 12, 13], [1, 20, 21, 22, 23, 24]]


@pytest.fixture()
def scorer(tiny_model_dir):
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    torch.manual_seed(0)
    return StopScorer(model, tok, StopConfig(num_tokens=3, lora_r=4, lora_alpha=8, base_model=str(tiny_model_dir))).eval()


def randomize_adapter(scorer: StopScorer) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in scorer._lora_params:
            p.normal_(0, 0.3)
        scorer.stop_embedding.normal_(0, 1)


def single_pass_logit(scorer: StopScorer, prefix: list[int]) -> torch.Tensor:
    """Reference: one forward over prefix + M [STOP] embeddings, no cache, adapter on everywhere."""
    body = scorer.base_model.get_decoder()
    embeds = scorer.base_model.get_input_embeddings()(torch.tensor([prefix]))
    stop = scorer.stop_embedding.expand(1, scorer.config.num_tokens, -1)
    with scorer.adapter_on():
        h = body(inputs_embeds=torch.cat([embeds, stop], 1)).last_hidden_state[:, -1]
    return scorer.head(h).squeeze(-1)


def test_two_stage_equals_single_forward_with_zero_adapter(scorer):
    # LoRA B starts at zero: the adapter is the identity, so stage 1 (adapter off) equals stage 1 with it on.
    with torch.no_grad():
        for prefix in PREFIXES:
            ids, mask = left_pad([prefix], scorer.pad_id)
            torch.testing.assert_close(scorer(ids, mask), single_pass_logit(scorer, prefix), atol=1e-5, rtol=1e-5)


def test_left_padding_gives_the_rows_alone_scores(scorer):
    randomize_adapter(scorer)
    with torch.no_grad():
        ids, mask = left_pad(PREFIXES, scorer.pad_id)
        together = scorer(ids, mask)
        alone = torch.cat([scorer(*left_pad([p], scorer.pad_id)) for p in PREFIXES])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_adapter_only_touches_stop_positions(scorer):
    randomize_adapter(scorer)
    with torch.no_grad():
        ids, mask = left_pad(PREFIXES[:1], scorer.pad_id)
        plain = scorer.base_model(input_ids=ids).logits
        cache = scorer.encode_prefix(ids, mask)
        plain_again = scorer.base_model(input_ids=ids).logits  # adapter rests disabled
        scorer.score_cache(cache, mask)
        after = scorer.base_model(input_ids=ids).logits
    assert torch.equal(plain, plain_again) and torch.equal(plain, after)
    with torch.no_grad(), scorer.adapter_on():
        adapted = scorer.base_model(input_ids=ids).logits
    assert not torch.allclose(adapted, plain)  # the adapter is real; it is only off outside Check


def test_check_leaves_cache_and_resume_untouched(tiny_model_dir):
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    engine = HFEngine(model, tok, batch_size=8)
    scorer = StopScorer(model, tok, StopConfig(num_tokens=4, lora_r=4))
    randomize_adapter(scorer)
    prompts = [tok("12+3")["input_ids"], tok("ab")["input_ids"]]
    params = SamplingParams(temperature=1.0, max_new_tokens=30, seed=5, logprobs=0)
    reference = engine.resume(engine.launch(prompts, 3, 8, params), [[0, 1, 2], [0, 1, 2]])
    launch = engine.launch(prompts, 3, 8, params)
    for paths, cache, mask in engine.prefix_states(launch):
        before = [(k.clone(), v.clone()) for k, v in ((layer.keys, layer.values) for layer in cache.layers)]
        with torch.no_grad():
            logits = scorer.score_cache(cache, mask)
        assert logits.shape == (len(paths),)
        for (k0, v0), layer in zip(before, cache.layers):
            assert torch.equal(k0, layer.keys) and torch.equal(v0, layer.values)
    resumed = engine.resume(launch, keep_all(launch))
    assert [[p.token_ids for p in g] for g in resumed] == [[p.token_ids for p in g] for g in reference]


def test_cache_scores_match_reencoded_scores(tiny_model_dir):
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    engine = HFEngine(model, tok, batch_size=8)
    scorer = StopScorer(model, tok, StopConfig(num_tokens=2, lora_r=4))
    randomize_adapter(scorer)
    prompts = [tok("12+3")["input_ids"], tok("abcdef")["input_ids"]]
    launch = engine.launch(prompts, 2, 6, SamplingParams(temperature=1.0, max_new_tokens=30, seed=2))
    for paths, cache, mask in engine.prefix_states(launch):
        with torch.no_grad():
            from_cache = torch.sigmoid(scorer.score_cache(cache, mask))
        open_rows = [i for i, p in enumerate(paths) if not p.finished]
        reencoded = scorer.score([paths[i].prompt_ids + paths[i].token_ids for i in open_rows])
        torch.testing.assert_close(from_cache[open_rows], reencoded, atol=1e-5, rtol=1e-5)


def test_save_load_round_trip(scorer, tmp_path):
    randomize_adapter(scorer)
    expected = scorer.score(PREFIXES)
    scorer.save_pretrained(tmp_path / "ckpt")
    loaded = StopScorer.from_pretrained(tmp_path / "ckpt")  # base model from the recorded path
    torch.testing.assert_close(loaded.score(PREFIXES), expected)
    assert loaded.config == scorer.config
    # the adapter is plain peft: PeftModel.from_pretrained loads it
    from peft import PeftModel

    base, _ = load_model_and_tokenizer(scorer.config.base_model)
    peft_model = PeftModel.from_pretrained(base, str(tmp_path / "ckpt" / "adapter"))
    assert any("lora_A" in n for n, _ in peft_model.named_parameters())


def test_authors_layout_loads(scorer, tmp_path):
    """Write a checkpoint in the authors' layout (2-way head, .pth files) and load it."""
    randomize_adapter(scorer)
    d = tmp_path / "authors"
    scorer.model.save_pretrained(str(d / "adapter" / "tmp"), save_embedding_layers=False)
    (d / "adapter" / "tmp").rename(d / "adapter" / "classifier")
    hidden = scorer.head.in_features
    torch.manual_seed(3)
    two_way = torch.nn.Linear(hidden, 2)
    torch.save(two_way.state_dict(), d / "classifier_head.pth")
    torch.save({"input_embedding": scorer.stop_embedding.detach().clone(), "output_embedding": torch.zeros(hidden)},
               d / "assess_token_embedding.pth")
    (d / "assess_token_config.json").write_text(json.dumps(
        {"assess_token": "[ASSESS]", "special_token_id": 999, "num_assess_tokens": 3,
         "tokenizer_dir": "tokenizer", "embedding_path": "assess_token_embedding.pth"}))
    loaded = StopScorer.from_pretrained(d)
    assert loaded.config.token == "[ASSESS]" and loaded.config.num_tokens == 3
    # reference: the authors' 2-way head on the hidden state of the last [ASSESS] position
    hidden = []
    handle = scorer.head.register_forward_hook(lambda mod, inp, out: hidden.append(inp[0]))
    scorer.score(PREFIXES)
    handle.remove()
    with torch.no_grad():
        expected = torch.softmax(two_way(hidden[0]), -1)[:, 1]
    torch.testing.assert_close(loaded.score(PREFIXES), expected, atol=1e-5, rtol=1e-5)


def test_stop_probe_variant_trains_only_the_head(tiny_model_dir):
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    probe = StopScorer(model, tok, StopConfig(use_adapter=False))
    assert {id(p) for p in probe.trainable_parameters()} == {id(p) for p in probe.head.parameters()}
    with pytest.raises(ValueError, match="target modules"):
        StopScorer(load_model_and_tokenizer(tiny_model_dir)[0], tok, StopConfig(target_modules=("nope",)))



def test_a_variant_run_is_keyed_by_its_configs_and_loads_whatever_its_summary_names(tmp_path, monkeypatch):
    """The store entry of a STOP variant is a function of its STOP and training configs (not of
    the variant's name), and a finished run loads as written, whatever its summary's "variant"."""
    from dataclasses import replace

    from stoplib import stage_training, stages
    from stoplib.config import resolve
    from stoplib.store import Store, atomic_write_json

    config = resolve("tiny", results_root=str(tmp_path / "results"))
    for variant in stages.VARIANTS:
        stop, train = stages.variant_configs(config, variant)
        key = {"labels": stages.labels_key(config), "stop": replace(stop, base_model=""), "train": train}
        assert stages._trained_dir(config, variant) == Store(config.results_root).run_dir("stop", key)
    assert not stages.variant_configs(config, "stop_probe")[0].use_adapter
    assert stages.variant_configs(config, "stop_hard")[1].hard_labels
    monkeypatch.setattr(stage_training, "labels_stage", lambda config, progress=True: (tmp_path / "labels", {}))
    for variant, recorded in (("stop_probe", "probe"), ("stop_hard", "hard")):
        summary = {"variant": recorded, "best_epoch": 1, "history": [{"epoch": 1, "val_mse": 0.1}],
                   "n_train": 4, "n_val": 2}
        directory = stages._trained_dir(config, variant)
        atomic_write_json(directory / "summary.json", summary)
        assert stages.is_trained(config, variant)
        assert stages.stop_stage(config, variant, progress=False) == (directory / "best", summary)


def test_scoring_encodes_a_shared_beginning_once_with_the_same_result(tiny_model_dir):
    """Prefixes of one problem share the prompt: ``score`` encodes it once and extends the cache."""
    from stoplib.stop import MIN_SHARED_TOKENS, left_pad

    model, tok = load_model_and_tokenizer(tiny_model_dir)
    torch.manual_seed(0)
    scorer = StopScorer(model, tok, StopConfig(num_tokens=3, lora_r=4, lora_alpha=8))
    with torch.no_grad():  # a non-trivial adapter and head
        for p in scorer.trainable_parameters():
            p.add_(0.05 * torch.randn_like(p))
    prompt = [1] + list(range(10, 10 + MIN_SHARED_TOKENS + 4))
    seqs = [prompt + [20 + i] * (1 + i % 4) for i in range(6)]
    shared = scorer.score(seqs)
    ids, mask = left_pad(seqs, scorer.pad_id)
    with torch.no_grad():
        whole = torch.sigmoid(scorer(ids, mask))
    assert torch.allclose(shared, whole, atol=1e-5)


def test_stop_modules_share_one_base_model(tiny_model_dir, tmp_path):
    """Several STOP checkpoints (variants, seeds) load as named adapters on one copy of the model."""
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    seqs = [[1, 5, 6, 7, 8], [1, 9, 9, 9, 9, 9]]
    plain = model(input_ids=torch.tensor([seqs[0]])).logits
    dirs = []
    for seed in (0, 1):
        own_model, own_tok = load_model_and_tokenizer(tiny_model_dir)
        torch.manual_seed(seed)
        scorer = StopScorer(own_model, own_tok, StopConfig(num_tokens=2, lora_r=4, lora_alpha=8,
                                                          base_model=str(tiny_model_dir)))
        with torch.no_grad():
            for p in scorer.trainable_parameters():
                p.add_(0.1 * torch.randn_like(p))
        dirs.append((scorer.save_pretrained(tmp_path / f"s{seed}"), scorer.score(seqs)))
    shared = [StopScorer.from_pretrained(d, model, tok) for d, _ in dirs]
    assert shared[0].model is shared[1].model  # one model, two adapters
    for scorer, (_, expected) in zip(shared, dirs):
        assert torch.allclose(scorer.score(seqs), expected, atol=1e-6)
    assert torch.allclose(model(input_ids=torch.tensor([seqs[0]])).logits, plain)  # adapters rest disabled
    again = shared[1].save_pretrained(tmp_path / "again")  # a named adapter saves in the usual layout
    assert (again / "adapter" / "adapter_config.json").exists()
    assert torch.allclose(StopScorer.from_pretrained(again).score(seqs), dirs[1][1], atol=1e-6)


def test_the_stop_embedding_starts_where_embedding_init_says(tiny_model_dir):
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    table = model.get_input_embeddings().weight.detach()
    starts = {}
    for init in ("vocab", "mean", "random"):
        torch.manual_seed(0)
        starts[init] = StopScorer(model, tok, StopConfig(num_tokens=1, lora_r=2, embedding_init=init)).stop_embedding.detach()
    token_id = tok.convert_tokens_to_ids("[STOP]")
    expected_vocab = table[token_id] if token_id < table.shape[0] else table.mean(0)
    assert torch.equal(starts["vocab"], expected_vocab) and torch.allclose(starts["mean"], table.mean(0))
    assert starts["random"].std() == pytest.approx(float(table.std()), rel=0.5)
    assert not torch.allclose(starts["random"], starts["mean"])
    torch.manual_seed(1)
    again = StopScorer(model, tok, StopConfig(num_tokens=1, lora_r=2, embedding_init="random")).stop_embedding.detach()
    assert not torch.equal(again, starts["random"])  # drawn from the training seed
    with pytest.raises(ValueError, match="embedding_init"):
        StopConfig(embedding_init="zeros")
