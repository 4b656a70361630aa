"""Notebook parameters are validated with errors that name the parameter."""

from __future__ import annotations

import pytest

from stoplib import params


def test_good_values_parse():
    assert params.choice_list("variants", "stop, stop_hard,stop", ("stop", "stop_probe", "stop_hard")) == ["stop", "stop_hard"]
    assert params.fractions("prefix_fractions", "0.45,0.2,0.3") == [0.2, 0.3, 0.45]
    assert params.layers("layers", "all") == "all" and params.layers("layers", "2") == 2
    assert params.positive_int("n_boot", 500, 10) == 500 and params.choice("query", "last", ("last", "all")) == "last"


@pytest.mark.parametrize("call, message", [
    (lambda: params.choice_list("variants", "stop,bogus", ("stop", "stop_probe")), r"variants='stop,bogus'.*unknown: bogus"),
    (lambda: params.choice_list("variants", " , ", ("stop",)), r"variants=' , '"),
    (lambda: params.fractions("prefix_fractions", "0, 2"), r"prefix_fractions='0, 2'.*strictly between 0 and 1"),
    (lambda: params.fractions("prefix_fractions", "a"), r"prefix_fractions='a'"),
    (lambda: params.fractions("prefix_fractions", ""), r"prefix_fractions=''"),
    (lambda: params.layers("layers", "0"), r"layers='0'"),
    (lambda: params.layers("layers", "top"), r"layers='top'"),
    (lambda: params.positive_int("n_boot", 0, 10), r"n_boot=0: expected an integer >= 10"),
    (lambda: params.positive_int("paths_per_problem", 2.5), r"paths_per_problem=2.5"),
    (lambda: params.positive_int("paths_per_problem", True), r"paths_per_problem=True"),
    (lambda: params.choice("query", "first", ("last", "all")), r"query='first': expected one of last, all"),
])
def test_bad_values_name_the_parameter(call, message):
    with pytest.raises(ValueError, match=message):
        call()
