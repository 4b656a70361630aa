"""The rollout bank: N complete paths per evaluation problem, generated once, replayed often.

A complete path contains its own prefix at every length L, and its remainder is a valid
continuation of that prefix. So one bank lets every signal be scored on the same prefixes,
and every (N' <= N, k, L) policy be evaluated by replay, without generating again.

On disk (one directory): ``<problem index>.npz`` per problem — token ids, chosen-token
log-probabilities, entropies and top-k log-probabilities of all paths, concatenated with
offsets — and ``index.jsonl`` with each problem's graded answers. A problem's arrays are
written (atomically) before its index line, so an interrupted build resumes per problem.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .engines.base import Engine, ReasoningPath, SamplingParams
from .grading import grade
from .problems import Problem
from .store import JsonlLog, atomic_write_bytes, read_jsonl


@dataclass
class BankProblem:
    """The N paths of one problem, with their grades."""

    problem: Problem
    paths: list[ReasoningPath]
    answers: list[str | None]
    correct: np.ndarray  # (N,) bool

    def prefixes(self, length: int) -> list[ReasoningPath]:
        """Each path cut at ``length`` generated tokens (finished if it ended by then)."""
        return [p.prefix(length) for p in self.paths]


@dataclass
class Bank:
    problems: list[BankProblem]

    @property
    def n_paths(self) -> int:
        return min(len(bp.paths) for bp in self.problems)

    def head(self, n: int) -> "Bank":
        """The same bank restricted to each problem's first ``n`` paths."""
        return Bank([BankProblem(bp.problem, bp.paths[:n], bp.answers[:n], bp.correct[:n]) for bp in self.problems])

    def correct_matrix(self) -> np.ndarray:
        """(P, N) correctness."""
        n = self.n_paths
        return np.stack([bp.correct[:n] for bp in self.problems])

    def lengths(self) -> np.ndarray:
        """(P, N) generated tokens per path."""
        n = self.n_paths
        return np.array([[p.generated_tokens for p in bp.paths[:n]] for bp in self.problems])


def _pack(paths: Sequence[ReasoningPath]) -> bytes:
    """One problem's paths as ``.npz`` bytes. The top-k arrays are (total tokens, k), with k = 0
    when the paths were sampled with ``SamplingParams(logprobs=0)`` (no top log-probabilities)."""
    lengths = np.array([p.generated_tokens for p in paths], dtype=np.int64)
    k = max((p.top_logprobs.shape[1] for p in paths if p.top_logprobs.ndim == 2), default=0)

    def cat(arrays, dtype, width=None):
        # Rows are given, never inferred: numpy cannot infer -1 rows of an empty (T, 0) array.
        parts = [np.asarray(a, dtype=dtype).reshape((-1,) if width is None else (len(p.token_ids), width))
                 for a, p in zip(arrays, paths)]
        return np.concatenate(parts) if parts else np.zeros((0,) if width is None else (0, width), dtype)

    return _savez(
        lengths=lengths,
        token_ids=cat([p.token_ids for p in paths], np.int32),
        logprobs=cat([p.logprobs for p in paths], np.float32),
        entropies=cat([p.entropies for p in paths], np.float32),
        top_ids=cat([p.top_ids if k else np.zeros((len(p.token_ids), 0)) for p in paths], np.int32, k),
        top_logprobs=cat([p.top_logprobs if k else np.zeros((len(p.token_ids), 0)) for p in paths], np.float16, k),
        finished=np.array([p.finish_reason == "stop" for p in paths]),
        prompt_ids=np.asarray(paths[0].prompt_ids, dtype=np.int32),
    )


