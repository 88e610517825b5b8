r"""The ``structure`` argument of :func:`kpsvd` / :func:`nearest_kron` as one value object.

Two kinds of structure:

* a property of ``M`` (``"symmetric"``, ``"psd"``, ``"nonnegative"``): checked on the input,
  then used to shape the result. A symmetric ``M`` has ``R(M)`` block diagonal in the
  (symmetric, skew) bases, so every term is symmetric ⊗ symmetric or skew ⊗ skew;
* a linear structure of the factors (``"toeplitz"``, ``("banded", l, u)``, per-factor bases,
  ...): imposed exactly, the SVD being of ``Q_A^T R(M) Q_B`` (see :mod:`.bases`).

:class:`Structure` is built once from the user's argument (:meth:`Structure.parse`) and
answers what the algorithms ask: the largest rank, the checks of ``M`` in each input form,
the subproblems to solve, and the finishing of the results (signs, nonnegativity, PSD).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from .bases import linear_basis, skew_basis, symmetric_basis
from .operators import LowRankR

if TYPE_CHECKING:
    from .terms import Terms

__all__ = ["LINEAR_NAMES", "M_LEVELS", "Structure", "is_psd", "unit_phase"]

SYM_RTOL = 1e-10  # ‖M - M^T‖_F <= SYM_RTOL ‖M‖_F counts as symmetric
PSD_RTOL = 1e-8  # factor eigenvalues >= -PSD_RTOL * λ_max count as PSD
M_LEVELS = ("symmetric", "psd", "nonnegative")
LINEAR_NAMES = ("general", "skew", "toeplitz", "hankel", "circulant", "diagonal", "upper",
                "lower")
_NOT_PSD = "`structure`='psd' but `M` is not positive semi-definite: "


def unit_phase(v: np.ndarray, shape: tuple[int, int] | None = None) -> Any:
    """The unit scalar ``c`` that makes the largest-magnitude entry of ``c·v`` real positive;
    with ``shape``: ``±1`` making the trace of ``c·v.reshape(shape)`` non-negative."""
    if shape is not None:
        return -1.0 if np.trace(v.reshape(shape)).real < 0 else 1.0
    j = int(np.argmax(np.abs(v)))
    return np.conj(v[j]) / abs(v[j]) if v[j] != 0 else 1.0


def is_psd(S: np.ndarray) -> bool:
    """Whether the symmetric part of ``S`` is PSD up to ``PSD_RTOL`` relative."""
    w = np.linalg.eigvalsh(0.5 * (S + S.T))
    return bool(w[0] >= -PSD_RTOL * max(abs(w[-1]), np.finfo(float).tiny))


def _specs(structure: Any, d: int) -> list[Any]:
    """Per-factor linear specs of a structure that is not an M-level name."""
    if isinstance(structure, str):
        if structure in LINEAR_NAMES:
            return [structure] * d
        raise ValueError(
            f"`structure` must be None, one of {M_LEVELS}, a linear structure name "
            f"{LINEAR_NAMES}, ('banded', lower, upper), or a sequence of {d} per-factor "
            f"structures, got {structure!r}"
        )
    if (isinstance(structure, tuple) and len(structure) == 3
            and isinstance(structure[0], str) and structure[0] == "banded"):
        return [structure] * d
    if isinstance(structure, (tuple, list)):
        if len(structure) != d:
            raise ValueError(f"`structure` as per-factor structures must have {d} entries "
                             f"(one per factor), got {len(structure)}")
        return list(structure)
    raise TypeError(f"`structure` must be None, a string or a sequence of per-factor "
                    f"structures, got {type(structure).__name__}")


@dataclass(frozen=True, eq=False)
class Structure:
    """The parsed ``structure`` for factor ``shapes``.

    Attributes
    ----------
    shapes : tuple of (m_k, n_k)
    level : {"symmetric", "psd", "nonnegative"} or None
        A property of ``M`` (checked), or None.
    bases : tuple of (m_k*n_k, d_k) orthonormal bases, or None
        A linear structure of the factors (sparse identity for an unconstrained factor), or
        None when no factor is constrained.
    """

    shapes: tuple[tuple[int, int], ...]
    level: str | None = None
    bases: tuple[Any, ...] | None = None

    @classmethod
    def parse(cls, structure: Any, shapes: tuple[tuple[int, int], ...]) -> Structure:
        """Validate the user's ``structure`` for these ``shapes`` (bases built here, once)."""
        if structure is None:
            return cls(shapes)
        if isinstance(structure, str) and structure in M_LEVELS:
            if structure != "nonnegative" and any(m != n for m, n in shapes):
                raise ValueError(f"`structure`={structure!r} needs square blocks, got shapes "
                                 f"{tuple(shapes)}")
            return cls(shapes, level=structure)
        bases = [linear_basis(spec, m, n, f"structure[{l}]")
                 for l, (spec, (m, n)) in enumerate(zip(_specs(structure, len(shapes)), shapes,
                                                         strict=True))]
        if all(b is None for b in bases):
            return cls(shapes)
        return cls(shapes, bases=tuple(sp.identity(m * n, format="csr") if b is None else b
                                       for b, (m, n) in zip(bases, shapes, strict=True)))

    # -- what the algorithms ask -------------------------------------------------------
    @property
    def unconstrained(self) -> bool:
        """No structure: the plain SVD of ``R(M)`` (whose tail gives the exact residual)."""
        return self.level is None and self.bases is None

    @property
    def symmetric(self) -> bool:
        """``"symmetric"`` or ``"psd"``: terms are symmetric ⊗ symmetric or skew ⊗ skew."""
        return self.level in ("symmetric", "psd")

    @property
    def nonnegative(self) -> bool:
        """``"nonnegative"``: ``M >= 0``, the leading factors are ``>= 0``."""
        return self.level == "nonnegative"

    @property
    def max_rank(self) -> int:
        """The largest possible Kronecker rank (d = 2) for these shapes and structure."""
        (m1, n1), (m2, n2) = self.shapes
        if self.symmetric:
            return (min(m1 * (m1 + 1) // 2, m2 * (m2 + 1) // 2)
                    + min(m1 * (m1 - 1) // 2, m2 * (m2 - 1) // 2))
        if self.bases is not None:
            return min(self.bases[0].shape[1], self.bases[1].shape[1])
        return min(m1 * n1, m2 * n2)

    def subproblems(self) -> list[tuple[Any, Any, bool]]:
        """``(Q_A, Q_B, is_skew)`` of each SVD to solve (d = 2); ``Q = None``: no projection."""
        (m1, _), (m2, _) = self.shapes
        if self.symmetric:
            subs = [(symmetric_basis(m1), symmetric_basis(m2), False)]
            if m1 > 1 and m2 > 1:
                subs.append((skew_basis(m1), skew_basis(m2), True))
            return subs
        if self.bases is not None:
            return [(self.bases[0], self.bases[1], False)]
        return [(None, None, False)]

    def factor_bases(self) -> list[Any] | None:
        """Per-factor bases for d >= 3 (symmetric structures: the symmetric bases)."""
        if self.symmetric:
            return [symmetric_basis(m) for m, _ in self.shapes]
        return None if self.bases is None else list(self.bases)

    # -- checks of M ---------------------------------------------------------------------
    def check_dense(self, M: np.ndarray) -> None:
        """The M-level property of a dense ``M`` (``ValueError``/``TypeError`` if not)."""
        if self.level is None:
            return
        level = self.level
        if np.iscomplexobj(M):
            raise TypeError(f"`structure`={level!r} supports real `M` only, got dtype {M.dtype}")
        if level == "nonnegative":
            if M.size and M.min() < 0:
                raise ValueError(f"`structure`='nonnegative' but `M` has negative entries "
                                 f"(min {M.min():.3g})")
            return
        nrm = float(np.linalg.norm(M))
        asym = float(np.linalg.norm(M - M.T))
        if asym > SYM_RTOL * nrm:
            raise ValueError(f"`structure`={level!r} but `M` is not symmetric "
                             f"(‖M - M^T‖_F / ‖M‖_F = {asym / nrm:.3g} > {SYM_RTOL:g})")
        if level == "psd" and nrm > 0:
            _check_psd_dense(M)

    def check_sparse(self, M: Any) -> None:
        """The M-level property of a scipy sparse ``M``."""
        if self.level is None:
            return
        level = self.level
        if np.iscomplexobj(M.data):
            raise TypeError(f"`structure`={level!r} supports real `M` only, got dtype {M.dtype}")
        if level == "nonnegative":
            if M.nnz and M.data.min() < 0:
                raise ValueError("`structure`='nonnegative' but `M` has negative entries")
            return
        asym = float(np.linalg.norm((M - M.T).tocoo().data))
        nrm = float(np.linalg.norm(sp.coo_matrix(M).data))
        if asym > SYM_RTOL * nrm:
            raise ValueError(f"`structure`={level!r} but `M` is not symmetric "
                             f"(‖M - M^T‖_F / ‖M‖_F = {asym / nrm:.3g})")

    def check_lowrank(self, F: np.ndarray, G: np.ndarray, m1: int, m2: int) -> None:
        """The M-level property of ``M = Σ_k unvec(F_k) ⊗ unvec(G_k)`` (square blocks m1, m2)."""
        if self.level is None:
            return
        if self.nonnegative:
            for k in range(F.shape[1]):
                a, b = F[:, k], G[:, k]
                if not ((a.min() >= 0 and b.min() >= 0) or (a.max() <= 0 and b.max() <= 0)):
                    raise ValueError(
                        "`structure`='nonnegative' could not be verified for a sum of Kronecker "
                        f"terms: term {k} is not (nonnegative ⊗ nonnegative) up to sign; pass "
                        "the dense matrix instead"
                    )
            return
        # symmetric: R(M - M^T) = [F, F^T-vec][G, -G^T-vec]^T, measured exactly via thin QRs
        Ft = F.reshape(m1, m1, -1).transpose(1, 0, 2).reshape(m1 * m1, -1)
        Gt = G.reshape(m2, m2, -1).transpose(1, 0, 2).reshape(m2 * m2, -1)
        diff = LowRankR(np.concatenate([F, Ft], 1), np.concatenate([G, -Gt], 1))
        nrm = math.sqrt(LowRankR(F, G).sqnorm)
        asym = math.sqrt(diff.sqnorm)
        if asym > SYM_RTOL * nrm:
            raise ValueError(f"`structure`={self.level!r} but the sum of Kronecker terms is not "
                             f"symmetric (‖M - M^T‖_F / ‖M‖_F = {asym / nrm:.3g})")

    def check_cp(self, Fs: list[np.ndarray]) -> list[np.ndarray]:
        """The M-level property of ``M = Σ_k ⊗_l unvec(F_l[:, k])`` (d >= 3); returns the
        factors to use (``|F_l|`` for ``"nonnegative"``)."""
        if self.nonnegative:
            for k in range(Fs[0].shape[1]):
                signs = [np.sign(F[:, k][np.abs(F[:, k]) > 0]) for F in Fs]
                if any(np.unique(sg).size > 1 for sg in signs) or \
                        np.prod([sg[0] if sg.size else 1.0 for sg in signs]) < 0:
                    raise ValueError("`structure`='nonnegative' could not be verified for a sum "
                                     f"of Kronecker terms: term {k} is not nonnegative")
            return [np.abs(F) for F in Fs]
        if self.level is not None:
            # symmetry of M checked through the grouping (first factor) ⊗ (the rest)
            rest = np.stack([functools.reduce(np.kron, [F[:, k].reshape(self.shapes[l])
                                                        for l, F in enumerate(Fs) if l > 0]).ravel()
                             for k in range(Fs[0].shape[1])], 1)
            self.check_lowrank(Fs[0], rest, self.shapes[0][0],
                               math.prod(m for m, _ in self.shapes[1:]))
        return Fs

    def check_operator(self, M: Any, rng: np.random.Generator) -> None:
        """The M-level property of a LinearOperator ``M`` (symmetry by two random products;
        without an adjoint, symmetry is the caller's assertion)."""
        if self.level is None:
            return
        if self.nonnegative:
            raise ValueError("`structure`='nonnegative' cannot be verified for a LinearOperator "
                             "`M`; pass a dense or sparse matrix")
        if np.dtype(M.dtype).kind == "c":
            raise TypeError(f"`structure`={self.level!r} supports real `M` only, got dtype "
                            f"{M.dtype}")
        X = rng.standard_normal((M.shape[1], 2))
        try:
            MX = np.asarray(M.matmat(X))
            MtX = np.asarray(M.rmatmat(X))
        except NotImplementedError:
            return
        if float(np.linalg.norm(MX - MtX)) > 1e-8 * max(float(np.linalg.norm(MX)), 1e-300):
            raise ValueError(f"`structure`={self.level!r} but the LinearOperator `M` is not "
                             "symmetric (M @ x differs from M^T @ x for random x)")

    def check_samples(self, center: bool, xmin: float) -> None:
        """``"nonnegative"`` of a sample covariance needs uncentred samples ``X >= 0``."""
        if self.nonnegative and (center or xmin < 0):
            raise ValueError("`structure`='nonnegative' for samples needs center=False and "
                             "X >= 0 (a centred covariance has negative entries in general)")

    # -- results -------------------------------------------------------------------------
    def zero_terms(self, r: int, dtype: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Orthonormal factor vectors ``(U, Vh, skew)`` with this structure for ``r`` zero terms."""
        (m1, n1), (m2, n2) = self.shapes
        Us, Vs, flags = [], [], []
        for QA, QB, is_skew in self.subproblems():
            if QA is None:
                QA, QB = sp.identity(m1 * n1), sp.identity(m2 * n2)
            n = min(QA.shape[1], QB.shape[1])
            QA = QA.toarray() if sp.issparse(QA) else np.asarray(QA)
            QB = QB.toarray() if sp.issparse(QB) else np.asarray(QB)
            Us.append(QA[:, :n])
            Vs.append(QB[:, :n])
            flags.append(np.full(n, is_skew))
        U = np.concatenate(Us, axis=1)[:, :r].astype(dtype)
        Vh = np.concatenate(Vs, axis=1)[:, :r].T.astype(dtype)
        return U, Vh, np.concatenate(flags)[:r]

    def finish_terms(self, t: Terms, op: Any) -> None:
        """Signs, nonnegative and PSD handling of KPSVD terms (in place).

        Every term's largest-|.| entry of ``vec(A_k)`` is made real positive (``"psd"``: the
        leading term by ``tr A_0 > 0``). ``"nonnegative"``: the leading pair is replaced by
        ``(|u|, |v|)`` (for ``R >= 0``, ``|u|^T R |v| >= σ_1``, so it is a top pair as well).
        ``"psd"``: the leading term must be symmetric ⊗ symmetric with PSD factors.
        """
        (m1, _), (m2, _) = self.shapes
        for k in range(t.s.size):
            c = unit_phase(t.U[:, k], (m1, m1) if k == 0 and self.level == "psd" else None)
            if c != 1.0:
                t.U[:, k] = t.U[:, k] * c
                t.Vh[k] = t.Vh[k] * np.conj(c)
        if not t.s.size:
            return
        if self.nonnegative:
            u, v = np.abs(t.U[:, 0]), np.abs(t.Vh[0])
            t.U[:, 0], t.Vh[0] = u, v
            t.s = t.s.copy()
            t.s[0] = float(u @ op.matmat(v[:, None])[:, 0])
        if self.level == "psd":
            if t.skew[0]:
                raise ValueError(_NOT_PSD + "its leading Kronecker term is skew ⊗ skew")
            if not (is_psd(t.U[:, 0].reshape(m1, m1)) and is_psd(t.Vh[0].reshape(m2, m2))):
                raise ValueError(_NOT_PSD + "the leading Kronecker factors are indefinite")

    def pick_nearest(self, t: Terms) -> float | None:
        """Keep the best term this structure allows (in place); return the σ of a better
        skew ⊗ skew pair of a symmetric ``M`` (the caller warns), else ``None``."""
        if not self.symmetric:
            return None
        skew_sigma = None
        if t.skew[0]:
            if self.level == "psd":
                raise ValueError(_NOT_PSD + "its leading Kronecker term is skew ⊗ skew")
            skew_sigma = float(t.s[0])
        j = int(np.flatnonzero(~t.skew)[0])
        t.U, t.s, t.Vh, t.skew = t.U[:, [j]], t.s[[j]], t.Vh[[j]], t.skew[[j]]
        return skew_sigma

    def orient(self, vecs: list[np.ndarray]) -> list[np.ndarray]:
        """Fix signs/phases of unit vectors ``a_1..a_d`` without changing ``a_1 ∘ ... ∘ a_d``:
        each but the last by :func:`unit_phase` (by trace for ``"psd"``), the last compensating."""
        vecs = [v.copy() for v in vecs]
        for l in range(len(vecs) - 1):
            c = unit_phase(vecs[l], self.shapes[l] if self.level == "psd" else None)
            vecs[l] = vecs[l] * c
            vecs[-1] = vecs[-1] * np.conj(c)
        return vecs

    def finish_nearest(self, vecs: list[np.ndarray], sigma: float,
                       op: Any = None) -> tuple[list[np.ndarray], float]:
        """Signs, nonnegative and PSD handling of the nearest Kronecker product's unit
        factors ``a_l`` with scale ``σ``; ``op`` (d = 2): the R-operator, for ``σ`` of the
        nonnegative pair ``(|a_1|, |a_2|)`` (for d >= 3 the power method keeps them ``>= 0``).
        ``"psd"``: every factor PSD (d >= 3: also a positive trace of the last one)."""
        vecs = self.orient(vecs)
        if op is not None and self.nonnegative:
            vecs = [np.abs(v) for v in vecs]
            sigma = float(vecs[0] @ op.matmat(vecs[1][:, None])[:, 0])
        if self.level != "psd":
            return vecs, sigma
        if op is None and np.trace(vecs[-1].reshape(self.shapes[-1])).real < 0:
            raise ValueError(_NOT_PSD + "the nearest Kronecker product is negative definite")
        for l, v in enumerate(vecs):
            if not is_psd(v.reshape(self.shapes[l])):
                raise ValueError(_NOT_PSD + ("the leading Kronecker factors are indefinite"
                                             if op is not None else
                                             f"nearest Kronecker factor {l} is indefinite"))
        return vecs, sigma


def _check_psd_dense(M: np.ndarray) -> None:
    """``ValueError`` unless the symmetric ``M`` is PSD (Cholesky with a tiny shift)."""
    n = M.shape[0]
    Ms = 0.5 * (M + M.T)
    delta = 64 * n * np.finfo(float).eps * max(float(np.max(np.diagonal(Ms))), 0.0)
    try:
        np.linalg.cholesky(Ms + delta * np.eye(n))
    except np.linalg.LinAlgError:
        lam = float(np.linalg.eigvalsh(Ms)[0])
        raise ValueError(f"`structure`='psd' but `M` is not positive semi-definite "
                         f"(smallest eigenvalue {lam:.3g})") from None
