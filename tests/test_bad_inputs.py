"""The bad-input matrix: every case must give a clear, user-facing error that names the bad thing.

Each case is a bad input a user can give: a file, a CLI argument, a notebook parameter, a call of
the Python API, a checkpoint, a model. It passes when the call raises one of the expected error
types (or the CLI exits with status 2 and no traceback) with a message that contains every
expected fragment (the parameter, the value, the file). A case that succeeds silently or raises
another type fails.

``python -m tests.test_bad_inputs OUT.md`` runs every case and writes the matrix as a markdown
table (where, bad input, what the user gets).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest


@dataclass
class Ctx:
    """What a case may use: a fresh directory, a tiny model, a STOP checkpoint, a training run."""

    tmp: Path
    model: Path
    checkpoint: Path
    run: Path

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
        return path

    def rows(self, name: str, *rows: Any) -> Path:
        return self.write(name, "".join(json.dumps(r) + "\n" for r in rows))

    def copy(self, source: Path, name: str) -> Path:
        target = self.tmp / name
        shutil.copytree(source, target, symlinks=False)
        return target


class CliExit(Exception):
    """The CLI ended with a non-zero status (its stderr is the message)."""

    def __init__(self, code: Any, stderr: str) -> None:
        super().__init__(stderr)
        self.code = code


def cli(*args: str) -> str:
    """``stoplib ARGS`` in this process; a non-zero exit raises CliExit with what stderr said."""
    from stoplib.cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args))
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise CliExit(exit_.code, err.getvalue() + (exit_.code if isinstance(exit_.code, str) else "")) from None
    return out.getvalue()


def cli_process(*args: str) -> str:
    """``stoplib ARGS`` in a new process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "stoplib.cli", *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise CliExit(done.returncode, done.stderr)
    return done.stdout


@dataclass
class Case:
    category: str
    where: str
    bad: str
    call: Callable[[Ctx], Any]
    errors: tuple[type[BaseException], ...]
    expect: tuple[str, ...]
    marks: tuple = field(default_factory=tuple)


CASES: list[Case] = []


def case(category: str, where: str, bad: str, call: Callable[[Ctx], Any], errors: Any, *expect: str,
         marks: tuple = ()) -> None:
    CASES.append(Case(category, where, bad, call, errors if isinstance(errors, tuple) else (errors,), expect, marks))


# ------------------------------------------------------------------------------------------ files
def _problems(ctx: Ctx, path: Path) -> Any:
    from stoplib.problems import load_problems

    return load_problems(path)


def _labels(ctx: Ctx, path: Path) -> Any:
    from stoplib.train import load_label_records

    return load_label_records(path)


GOOD = {"id": "a", "problem": "1+1?", "answer": "2"}
F, P = "input files", "problems file"
case(F, P, "an empty .json file", lambda c: _problems(c, c.write("empty.json", "")), ValueError,
     "empty.json", "invalid JSON")
case(F, P, "an empty .jsonl file", lambda c: _problems(c, c.write("empty.jsonl", "")), ValueError,
     "empty.jsonl", "no problems")
case(F, P, "an empty JSON list", lambda c: _problems(c, c.write("list.json", "[]")), ValueError,
     "list.json", "no problems")
case(F, P, "not JSON at all", lambda c: _problems(c, c.write("prose.json", "Problem 1: what is 1+1?")), ValueError,
     "prose.json", "line 1", "invalid JSON")
case(F, P, "one broken JSONL line", lambda c: _problems(c, c.write("broken.jsonl", json.dumps(GOOD) + "\n{oops\n")),
     ValueError, "broken.jsonl", "line 2", "invalid JSON")
case(F, P, "a JSON object instead of a list", lambda c: _problems(c, c.write("object.json", json.dumps(GOOD))),
     ValueError, "object.json", "expected a JSON list")
case(F, P, "a row that is not an object", lambda c: _problems(c, c.rows("number.jsonl", 5)), ValueError,
     "number.jsonl", "row 0", "expected a JSON object")
case(F, P, "no question field", lambda c: _problems(c, c.rows("noq.jsonl", {"id": "a", "answer": "2"})), ValueError,
     "noq.jsonl", "field 'problem' is missing")
case(F, P, "answers missing", lambda c: _problems(c, c.rows("noanswer.jsonl", {"id": "a", "problem": "1+1?"})),
     ValueError, "noanswer.jsonl", "field 'answer' is missing")
case(F, P, "answer null", lambda c: _problems(c, c.rows("null.jsonl", {**GOOD, "answer": None})), ValueError,
     "null.jsonl", "field 'answer'", "NoneType")
case(F, P, "answer an empty string", lambda c: _problems(c, c.rows("blank.jsonl", {**GOOD, "answer": ""})),
     ValueError, "blank.jsonl", "field 'answer' is empty")
case(F, P, "question only whitespace", lambda c: _problems(c, c.rows("ws.jsonl", {**GOOD, "problem": "  "})),
     ValueError, "ws.jsonl", "field 'problem' is empty")
case(F, P, "duplicate ids", lambda c: _problems(c, c.rows("dup.jsonl", GOOD, GOOD)), ValueError,
     "dup.jsonl", "row 1", "duplicate id 'a'")