def _savez(**arrays: np.ndarray) -> bytes:
    """``np.savez_compressed`` bytes with a fixed timestamp in the archive, so the same paths give
    the same file in every process (numpy stamps the current time); ``np.load`` reads it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)
    return buf.getvalue()


def _unpack(path: Path, prompt_index: int) -> list[ReasoningPath]:
    with np.load(path) as z:
        lengths, prompt = z["lengths"], z["prompt_ids"].tolist()
        ends = np.cumsum(lengths)
        starts = ends - lengths
        out = []
        for i, (s, e) in enumerate(zip(starts, ends)):
            out.append(ReasoningPath(
                prompt_index=prompt_index, sample_index=i, prompt_ids=prompt,
                token_ids=z["token_ids"][s:e].tolist(), logprobs=z["logprobs"][s:e],
                entropies=z["entropies"][s:e], top_ids=z["top_ids"][s:e],
                top_logprobs=z["top_logprobs"][s:e].astype(np.float32),
                finish_reason="stop" if z["finished"][i] else "length",
            ))
    return out


def build_bank(
    engine: Engine,
    problems: Sequence[Problem],
    prompts: Sequence[Sequence[int]],
    n: int,
    params: SamplingParams,
    out_dir: str | Path,
    *,
    problems_per_call: int = 8,
    progress: bool = True,
    on_problem: Callable[[int], None] | None = None,
    indices: Sequence[int] | None = None,
) -> Bank:
    """Generate (or finish generating) the bank in ``out_dir`` and load it.

    ``indices`` are the problems' positions in the whole problem list when ``problems`` is a
    shard of it (they name the files and the index rows); default 0, 1, ...
    """
    if len(problems) != len(prompts):
        raise ValueError(f"{len(problems)} problems but {len(prompts)} prompts")
    indices = list(range(len(problems))) if indices is None else list(indices)
    if len(indices) != len(problems):
        raise ValueError(f"{len(problems)} problems but {len(indices)} indices")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = JsonlLog(out_dir / "index.jsonl", key="problem_id")
    todo = [i for i, p in enumerate(problems) if p.id not in index]
    iterator = range(0, len(todo), problems_per_call)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="bank", unit="batch")
    for start in iterator:
        chunk = todo[start : start + problems_per_call]
        groups = engine.generate([prompts[i] for i in chunk], n, params)
        for i, paths in zip(chunk, groups):
            grades = [grade(engine.tokenizer.decode(p.token_ids, skip_special_tokens=True), problems[i]) for p in paths]
            atomic_write_bytes(out_dir / f"{indices[i]:05d}.npz", _pack(paths))
            index.append({"problem_id": problems[i].id, "index": indices[i], "answers": [g.answer for g in grades],
                          "correct": [g.correct for g in grades], "tokens": sum(p.generated_tokens for p in paths)})
            if on_problem:
                on_problem(len(index))
    index.close()
    return load_bank(out_dir, problems)


def copy_problem(source: str | Path, target: str | Path, index: int) -> None:
    """Copy the arrays of problem ``index`` from the bank directory ``source`` into ``target``."""
    name = f"{index:05d}.npz"
    shutil.copyfile(Path(source) / name, Path(target) / f".{name}.tmp")
    (Path(target) / f".{name}.tmp").replace(Path(target) / name)


def load_bank(out_dir: str | Path, problems: Sequence[Problem]) -> Bank:
    """Load a bank built for ``problems`` (in that order); errors name what is missing."""
    out_dir = Path(out_dir)
    if not (out_dir / "index.jsonl").is_file():
        raise FileNotFoundError(f"{out_dir} holds no rollout bank (no index.jsonl); build it first")
    rows = {r["problem_id"]: r for r in read_jsonl(out_dir / "index.jsonl")}
    bank = []
    for i, problem in enumerate(problems):
        if problem.id not in rows:
            raise FileNotFoundError(f"{out_dir}: problem {problem.id!r} is not in the bank; build it first")
        row = rows[problem.id]
        paths = _unpack(out_dir / f"{row['index']:05d}.npz", i)
        bank.append(BankProblem(problem, paths, row["answers"], np.array(row["correct"], dtype=bool)))
    return Bank(bank)
