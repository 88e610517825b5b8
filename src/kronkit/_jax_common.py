"""What ``kronkit.jax`` and its sums module share: knowing whether a value is concrete, and
the conversion and finiteness check of arguments (messages as ``Kron`` and ``kronkit.torch``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ._backend import beta_error
from ._checks import non_finite_error

try:  # public home since jax 0.4.36; older releases keep it in jax.core
    from jax.extend.core import concrete_or_error
except ImportError:  # pragma: no cover - old jax
    from jax.core import concrete_or_error

__all__ = ["check_finite", "concrete", "log_beta", "real_array"]


def concrete(x: Any) -> Any:
    """The value of ``x`` if it is known now (plain calls, and ``jax.grad`` / ``jax.jvp`` /
    ``jax.hessian`` outside ``jit``), else ``None`` (under ``jit`` or ``vmap``)."""
    if not isinstance(x, jax.core.Tracer):
        return x
    try:
        return concrete_or_error(None, x)
    except Exception:  # ConcretizationTypeError: an abstract value
        return None


def check_finite(x: Any, name: str) -> None:
    """``ValueError`` naming ``name`` if the (concrete) ``x`` holds NaN or Inf, as
    ``Kron`` and ``kronkit.torch`` do; a no-op for abstract values."""
    v = concrete(x)
    if v is None or not v.size:
        return
    with jax.ensure_compile_time_eval():  # a constant under jit: check it now, not staged
        finite = jnp.isfinite(v)
        bad = 0 if bool(jnp.all(finite)) else int(v.size - jnp.count_nonzero(finite))
    if bad:
        raise non_finite_error(name, bad)


def real_array(x: Any, name: str) -> jax.Array:
    """``x`` as a real JAX array, or a ``TypeError`` naming ``name``."""
    if x is None:
        raise TypeError(f"`{name}` must be an array, got None")
    try:
        arr = jnp.asarray(x)
    except Exception as exc:  # ragged lists, objects
        raise TypeError(f"`{name}` could not be converted to an array: {exc}") from exc
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise TypeError(f"`{name}` is complex ({arr.dtype}); kronkit.jax supports real input")
    if not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)
            or arr.dtype == jnp.bool_):
        raise TypeError(f"`{name}` must be a real numeric array, got dtype {arr.dtype}")
    return arr


def log_beta(alpha: Any, q: jax.Array) -> jax.Array:
    """``log(α + q)``; where some ``β = α + q ≤ 0`` a :class:`~kronkit.DomainError` when
    values are known (NaN or −inf under a transformation, as ``jnp.log`` gives)."""
    beta = alpha + q
    value = concrete(beta)
    if value is not None and value.size and not bool(jnp.all(value > 0)):
        raise beta_error(float(jnp.min(value)), value)
    return jnp.log(beta)
