"""The online pipeline: Launch -> Check -> Resume -> vote (paper Eqs. 1-3, Figure 3).

1. Launch: N paths per problem, each paused after L generated tokens (KV cache kept).
2. Check: a signal scores the paused prefixes (STOP reads the cache directly).
3. Resume: the top-k prefixes by score continue to completion; the others are freed.
4. Vote: majority vote over the answers of the kept, completed paths.

Paths that end before L need no check: they are complete, are kept and vote, and do not
take one of the k resume slots (the authors' code does the same; the paper is silent).
Ties in the top-k go to the lower sample index. Token accounting excludes prompt tokens:
all N prefixes are paid for, continuations only for resumed paths.

Progressive pruning (``schedule=[(L_1, k_1), (L_2, k_2), ...]``, L increasing, k not increasing):
Launch pauses at L_1 and keeps k_1; the survivors continue to L_2 and pause again (the HF engine's
``advance_many``: STOP's Check reads the grown cache, text and statistics signals read the longer
prefix), the best k_2 go on, and so on; the last survivors run to completion. At each stage a path
that ended since the last check is kept, votes (with the score of its last check) and takes no
slot. ``n, k, prefix_len`` is the schedule ``[(prefix_len, k)]``. ``metrics.replay_progressive``
gives the same kept paths, votes and tokens from a bank.

Memory: problems go through Launch -> Check in groups of at most ``max_paths_in_flight`` paths
(whole problems), so the engine holds the paused state (the KV cache, for the HF engine) of all
N paths of one group at a time. Right after Check, an engine that can (``prune``, the HF engine)
frees every discarded path's state; the kept paths of consecutive groups then wait until they
fill ``resume_rows`` rows (default: one engine batch) and resume together (``resume_many``), so
Resume runs full batches, not k paths per problem; with a schedule, the survivors of each stage
are pooled the same way before they advance to the next. Peak: one group's paused paths plus up
to one batch of kept ones (per stage). Groups change no result: each path's randomness is keyed
by its seed, prompt and sample index, and signals score each problem on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .engines.base import Engine, Launch, ReasoningPath, SamplingParams
from .grading import answers_equal, grade, majority_vote
from .metrics import Schedule, check_schedule
from .problems import Problem
from .signals.base import Signal, top_k


@dataclass
class PathRecord:
    """What happened to one path."""

    problem_id: str
    sample_index: int
    prefix_tokens: int
    score: float  # at the path's last check; NaN for paths that finished before L (not checked)
    finished_early: bool  # ended before the check of the last stage it reached
    kept: bool
    generated_tokens: int  # what this path cost (prefix, plus continuation if resumed)
    answer: str | None = None  # graded only for complete paths
    correct: bool | None = None
    stage: int = 0  # index of the last stage of the schedule the path reached (0: Launch)


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
    #: With ``k="auto"``: the law's recipe that set N and k (:func:`~stoplib.scaling.recommend_retention`).
    plan: dict[str, Any] | None = None

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
    k: int | str | None = None,
    prefix_len: int | None = None,
    schedule: Schedule | None = None,
    params: SamplingParams,
    max_paths_in_flight: int | None | str = "auto",
    resume_rows: int | None | str = "auto",
    budget: float | None = None,
    task_len: float | None = None,
    law: Any = None,
) -> PipelineResult:
    """Launch N paths per problem, check with ``signal``, resume the top k, vote.

    Give either ``k`` and ``prefix_len`` (one check), or ``schedule``: stages ``(L_i, k_i)`` with
    L increasing and k not increasing (progressive pruning, see the module docstring; more than
    one stage needs an engine with ``advance_many``, i.e. the HF engine).

    ``k="auto"``: the retention law picks N and k for a token ``budget`` per problem (paper §5.1,
    Eq. 7; :func:`~stoplib.scaling.recommend_retention`): γ* from ``law`` (a
    ``ScalingCoefficients`` or a fit of :func:`~stoplib.scaling.fit_scaling_law`; default the
    paper's) at ``budget``, ``prefix_len`` and ``task_len`` (the mean full path length in tokens,
    e.g. a bank's), then the N ≤ ``n`` and k = γ*N that spend about ``budget``. The recipe is
    returned as ``result.plan``.

    ``max_paths_in_flight`` bounds the paths launched together (problems are processed in groups
    of ``max(1, max_paths_in_flight // n)``): peak memory then depends on the group, not on the
    number of problems. "auto" (default): the engine's ``batch_size`` when it has one, i.e. one
    engine batch of paths in flight (the HF engine decodes batch by batch anyway, so batches stay
    as full as before when N divides the batch size), else every problem at once (vLLM manages its
    own memory). None: every problem at once. The result does not depend on it.

    ``resume_rows``: on an engine with ``prune`` and ``resume_many``, the kept paths of consecutive
    groups are resumed (with a schedule: advanced to the next stage) together once they reach this
    many (the last ones whatever their number). "auto" (default): the engine's ``batch_size``.
    None: each group resumes on its own. The result does not depend on it.
    """
    if len(problems) != len(prompts):
        raise ValueError(f"{len(problems)} problems but {len(prompts)} prompts")
    plan = None
    if k == "auto":
        plan = retention_plan(n, prefix_len, budget=budget, task_len=task_len, law=law)
        n, k = plan["n"], plan["k"]
    elif budget is not None or task_len is not None or law is not None:
        raise ValueError("budget, task_len and law go with k='auto' (the retention law picks N and k); "
                         f"got k={k!r}")
    stages = _stages(engine, n, k, prefix_len, schedule)
    if not 1 <= stages[-1][0] < params.max_new_tokens:
        raise ValueError(f"prefix_len={stages[-1][0]} must be in [1, max_new_tokens={params.max_new_tokens})")
    if not problems:
        raise ValueError("run_pipeline got no problems")
    if max_paths_in_flight == "auto":
        max_paths_in_flight = getattr(engine, "batch_size", None)
    pooled = hasattr(engine, "prune") and hasattr(engine, "resume_many")
    if resume_rows == "auto":
        resume_rows = getattr(engine, "batch_size", None)
    if not pooled or resume_rows is None:
        resume_rows = 0  # every group resumes on its own
    run = _Run(engine, signal, stages, pooled, resume_rows)
    for group in problem_groups(len(problems), n, max_paths_in_flight):
        run.add(0, _launch_and_check(engine, [problems[i] for i in group], [prompts[i] for i in group], signal,
                                     n=n, k=stages[0][1], prefix_len=stages[0][0], params=params))
    for stage in range(len(stages)):
        run.flush(stage)
    run.result.plan = plan
    return run.result


def retention_plan(n: int, prefix_len: int | None, *, budget: float | None, task_len: float | None,
                   law: Any = None) -> dict[str, Any]:
    """The (N, k) of ``k="auto"``: :func:`~stoplib.scaling.recommend_retention` with N at most ``n``."""
    from .scaling import PAPER_COEFFICIENTS, ScalingCoefficients, recommend_retention

    coeffs = PAPER_COEFFICIENTS if law is None else getattr(law, "coeffs", law)
    if not isinstance(coeffs, ScalingCoefficients):
        raise TypeError(f"law must be ScalingCoefficients or a fit result with .coeffs, got {type(law).__name__}")
    if prefix_len is None:
        raise ValueError("k='auto' needs prefix_len (a schedule has its own k at every stage)")
    for name, value in (("budget", budget), ("task_len", task_len)):
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"k='auto' needs {name} > 0 (tokens per problem), got {value!r}")
    if not task_len > prefix_len:
        raise ValueError(f"task_len={task_len} must exceed prefix_len={prefix_len}: a path shorter than the "
                         "prefix leaves nothing to prune")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1 (the most paths k='auto' may launch), got {n!r}")
    return recommend_retention(float(budget), prefix_len, float(task_len), n_max=n, coeffs=coeffs)


def _stages(engine: Engine, n: int, k: int | None, prefix_len: int | None,
            schedule: Schedule | None) -> list[tuple[int, int]]:
    """The schedule a ``run_pipeline`` call asks for, validated."""
    if schedule is None:
        if k is None or prefix_len is None:
            raise ValueError("give k and prefix_len, or a schedule of (prefix_len, k) stages")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise ValueError(f"k must be an int or 'auto', got {k!r}")
        if not 1 <= k <= n:
            raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
        return [(prefix_len, k)]
    if k is not None or prefix_len is not None:
        raise ValueError(f"give either k and prefix_len or a schedule, not both (k={k}, prefix_len={prefix_len})")
    stages = check_schedule(schedule, n)
    if len(stages) > 1 and not hasattr(engine, "advance_many"):
        raise ValueError(f"the {getattr(engine, 'name', type(engine).__name__)} engine cannot pause a resumed path "
                         f"again (no advance_many): a schedule of {len(stages)} stages needs the hf engine")
    return stages


@dataclass
class _Track:
    """One problem's N paths through the stages (arrays in the launch's sample order)."""

    problem: Problem
    paths: list[ReasoningPath]  # as launched; the HF engine extends these same objects when it continues them
    prefix_tokens: list[int]  # generated tokens at the Launch pause
    scores: np.ndarray  # score at each path's last check (NaN: never checked)
    early: np.ndarray  # bool: ended before the check of the last stage it reached
    stage: np.ndarray  # int: the last stage each path reached

    def checked(self, stage: int, group: Sequence[ReasoningPath], scores: np.ndarray) -> None:
        """Record a check of the paths ``group`` (those that reached ``stage``)."""
        position = {path.sample_index: j for j, path in enumerate(self.paths)}
        for path, score in zip(group, scores):
            j = position[path.sample_index]
            self.stage[j] = stage
            if path.finished:
                self.early[j] = True
            else:
                self.scores[j] = score


@dataclass
class _Checked:
    """Groups of problems after a check, waiting for the next stage or for Resume."""

    tracks: list[_Track]
    launch: Launch
    keep: list[list[int]]

    @property
    def open_kept(self) -> int:
        return sum(len(k) for k in self.keep)


@dataclass
class _Run:
    """Checked groups pooled per stage: once a stage holds ``resume_rows`` kept paths, they go on
    together (to the next stage's check, or to Resume after the last stage)."""

    engine: Engine
    signal: Signal
    stages: list[tuple[int, int]]
    pooled: bool
    resume_rows: int
    result: PipelineResult = field(default_factory=PipelineResult)
    pending: dict[int, list[_Checked]] = field(default_factory=dict)

    def add(self, stage: int, checked: _Checked) -> None:
        if self.pooled:
            self.engine.prune(checked.launch, checked.keep)  # free the discarded paths' state right after Check
        waiting = self.pending.setdefault(stage, [])
        waiting.append(checked)
        if sum(c.open_kept for c in waiting) >= self.resume_rows:
            self.flush(stage)

    def flush(self, stage: int) -> None:
        waiting, self.pending[stage] = self.pending.get(stage, []), []
        if not waiting:
            return
        if stage == len(self.stages) - 1:
            self.result.problems.extend(_resume(self.engine, waiting, self.pooled))
        else:
            advanced = _advance_and_check(self.engine, waiting, self.signal, stage + 1, self.stages[stage + 1])
            self.add(stage + 1, advanced)


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
    tracks, keep = [], []
    for problem, group, s in zip(problems, launch.paths, scores):
        track = _Track(problem, list(group), [p.generated_tokens for p in group], np.full(len(group), np.nan),
                       np.zeros(len(group), dtype=bool), np.zeros(len(group), dtype=np.int64))
        track.checked(0, group, s)
        tracks.append(track)
        keep.append(_top_k_open(group, s, k))
    return _Checked(tracks, launch, keep)


def _advance_and_check(engine: Any, pending: Sequence[_Checked], signal: Signal, stage: int,
                       step: tuple[int, int]) -> _Checked:
    """Continue the kept paths of checked groups to the next stage's prefix length, check them there
    and select that stage's top k."""
    prefix_len, k = step
    launch = engine.advance_many([c.launch for c in pending], [c.keep for c in pending], prefix_len)
    tracks = [track for c in pending for track in c.tracks]
    scores = check(engine, launch, signal, [track.problem for track in tracks])
    keep = []
    for track, group, s in zip(tracks, launch.paths, scores):
        track.checked(stage, group, s)
        keep.append(_top_k_open(group, s, k))
    return _Checked(tracks, launch, keep)


def _top_k_open(group: Sequence[ReasoningPath], scores: np.ndarray, k: int) -> list[int]:
    """Sample indices of the k best unfinished paths of one problem."""
    open_rows = [i for i, p in enumerate(group) if not p.finished]
    return top_k(scores[open_rows], [group[i].sample_index for i in open_rows], k)


def _resume(engine: Engine, pending: Sequence[_Checked], pooled: bool) -> list[ProblemResult]:
    """Resume the kept paths of checked groups (together, on a pooling engine), then vote."""
    if pooled:  # the discarded paths' state was freed at Check
        resumed = engine.resume_many([c.launch for c in pending], [c.keep for c in pending])
    else:  # frees the discarded paths' state first, then continues the kept
        resumed = [engine.resume(c.launch, c.keep) for c in pending]
    return [_problem_result(engine, track, kept_paths)
            for c, kept_groups in zip(pending, resumed) for track, kept_paths in zip(c.tracks, kept_groups)]


def _problem_result(engine: Engine, track: _Track, kept_paths: Sequence[ReasoningPath]) -> ProblemResult:
    """Records, vote and tokens of one problem."""
    problem = track.problem
    by_index = {p.sample_index: p for p in kept_paths}
    records = []
    for j, path in enumerate(track.paths):
        early = bool(track.early[j])
        final: ReasoningPath | None = path if early else by_index.get(path.sample_index)
        rec = PathRecord(problem.id, path.sample_index, track.prefix_tokens[j], float(track.scores[j]), early,
                         kept=final is not None, generated_tokens=(final or path).generated_tokens,
                         stage=int(track.stage[j]))
        if final is not None:
            g = grade(engine.tokenizer.decode(final.token_ids, skip_special_tokens=True), problem)
            rec.answer, rec.correct = g.answer, g.correct
        records.append(rec)
    kept = [r for r in records if r.kept]
    vote = majority_vote([r.answer for r in kept], [r.score for r in kept], problem.kind)
    vote_correct = vote is not None and answers_equal(vote, problem.answer, problem.kind)
    return ProblemResult(problem.id, records, vote, vote_correct, tokens=sum(r.generated_tokens for r in records))
