"""Tests for stoplib.problems: the five benchmark files, generic JSON/JSONL, error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stoplib.problems import (
    BENCHMARKS,
    Problem,
    ProblemFormatError,
    benchmarks_dir,
    detect_format,
    load_problems,
    save_problems,
)

BENCH = benchmarks_dir()

EXPECTED = {  # name: (count, kind, first id, last id)
    "aime_2024": (30, "math", "2024-I-1", "2024-II-15"),
    "aime_2025": (30, "math", "I-1", "II-15"),
    "brumo_2025": (30, "math", "1", "30"),
    "hmmt_2025": (30, "math", "1", "30"),
    "zebralogic": (593, "multiple_choice", "0", "592"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_benchmark_loads(name: str) -> None:
    count, kind, first, last = EXPECTED[name]
    problems = load_problems(name)
    assert len(problems) == count
    assert {p.kind for p in problems} == {kind}
    assert {p.source for p in problems} == {name}
    ids = [p.id for p in problems]
    assert len(set(ids)) == count
    assert (ids[0], ids[-1]) == (first, last)
    assert all(p.prompt.strip() and p.answer.strip() for p in problems)
    # Loading by path gives the same problems as loading by name.
    assert load_problems(BENCH / BENCHMARKS[name]) == problems


def test_aime_2024_ids_cover_both_contests() -> None:
    problems = load_problems("aime_2024")
    expected = {f"2024-{contest}-{n}" for contest in ("I", "II") for n in range(1, 16)}
    assert {p.id for p in problems} == expected
    # Leading zeros of the reference answers are kept as they are in the file.
    assert next(p for p in problems if p.id == "2024-I-2").answer == "025"
    assert next(p for p in problems if p.id == "2024-I-15").answer == "721"


def test_zebralogic_options_and_meta() -> None:
    problems = load_problems("zebralogic")
    for p in problems:
        assert p.letters in (tuple("ABCDE"), tuple("ABCDEF"))
        assert p.answer in p.letters
    assert problems[0].options[0] == ("A", "jan")
    assert problems[0].meta["domain"] == "Logic"


def test_hmmt_latex_answers_and_limit() -> None:
    problems = load_problems("hmmt_2025", limit=17)
    assert len(problems) == 17
    assert problems[-1].answer == "2^{25} \\cdot 26!"
    assert "solution" in problems[0].meta


def test_generic_jsonl_round_trip(tmp_path: Path) -> None:
    problems = [
        Problem(id="a", prompt="1+1?", answer="2", kind="math", source="mine", meta={"level": 1}),
        Problem(
            id="b",
            prompt="Pick one.",
            answer="B",
            kind="multiple_choice",
            source="mine",
            options=(("A", "x"), ("B", "y")),
        ),
        Problem(id="c", prompt="<q>3 4</q>", answer="7", kind="toy", source="toy"),
    ]
    path = save_problems(problems, tmp_path / "sub" / "out.jsonl")
    loaded = load_problems(path)
    assert loaded == problems
    assert [p.meta for p in loaded] == [p.meta for p in problems]
    assert [Problem.from_dict(p.to_dict()) for p in problems] == problems


def test_generic_json_variants(tmp_path: Path) -> None:
    rows = [
        {"question": "What is 6*7?", "answer": 42},
        {"prompt": "Colour?", "options": ["red", "blue"], "answer": "B", "extra": "kept"},
    ]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(rows))
    first, second = load_problems(path)
    assert (first.id, first.answer, first.kind, first.source) == ("0", "42", "math", "mixed")
    assert second.kind == "multiple_choice"
    assert second.options == (("A", "red"), ("B", "blue"))
    assert second.meta == {"extra": "kept"}


def test_detect_format() -> None:
    assert detect_format([{"year": 2024, "aime_number": 1, "problem_number": 1}]) == "aime_2024"
    assert detect_format([{"problem_idx": 1, "problem": "p", "answer": "1"}]) == "brumo"
    assert detect_format([{"id": "I-1", "problem": "p", "answer": "1"}]) == "generic"


def _error(path: Path) -> str:
    with pytest.raises(ProblemFormatError) as info:
        load_problems(path)
    return str(info.value)


def test_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "p", "answer": "1"}\n\n{"problem": "q", "answer": \n')
    message = _error(path)
    assert "bad.jsonl" in message and "line 3" in message and "invalid JSON" in message


def test_bad_json_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[{"problem": "p",\n "answer": }]')
    message = _error(path)
    assert "broken.json" in message and "line 2" in message


def test_missing_field_names_row_and_field(tmp_path: Path) -> None:
    path = tmp_path / "aime.json"
    rows = [{"id": str(i), "problem": "p", "answer": "1"} for i in range(5)]
    del rows[3]["answer"]
    path.write_text(json.dumps(rows))
    message = _error(path)
    assert "aime.json row 3" in message and "'answer' is missing" in message


def test_missing_field_in_jsonl_names_row_and_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"problem": "p", "answer": "1"}\n\n{"answer": "2"}\n')
    message = _error(path)
    assert "rows.jsonl row 1 (line 3)" in message and "'problem'" in message


def test_wrong_type(tmp_path: Path) -> None:
    path = tmp_path / "typed.jsonl"
    path.write_text('{"problem": "p", "answer": "1"}\n{"problem": 5, "answer": "2"}\n')
    message = _error(path)
    assert "typed.jsonl row 1" in message and "'problem'" in message and "int" in message

    path.write_text('{"problem": "p", "answer": ["1"]}\n')
    assert "'answer'" in _error(path)


def test_wrong_type_in_aime_format(tmp_path: Path) -> None:
    path = tmp_path / "aime24.json"
    row = {"problem": "p", "answer": "1", "year": 2024, "aime_number": 1, "problem_number": "1"}
    path.write_text(json.dumps([row]))
    message = _error(path)
    assert "aime24.json row 0" in message and "'problem_number'" in message


def test_duplicate_id(tmp_path: Path) -> None:
    path = tmp_path / "dups.jsonl"
    lines = [{"id": "x", "problem": "p", "answer": "1"}, {"id": "y", "problem": "q", "answer": "2"},
             {"id": "x", "problem": "r", "answer": "3"}]
    path.write_text("\n".join(json.dumps(r) for r in lines))
    message = _error(path)
    assert "dups.jsonl row 2" in message and "'id'" in message and "duplicate" in message


def test_bad_kind_options_and_structure(tmp_path: Path) -> None:
    path = tmp_path / "k.jsonl"
    path.write_text('{"problem": "p", "answer": "1", "kind": "essay"}\n')
    assert "'kind'" in _error(path)
    path.write_text('{"problem": "p", "answer": "Z", "options": {"A": "x", "B": "y"}}\n')
    assert "'answer'" in _error(path)
    path.write_text('["not", "an", "object"]\n')
    assert "k.jsonl row 0" in _error(path)
    path = tmp_path / "top.json"
    path.write_text('{"problem": "p", "answer": "1"}')
    assert "top.json" in _error(path)
    path = tmp_path / "data.csv"
    path.write_text("problem,answer\n")
    assert "data.csv" in _error(path)


def test_problem_validation() -> None:
    with pytest.raises(ValueError, match="kind"):
        Problem(id="1", prompt="p", answer="1", kind="essay", source="s")
    with pytest.raises(ValueError, match="options"):
        Problem(id="1", prompt="p", answer="A", kind="multiple_choice", source="s")
    p = Problem(id="1", prompt="p", answer="1", kind="math", source="s", meta={"a": 1})
    assert hash(p) == hash(Problem(id="1", prompt="p", answer="1", kind="math", source="s"))
    with pytest.raises(AttributeError):
        p.answer = "2"  # type: ignore[misc]


def test_missing_file_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="aime_2024"):
        load_problems("aime24")
    with pytest.raises(FileNotFoundError):
        load_problems(tmp_path / "nope.json")


def test_benchmarks_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert benchmarks_dir().is_dir() and (benchmarks_dir() / "aime_2024.json").is_file()  # shipped copies
    monkeypatch.setenv("STOPLIB_BENCHMARKS", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="STOPLIB_BENCHMARKS"):
        load_problems("hmmt_2025")
    monkeypatch.setenv("STOPLIB_BENCHMARKS", str(tmp_path))
    (tmp_path / "hmmt_25.json").write_text(json.dumps([{"id": "1", "problem": "p", "answer": "3"}]))
    assert benchmarks_dir() == tmp_path
    [problem] = load_problems("hmmt_2025")
    assert (problem.id, problem.source) == ("1", "hmmt_2025")


def test_hf_source_needs_datasets() -> None:
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install datasets"):
            load_problems("hf:some/dataset:test")
    else:
        pytest.skip("datasets is installed; the hf: path needs the network")


def test_a_problems_file_that_is_not_utf8_is_named(tmp_path):
    from stoplib.problems import load_problems

    path = tmp_path / "p.jsonl"
    path.write_bytes('{"id": "1", "prompt": "caf\xe9", "answer": "1"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"problems file .*p.jsonl is not UTF-8"):
        load_problems(str(path))
