"""The majority vote online (stoplib.pipeline) and in replay (stoplib.metrics) on the same scripted
paths: ties, unscored paths, missing answers and equivalent answers written differently."""

from __future__ import annotations

import random

import numpy as np
import pytest

from stoplib.bank import build_bank
from stoplib.engines.base import Launch, ReasoningPath, SamplingParams
from stoplib.grading import answer_classes, majority_vote
from stoplib.metrics import replay, score_bank
from stoplib.pipeline import run_pipeline
from stoplib.problems import Problem

N, K, L = 6, 3, 4
LONG, SHORT = 10, 3  # path lengths: SHORT ends before the check at L
PARAMS = SamplingParams(max_new_tokens=50, seed=0, logprobs=1)
OPTIONS = (("A", "a"), ("B", "b"), ("C", "c"), ("D", "d"))
NO_ANSWER = "I am not sure."

# Per problem: (kind, gold, [(text, length, score)] for samples 0..5), the expected vote and its
# correctness. With K = 3 the three best-scored unfinished paths are kept; a SHORT path is kept
# unscored. Every case's pruned paths would change the vote if they counted.
CASES = [
    # "0.5" and "1/2" are one answer (2 votes) against "3" (1); without pruning "3" has 3 votes
    ("math", "\\frac{1}{2}", [("so \\boxed{3}", LONG, 0.9), ("\\boxed{0.5}", LONG, 0.8), ("\\boxed{1/2}", LONG, 0.7),
                              ("\\boxed{3}", LONG, 0.1), ("\\boxed{3}", LONG, 0.2), (NO_ANSWER, LONG, 0.0)],
     "0.5", True),
    # 1-1 tie (the third kept path has no answer): the answer with the higher best score wins
    ("math", "7", [("\\boxed{5}", LONG, 0.6), ("\\boxed{7}", LONG, 0.9), (NO_ANSWER, LONG, 0.95),
                   ("\\boxed{5}", LONG, 0.1), ("\\boxed{5}", LONG, 0.2), ("\\boxed{5}", LONG, 0.3)],
     "7", True),
    # 1-1 tie with equal scores: the answer seen first wins; "012" is read as 12
    ("integer", "12", [("The answer is 13.", LONG, 0.5), ("The answer is 012.", LONG, 0.5), (NO_ANSWER, LONG, 0.5),
                       ("Answer: 12", LONG, 0.4), ("Answer: 12", LONG, 0.4), ("Answer: 12", LONG, 0.4)],
     "13", False),
    # a path that ended before the check is kept and votes with no score: the scored "4" wins the tie
    ("math", "4", [("\\boxed{9}", SHORT, 0.99), ("\\boxed{4}", LONG, 0.9), (NO_ANSWER, LONG, 0.8),
                   (NO_ANSWER, LONG, 0.7), ("\\boxed{9}", LONG, 0.1), ("\\boxed{9}", LONG, 0.2)],
     "4", True),
    # no kept path has an answer: no vote, incorrect
    ("multiple_choice", "B", [(NO_ANSWER, LONG, 0.9), (NO_ANSWER, LONG, 0.8), (NO_ANSWER, LONG, 0.7),
                              ('"ANSWER": "B"', LONG, 0.1), ('"ANSWER": "B"', LONG, 0.2), ('"ANSWER": "B"', LONG, 0.3)],
     None, False),
    # a lower-case letter and a boxed letter are the same choice
    ("multiple_choice", "C", [('"ANSWER": "c"', LONG, 0.9), ('"ANSWER": "A"', LONG, 0.8), ("so \\boxed{C}", LONG, 0.7),
                              ('"ANSWER": "A"', LONG, 0.1), ('"ANSWER": "A"', LONG, 0.2), ('"ANSWER": "A"', LONG, 0.3)],
     "C", True),
    # "033" and "33." are 33 (2 votes) against "12" (1); the vote is the class's first-seen form
    ("math", "33", [("\\boxed{12}", LONG, 0.9), ("\\boxed{033}", LONG, 0.8), ("\\boxed{33.}", LONG, 0.7),
                    ("\\boxed{12}", LONG, 0.1), ("\\boxed{12}", LONG, 0.2), ("\\boxed{12}", LONG, 0.3)],
     "033", True),
]


def problems() -> list[Problem]:
    return [Problem(id=f"q{p}", prompt=f"question {p}", answer=gold, kind=kind, source="test",
                    options=OPTIONS if kind == "multiple_choice" else None)
            for p, (kind, gold, *_) in enumerate(CASES)]


PROMPTS = [[1000 + p] for p in range(len(CASES))]


