"""The online pipeline: Launch -> Check -> Resume -> vote (paper Eqs. 1-3, Figure 3).

1. Launch: N paths per problem, each paused after L generated tokens (KV cache kept).
2. Check: a signal scores the paused prefixes (STOP reads the cache directly).
3. Resume: the top-k prefixes by score continue to completion; the others are freed.
4. Vote: majority vote over the answers of the kept, completed paths.

Paths that end before L need no check: they are complete, are kept and vote, and do not
take one of the k resume slots (the authors' code does the same; the paper is silent).
Ties in the top-k go to the lower sample index. Token accounting excludes prompt tokens:
all N prefixes are paid for, continuations only for resumed paths.

Memory: problems go through Launch -> Check in groups of at most ``max_paths_in_flight`` paths
(whole problems), so the engine holds the paused state (the KV cache, for the HF engine) of all
N paths of one group at a time. Right after Check, an engine that can (``prune``, the HF engine)
frees every discarded path's state; the kept paths of consecutive groups then wait until they
fill ``resume_rows`` rows (default: one engine batch) and resume together (``resume_many``), so
Resume runs full batches, not k paths per problem. Peak: one group's paused paths plus up to
one batch of kept ones. Groups change no result: each path's randomness is keyed by its seed,
prompt and sample index, and signals score each problem on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .engines.base import Engine, Launch, Path, SamplingParams
from .grading import answers_equal, grade, majority_vote
from .problems import Problem
from .signals.base import Signal, top_k


@dataclass
class PathRecord:
    """What happened to one path."""

    problem_id: str
    sample_index: int
    prefix_tokens: int
    score: float  # NaN for paths that finished before L (not checked)
    finished_early: bool
    kept: bool
    generated_tokens: int  # what this path cost (prefix, plus continuation if resumed)
    answer: str | None = None  # graded only for complete paths
    correct: bool | None = None


@dataclass
class ProblemResult:
    problem_id: str
    records: list[PathRecord]
    vote: str | None
    vote_correct: bool
    tokens: int  # generated tokens spent on this problem (prompt excluded)

    @property
    def kept(self) -> list[PathRecord]:
        return [r for r in self.records if r.kept]

    @property
    def kept_accuracy(self) -> float:
        """Mean correctness of the kept paths (this problem's term of avg@k|N)."""
        kept = self.kept
        return float(np.mean([bool(r.correct) for r in kept])) if kept else float("nan")


@dataclass
class PipelineResult:
    problems: list[ProblemResult] = field(default_factory=list)

    @property
    def avg_kept(self) -> float:
        """avg@k|N: mean over problems of the kept paths' accuracy."""
        return float(np.nanmean([p.kept_accuracy for p in self.problems]))

    @property
    def cons(self) -> float:
        """Cons@N: accuracy of the majority vote over kept paths."""
        return float(np.mean([p.vote_correct for p in self.problems]))

    @property
    def tokens(self) -> int:
        return int(sum(p.tokens for p in self.problems))


def check(engine: Engine, launch: Launch, signal: Signal, problems: Sequence[Problem]) -> list[np.ndarray]:
    """Scores of every paused path, per problem (NaN for paths that already finished)."""
    from_cache = signal.score_launch(engine, launch) if hasattr(signal, "score_launch") else None
    out = []
    for problem, group in zip(problems, launch.paths):
        scores = np.full(len(group), np.nan)
        open_rows = [i for i, p in enumerate(group) if not p.finished]
        if open_rows:
            if from_cache is not None:
                values = [from_cache[(group[i].prompt_index, group[i].sample_index)] for i in open_rows]
            else:
                values = signal.score([group[i] for i in open_rows], problem)
            scores[open_rows] = values
        out.append(scores)
    return out


def problem_groups(count: int, n: int, max_paths_in_flight: int | None) -> list[range]:
    """Consecutive groups of problems with at most ``max_paths_in_flight`` paths each (N per problem;
    at least one problem per group). None: one group."""
    if max_paths_in_flight is None or count == 0:
        return [range(count)]
    if isinstance(max_paths_in_flight, bool) or not isinstance(max_paths_in_flight, int) or max_paths_in_flight < 1:
        raise ValueError(f"max_paths_in_flight must be >= 1 or None, got {max_paths_in_flight}")
    per_group = max(1, max_paths_in_flight // n)
    return [range(start, min(count, start + per_group)) for start in range(0, count, per_group)]


def run_pipeline(
    engine: Engine,
    problems: Sequence[Problem],
    prompts: Sequence[Sequence[int]],
    signal: Signal,
    *,
    n: int,
    k: int,
    prefix_len: int,
    params: SamplingParams,
    max_paths_in_flight: int | None | str = "auto",
    resume_rows: int | None | str = "auto",
) -> PipelineResult:
    """Launch N paths per problem, check with ``signal``, resume the top k, vote.

    ``max_paths_in_flight`` bounds the paths launched together (problems are processed in groups
    of ``max(1, max_paths_in_flight // n)``): peak memory then depends on the group, not on the
    number of problems. "auto" (default): the engine's ``batch_size`` when it has one, i.e. one
    engine batch of paths in flight (the HF engine decodes batch by batch anyway, so batches stay
    as full as before when N divides the batch size), else every problem at once (vLLM manages its
    own memory). None: every problem at once. The result does not depend on it.

    ``resume_rows``: on an engine with ``prune`` and ``resume_many``, the kept paths of consecutive
    groups are resumed together once they reach this many (the last ones whatever their number).
    "auto" (default): the engine's ``batch_size``. None: each group resumes on its own. The result
    does not depend on it.
    """
    if len(problems) != len(prompts):
        raise ValueError(f"{len(problems)} problems but {len(prompts)} prompts")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if not 1 <= prefix_len < params.max_new_tokens:
        raise ValueError(f"prefix_len={prefix_len} must be in [1, max_new_tokens={params.max_new_tokens})")
    if not problems:
        raise ValueError("run_pipeline got no problems")
    if max_paths_in_flight == "auto":
        max_paths_in_flight = getattr(engine, "batch_size", None)
    pooled = hasattr(engine, "prune") and hasattr(engine, "resume_many")
    if resume_rows == "auto":
        resume_rows = getattr(engine, "batch_size", None)
    if not pooled or resume_rows is None:
        resume_rows = 0  # every group resumes on its own
    result = PipelineResult()
    pending: list[_Checked] = []
    for group in problem_groups(len(problems), n, max_paths_in_flight):
        checked = _launch_and_check(engine, [problems[i] for i in group], [prompts[i] for i in group], signal,
                                    n=n, k=k, prefix_len=prefix_len, params=params)
        if pooled:
            engine.prune(checked.launch, checked.keep)  # free the discarded paths' state right after Check
        pending.append(checked)
        if sum(c.open_kept for c in pending) >= resume_rows:
            result.problems.extend(_resume(engine, pending, pooled))
            pending = []
    if pending:
        result.problems.extend(_resume(engine, pending, pooled))
    return result


@dataclass
class _Checked:
    """A group of problems after Launch and Check, waiting for Resume."""

    problems: Sequence[Problem]
    launch: Launch
    scores: list[np.ndarray]
    keep: list[list[int]]

    @property
    def open_kept(self) -> int:
        return sum(len(k) for k in self.keep)


def _launch_and_check(
    engine: Engine,
    problems: Sequence[Problem],
    prompts: Sequence[Sequence[int]],
    signal: Signal,
    *,
    n: int,
    k: int,
    prefix_len: int,
    params: SamplingParams,
) -> _Checked:
    """Launch and Check one group of problems; the top k open paths of each are to be kept."""
    launch = engine.launch(prompts, n, prefix_len, params)
    scores = check(engine, launch, signal, problems)
    keep = []
    for group, s in zip(launch.paths, scores):
        open_rows = [i for i, p in enumerate(group) if not p.finished]
        keep.append(top_k(s[open_rows], [group[i].sample_index for i in open_rows], k))
    return _Checked(problems, launch, scores, keep)


def _resume(engine: Engine, pending: Sequence[_Checked], pooled: bool) -> list[ProblemResult]:
    """Resume the kept paths of checked groups (together, on a pooling engine), then vote."""
    prefixes = [[[(p.generated_tokens, p.finished) for p in group] for group in c.launch.paths] for c in pending]
    paused = [c.launch.paths for c in pending]
    if pooled:  # the discarded paths' state was freed at Check
        resumed = engine.resume_many([c.launch for c in pending], [c.keep for c in pending])
    else:  # frees the discarded paths' state first, then continues the kept
        resumed = [engine.resume(c.launch, c.keep) for c in pending]
    results = []
    for c, groups, done_groups, kept_groups in zip(pending, paused, prefixes, resumed):
        for problem, group, s, done, kept_paths in zip(c.problems, groups, c.scores, done_groups, kept_groups):
            results.append(_problem_result(engine, problem, group, s, done, kept_paths))
    return results


def _problem_result(engine: Engine, problem: Problem, group: Sequence[Path], scores: np.ndarray,
                    done: Sequence[tuple[int, bool]], kept_paths: Sequence[Path]) -> ProblemResult:
    """Records, vote and tokens of one problem."""
    by_index = {p.sample_index: p for p in kept_paths}
    records = []
    for path, score, (prefix_tokens, finished) in zip(group, scores, done):
        final: Path | None = path if finished else by_index.get(path.sample_index)
        rec = PathRecord(problem.id, path.sample_index, prefix_tokens, float(score), finished,
                         kept=final is not None, generated_tokens=(final or path).generated_tokens)
        if final is not None:
            g = grade(engine.tokenizer.decode(final.token_ids, skip_special_tokens=True), problem)
            rec.answer, rec.correct = g.answer, g.correct
        records.append(rec)
    kept = [r for r in records if r.kept]
    vote = majority_vote([r.answer for r in kept], [r.score for r in kept], problem.kind)
    vote_correct = vote is not None and answers_equal(vote, problem.answer, problem.kind)
    return ProblemResult(problem.id, records, vote, vote_correct, tokens=sum(r.generated_tokens for r in records))
