r"""Kronecker operators on incomplete grids and with per-cell diagonals, exactly.

* ``S.restrict(observed)`` (:class:`Restricted`): the block ``S_OO`` of a :class:`~kronkit.Kron`,
  a :class:`~kronkit.SumOfKron` or a :class:`KronPlusDiag` on the observed cells.
* ``S + GridDiag(d)`` (:class:`KronPlusDiag`): ``S + diag(d)`` with an arbitrary non-negative
  per-cell diagonal ``d``.

Both are ``S̄`` with an exact eigen form plus ``k`` cells — the missing ones and those where ``d``
differs from its best Kronecker-structured fit ``d̄`` (``S̄ = S + diag(d̄)``) — handled by the
capacitance identities of :mod:`kronkit._cells` (the *route* ``"capacitance"``, exact). Beyond
:data:`CAPACITANCE_MAX_CELLS` cells the solves use conjugate gradients on the observed cells,
preconditioned by the exact ``S̄⁻¹`` (route ``"cg"``, iterative to ``rtol``); ``logdet`` stays
exact (capacitance) up to :data:`LOGDET_MAX_CELLS` cells, and a stochastic estimate with its
standard error is given only by :meth:`CellOperator.logdet_estimate`, when asked for.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import scipy.linalg

from ._cell_iter import LogdetEstimate, diagonal_fit, pcg, slq_logdet
from ._cells import CellForm
from ._checks import as_float, check_choice, check_dense_size, check_int, check_scalar
from ._errors import DomainError, NotPositiveDefiniteError, UnsupportedSumError
from ._kron import Kron
from ._matmul import as_operand, dense_array, linear_operator, on_columns
from ._sum_kron import SumOfKron

__all__ = ["CAPACITANCE_MAX_CELLS", "CAPACITANCE_MAX_WORK", "LOGDET_MAX_CELLS", "CellOperator",
           "CellQuad", "GridDiag", "KronPlusDiag", "Restricted"]

#: Above this many missing or corrected cells, ``route="auto"`` solves by preconditioned CG.
CAPACITANCE_MAX_CELLS = 4096
#: ... and above this many multiply-adds to form the capacitance block of a sum (P·k²).
CAPACITANCE_MAX_WORK = 4 * 10**12
#: The exact (capacitance) log-determinant is refused above this many cells (k² memory).
LOGDET_MAX_CELLS = 16384
_LOG_2PI = math.log(2.0 * math.pi)
_ROUTES = ("auto", "capacitance", "cg")


def _user_sum(parent: Any, what: str) -> SumOfKron:
    if isinstance(parent, Kron):
        S = SumOfKron([parent])
    elif isinstance(parent, SumOfKron):
        S = parent
    else:
        raise TypeError(f"{what} needs a Kron or a SumOfKron, got {type(parent).__name__}")
    if not S.is_square:
        raise ValueError(f"{what} needs square factors, got factor shapes {S.shapes}")
    return S


def _grid_values(x: Any, name: str, dims: tuple[int, ...]) -> np.ndarray:
    arr = as_float(x, name, dtype=np.float64)
    P = math.prod(dims)
    if arr.shape not in (dims, (P,)):
        raise ValueError(f"`{name}` must have the grid shape {dims} or ({P},), got {arr.shape}")
    return arr.reshape(-1).copy()


def _capacitance_pays(E: Any, k: int) -> bool:
    """The ``"auto"`` rule: the capacitance route while ``k ≤ CAPACITANCE_MAX_CELLS`` (twice that
    for one Kronecker term, whose block costs only ``O(k²Σn)``) and, for sums, while forming
    the block (``P·k²`` multiply-adds) stays under ``CAPACITANCE_MAX_WORK``."""
    if len(E.h) == 1:
        return k <= 2 * CAPACITANCE_MAX_CELLS
    return k <= CAPACITANCE_MAX_CELLS and math.prod(E.dims) * k * k <= CAPACITANCE_MAX_WORK


class GridDiag:
    """An arbitrary non-negative diagonal ``diag(d)`` over the cells of a grid: ``S + GridDiag(d)``
    with ``S`` a :class:`~kronkit.Kron` or :class:`~kronkit.SumOfKron` is a :class:`KronPlusDiag`
    (a plain array would be added densely, as NumPy does)."""

    def __init__(self, d: Any):
        arr = as_float(d, "d", min_ndim=1, dtype=np.float64)
        if np.any(arr < 0):
            raise DomainError(f"`d` must be non-negative (variances), got min {arr.min():.6g}",
                              value=float(arr.min()))
        self.values = arr.copy()

    def __radd__(self, other: Any) -> KronPlusDiag:
        if isinstance(other, (Kron, SumOfKron)):
            return KronPlusDiag(other, self.values)
        return NotImplemented

    __add__ = __radd__

    def __repr__(self) -> str:
        return f"GridDiag(shape={self.values.shape})"


class CellOperator:
    """``(S + diag(d))_OO``: the common machinery of :class:`KronPlusDiag` and :class:`Restricted`.

    ``route`` is ``"auto"`` (capacitance up to :data:`CAPACITANCE_MAX_CELLS` cells and
    :data:`CAPACITANCE_MAX_WORK` multiply-adds, else CG),
    ``"capacitance"`` or ``"cg"``; ``rtol`` and ``maxiter`` bound CG (relative residual of each
    solve; a :class:`~kronkit.ConvergenceWarning` when not reached).
    """

    def __init__(self, parent: Any, d: Any = None, observed: Any = None, *, route: str = "auto",
                 rtol: float = 1e-10, maxiter: int | None = None, _what: str = "CellOperator"):
        self._parent = parent
        self._user = _user_sum(parent, _what)
        dims = self._user.dims
        P = math.prod(dims)
        self._d = None if d is None else _grid_values(d, "d", dims)
        if self._d is not None and np.any(self._d < 0):
            raise DomainError("`d` must be non-negative", value=float(self._d.min()))
        if observed is None:
            self._observed = np.ones(P, dtype=bool)
        else:
            obs = np.asarray(observed)
            if obs.dtype != np.bool_:
                raise TypeError(f"`observed` must be a boolean array (True = observed), got dtype "
                                f"{obs.dtype}")
            if obs.shape not in (dims, (P,)):
                raise ValueError(f"`observed` must have the grid shape {dims} or ({P},), got "
                                 f"{obs.shape}")
            self._observed = obs.reshape(-1).copy()
            if not self._observed.any():
                raise ValueError("`observed` has no True cell: nothing is observed")
        self._obs_idx = np.flatnonzero(self._observed)
        self._route = check_choice(route, "route", _ROUTES)
        self._rtol = check_scalar(rtol, "rtol")
        if not 0.0 < self._rtol < 1.0:
            raise ValueError(f"`rtol` must be in (0, 1), got {self._rtol}")
        self._maxiter = 10 * P if maxiter is None else check_int(maxiter, "maxiter", min_value=1)
        self._lock = threading.Lock()
        self._state: dict[str, Any] | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_lock"] = None  # a lock cannot be pickled; the cache is rebuilt on demand
        state["_state"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- shape and structure ----------------------------------------------------------------
    @property
    def parent(self) -> Any:
        """The operator this one was built from."""
        return self._parent

    @property
    def dims(self) -> tuple[int, ...]:
        """The grid shape ``(n_1, …, n_d)``."""
        return self._user.dims

    @property
    def terms(self) -> tuple[Kron, ...]:
        """The Kronecker terms of the parent (gradients are with respect to their factors)."""
        return self._user.terms

    @property
    def shape(self) -> tuple[int, int]:
        n = int(self._obs_idx.size)
        return (n, n)

    col_dims = property(lambda self: (self.shape[1],))
    shapes = property(lambda self: self._user.shapes)
    dtype = property(lambda self: np.dtype(np.float64))
    ndim = 2
    is_square = True

    @property
    def observed(self) -> np.ndarray:
        """The observed cells, a boolean array of the grid shape (a copy)."""
        return self._observed.reshape(self.dims).copy()

    @property
    def flat_factors(self) -> bool:
        """Whether the parent is one :class:`~kronkit.Kron` (gradients ``factors[k]``; for a
        sum, ``factors[t][k]``)."""
        return isinstance(self._parent, Kron)

    @property
    def trivial(self) -> bool:
        """Nothing missing and no diagonal: the parent itself."""
        return self._d is None and bool(self._observed.all())

    def _build(self) -> dict[str, Any]:
        user, dims = self._user, self.dims
        fits = diagonal_fit(self._d.reshape(dims)) if self._d is not None else [None]
        error: Exception | None = None
        options = []  # (fit, base, route): an exact eigen form first, else the dense route
        for fit in fits:
            base = user
            if fit is not None and fit.vectors is not None:
                base = user + Kron(*[np.diag(v) for v in fit.vectors])
            try:
                options.append((fit, base, base.route))
            except UnsupportedSumError as exc:
                error = exc
        if not options:
            what = "S" if self._d is None else "S + diag(d): S plus the Kronecker fit of d"
            raise UnsupportedSumError(f"{what} has no exact form ({error})")
        fit, base, base_route = min(options, key=lambda o: o[2] != "eigen")
        missing = np.flatnonzero(~self._observed)
        corr = np.zeros(0, dtype=np.intp)
        delta = np.zeros(0)
        if fit is not None and self._d is not None:
            corr = fit.mismatch[self._observed[fit.mismatch]]
            fitted = np.zeros(corr.size)
            if fit.vectors is not None:
                idx = np.unravel_index(corr, dims)
                fitted = np.prod([v[i] for v, i in zip(fit.vectors, idx, strict=True)], axis=0)
            delta = self._d[corr] - fitted
            keep = delta != 0
            corr, delta = corr[keep], delta[keep]
        cells = np.concatenate([missing, corr])
        inv_delta = np.concatenate([np.zeros(missing.size), 1.0 / delta])
        state: dict[str, Any] = {"base": base, "cells": cells, "inv_delta": inv_delta,
                                 "T": user.n_terms}
        if base_route == "dense":
            state["route"] = "dense"
            M = self._dense_full()[np.ix_(self._obs_idx, self._obs_idx)]
            try:
                state["chol"] = np.linalg.cholesky(M)
            except np.linalg.LinAlgError:
                raise NotPositiveDefiniteError("the observed covariance is not positive "
                                               "definite") from None
            return state
        base.logdet()  # NotPositiveDefiniteError naming the eigenvalue if S̄ is not
        state["E"] = base.eigen_form()
        k = cells.size
        cap = self._route == "capacitance" or (self._route == "auto"
                                               and _capacitance_pays(state["E"], k))
        state["route"] = "capacitance" if cap else "cg"
        if cap:
            state["form"] = CellForm(state["E"], cells, inv_delta)
        return state

    def _s(self) -> dict[str, Any]:
        with self._lock:
            if self._state is None:
                self._state = self._build()
        return self._state

    @property
    def route(self) -> str:
        """``"capacitance"`` (exact), ``"cg"`` (iterative solves) or ``"dense"`` (small sums
        without an eigen form: the observed block factorised densely)."""
        return str(self._s()["route"])

    @property
    def n_cells(self) -> int:
        """``k``: missing cells plus cells where ``d`` differs from its Kronecker fit."""
        return int(self._s()["cells"].size)

    def cell_form(self) -> CellForm:
        """The capacitance form (built on demand on the CG route, up to LOGDET_MAX_CELLS)."""
        s = self._s()
        if "form" not in s:
            if s["route"] == "dense":
                raise ValueError("the dense route has no capacitance form")
            k = int(s["cells"].size)
            if k > LOGDET_MAX_CELLS:
                raise ValueError(
                    f"the exact log-determinant needs the {k}×{k} capacitance matrix of the "
                    f"missing/corrected cells, above LOGDET_MAX_CELLS = {LOGDET_MAX_CELLS}; "
                    "use logdet_estimate() for a stochastic estimate with its standard error")
            with self._lock:
                if "form" not in s:
                    s["form"] = CellForm(s["E"], s["cells"], s["inv_delta"])
        return s["form"]

    # -- embedding ----------------------------------------------------------------------------
    def select(self, Y: Any) -> np.ndarray:
        """The observed cells of ``Y`` (grid-shaped, or ``(..., P)``): shape ``(..., n_obs)``."""
        arr = np.asarray(Y)
        P = math.prod(self.dims)
        flat = arr.reshape(-1) if arr.shape == self.dims else arr.reshape(*arr.shape[:-1], P)
        return flat[..., self._obs_idx]

    def embed(self, X: Any, fill: float = 0.0) -> np.ndarray:
        """``X`` (…, n_obs) on the full grid, ``fill`` in the other cells: shape ``(…, P)``."""
        arr = np.asarray(X, dtype=np.float64)
        out = np.full((*arr.shape[:-1], math.prod(self.dims)), fill)
        out[..., self._obs_idx] = arr
        return out

    # -- products ---------------------------------------------------------------------------
    def _dense_full(self) -> np.ndarray:
        M = self._user.to_dense()
        if self._d is not None:
            M[np.diag_indices_from(M)] += self._d
        return M

    def matvec(self, Y: Any) -> np.ndarray:
        """``S_OO`` applied to every row of ``Y`` (..., n_obs)."""
        arr = self._rows(Y, "Y")
        full = self.embed(arr)
        out = self._user.matvec(full)
        if self._d is not None:
            out = out + self._d * full
        return out[..., self._obs_idx]

    rmatvec = matvec

    def __matmul__(self, X: Any) -> np.ndarray:
        arr = as_operand(X, "X", self.shape[1], "M @ X", self.shape, self.dtype)
        return on_columns(self.matvec, arr)

    def __rmatmul__(self, X: Any) -> np.ndarray:
        return self.matvec(X)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return dense_array(self, type(self).__name__, dtype, copy)

    @property
    def T(self) -> CellOperator:
        """The transpose (the operator is symmetric)."""
        return self

    def aslinearoperator(self) -> Any:
        return linear_operator(self, self.matvec, self.rmatvec)

    def to_dense(self, *, max_bytes: int | None = None) -> np.ndarray:
        """The observed block of ``S + diag(d)`` as a dense matrix (size-guarded)."""
        P = math.prod(self.dims)
        check_dense_size((P, P), self.dtype, f"`{type(self).__name__}.to_dense()`",
                         max_bytes=max_bytes)
        return self._dense_full()[np.ix_(self._obs_idx, self._obs_idx)]

    def diag(self) -> np.ndarray:
        out = self._user.diag() + (0.0 if self._d is None else self._d)
        return out[self._obs_idx]

    def trace(self) -> float:
        return float(np.sum(self.diag()))

    # -- solves and Gaussian quantities -----------------------------------------------------
    def _rows(self, Y: Any, name: str) -> np.ndarray:
        arr = as_float(Y, name, min_ndim=1, dtype=np.float64)
        n = self.shape[0]
        if arr.shape[-1] != n:
            raise ValueError(f"`{name}` must have length {n} (the observed cells) in its last "
                             f"axis, got shape {arr.shape}")
        return arr

    def _cg(self, W: np.ndarray) -> np.ndarray:
        E = self._s()["E"]
        obs = self._obs_idx

        def apply_m(R: np.ndarray) -> np.ndarray:
            return E.solve_rows(self.embed(R))[:, obs]

        X, _ = pcg(self.matvec, apply_m, W, self._rtol, self._maxiter,
                   f"{type(self).__name__} solve")
        return X

    def solve_rows(self, Y: Any) -> np.ndarray:
        """``S_OO⁻¹ y`` for every row of ``Y`` (..., n_obs)."""
        arr = self._rows(Y, "Y")
        if self.trivial:
            return self._parent.solve_rows(arr)
        W = arr.reshape(-1, arr.shape[-1])
        s = self._s()
        if s["route"] == "capacitance":
            X = s["form"].solve_rows(self.embed(W))[:, self._obs_idx]
        elif s["route"] == "cg":
            X = self._cg(W)
        else:
            X = scipy.linalg.cho_solve((s["chol"], True), W.T).T
        return X.reshape(arr.shape)

    def solve(self, B: Any) -> np.ndarray:
        """``np.linalg.solve(self.to_dense(), B)``: a 1-D ``B`` or the columns of ``B``."""
        arr = as_operand(B, "B", self.shape[0], "solve(B)", self.shape, self.dtype)
        return on_columns(self.solve_rows, arr)

    def inv_quad(self, Y: Any) -> Any:
        """``yᵀ S_OO⁻¹ y`` for every row of ``Y`` (..., n_obs)."""
        arr = self._rows(Y, "Y")
        if self.trivial:
            return self._parent.inv_quad(arr)
        q = CellQuad(self, arr.reshape(-1, arr.shape[-1])).q
        return float(q[0]) if arr.ndim == 1 else q.reshape(arr.shape[:-1])

    def logdet(self) -> float:
        """``log det S_OO``, exact (capacitance) on every route up to LOGDET_MAX_CELLS cells."""
        if self.trivial:
            return float(self._parent.logdet())
        s = self._s()
        if s["route"] == "dense":
            return 2.0 * float(np.sum(np.log(np.diagonal(s["chol"]))))
        return float(self.cell_form().logdet)

    def slogdet(self) -> tuple[float, float]:
        return 1.0, self.logdet()

    @property
    def is_positive_definite(self) -> bool:
        try:
            self.logdet()
        except (NotPositiveDefiniteError, np.linalg.LinAlgError, UnsupportedSumError):
            return False
        return True

    def logpdf(self, Y: Any, mean: Any = None) -> Any:
        """Gaussian ``log N(y; μ, S_OO)`` of observed rows ``Y`` (..., n_obs)."""
        arr = self._rows(Y, "Y")
        if mean is not None:
            m = as_float(mean, "mean", ndim=(1, 2), dtype=np.float64)
            if m.shape not in ((self.shape[0],), arr.shape):
                raise ValueError(f"`mean` must have length {self.shape[0]} (the observed cells) "
                                 f"or the shape of `Y` {arr.shape}, got shape {m.shape}")
            arr = arr - m
        return -0.5 * (self.shape[0] * _LOG_2PI + self.logdet() + self.inv_quad(arr))

    def logdet_estimate(self, n_probes: int = 32, steps: int = 60,
                        random_state: Any = None) -> LogdetEstimate:
        """A stochastic estimate of ``log det S_OO`` (Lanczos quadrature on the capacitance
        matrix, ``n_probes`` Rademacher probes) with its standard error: only when asked for,
        for more cells than the exact route allows. Needs ``d ≥ d̄`` on the corrected cells."""
        n_probes = check_int(n_probes, "n_probes", min_value=2)
        steps = check_int(steps, "steps", min_value=1)
        s = self._s()
        if s["route"] == "dense" or s["cells"].size == 0:
            return LogdetEstimate(self.logdet(), 0.0, n_probes, steps)
        E, cells, inv_delta = s["E"], s["cells"], s["inv_delta"]
        if np.any(inv_delta < 0):
            raise ValueError("logdet_estimate needs d at least its Kronecker fit on every "
                             "corrected cell (the capacitance matrix is then positive definite)")
        P = math.prod(self.dims)

        def apply_h(X: np.ndarray) -> np.ndarray:
            full = np.zeros((X.shape[0], P))
            full[:, cells] = X
            return E.solve_rows(full)[:, cells] + inv_delta * X

        rng = np.random.default_rng(random_state)
        value, err = slq_logdet(apply_h, int(cells.size), n_probes, steps, rng)
        corrected = inv_delta != 0
        value += E.logdet - float(np.sum(np.log(inv_delta[corrected])))
        return LogdetEstimate(value, err, n_probes, steps)

    # -- gradients (package-public: the calculus uses them) ---------------------------------
    def quad_state(self, W: np.ndarray, what: str) -> CellQuad:
        return CellQuad(self, W)

    def logdet_grads(self, scale: float = 1.0) -> tuple[tuple[np.ndarray, ...], ...]:
        """``G[t][k] = scale · ∂ log det S_OO / ∂F_tk`` for the parent's terms."""
        if self.trivial:
            return self._user.logdet_grads(scale)
        return self.logdet_grads_trace(scale)[0]

    def logdet_grads_trace(self, scale: float = 1.0
                           ) -> tuple[tuple[tuple[np.ndarray, ...], ...], float]:
        """``(logdet_grads(scale), tr(S_OO⁻¹))`` in one pass over the cells: the trace is the
        gradient of ``log det S_OO`` along a uniform shift ``+ s·I`` (a noise variance)."""
        s = self._s()
        T = s["T"]
        if s["route"] == "dense":
            Linv = self._dense_inverse_factor()
            # S_OO⁻¹ = L⁻ᵀL⁻¹ = Σ_i r_iᵀ r_i over the rows r_i of L⁻¹
            G = self._user.quad_grads(self.embed(Linv), np.full(Linv.shape[0], scale))
            return tuple(tuple(row) for row in G), float(np.sum(Linv ** 2))
        form = self.cell_form()
        full = s["E"].logdet_grads()
        low, tau = form.lowrank_grams(range(T), trace=True) if form.k else ([], 0.0)
        G = tuple(tuple(scale * (full[t][a] - (low[t][a] if low else 0.0))
                        for a in range(len(self.dims))) for t in range(T))
        return G, form.inverse_trace(tau)

    def inverse_trace(self) -> float:
        """``tr(S_OO⁻¹)``: the gradient of ``log det S_OO`` along a uniform shift ``+ s·I``."""
        s = self._s()
        if s["route"] == "dense":
            return float(np.sum(self._dense_inverse_factor() ** 2))
        return self.cell_form().inverse_trace()

    def _dense_inverse_factor(self) -> np.ndarray:
        """``L⁻¹`` of the dense route's ``S_OO = LLᵀ`` (so ``S_OO⁻¹ = L⁻ᵀL⁻¹``)."""
        chol = self._s()["chol"]
        return scipy.linalg.solve_triangular(chol, np.eye(chol.shape[0]), lower=True)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(grid={self.dims}, observed={self.shape[0]}, "
                f"terms={self._user.n_terms})")