case(F, P, "not UTF-8 (Latin-1)", lambda c: _problems(c, c.write("latin1.jsonl", json.dumps(
    {**GOOD, "problem": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"))), ValueError, "latin1.jsonl", "not UTF-8")
case(F, P, "a file that does not exist", lambda c: _problems(c, c.tmp / "missing.jsonl"), FileNotFoundError,
     "missing.jsonl", "no such file")
case(F, P, "a directory", lambda c: _problems(c, c.tmp), IsADirectoryError, "is a directory")
case(F, P, "a .csv file", lambda c: _problems(c, c.write("problems.csv", "problem,answer\n1+1?,2\n")), ValueError,
     "problems.csv", "unsupported file type '.csv'")
case(F, P, "an unknown kind", lambda c: _problems(c, c.rows("kind.jsonl", {**GOOD, "kind": "essay"})), ValueError,
     "kind.jsonl", "field 'kind'", "'essay'")
case(F, P, "a multiple-choice answer that is no option",
     lambda c: _problems(c, c.rows("mc.jsonl", {**GOOD, "answer": "E", "options": {"A": "1", "B": "2"}})),
     ValueError, "mc.jsonl", "field 'answer'", "'E'")
case(F, P, "options of the wrong type", lambda c: _problems(c, c.rows("opt.jsonl", {**GOOD, "options": 3})),
     ValueError, "opt.jsonl", "field 'options'")
case(F, P, "limit=0", lambda c: __import__("stoplib.problems").problems.load_problems("aime_2024", limit=0),
     ValueError, "limit=0")
L = "label file"
case(F, L, "an empty file", lambda c: _labels(c, c.write("labels.jsonl", "")), ValueError, "labels.jsonl", "no records")
case(F, L, "a soft label above 1", lambda c: _labels(c, c.rows("soft.jsonl", {"prefix_token_ids": [1], "soft_label": 1.5})),
     ValueError, "soft.jsonl", "line 1", "soft_label", "1.5")
case(F, L, "a hard label of 2",
     lambda c: _labels(c, c.rows("hard.jsonl", {"prefix_token_ids": [1], "soft_label": 0.5, "Hard_label": 2})),
     ValueError, "hard.jsonl", "Hard_label", "2")
case(F, L, "booleans as token ids", lambda c: _labels(c, c.rows("bool.jsonl", {"prefix_token_ids": [True], "soft_label": 0.5})),
     ValueError, "bool.jsonl", "prefix_token_ids")
case(F, L, "no soft label", lambda c: _labels(c, c.rows("nosoft.jsonl", {"prefix_token_ids": [1, 2]})), ValueError,
     "nosoft.jsonl", "no soft label")
case(F, L, "not UTF-8", lambda c: _labels(c, c.write("labels1.jsonl", b'{"prefix_token_ids": [1], "x": "\xe9"}\n')),
     ValueError, "labels1.jsonl", "not UTF-8")
case(F, L, "a file that does not exist", lambda c: _labels(c, c.tmp / "nolabels.jsonl"), FileNotFoundError,
     "nolabels.jsonl", "does not exist")

# -------------------------------------------------------------------------------------------- CLI
C, U = "CLI", (CliExit,)


def _root(c: Ctx) -> str:
    return str(c.tmp / "results")


case(C, "stoplib", "no subcommand", lambda c: cli(), U, "required", "command")
case(C, "stoplib", "an unknown subcommand", lambda c: cli("fly"), U, "invalid choice", "'fly'")
case(C, "stoplib label", "an unknown option", lambda c: cli("label", "--bogus-flag"), U, "unrecognized", "--bogus-flag")
case(C, "stoplib label", "--scale huge", lambda c: cli("label", "--scale", "huge"), U, "--scale", "'huge'")
case(C, "stoplib label", "--engine sglang", lambda c: cli("label", "--engine", "sglang"), U, "--engine", "'sglang'")
case(C, "stoplib label", "--seed abc", lambda c: cli("label", "--seed", "abc"), U, "--seed", "'abc'")
case(C, "stoplib label", "--seed -1", lambda c: cli("label", "--scale", "tiny", "--seed", "-1", "--results-root", _root(c)),
     U, "seed", "-1")
case(C, "stoplib label", "--workers 0",
     lambda c: cli("label", "--scale", "tiny", "--workers", "0", "--results-root", _root(c)), U, "workers=0")
case(C, "stoplib label", "--workers two", lambda c: cli("label", "--workers", "two"), U, "--workers", "'two'")
case(C, "stoplib train", "--variant bogus", lambda c: cli("train", "--variant", "bogus"), U, "--variant", "'bogus'")
case(C, "stoplib label", "--model gpt5 (no such preset)",
     lambda c: cli("label", "--scale", "tiny", "--model", "gpt5", "--results-root", _root(c)), U,
     "unknown model preset 'gpt5'")
case(C, "stoplib train", "--model ./no-such-dir",
     lambda c: cli("train", "--scale", "tiny", "--model", "./no-such-dir", "--results-root", _root(c)), U,
     "no-such-dir", "does not exist")
case(C, "stoplib label", "--model DIR without weights",
     lambda c: cli("label", "--scale", "tiny", "--model", str(c.write("noweights/config.json", "{}").parent),
                   "--results-root", _root(c)), U, "noweights", "has no weights")
case(C, "stoplib label", "--train-problems FILE that does not exist",
     lambda c: cli("label", "--scale", "tiny", "--train-problems", str(c.tmp / "absent.jsonl"), "--results-root", _root(c)),
     U, "absent.jsonl")
case(C, "stoplib label", "--train-problems FILE without problems",
     lambda c: cli("label", "--scale", "tiny", "--train-problems", str(c.write("none.jsonl", "\n")), "--results-root",
                   _root(c)), U, "none.jsonl", "no problems")
case(C, "stoplib bank", "--benchmark FILE that is not JSON",
     lambda c: cli("bank", "--scale", "tiny", "--benchmark", str(c.write("notes.json", "1+1=2")), "--results-root",
                   _root(c)), U, "notes.json", "invalid JSON")
case(C, "stoplib bank", "--benchmark NAME that is no benchmark",
     lambda c: cli("bank", "--scale", "tiny", "--benchmark", "aime_2099", "--results-root", _root(c)), U, "aime_2099")
case(C, "stoplib label", "--results-root FILE (not a directory)",
     lambda c: cli("label", "--scale", "tiny", "--results-root", str(c.write("afile", "x"))), U, "afile",
     "not a directory")
case(C, "stoplib reproduce", "--only 99 (no such notebook)",
     lambda c: cli("reproduce", "--scale", "tiny", "--only", "99", "--results-root", _root(c)), U,
     "no notebooks matched", "99")
case(C, "stoplib toy", "--replace-shipped with --out", lambda c: cli("toy", "--replace-shipped", "--out", str(c.tmp)), U,
     "--replace-shipped")
case(C, "stoplib toy", "--scale paper", lambda c: cli("toy", "--scale", "paper"), U, "--scale", "'paper'")
case(C, "stoplib label (new process)", "--seed -1",
     lambda c: cli_process("label", "--scale", "tiny", "--seed", "-1", "--results-root", _root(c)), U, "seed", "-1")
case(C, "stoplib train (new process)", "--model ./nowhere",
     lambda c: cli_process("train", "--scale", "tiny", "--model", "./nowhere", "--results-root", _root(c)), U,
     "nowhere", "does not exist")

# ----------------------------------------------------------------------------- notebook parameters
N = "notebook parameters"


def _param(function: str, *args: Any) -> Callable[[Ctx], Any]:
    def call(c: Ctx) -> Any:
        from stoplib import params

        return getattr(params, function)(*args)
    return call


def _notebook(**kwargs: Any) -> Callable[[Ctx], Any]:
    """The notebooks' first cell: resolve(scale, model, engine, seed, results_root, figures_dir, ...)."""
    def call(c: Ctx) -> Any:
        from stoplib.config import resolve

        args = {"scale": "tiny", "model": "toy", "engine": "hf", "seed": 0, "results_root": str(c.tmp / "results"),
                "figures_dir": str(c.tmp / "figures"), "benchmark": "", "train_problems": "", **kwargs}
        return resolve(args.pop("scale"), args.pop("model"), args.pop("engine"), args.pop("seed"),
                       args.pop("results_root"), args.pop("figures_dir"), **args)
    return call


VARIANTS = ("stop", "stop_probe", "stop_hard")
case(N, "02 variants", "'stop,bogus'", _param("choice_list", "variants", "stop,bogus", VARIANTS), ValueError,
     "variants='stop,bogus'", "unknown: bogus")
case(N, "02 variants", "'' (nothing)", _param("choice_list", "variants", "", VARIANTS), ValueError, "variants=''")
case(N, "02 variants", "None", _param("choice_list", "variants", None, VARIANTS), ValueError, "variants=None")
case(N, "03/05 n_boot", "0", _param("positive_int", "n_boot", 0, 10), ValueError, "n_boot=0", ">= 10")
case(N, "03/05 n_boot", "'2000' (a string)", _param("positive_int", "n_boot", "2000", 10), ValueError, "n_boot='2000'")
case(N, "04 paths_per_problem", "2.5", _param("positive_int", "paths_per_problem", 2.5), ValueError,
     "paths_per_problem=2.5")
case(N, "04 paths_per_problem", "True", _param("positive_int", "paths_per_problem", True), ValueError,
     "paths_per_problem=True")
case(N, "04 query", "'first'", _param("choice", "query", "first", ("last", "all")), ValueError, "query='first'",
     "last, all")
case(N, "04 layers", "'0'", _param("layers", "layers", "0"), ValueError, "layers='0'")
case(N, "04 layers", "'top'", _param("layers", "layers", "top"), ValueError, "layers='top'")
case(N, "05 prefix_fractions", "'0, 2'", _param("fractions", "prefix_fractions", "0, 2"), ValueError,
     "prefix_fractions='0, 2'", "strictly between 0 and 1")
case(N, "05 prefix_fractions", "'nan'", _param("fractions", "prefix_fractions", "nan"), ValueError,
     "prefix_fractions='nan'")
case(N, "05 prefix_fractions", "''", _param("fractions", "prefix_fractions", ""), ValueError, "prefix_fractions=''")
case(N, "every notebook: scale", "'huge'", _notebook(scale="huge"), ValueError, "scale", "'huge'")
case(N, "every notebook: engine", "'sglang'", _notebook(engine="sglang"), ValueError, "engine", "'sglang'")
case(N, "every notebook: seed", "'0' (a string)", _notebook(seed="0"), ValueError, "seed", "'0'")
case(N, "every notebook: seed", "-3", _notebook(seed=-3), ValueError, "seed", "-3")
case(N, "every notebook: model", "'' (empty)", _notebook(model=""), ValueError, "model=''")
case(N, "every notebook: results_root", "None", _notebook(results_root=None), ValueError, "results_root=None")
case(N, "every notebook: benchmark", "5", _notebook(benchmark=5), ValueError, "benchmark=5")
case(N, "every notebook: train_problems", "a file that does not exist",
     lambda c: __import__("stoplib.stages").stages.train_problems(_notebook(train_problems=str(c.tmp / "gone.jsonl"))(c)),
     FileNotFoundError, "gone.jsonl")

# ------------------------------------------------------------------------------------- Python API
A = "Python API"


def _resolve(**overrides: Any) -> Callable[[Ctx], Any]:
    def call(c: Ctx) -> Any:
        from stoplib.config import resolve

        return resolve("tiny", results_root=str(c.tmp / "results"), **overrides)
    return call


case(A, "resolve()", "keep > n_paths (k > N)", _resolve(keep=9), ValueError, "keep=9", "n_paths=8")
case(A, "resolve()", "prefix_len >= max_new_tokens", _resolve(prefix_len=200), ValueError, "prefix_len=200",
     "max_new_tokens=200")
case(A, "resolve()", "prefix_len beyond the model's context", _resolve(prefix_len=600, max_new_tokens=700), ValueError,
     "prefix_len=600", "maximum context", "512")
case(A, "resolve()", "lr=nan", _resolve(lr=float("nan")), ValueError, "lr=nan")
case(A, "resolve()", "n_paths=0", _resolve(n_paths=0), ValueError, "n_paths=0", ">= 1")
case(A, "resolve()", "k_rollouts='4' (a string)", _resolve(k_rollouts="4"), ValueError, "k_rollouts='4'")
case(A, "resolve()", "a misspelt field", _resolve(prefix_lenght=3), ValueError, "prefix_lenght")
case(A, "resolve()", "sampling as a dict", _resolve(sampling={"temperature": 1.0}), ValueError, "sampling=",
     "SamplingParams")
case(A, "resolve()", "workers=-2", _resolve(workers=-2), ValueError, "workers=-2")
case(A, "resolve()", "prefixes_per_problem=0", _resolve(prefixes_per_problem=0), ValueError, "prefixes_per_problem=0")
case(A, "resolve()", "max_new_tokens=1", _resolve(max_new_tokens=1), ValueError, "max_new_tokens=1")


def _pipeline(count: int = 1, **kwargs: Any) -> Callable[[Ctx], Any]:
    def call(c: Ctx) -> Any:
        from stoplib.engines.base import SamplingParams
        from stoplib.pipeline import run_pipeline
        from stoplib.problems import Problem

        problems = [Problem(id="p", prompt="1+1", answer="2", kind="math", source="t")][:count]
        args = {"n": 8, "k": 2, "prefix_len": 4, "params": SamplingParams(max_new_tokens=16), **kwargs}
        return run_pipeline(None, problems, [[1, 2]][:count], None, **args)
    return call


case(A, "run_pipeline()", "keep k > N", _pipeline(k=9), ValueError, "k=9", "n=8")
case(A, "run_pipeline()", "prefix_len >= max_new_tokens", _pipeline(prefix_len=16), ValueError, "prefix_len=16",
     "max_new_tokens=16")
case(A, "run_pipeline()", "no problems", _pipeline(count=0), ValueError, "no problems")
def _schedule(schedule: Any) -> Callable[[Ctx], Any]:
    def call(c: Ctx) -> Any:
        from stoplib.engines.base import SamplingParams
        from stoplib.pipeline import run_pipeline
        from stoplib.problems import Problem

        problems = [Problem(id="p", prompt="1+1", answer="2", kind="math", source="t")]
        return run_pipeline(None, problems, [[1, 2]], None, n=8, schedule=schedule,
                            params=SamplingParams(max_new_tokens=16))
    return call


case(A, "run_pipeline(schedule=...)", "an empty schedule", _schedule([]), ValueError, "schedule is empty")
case(A, "run_pipeline(schedule=...)", "prefix lengths that do not increase", _schedule([(4, 4), (4, 2)]),
     ValueError, "must increase", "got 4 after 4")
case(A, "run_pipeline(schedule=...)", "k that grows from one stage to the next", _schedule([(4, 2), (8, 4)]),
     ValueError, "must not increase", "k=4 after 2")
case(A, "run_pipeline(schedule=...)", "k > N at a stage", _schedule([(4, 9)]), ValueError, "k=9", "n=8")
case(A, "run_pipeline(schedule=...)", "stages that are not pairs", _schedule([4, 8]), ValueError, "(prefix_len, k) pairs")

case(A, "problem_groups()", "max_paths_in_flight=0",
     lambda c: __import__("stoplib.pipeline").pipeline.problem_groups(4, 8, 0), ValueError, "max_paths_in_flight", "0")


def _metric(name: str, *args: Any, **kwargs: Any) -> Callable[[Ctx], Any]:
    def call(c: Ctx) -> Any:
        from stoplib import metrics

        return getattr(metrics, name)(*args, **kwargs)
    return call


NAN = float("nan")
case(A, "metrics.bootstrap_ci()", "no values", _metric("bootstrap_ci", []), ValueError, "values is empty")
case(A, "metrics.bootstrap_ci()", "a NaN value", _metric("bootstrap_ci", [1.0, NAN]), ValueError, "NaN")
case(A, "metrics.bootstrap_ci()", "n_boot=0", _metric("bootstrap_ci", [1.0, 2.0], n_boot=0), ValueError, "n_boot=0")
case(A, "metrics.paired_bootstrap_ci()", "lengths 1 and 2", _metric("paired_bootstrap_ci", [1.0], [1.0, 2.0]),
     ValueError, "differ in length", "1 vs 2")
case(A, "metrics.auroc()", "a NaN score", _metric("auroc", [0.1, NAN], [0, 1]), ValueError, "scores contain NaN")
case(A, "metrics.auroc()", "scores and labels of different lengths", _metric("auroc", [0.1, 0.2], [1]), ValueError,
     "differ in length", "2 vs 1")
case(A, "metrics.auroc()", "labels that are not 0/1", _metric("auroc", [0.1, 0.2], [0, 2]), ValueError, "labels")
case(A, "metrics.auroc()", "no scores at all", _metric("auroc", [], []), ValueError, "empty")
case(A, "metrics.within_problem_auroc()", "no scores at all", _metric("within_problem_auroc", [], [], []), ValueError,
     "empty")
case(A, "metrics.pass_at_k()", "k=8 > n=4", _metric("pass_at_k", 4, 2, 8), ValueError, "k=8", "n=4")


def _api(module: str, expression: Callable[[Any], Any]) -> Callable[[Ctx], Any]:
    def call(c: Ctx) -> Any:
        import importlib

        return expression(importlib.import_module(module))
    return call


case(A, "TrainConfig", "epochs=0", _api("stoplib.train", lambda m: m.TrainConfig(epochs=0)), ValueError, "epochs=0")
case(A, "TrainConfig", "lr=-1", _api("stoplib.train", lambda m: m.TrainConfig(lr=-1)), ValueError, "lr=-1", "> 0")
case(A, "TrainConfig", "truncate='right'", _api("stoplib.train", lambda m: m.TrainConfig(truncate="right")), ValueError,
     "truncate", "'right'")
case(A, "StopConfig", "num_tokens=0", _api("stoplib.stop", lambda m: m.StopConfig(num_tokens=0)), ValueError,
     "num_tokens=0")
case(A, "StopConfig", "lora_dropout=1.5", _api("stoplib.stop", lambda m: m.StopConfig(lora_dropout=1.5)), ValueError,
     "lora_dropout=1.5")
case(A, "LabelConfig", "band (5, 2)", _api("stoplib.labels", lambda m: m.LabelConfig(n_filter=8, band=(5, 2))),
     ValueError, "band (5, 2)")
case(A, "SamplingParams", "top_p=0", _api("stoplib.engines.base", lambda m: m.SamplingParams(top_p=0)), ValueError,
     "top_p", "0")
case(A, "stages.variant_configs()", "variant 'bogus'",
     lambda c: __import__("stoplib.stages").stages.variant_configs(_resolve()(c), "bogus"), ValueError, "'bogus'")
case(A, "stages.train_parallel()", "a job 'bogus'",
     lambda c: __import__("stoplib.stages").stages.train_parallel([(_resolve()(c), "bogus")]), ValueError, "'bogus'")
def _ablation(grid: Any, seeds: Any = (0,)) -> Callable[[Ctx], Any]:
    def call(c: Ctx) -> Any:
        from stoplib import ablations

        return ablations.settings(_resolve()(c), grid, seeds)
    return call


case(A, "ablations.settings()", "axis 'dropout'", _ablation({"dropout": (0.1,)}), ValueError, "'dropout'", "lora_r")
case(A, "ablations.settings()", "M = 0", _ablation({"num_tokens": (0, 4)}), ValueError, "num_tokens=0")
case(A, "ablations.settings()", "rank 2.5", _ablation({"lora_r": (2.5,)}), ValueError, "lora_r=2.5")
case(A, "ablations.settings()", "learning rate 2", _ablation({"lr": (2,)}), ValueError, "lr=2")
case(A, "ablations.settings()", "an empty grid", _ablation({}), ValueError, "grid is empty")
case(A, "ablations.settings()", "a value given twice", _ablation({"num_tokens": (4, 4)}), ValueError, "repeats",
     "[4, 4]")
case(A, "ablations.settings()", "no seeds", _ablation({"num_tokens": (4,)}, ()), ValueError, "at least one seed")

case(A, "Store.run_dir()", "step '../x'", lambda c: __import__("stoplib.store").store.Store(c.tmp).run_dir("../x", {}),
     ValueError, "'../x'")
case(A, "grading.answers_equal()", "kind 'essay'",
     lambda c: __import__("stoplib.grading").grading.answers_equal("1", "1", "essay"), ValueError, "'essay'")
case(A, "bank.load_bank()", "a directory without a bank",
     lambda c: __import__("stoplib.bank").bank.load_bank(c.tmp / "nobank", []), FileNotFoundError, "nobank",
     "index.jsonl")


def _train(c: Ctx, train: Any = None, val: Any = None, out: Path | None = None, **config: Any) -> Any:
    from stoplib.train import TrainConfig, train_stop
    from tests.test_train import make_scorer, synthetic

    return train_stop(make_scorer(c.model), synthetic(16, 1) if train is None else train,
                      synthetic(8, 2) if val is None else val, TrainConfig(epochs=1, batch_size=8, **config),
                      out or c.tmp / "train", progress=False)


case(A, "train_stop()", "no validation records", lambda c: _train(c, val=[]), ValueError, "validation record")
case(A, "train_stop()", "token ids beyond the vocabulary",
     lambda c: _train(c, train=[__import__("stoplib.train").train.LabelRecord((1, 99_999), 0.5, 1, "far")]),
     ValueError, "99999", "vocabulary")

# ------------------------------------------------------------------------------------ checkpoints
K = "checkpoints"


def _load(c: Ctx, directory: Path) -> Any:
    from stoplib.engines.hf import load_model_and_tokenizer
    from stoplib.stop import StopScorer

    model, tokenizer = load_model_and_tokenizer(c.model)
    return StopScorer.from_pretrained(directory, model, tokenizer)


def _edit_config(c: Ctx, name: str, **changes: Any) -> Path:
    directory = c.copy(c.checkpoint, name)
    config = json.loads((directory / "stop_config.json").read_text())
    (directory / "stop_config.json").write_text(json.dumps({**config, **changes}))
    return directory


def _damage(c: Ctx, name: str, file: str, content: bytes | None) -> Path:
    directory = c.copy(c.checkpoint, name)
    target = directory / file
    if content is None:
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    else:
        target.write_bytes(content)
    return directory


def _resave_head(c: Ctx, name: str, **tensors: Any) -> Path:
    from safetensors.torch import load_file, save_file

    directory = c.copy(c.checkpoint, name)
    state = load_file(str(directory / "stop_head.safetensors"))
    save_file({**state, **{k: v(state) for k, v in tensors.items()}}, str(directory / "stop_head.safetensors"))
    return directory


S = "StopScorer.from_pretrained()"
case(K, S, "a directory that does not exist", lambda c: _load(c, c.tmp / "no-checkpoint"), FileNotFoundError,
     "no-checkpoint", "does not exist")
case(K, S, "a directory that is no checkpoint", lambda c: _load(c, c.write("plain/readme.txt", "x").parent),
     FileNotFoundError, "plain", "no stop_config.json")
case(K, S, "stop_config.json not JSON", lambda c: _load(c, _damage(c, "cfgjson", "stop_config.json", b"{oops")),
     ValueError, "stop_config.json", "not valid JSON")
case(K, S, "stop_config.json empty (truncated)", lambda c: _load(c, _damage(c, "cfgempty", "stop_config.json", b"")),
     ValueError, "cfgempty", "stop_config.json")
case(K, S, "stop_config.json a list", lambda c: _load(c, _damage(c, "cfglist", "stop_config.json", b"[1]")),
     ValueError, "stop_config.json", "expected a JSON object")
case(K, S, "stop_config.json with an unknown field", lambda c: _load(c, _edit_config(c, "cfgfield", colour="red")),
     ValueError, "stop_config.json", "colour")
case(K, S, "[STOP] token count 0", lambda c: _load(c, _edit_config(c, "count0", num_tokens=0)), ValueError,
     "stop_config.json", "num_tokens=0")
case(K, S, "[STOP] token count '4' (a string)", lambda c: _load(c, _edit_config(c, "countstr", num_tokens="4")),
     ValueError, "stop_config.json", "num_tokens='4'")
case(K, S, "one [STOP] embedding per token (2 rows)",
     lambda c: _load(c, _resave_head(c, "rows", stop_embedding=lambda s: s["stop_embedding"].repeat(2, 1))),
     ValueError, "stop_head.safetensors", "[STOP] embedding shape")
case(K, S, "a head of another model's width",
     lambda c: _load(c, _resave_head(c, "width", **{"head.weight": lambda s: s["head.weight"][:, :16].contiguous()})),
     ValueError, "stop_head.safetensors", "head shape")
case(K, S, "stop_head.safetensors truncated",
     lambda c: _load(c, _damage(c, "headcut", "stop_head.safetensors",
                                (c.checkpoint / "stop_head.safetensors").read_bytes()[:40])),
     ValueError, "stop_head.safetensors", "corrupt or truncated")
case(K, S, "stop_head.safetensors missing", lambda c: _load(c, _damage(c, "headgone", "stop_head.safetensors", None)),
     FileNotFoundError, "stop_head.safetensors", "missing")
case(K, S, "the adapter directory missing", lambda c: _load(c, _damage(c, "adaptergone", "adapter", None)),
     FileNotFoundError, "adaptergone", "adapter", "missing")
case(K, S, "the adapter weights truncated",
     lambda c: _load(c, _damage(c, "adaptercut", "adapter/adapter_model.safetensors", b"\x08\x00")),
     ValueError, "adaptercut", "adapter weights cannot be loaded")
case(K, S, "lora_r edited (adapter of another rank)", lambda c: _load(c, _edit_config(c, "rank", lora_r=2)),
     ValueError, "rank", "adapter weights cannot be loaded")
case(K, S, "a recorded base model that is gone",
     lambda c: __import__("stoplib.stop").stop.StopScorer.from_pretrained(
         _edit_config(c, "nobase", base_model=str(c.tmp / "deleted-model"))),
     FileNotFoundError, "deleted-model", "does not exist")
def _authors(c: Ctx, tokens: Any) -> Path:
    directory = c.rows("authors/assess_token_config.json", {"num_assess_tokens": tokens}).parent
    c.rows("authors/adapter/adapter_config.json", {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]})
    return directory


case(K, "from_authors_checkpoint()", "[ASSESS] token count 0", lambda c: _load(c, _authors(c, 0)), ValueError,
     "authors", "num_tokens=0")
case(K, "from_authors_checkpoint()", "no adapter_config.json",
     lambda c: _load(c, c.rows("bare/assess_token_config.json", {"num_assess_tokens": 4}).parent), ValueError,
     "bare", "adapter_config.json")


def _run_copy(c: Ctx, name: str, file: str, content: bytes) -> Path:
    run = c.copy(c.run, name)
    (run / file).write_bytes(content)
    return run


R = "train_stop() resume"
case(K, R, "train_state.pt damaged",
     lambda c: _train(c, out=_run_copy(c, "state", "epochs/0001/train_state.pt", b"garbage")), ValueError,
     "epochs/0001", "cannot be resumed", "from scratch")
case(K, R, "checkpoint of the committed epoch truncated",
     lambda c: _train(c, out=_run_copy(c, "ckpt", "epochs/0001/checkpoint/stop_head.safetensors", b"\x00")),
     ValueError, "epochs/0001", "stop_head.safetensors")
case(K, R, "progress.json damaged", lambda c: _train(c, out=_run_copy(c, "progress", "progress.json", b"{")),
     ValueError, "progress.json", "damaged")
case(K, R, "a directory of another configuration", lambda c: _train(c, out=c.copy(c.run, "other"), lr=0.5),
     ValueError, "other", "another configuration")

# ----------------------------------------------------------------------------------------- models
M = "models"


def _get_preset(model: Any) -> Callable[[Ctx], Any]:
    return lambda c: __import__("stoplib.presets").presets.get_preset(model)


def _model_dir(c: Ctx, name: str, drop: tuple[str, ...] = (), **files: bytes) -> Path:
    directory = c.copy(c.model, name)
    for f in drop:
        (directory / f).unlink()
    for f, content in files.items():
        (directory / f.replace("__", ".")).write_bytes(content)
    return directory


def _load_model(path: Any) -> Callable[[Ctx], Any]:
    def call(c: Ctx) -> Any:
        from stoplib.engines.hf import load_model_and_tokenizer

        return load_model_and_tokenizer(path(c) if callable(path) else path)
    return call


case(M, "presets.get_preset()", "an unknown preset 'gpt5'", _get_preset("gpt5"), ValueError, "'gpt5'", "toy")
case(M, "presets.get_preset()", "a list", _get_preset(["toy"]), ValueError, "['toy']")
case(M, "resolve(model=...)", "a path that does not exist", _notebook(model="./no-model-here"), FileNotFoundError,
     "no-model-here", "does not exist")
case(M, "resolve(model=...)", "a directory without weights",
     lambda c: _notebook(model=str(_model_dir(c, "bare", drop=("model.safetensors",))))(c), FileNotFoundError,
     "bare", "no weights")
case(M, "resolve(model=...)", "a directory without config.json",
     lambda c: _notebook(model=str(_model_dir(c, "noconfig", drop=("config.json",))))(c), FileNotFoundError,
     "noconfig", "no config.json")
case(M, "resolve(model=...)", "a file, not a directory",
     lambda c: _notebook(model=str(c.model / "model.safetensors"))(c), NotADirectoryError, "model.safetensors",
     "is a file")
case(M, "resolve(model=...)", "config.json not JSON",
     lambda c: _notebook(model=str(_model_dir(c, "badconfig", config__json=b"{")))(c), ValueError, "badconfig",
     "config.json", "not valid JSON")
case(M, "load_model_and_tokenizer()", "weights truncated",
     _load_model(lambda c: _model_dir(c, "cut", model__safetensors=b"\x10\x00\x00")), ValueError, "cut",
     "cannot load the model")
case(M, "load_model_and_tokenizer()", "no tokenizer files",
     _load_model(lambda c: _model_dir(c, "notok", drop=("tokenizer.json", "tokenizer_config.json"))), ValueError,
     "notok", "cannot load the model")
case(M, "load_model_and_tokenizer()", "config.json without model_type",
     _load_model(lambda c: _model_dir(c, "notype", config__json=b'{"hidden_size": 8}')), ValueError, "notype",
     "cannot load the model")
case(M, "load_model_and_tokenizer()", "a hub id not in the cache (offline)", _load_model("nobody/no-model"), OSError,
     "'nobody/no-model'", "cache")
case(M, "engines.make_engine()", "engine 'sglang'",
     lambda c: __import__("stoplib.engines").engines.make_engine("sglang", str(c.model)), ValueError, "'sglang'")
case(M, "engines.hf.HFEngine()", "batch_size=0",
     lambda c: __import__("stoplib.engines.hf").engines.hf.HFEngine(c.model, batch_size=0), ValueError, "batch_size",
     "0")
case(M, "engines.hf.HFEngine()", "device 'gpu0'",
     lambda c: __import__("stoplib.engines.hf").engines.hf.HFEngine(c.model, device="gpu0"), ValueError, "'gpu0'")
case(M, "engines.hf.HFEngine()", "dtype 'int3'",
     lambda c: __import__("stoplib.engines.hf").engines.hf.HFEngine(c.model, dtype="int3"), ValueError, "'int3'")
case(M, "models.materialize()", "an unknown GGUF source",
     lambda c: __import__("stoplib.models").models.materialize("gguf:nobody/none.gguf", c.tmp), ValueError,
     "nobody/none.gguf")
case(M, "stages labels (model loaded)", "prompt + prefix beyond the model's context",
     lambda c: __import__("stoplib.stages").stages.check_context(
         _resolve(prefix_len=490, max_new_tokens=500)(c), [_p()], [[1] * 40]), ValueError,
     "prefix_len=490", "maximum context", "512")


def _p() -> Any:
    from stoplib.problems import Problem

    return Problem(id="long-one", prompt="x", answer="1", kind="math", source="t")


# ------------------------------------------------------------------------------------------- runs
def run_case(spec: Case, ctx: Ctx) -> tuple[str, str]:
    """(error type, message) of a case; a case that returns is a silent success."""
    try:
        result = spec.call(ctx)
    except spec.errors as err:
        return type(err).__name__, str(err)
    return "no error", f"returned {str(result)[:80]!r}"


def _make_context(tmp: Path, model: Path, shared: Path) -> Ctx:
    return Ctx(tmp=tmp, model=model, checkpoint=shared / "checkpoint", run=shared / "run")


@pytest.fixture(scope="module")
def shared(tiny_model_dir, tmp_path_factory) -> Path:
    """A STOP checkpoint and a one-epoch training run on the tiny model (made once)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    build_shared(tiny_model_dir, root)
    return root


def build_shared(model: Path, root: Path) -> None:
    from stoplib.train import TrainConfig, train_stop
    from tests.test_train import make_scorer, synthetic

    make_scorer(model).save_pretrained(root / "checkpoint")
    train_stop(make_scorer(model), synthetic(16, 1), synthetic(8, 2), TrainConfig(epochs=1, batch_size=8), root / "run",
               progress=False)


@pytest.mark.parametrize("spec", [pytest.param(s, id=f"{s.category}: {s.where}: {s.bad}", marks=s.marks) for s in CASES])
def test_bad_input_gets_a_clear_error(spec: Case, tiny_model_dir, shared, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths of the cases resolve here
    kind, message = run_case(spec, _make_context(tmp_path, tiny_model_dir, shared))
    assert kind != "no error", f"silent success: {message}"
    for fragment in spec.expect:
        assert fragment in message, f"{fragment!r} not in the {kind} message: {message}"
    if spec.errors == U:
        assert "Traceback" not in message, message


def test_the_matrix_is_large_and_spread():
    per_category = {c: sum(1 for s in CASES if s.category == c) for c in dict.fromkeys(s.category for s in CASES)}
    assert len(CASES) >= 60 and min(per_category.values()) >= 8, per_category


def test_the_documented_table_lists_every_case():
    """docs/bad_inputs.md is regenerated from this file; a case added here must appear there."""
    doc = Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"
    rows = [line for line in doc.read_text(encoding="utf-8").splitlines() if line.startswith("| ") and "---" not in line]
    documented = [tuple(cell.strip() for cell in row.split("|")[1:3]) for row in rows[1:]]
    assert documented == [(f"{c.category}: {c.where}", c.bad) for c in CASES], \
        "regenerate with: python -m tests.test_bad_inputs docs/bad_inputs.md"

def write_table(out: Path) -> dict[str, int]:
    """Run every case and write the matrix as a markdown table; returns the counts per category."""
    import tempfile

    from tests.conftest import build_char_tokenizer, build_tiny_llama

    with tempfile.TemporaryDirectory() as root:
        root_path = Path(root)
        tok = build_char_tokenizer()
        model = build_tiny_llama(len(tok))
        model.save_pretrained(root_path / "model")
        tok.save_pretrained(root_path / "model")
        build_shared(root_path / "model", root_path / "shared")
        lines = ["| where | bad input | what the user gets |", "|---|---|---|"]
        for i, spec in enumerate(CASES):
            tmp = root_path / f"case{i}"
            tmp.mkdir()
            cwd = os.getcwd()
            os.chdir(tmp)
            try:
                kind, message = run_case(spec, _make_context(tmp, root_path / "model", root_path / "shared"))
            finally:
                os.chdir(cwd)
            message = message.replace(str(root_path), "…").replace(str(Path(__file__).resolve().parents[1]), "<repo>")
            message = " ".join(message.split())
            if spec.errors == U:
                message = message.split("error: ", 1)[-1]
                kind = "exit 2"
            quote = message if len(message) <= 150 else message[:147] + "..."
            lines.append(f"| {spec.category}: {spec.where} | {spec.bad} | {kind}: `{quote.replace('|', '/')}` |")
    counts = {c: sum(1 for s in CASES if s.category == c) for c in dict.fromkeys(s.category for s in CASES)}
    header = ["# Bad inputs and what they get", "",
              f"{len(CASES)} cases of `tests/test_bad_inputs.py` ("
              + ", ".join(f"{c} {n}" for c, n in counts.items())
              + "). Each asserts a user-facing error whose message names the bad thing; the CLI cases exit 2",
              "with the message and no traceback (`STOPLIB_TRACEBACK=1` shows one). Regenerate this page with",
              "`python -m tests.test_bad_inputs docs/bad_inputs.md`.", ""]
    out.write_text("\n".join(header + lines) + "\n")
    return counts


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    counts = write_table(Path(sys.argv[1]))
    print(counts, "total", sum(counts.values()))