class ScriptedEngine:
    """Sample i of problem p is ``length`` copies of token p*100+i and decodes to the case's text."""

    name = "scripted"

    def __init__(self) -> None:
        self.tokenizer = self

    def decode(self, ids, skip_special_tokens=True):
        p, i = divmod(ids[0], 100)
        return CASES[p][2][i][0]

    def generate(self, prompts, n, params, *, seeds=None):
        out = []
        for j, prompt in enumerate(prompts):
            p = prompt[0] - 1000
            group = []
            for i, (_, length, _) in enumerate(CASES[p][2][:n]):
                zeros = np.zeros(length, np.float32)
                group.append(ReasoningPath(j, i, list(prompt), [p * 100 + i] * length, logprobs=zeros, entropies=zeros,
                                  top_ids=np.zeros((length, 1), np.int32), top_logprobs=zeros[:, None],
                                  finish_reason="stop"))
            out.append(group)
        return out

    def launch(self, prompts, n, prefix_len, params):
        full = self.generate(prompts, n, params)
        return Launch([[path.prefix(prefix_len) for path in group] for group in full], params, prefix_len, full)

    def resume(self, launch, keep):
        return [[launch.state[p][i] for i in chosen] for p, chosen in enumerate(keep)]


class ScriptedSignal:
    """The case's score of each sample."""

    name = "scripted"

    def score(self, prefixes, problem=None):
        p = int(problem.id[1:])
        return np.array([CASES[p][2][path.sample_index][2] for path in prefixes])


@pytest.fixture(scope="module")
def online_and_replayed(tmp_path_factory):
    engine, signal, qs = ScriptedEngine(), ScriptedSignal(), problems()
    online = run_pipeline(engine, qs, PROMPTS, signal, n=N, k=K, prefix_len=L, params=PARAMS,
                          max_paths_in_flight=None)
    bank = build_bank(engine, qs, PROMPTS, N, PARAMS, tmp_path_factory.mktemp("bank"), progress=False)
    replayed = replay(bank, score_bank(bank, signal, L), n=N, k=K, prefix_len=L)
    return online, replayed


def test_online_and_replayed_votes_agree(online_and_replayed):
    online, replayed = online_and_replayed
    assert [p.vote for p in online.problems] == replayed.votes
    assert [p.vote_correct for p in online.problems] == replayed.vote_correct.tolist()
    assert [[r.kept for r in p.records] for p in online.problems] == replayed.kept.tolist()
    assert online.cons == pytest.approx(replayed.cons)


def test_votes_are_the_expected_answers(online_and_replayed):
    """Each case's vote, worked out by hand (so both sides cannot be wrong together)."""
    online, replayed = online_and_replayed
    assert replayed.votes == [case[3] for case in CASES]
    assert replayed.vote_correct.tolist() == [case[4] for case in CASES]
    assert [p.vote for p in online.problems] == [case[3] for case in CASES]
    assert online.cons == pytest.approx(np.mean([case[4] for case in CASES]))


def test_pruned_paths_would_have_changed_every_vote():
    """The cases are built so that the pruned paths matter: the vote over all six answers differs."""
    from stoplib.grading import extract_answer

    for p, (kind, _, samples, expected, _) in enumerate(CASES):
        letters = "".join(letter for letter, _ in OPTIONS)
        answers = [extract_answer(text, kind, letters) for text, _, _ in samples]
        assert majority_vote(answers, [s for _, _, s in samples], kind) != expected, p


def test_the_vote_does_not_depend_on_the_order_of_equivalent_forms():
    """"2^{10}" and "1024" are one answer whichever comes first."""
    assert majority_vote(["1024", "7", "2^{10}", "7"], kind="math") == "1024"  # one class: 2 votes vs 2, seen first
    assert majority_vote(["2^{10}", "7", "1024", "7"], kind="math") == "2^{10}"
    assert majority_vote(["7", "1024", "2^{10}"], kind="math") == "1024"  # 2 votes vs 1 in either order
    assert majority_vote(["7", "2^{10}", "1024"], kind="math") == "2^{10}"


def test_the_classes_are_the_same_in_every_order():
    """The partition into answers depends on which answers occur, never on their order; the class
    ids number the classes by first appearance."""
    answers = ["2^{10}", "1024", "01024", "7", "\\frac{1}{2}", "0.5", "1/2", None, "7."]
    expected = {frozenset({"2^{10}", "1024", "01024"}), frozenset({"7", "7."}),
                frozenset({"\\frac{1}{2}", "0.5", "1/2"})}
    rng = random.Random(0)
    orders = [answers, answers[::-1]] + [rng.sample(answers, len(answers)) for _ in range(50)]
    for shuffled in orders:
        classes = answer_classes(shuffled, "math")
        groups: dict[int, set[str]] = {}
        for answer, c in zip(shuffled, classes):
            if answer is None:
                assert c is None
            else:
                groups.setdefault(c, set()).add(answer)
        assert {frozenset(g) for g in groups.values()} == expected, shuffled
        assert list(dict.fromkeys(c for c in classes if c is not None)) == [0, 1, 2], shuffled
