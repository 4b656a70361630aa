"""The built-in organism: task, tokenizer, build determinism, shipped weights, AUROC metrics."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import dataclasses
import math

import numpy as np
import pytest
import torch

from stoplib.metrics import auroc, within_problem_auroc, within_problem_auroc_detail
from stoplib.problems import Problem
from stoplib.toy import task
from stoplib.toy.organism import ORGANISM_PRESETS, build_organism, organism_path
from stoplib.toy.properties import lowest_group_confidence, measure_properties
from stoplib.toy.tokenizer import build_tokenizer, save_tokenizer


# ---------------------------------------------------------------------------------------------
# task


def test_problems_deterministic_by_seed():
    a = task.make_problems(20, seed=3, split="eval")
    b = task.make_problems(20, seed=3, split="eval")
    c = task.make_problems(20, seed=4, split="eval")
    assert a == b
    assert [p.id for p in a] != [p.id for p in c]
    assert len({p.id for p in a}) == 20
    assert all(isinstance(p, Problem) and p.kind == "toy" for p in a)


def test_train_eval_disjoint():
    train = {q.text for q in task.question_pool("train")}
    evals = {q.text for q in task.question_pool("eval")}
    assert train and evals and not train & evals
    assert len(evals) / (len(train) + len(evals)) == pytest.approx(0.2, abs=0.03)
    for p in task.make_problems(50, seed=0, split="train"):
        assert p.prompt in train and task.question_split(p.prompt) == "train"


def test_slip_free_solution_checks_correct():
    for p in task.make_problems(30, seed=1, split="eval"):
        text = task.solution_text(p)
        check = task.check_path(p, text)
        assert check.final_correct and not check.has_wrong_step
        assert check.n_steps == task.DEFAULT_SPEC.n_steps
        assert task.final_answer(text) == p.answer
        assert text.endswith(f"\\boxed{{{p.answer}}}")


def test_demonstration_slips_are_detected_and_never_cancel():
    rng = np.random.default_rng(0)
    spec = task.D3_SPEC  # hard-step slips only (D4 adds the late slip: see the D4 test)
    problems = task.make_problems(200, seed=2, split="train", spec=spec)
    n_slipped = 0
    for p in problems:
        text = task.solution_text(p, rng, spec, slip_prob=0.5)
        check = task.check_path(p, text, spec)
        if check.has_wrong_step:
            n_slipped += 1
            assert check.first_wrong_step < spec.n_hard
            assert check.first_error_kind == "value" and check.taught_slips >= 1
            assert not check.final_correct  # slips carry forward and never cancel (design D3)
        else:
            assert check.final_correct
    assert 100 < n_slipped < 200
    assert task.cancelling_slip_sets() == [] and task.cancelling_slip_sets(spec) == []
    assert len(task.cancelling_slip_sets(task.D2_SPEC)) > 0  # the probe's D2 had cancelling pairs


def test_corrupted_step_detected_at_right_step():
    p = task.make_problems(1, seed=5, split="eval")[0]
    lines = task.solution_text(p).split("\n")
    k = 6  # an easy step: replace its result digit, carry the wrong value forward
    letter_op, value = lines[k].rsplit("=", 1)
    wrong = (int(value) + 3) % 10
    lines[k] = f"{letter_op}={wrong}"
    q = task.parse_question(p.prompt)
    x = wrong
    for i in range(k + 1, task.DEFAULT_SPEC.n_steps):
        y = (x + q.d) % 10 if q.sign == "+" else (x - q.d) % 10
        lines[i] = f"{task.STEP_LETTERS[i]}:{x}{q.sign}{q.d}={y}"
        x = y
    lines[-1] = f"\\boxed{{{x}}}"
    text = "\n".join(lines)
    check = task.check_path(p, text)
    assert check.first_wrong_step == k
    assert check.first_wrong_char == text.index(f"\n{task.STEP_LETTERS[k]}:") + 1
    assert check.first_error_char == check.first_wrong_char + len(letter_op) + 1
    assert text[check.first_error_char] == str(wrong)
    assert check.n_wrong_steps == 1 and not check.final_correct and not check.wrong_then_correct

    # a malformed step, then the right answer anyway: wrong-then-correct
    bad = task.solution_text(p).split("\n")
    bad[3] = bad[3].replace(":", ";")
    check = task.check_path(p, "\n".join(bad))
    assert check.first_wrong_step == 3 and check.first_error_kind == "format"
    assert check.final_correct and check.wrong_then_correct

    # a wrong boxed answer after a correct chain is a wrong answer step
    good = task.solution_text(p)
    other = str((int(p.answer) + 1) % 10)
    check = task.check_path(p, good[: good.rindex("{") + 1] + other + "}")
    assert check.first_wrong_step == task.DEFAULT_SPEC.n_steps and check.first_error_kind == "answer"
    assert not check.final_correct


def test_boxed_answer_parsable():
    from stoplib.grading import grade

    p = task.make_problems(1, seed=0, split="eval")[0]
    text = task.solution_text(p)
    assert task.final_answer(text) == p.answer
    assert grade(text, p).correct
    assert task.final_answer("no box here") is None


# ---------------------------------------------------------------------------------------------
# tokenizer


def test_tokenizer_round_trip_template_and_save(tmp_path):
    from transformers import AutoTokenizer

    tok = build_tokenizer()
    p = task.make_problems(1, seed=0, split="eval")[0]
    demo = task.solution_text(p, np.random.default_rng(0))
    ids = tok.encode(demo)
    assert len(ids) == len(demo)  # one token per character, no special tokens added
    assert tok.decode(ids) == demo
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": p.prompt}], add_generation_prompt=True, tokenize=False
    )
    assert prompt == f"<bos>Q:{p.prompt}\nA:"
    enc = tok.apply_chat_template([{"role": "user", "content": p.prompt}], add_generation_prompt=True)
    enc_ids = enc["input_ids"] if not isinstance(enc, list) else enc
    assert enc_ids[0] == tok.bos_token_id and tok.decode(enc_ids) == prompt
    save_tokenizer(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.encode(demo) == ids
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (1, 2, 0)
    assert loaded.decode(ids + [loaded.eos_token_id], skip_special_tokens=True) == demo


# ---------------------------------------------------------------------------------------------
# organism build and shipped weights


def _state(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_tiny_build_is_deterministic(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = ORGANISM_PRESETS["tiny"]  # 30 steps, about a second
    a = build_organism(tmp_path / "a", cfg, progress=False)
    b = build_organism(tmp_path / "b", cfg, progress=False)
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = build_organism(tmp_path / "c", dataclasses.replace(cfg, seed=1), progress=False)
    assert not all(torch.equal(sa[k], _state(c)[k]) for k in sa)
    model = AutoModelForCausalLM.from_pretrained(a)
    tok = AutoTokenizer.from_pretrained(a)
    assert model.config.model_type == "llama" and model.config.vocab_size == len(tok)
    assert model.generation_config.eos_token_id == tok.eos_token_id
    for name in ("config.json", "generation_config.json", "build_info.json", "tokenizer.json"):
        assert (a / name).is_file()


@pytest.fixture(scope="module")
def shipped():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = organism_path("small")
    return path, AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def test_shipped_weights_small_and_loadable(shipped):
    path, model, tok = shipped
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    assert size <= 5 * 1024 * 1024
    assert model.config.max_position_embeddings <= 512
    assert (path / "build_info.json").is_file()


def _sample(model, tok, problems, n, seed, greedy=False):
    prompts = [
        tok.apply_chat_template([{"role": "user", "content": p.prompt}], add_generation_prompt=True,
                                tokenize=False)
        for p in problems for _ in range(n)
    ]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(seed)
    kw = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=0.6, top_p=0.95, top_k=40)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=160, **kw, output_logits=True,
                             return_dict_in_generate=True)
    new = out.sequences[:, enc["input_ids"].shape[1]:]
    lp = torch.log_softmax(torch.stack(out.logits, 1), -1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
    paths = []
    for r in range(new.shape[0]):
        ids = new[r].tolist()
        length = ids.index(tok.eos_token_id) + 1 if tok.eos_token_id in ids else len(ids)
        paths.append({"text": tok.decode(ids[:length], skip_special_tokens=True),
                      "token_ids": ids[:length], "logprobs": lp[r, :length].tolist()})
    return [paths[i * n:(i + 1) * n] for i in range(len(problems))]


def test_shipped_organism_decodes_well_formed_paths(shipped):
    _, model, tok = shipped
    problems = task.make_problems(8, seed=7, split="eval")
    greedy = _sample(model, tok, problems, 1, seed=0, greedy=True)
    for p, (path,) in zip(problems, greedy):
        check = task.check_path(p, path["text"])
        assert check.n_steps == task.DEFAULT_SPEC.n_steps and check.answer is not None
        assert path["token_ids"][-1] == tok.eos_token_id
    sampled = _sample(model, tok, problems, 8, seed=0)
    props = measure_properties(problems, sampled, prefix_len=36)
    assert 0.1 <= props["pass_at_1"] <= 0.95
    assert props["mean_tokens"] >= 100
    well_formed = [task.check_path(p, x["text"]).answer is not None for p, xs in zip(problems, sampled) for x in xs]
    assert np.mean(well_formed) > 0.9


# ---------------------------------------------------------------------------------------------
# metrics and properties


def test_auroc_hand_computed():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert auroc([1, 2, 3], [0, 1, 1]) == 1.0
    assert auroc([3, 2, 1], [0, 1, 1]) == 0.0
    assert auroc([1, 1, 1], [0, 1, 0]) == 0.5  # all tied
    # pairs (pos, neg): (2 vs 1) win, (2 vs 2) tie, (3 vs 1) win, (3 vs 2) win -> 3.5 / 4
    assert auroc([1, 2, 2, 3], [0, 0, 1, 1]) == pytest.approx(0.875)
    assert auroc([True, False], [True, False]) == 1.0
    assert math.isnan(auroc([1, 2], [1, 1]))
    with pytest.raises(ValueError):
        auroc([1, 2], [0])


def test_within_problem_auroc():
    scores = [1, 2, 3, 4, 5, 6, 0.5, 0.5]
    labels = [0, 1, 1, 0, 1, 1, 1, 0]
    groups = ["a", "a", "b", "b", "c", "c", "d", "d"]
    detail = within_problem_auroc_detail(scores, labels, groups)
    # a: 1.0, b: 0.0, c: one class (skipped), d: tie 0.5
    assert detail.value == pytest.approx(0.5) and detail.n_groups == 3 and detail.n_groups_total == 4
    assert within_problem_auroc([1, 2, 3, 4], [0, 1, 0, 1], [0, 0, 1, 1]) == 1.0
    # pooled differs from within when problems differ in difficulty
    assert auroc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert within_problem_auroc([1, 2, 3, 4], [0, 0, 1, 1], [0, 0, 1, 1]) != within_problem_auroc(
        [1, 2, 3, 4], [0, 0, 1, 1], [0, 1, 0, 1])
    assert math.isnan(within_problem_auroc([1, 2], [1, 1], [0, 0]))


def test_properties_on_demonstrations():
    """measure_properties on constructed paths: slips are errors in the prefix, the oracle is
    perfect, and a low-probability slip token makes min-logprob informative."""
    rng = np.random.default_rng(1)
    spec = task.D3_SPEC  # every error inside the prefix
    problems = task.make_problems(12, seed=0, split="eval", spec=spec)
    paths = []
    for p in problems:
        plist = []
        for _ in range(8):
            text = task.solution_text(p, rng, spec, slip_prob=0.3)
            check = task.check_path(p, text, spec)
            lp = [-0.01] * (len(text) + 1)
            if check.has_wrong_step:
                lp[check.first_error_char] = -2.0
            plist.append({"text": text, "token_ids": [5] * (len(text) + 1), "logprobs": lp})
        paths.append(plist)
    props = measure_properties(problems, paths, prefix_len=36, spec=spec)
    assert props["failed_first_wrong_in_prefix"] == 1.0
    assert props["wrong_then_correct"] == 0.0
    assert props["auroc"]["oracle"]["within"] == 1.0
    assert props["auroc"]["min_logprob"]["within"] == 1.0
    assert props["auroc"]["question_only"]["within"] == 0.5
    assert props["mean_chars"] == 117
    assert lowest_group_confidence([0, 0, -1, -1, 0], 2) == -1.0
    assert lowest_group_confidence([-1, -3], 8) == -2.0


def test_d4_late_slip_detected_after_prefix_and_rate_matches():
    spec = task.D4_SPEC
    assert 5 not in spec.d_values and not task.cancelling_slip_sets(spec)
    pool = task.question_pool("train", spec)
    rng = np.random.default_rng(3)
    late = n = correct = 0
    expected = 0.0
    for q in pool[:400]:
        for _ in range(5):
            text = task.solution_text(q, rng, spec)
            check = task.check_path(q, text, spec)
            n += 1
            correct += check.final_correct
            if check.late_slip:
                late += 1
                assert check.first_wrong_step in (0, 1, spec.late_slip_step)
                if check.first_wrong_step == spec.late_slip_step:
                    assert check.first_wrong_char >= task.DEFAULT_PREFIX_LEN and not check.final_correct
        expected += 5 * task.expected_pass_rate(task.to_problem(q, "train", spec), spec)
    assert late > 0.1 * n
    assert abs(correct - expected) < 4 * np.sqrt(n * 0.25)


# ------------------------------------------------------------------ the long and multiple-choice families
def test_multiple_choice_questions_list_every_value_once_and_round_trip():
    pool = task.question_pool("eval", task.MC_SPEC)
    assert len(pool) > 400
    for q in pool[:50]:
        assert sorted(q.order) == list("0123456789")
        assert task.parse_question(q.text) == q
        assert all(letter == "ABCDEFGHIJ"[int(value)] for letter, value in q.options)  # a fixed key
        assert q.text.split()[3:] == [letter + value for letter, value in q.options]
    orders = {q.order for q in pool}
    assert len(orders) > len(pool) // 2  # a listing order of its own for (nearly) every question
    with pytest.raises(ValueError, match="distinct values"):
        task.parse_question("a1 f*3+1 g+2 B1 B1")
    with pytest.raises(ValueError, match="under their letters"):
        task.parse_question("a1 f*3+1 g+2 A1 B0")


def test_multiple_choice_paths_end_with_the_letter_of_the_same_computation():
    from stoplib.grading import grade
    from stoplib.prompts import format_question

    free_spec = dataclasses.replace(task.MC_SPEC, multiple_choice=False, name="toy")
    for p in task.make_problems(20, seed=3, split="eval", spec=task.MC_SPEC):
        q = task.parse_question(p.prompt)
        assert p.kind == "multiple_choice" and p.source == "toy-mc" and p.id.startswith("toy-mc-")
        assert p.answer == q.letter_of(task.true_values(q, task.MC_SPEC)[-1])
        assert dict(p.options)[p.answer] == str(task.true_values(q, task.MC_SPEC)[-1])
        assert format_question(p) == p.prompt  # the options are already in the question
        clean = task.solution_text(p, None, task.MC_SPEC)
        assert grade(clean, p).correct and task.check_path(p, clean, task.MC_SPEC).first_wrong_step is None
        # the same random stream slips the same way as the free-answer question; only the last line differs
        mc = task.solution_text(p, np.random.default_rng(5), task.MC_SPEC, slip_prob=0.5)
        free = task.solution_text(dataclasses.replace(q, order=""), np.random.default_rng(5), free_spec, slip_prob=0.5)
        assert mc.splitlines()[:-1] == free.splitlines()[:-1]
        final = int(free.splitlines()[-1][len("\\boxed{"):-1])
        assert mc.splitlines()[-1] == f"\\boxed{{{q.letter_of(final)}}}"
        check = task.check_path(p, mc, task.MC_SPEC)
        assert check.final_correct == grade(mc, p).correct
        assert check.first_wrong_step == task.check_path(dataclasses.replace(q, order=""), free, free_spec).first_wrong_step


def test_long_paths_put_the_default_prefix_at_a_sixth_of_a_path():
    lengths = [len(task.solution_text(p, None, task.LONG_SPEC)) + 1  # + eos
               for p in task.make_problems(30, seed=0, split="eval", spec=task.LONG_SPEC)]
    assert 200 <= min(lengths) and max(lengths) <= 215
    assert 0.15 <= task.DEFAULT_PREFIX_LEN / np.mean(lengths) <= 0.19


def test_each_family_is_a_task_that_checks_with_its_own_spec():
    from stoplib.tasks import get_task, task_of

    for name, spec in (("toy", task.DEFAULT_SPEC), ("toy-long", task.LONG_SPEC), ("toy-mc", task.MC_SPEC)):
        p = get_task(name).make_problems(2, 0, "eval")[0]
        family = task_of(p)
        assert family.name == name
        clean = task.solution_text(p, None, spec)
        assert family.check_path(p, clean).first_wrong_step is None
        assert family.check_path(p, clean + "\nmore").first_wrong_step is not None


def test_a_mixed_organism_draws_both_families_and_the_default_stream_is_unchanged():
    from stoplib.toy.organism import ORGANISM_PRESETS, training_batch
    from stoplib.toy.tokenizer import build_tokenizer, prompt_text

    tok = build_tokenizer()
    vocab = tok.get_vocab()
    ids, mask, _ = training_batch(np.random.default_rng(0), ORGANISM_PRESETS["long"], vocab, 0, 2)
    texts = [tok.decode(row[m > 0]) for row, m in zip(ids, mask)]
    assert any(" A" in t.split("\n")[0] for t in texts) and any(" A" not in t.split("\n")[0] for t in texts)
    # a single-family organism draws exactly what the single-task stream draws
    small = ORGANISM_PRESETS["small"]
    ids, mask, _ = training_batch(np.random.default_rng(1), small, vocab, 0, 2)
    rng = np.random.default_rng(1)
    pool = task.question_pool("train", small.task)
    expected = []
    for i in rng.integers(0, len(pool), size=small.batch_size):
        q = pool[int(i)]
        expected.append(prompt_text(q.text) + task.solution_text(q, rng, small.task) + "<eos>")
    assert [tok.decode(row[m > 0]) for row, m in zip(ids, mask)] == expected


def test_answer_weight_weighs_the_boxed_answer_token():
    from transformers import LlamaForCausalLM

    from stoplib.toy.organism import _loss, llama_config, training_batch
    from stoplib.toy.tokenizer import build_tokenizer

    tok = build_tokenizer()
    vocab = tok.get_vocab()
    cfg = ORGANISM_PRESETS["long"]
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(ORGANISM_PRESETS["tiny"], len(vocab), tok.bos_token_id, tok.eos_token_id,
                                          tok.pad_token_id))
    ids, mask, labels = training_batch(np.random.default_rng(0), dataclasses.replace(cfg, batch_size=6), vocab,
                                       tok.pad_token_id, tok.eos_token_id)
    rows = torch.arange(len(ids))
    answer = mask.sum(1) - 3  # X of "\\boxed{X}" + eos
    assert [tok.decode(ids[r, answer[r] - 7: answer[r] + 3]) for r in rows.tolist()] == \
        [f"\\boxed{{{tok.decode(ids[r, answer[r]])}}}<eos>" for r in rows.tolist()]
    with torch.no_grad():
        plain = _loss(model, ids, mask, labels, 1.0)
        assert plain == model(input_ids=ids, attention_mask=mask, labels=labels).loss  # the model's own loss
        logits = model(input_ids=ids, attention_mask=mask).logits
        ce = torch.nn.functional.cross_entropy(logits[rows, answer - 1], ids[rows, answer], reduction="sum")
        n = (labels[:, 1:] != -100).sum()
        expected = (plain * n + 4 * ce) / (n + 4 * len(ids))  # weight 5: four more times each answer token
        assert torch.allclose(_loss(model, ids, mask, labels, 5.0), expected, rtol=1e-5)
