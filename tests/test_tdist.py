"""Student's t p-values of cryptorsi.tdist against scipy.special.stdtr (and exact values)."""

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import special

from cryptorsi import tdist

T_GRID = np.concatenate([[1e-300, 1e-10, 1e-5], np.linspace(0.001, 3, 300), np.linspace(3, 40, 200),
                         [60.0, 100.0, 1e3, 1e10]])
# the degrees of freedom of RSI correlations (n_eff - 2) run from a few to a few thousand
DOFS = [0.3, 0.5, 1, 1.5, 2, 2.5, 3, 7.3, 10, 19.7, 28, 100, 333.3, 1000, 1500, 4200, 10_000]


@pytest.mark.parametrize("dof", DOFS)
def test_two_sided_p_matches_scipy(dof):
    expected = 2.0 * special.stdtr(dof, -T_GRID)
    got = tdist.two_sided_p(T_GRID, dof)
    normal = (expected > 1e-300) & (T_GRID >= 1e-3)  # below: 0 or denormal; tiny t: test_exact_values
    assert got[normal] == pytest.approx(expected[normal], rel=1e-12, abs=0)
    assert (got[expected <= 1e-300] < 1e-290).all()
    assert got[0] == 1.0  # t^2 underflows


def test_exact_values():
    # one degree of freedom is Cauchy: P(|T| > t) = 1 - 2 atan(t) / pi; two: 1 - t / sqrt(2 + t^2)
    # (near t = 0, where scipy.special.stdtr rounds to 1, these are the reference)
    t = np.array([1e-10, 1e-5, 0.1, 1.0, 7.0])
    assert tdist.two_sided_p(t, 1) == pytest.approx(1 - 2 * np.arctan(t) / math.pi, rel=1e-14)
    assert tdist.two_sided_p(t, 2) == pytest.approx(1 - t / np.sqrt(2 + t * t), rel=1e-14)


def test_edges_and_broadcasting():
    p = tdist.two_sided_p([0.0, np.inf, -np.inf, np.nan, 1.0, 1.0, 1.0, -2.0], [5, 5, 5, 5, 0, -1, np.nan, 10])
    assert p[:3].tolist() == [1.0, 0.0, 0.0]
    assert np.isnan(p[3:7]).all()
    assert p[7] == pytest.approx(2 * special.stdtr(10, -2.0), rel=1e-13)  # the sign of t does not matter
    grid = tdist.two_sided_p(np.array([[1.0], [2.0]]), np.array([10.0, 20.0, 30.0]))
    assert grid.shape == (2, 3)
    assert grid == pytest.approx(2 * special.stdtr(np.array([10.0, 20.0, 30.0]), -np.array([[1.0], [2.0]])), rel=1e-12)


def test_large_dof_and_slow_values_go_to_scipy(monkeypatch):
    dof = np.array([2e4, 1e6, 1e9, np.inf])
    assert tdist.two_sided_p(2.5, dof) == pytest.approx(2 * special.stdtr(dof, -2.5), rel=1e-15)
    # a value that needs more steps than allowed is left to scipy, not returned half-converged
    monkeypatch.setattr(tdist, "MAX_STEPS", 2)
    assert tdist.two_sided_p(T_GRID, 333.3) == pytest.approx(2 * special.stdtr(333.3, -T_GRID), rel=1e-12)


def test_does_not_import_scipy_for_ordinary_dof():
    code = ("import sys, numpy as np; from cryptorsi import leadlag; "
            "leadlag.correlation_significance(np.array([0.3, 0.9]), np.array([50.0, 900.0])); "
            "print('scipy.special' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
