"""The argument checks every public function shares (kronkit._checks)."""

from __future__ import annotations

import numpy as np
import pytest

import kronkit
from kronkit._checks import check_choice


def test_check_choice_returns_the_choice_and_names_the_argument():
    assert check_choice("spd", "assume", ("auto", "general", "spd")) == "spd"
    assert check_choice(None, "reduce", ("sum", "mean", None)) is None
    with pytest.raises(ValueError, match=r"`reduce` must be one of \('sum', 'mean', None\), got 'max'"):
        check_choice("max", "reduce", ("sum", "mean", None))


@pytest.mark.parametrize("bad", [np.array(["sum"]), np.array(["sum", "mean"]), 0, False, b"sum"])
def test_check_choice_never_compares_elementwise(bad):
    """An array (or a non-string equal-looking value) is not a choice: a clear ValueError,
    not NumPy's "truth value of an array is ambiguous"."""
    with pytest.raises(ValueError, match="`reduce` must be one of"):
        check_choice(bad, "reduce", ("sum", "mean", None))


@pytest.mark.parametrize("call", [
    lambda K, y: kronkit.log_quad_grad(K, y, method=np.array(["closed"])),
    lambda K, y: kronkit.log_quad_grad(K, y[None], reduce=np.array(["sum"])),
    lambda K, y: kronkit.partial_contraction(K.to_dense(), K.factors[1], side=["right"]),
    lambda K, y: kronkit.kpsvd(K.to_dense(), ((2, 2), (3, 3)), method=np.array(["dense"])),
])
def test_public_functions_reject_array_choices_cleanly(rng, call):
    K = kronkit.Kron(np.eye(2) * 2.0, np.eye(3))
    y = rng.standard_normal(6)
    with pytest.raises(ValueError, match="must be one of"):
        call(K, y)