class CellQuad:
    """``q_i = w_iᵀ S_OO⁻¹ w_i`` for rows ``W`` (N, n_obs), and the gradients of ``Σ c_i q_i``
    (the interface of the sums' quadratic-form engine)."""

    def __init__(self, op: CellOperator, W: np.ndarray):
        self.op = op
        s = op._s()
        self.route = s["route"]
        if self.route == "capacitance":
            self.Zl, self.q = s["form"].whiten(op.embed(W))
        else:
            X = (op._cg(W) if self.route == "cg"
                 else scipy.linalg.cho_solve((s["chol"], True), W.T).T)
            self.Xhat = op.embed(X)
            self.q = np.einsum("ij,ij->i", W, X)

    def grads(self, c: np.ndarray, per_obs: bool) -> tuple[Any, np.ndarray]:
        op, s = self.op, self.op._s()
        if self.route == "capacitance":
            G, U = s["E"].quad_grads(self.Zl, c, per_obs)
            G = G[: s["T"]]
        else:
            U = self.Xhat
            G = op._user.quad_grads(U, c, per_obs)
        X = U[:, op._obs_idx]
        return tuple(tuple(-g for g in row) for row in G), 2.0 * c[:, None] * X


class KronPlusDiag(CellOperator):
    """``S + diag(d)``: a :class:`~kronkit.Kron` or :class:`~kronkit.SumOfKron` ``S`` plus an
    arbitrary non-negative per-cell diagonal ``d`` (grid-shaped or flat), exact while ``d``
    differs from its best Kronecker-structured fit on few cells (see the module docs)."""

    def __init__(self, S: Any, d: Any, *, route: str = "auto", rtol: float = 1e-10,
                 maxiter: int | None = None):
        super().__init__(S, d, None, route=route, rtol=rtol, maxiter=maxiter,
                         _what="KronPlusDiag")

    @property
    def diagonal(self) -> np.ndarray:
        """``d`` on the grid (a copy)."""
        assert self._d is not None
        return self._d.reshape(self.dims).copy()

    def restrict(self, observed: Any, **options: Any) -> Restricted:
        """The block on the ``observed`` cells (boolean, grid-shaped); ``options`` (``route``,
        ``rtol``, ``maxiter``) default to this operator's."""
        kw = {"route": self._route, "rtol": self._rtol, "maxiter": self._maxiter, **options}
        return Restricted(self, observed, **kw)


class Restricted(CellOperator):
    """``S_OO``: the block of ``S`` (a Kron, SumOfKron or KronPlusDiag) on the observed cells
    (``observed``, boolean of the grid shape), from ``S.restrict(observed)``."""

    def __init__(self, S: Any, observed: Any, *, route: str = "auto", rtol: float = 1e-10,
                 maxiter: int | None = None):
        if isinstance(S, Restricted):
            raise TypeError("restrict the original operator with the combined mask "
                            "(S.restrict(a & b)) rather than a Restricted again")
        inner, d = (S.parent, S._d) if isinstance(S, KronPlusDiag) else (S, None)
        super().__init__(inner, d, observed, route=route, rtol=rtol, maxiter=maxiter,
                         _what="restrict")
        self._outer = S

    @property
    def parent(self) -> Any:
        return self._outer

    def restrict(self, observed: Any, **options: Any) -> Restricted:
        """Refused: restrict the original operator with the combined mask."""
        raise TypeError("restrict the original operator with the combined mask "
                        "(S.restrict(a & b)) rather than a Restricted again")
