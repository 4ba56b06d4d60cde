"""Two-sided p-values of Student's t, without importing scipy on the common path.

>>> round(float(two_sided_p(2.0, 10)), 6)   # P(|T| > 2) with 10 degrees of freedom
0.073388

``P(|T| > t) = I_x(dof / 2, 1 / 2)`` with ``x = dof / (dof + t^2)``, the regularized incomplete beta
function. It is evaluated by its continued fraction (modified Lentz), on whichever side of the
distribution's bulk the fraction converges ``(I_x(a, b) = 1 - I_{1-x}(b, a))``, with the prefactor
``x^a (1 - x)^b / B(a, b)`` taken in logs (``log B(a, 1/2)`` from Stirling's series for ``a >= 10``,
where a difference of two ``lgamma`` would lose digits). Against ``scipy.special.stdtr`` the relative
difference stays below 1e-12 (tests) down to p-values of 1e-300.

Why not just ``scipy.special``: importing it takes ~0.15 s, a tenth of a warm ``cryptorsi run``. The
fraction converges within a few hundred steps for the degrees of freedom RSI correlations have (a
few to a few thousand). Beyond :data:`MAX_DOF` it converges so slowly that its stopping rule is no
longer safe, and a value that needs more than :data:`MAX_STEPS` steps is not worth the time: those
are handed to ``scipy.special.stdtr``, imported then.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["two_sided_p", "MAX_DOF", "MAX_STEPS"]

#: degrees of freedom above which values are left to scipy.special
MAX_DOF = 1e4
#: continued-fraction steps before a value is left to scipy.special
MAX_STEPS = 300
_EPS = 1e-15
_TINY = 1e-300
_LOG_SQRT_PI = 0.5 * math.log(math.pi)
_lgamma = np.frompyfunc(math.lgamma, 1, 1)


def two_sided_p(t, dof) -> np.ndarray:
    """``P(|T| > |t|)`` for Student's t with ``dof > 0`` degrees of freedom (arrays broadcast).

    NaN where ``t`` or ``dof`` is NaN or ``dof <= 0``; 1 at ``t = 0``, 0 at ``|t| = inf``.
    """
    t, dof = np.broadcast_arrays(np.abs(np.asarray(t, dtype=np.float64)), np.asarray(dof, dtype=np.float64))
    p = np.full(t.shape, np.nan)
    p[(t == 0) & (dof > 0)] = 1.0
    p[np.isinf(t) & (dof > 0)] = 0.0
    finite = (t > 0) & np.isfinite(t)
    todo = finite & (dof > 0) & (dof <= MAX_DOF)
    slow = finite & (dof > MAX_DOF)
    if slow.any():
        p[slow] = _scipy_two_sided_p(t[slow], dof[slow])
    if not todo.any():
        return p
    tt, nu = t[todo], dof[todo]
    a = nu / 2.0
    t2 = tt * tt
    with np.errstate(over="ignore", under="ignore", divide="ignore"):  # t^2 may underflow to 0: front 0
        log_x = -np.log1p(t2 / nu)  # x = nu / (nu + t^2)
        log_1mx = np.log(t2) - np.log(nu + t2)  # 1 - x = t^2 / (nu + t^2)
        front = np.exp(a * log_x + 0.5 * log_1mx - _log_beta_half(a))
    x = nu / (nu + t2)
    out = np.empty(tt.shape)
    done = np.zeros(tt.shape, dtype=bool)
    # the fraction for I_x(a, b) converges fast for x < (a + 1) / (a + b + 2); beyond, use the other tail
    lower = x < (a + 1.0) / (a + 2.5)
    if lower.any():
        fraction, converged = _beta_fraction(a[lower], np.full(lower.sum(), 0.5), x[lower])
        out[lower] = front[lower] * fraction / a[lower]
        done[lower] = converged
    upper = ~lower
    if upper.any():
        y = t2[upper] / (nu[upper] + t2[upper])
        fraction, converged = _beta_fraction(np.full(upper.sum(), 0.5), a[upper], y)
        out[upper] = 1.0 - front[upper] * fraction / 0.5
        done[upper] = converged
    if not done.all():
        out[~done] = _scipy_two_sided_p(tt[~done], nu[~done])
    p[todo] = np.clip(out, 0.0, 1.0)
    return p


def _scipy_two_sided_p(t: np.ndarray, dof: np.ndarray) -> np.ndarray:
    from scipy import special  # imported only for the values the fraction is not used for

    return 2.0 * special.stdtr(dof, -t)


def _log_beta_half(a: np.ndarray) -> np.ndarray:
    """``log B(a, 1/2)`` for ``a > 0``."""
    out = np.empty(a.shape)
    small = a < 10.0
    if small.any():
        s = a[small]
        out[small] = (_lgamma(s) - _lgamma(s + 0.5)).astype(np.float64) + _LOG_SQRT_PI
    big = ~small
    if big.any():
        s = a[big]
        # lgamma(s + 1/2) - lgamma(s) from Stirling's formula: the leading terms cancel analytically
        gap = s * np.log1p(0.5 / s) + 0.5 * np.log(s) - 0.5 + _stirling_rest(s + 0.5) - _stirling_rest(s)
        out[big] = _LOG_SQRT_PI - gap
    return out


def _stirling_rest(a: np.ndarray) -> np.ndarray:
    """``lgamma(a) - ((a - 1/2) log a - a + log(2 pi) / 2)`` for ``a >= 10`` (error < 1e-16)."""
    r = 1.0 / a
    r2 = r * r
    return r * (1 / 12 - r2 * (1 / 360 - r2 * (1 / 1260 - r2 * (1 / 1680 - r2 / 1188))))


def _beta_fraction(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The continued fraction of ``I_x(a, b) * a * B(a, b) / (x^a (1 - x)^b)`` (modified Lentz), and
    which values converged within :data:`MAX_STEPS` steps."""
    c = np.ones(x.shape)
    d = _nonzero(1.0 - (a + b) * x / (a + 1.0))
    d = 1.0 / d
    h = d.copy()
    active = np.arange(x.size)
    converged = np.zeros(x.shape, dtype=bool)
    for m in range(1, MAX_STEPS + 1):
        aa, bb, xx = a[active], b[active], x[active]
        cc, dd = c[active], d[active]
        m2 = 2 * m
        even = m * (bb - m) * xx / ((aa - 1.0 + m2) * (aa + m2))
        dd = 1.0 / _nonzero(1.0 + even * dd)
        cc = _nonzero(1.0 + even / cc)
        step = dd * cc
        odd = -(aa + m) * (aa + bb + m) * xx / ((aa + m2) * (aa + 1.0 + m2))
        dd = 1.0 / _nonzero(1.0 + odd * dd)
        cc = _nonzero(1.0 + odd / cc)
        delta = dd * cc
        h[active] *= step * delta
        c[active], d[active] = cc, dd
        finished = np.abs(delta - 1.0) < _EPS
        if finished.any():
            converged[active[finished]] = True
            active = active[~finished]
            if not active.size:
                break
    return h, converged


def _nonzero(v: np.ndarray) -> np.ndarray:
    return np.where(np.abs(v) < _TINY, _TINY, v)
