"""Argument checks used at probkit's API boundaries.

Each helper raises :class:`~probkit.ProbkitError` with a message that names the argument, what
was given, what is accepted and what to do. Checks on *shapes* always run (shapes are static,
even under ``jax.jit``); checks on *values* run only when the values are concrete, that is,
when the function is called outside ``jit``/``vmap``. Traced code cannot raise on a value, so
functions that can meet degenerate values under tracing document what they return instead.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from probkit._errors import ProbkitError

__all__ = [
    "check_choice",
    "check_finite_or_minus_inf",
    "check_leading_axis",
    "check_non_negative_int",
    "check_output_path",
    "check_positive_int",
    "is_concrete",
]


def is_concrete(*values: Any) -> bool:
    """Return True when no leaf of ``values`` is a JAX tracer (so its values can be inspected)."""
    leaves = jax.tree_util.tree_leaves(values)
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an ``int`` if it is a positive integer, else raise.

    Parameters
    ----------
    name : str
        The argument's name, used in the error message.
    value : Any
        The value to check. Python and NumPy integers are accepted; booleans and floats are not.
    """
    return _check_int(name, value, minimum=1, kind="positive", example=100)


def check_non_negative_int(name: str, value: Any) -> int:
    """Return ``value`` as an ``int`` if it is an integer >= 0, else raise (as :func:`check_positive_int`)."""
    return _check_int(name, value, minimum=0, kind="non-negative", example=0)


def _check_int(name: str, value: Any, *, minimum: int, kind: str, example: int) -> int:
    if isinstance(value, bool | np.bool_):
        raise ProbkitError(f"`{name}` must be a {kind} integer; got the boolean {value!r}.")
    try:
        value = operator.index(value)
    except TypeError:
        raise ProbkitError(
            f"`{name}` must be a {kind} integer; got {value!r} of type "
            f"{type(value).__name__}. Pass a Python int such as {name}={example}."
        ) from None
    if value < minimum:
        raise ProbkitError(
            f"`{name}` must be a {kind} integer; got {value}. Pass {name} >= {minimum}."
        )
    return int(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming the accepted values."""
    if value not in choices:
        accepted = ", ".join(repr(c) for c in choices)
        raise ProbkitError(f"`{name}` must be one of {accepted}; got {value!r}.")
    return value


def check_leading_axis(name: str, tree: Any, size: int | None = None) -> int:
    """Check that every array leaf of ``tree`` has the same leading axis and return its length.

    Parameters
    ----------
    name : str
        The argument's name, used in the error message.
    tree : pytree
        A pytree of arrays, each with a leading (particle) axis.
    size : int, optional
        The length the leading axis must have. When omitted, the leaves must only agree.

    Raises
    ------
    ProbkitError
        If the tree has no array leaves, a leaf is a scalar, or the leading axes disagree.
    """
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        raise ProbkitError(
            f"`{name}` has no array leaves; pass an array or a pytree of arrays whose leading "
            "axis indexes the particles."
        )
    lengths = set()
    for leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ProbkitError(
                f"`{name}` has a scalar leaf; every leaf needs a leading particle axis. "
                "Add one with `x[None]` or stack the particles with `jnp.stack`."
            )
        lengths.add(shape[0])
    if len(lengths) != 1:
        raise ProbkitError(
            f"the leaves of `{name}` disagree on the number of particles (leading axes "
            f"{sorted(lengths)}); every leaf must have the same leading axis."
        )
    (length,) = lengths
    if size is not None and length != size:
        raise ProbkitError(
            f"`{name}` has {length} particles along its leading axis but {size} were asked for; "
            "make the two agree."
        )
    return int(length)


def check_finite_or_minus_inf(name: str, values: Any) -> None:
    """Raise if a concrete array holds NaN or +inf (−inf, a zero weight in log space, is allowed).

    Does nothing when ``values`` is traced.
    """
    if not is_concrete(values):
        return
    array = np.asarray(values)
    bad = np.isnan(array) | (array == np.inf)
    if bad.any():
        where = np.flatnonzero(bad)
        shown = ", ".join(str(i) for i in where[:5]) + (", ..." if where.size > 5 else "")
        raise ProbkitError(
            f"`{name}` holds {where.size} NaN or +inf value(s) (at flat index {shown}); log "
            "weights must be finite or -inf (a zero weight). A NaN usually comes from a log "
            "potential evaluated outside its support: return -inf there instead."
        )


def check_output_path(option: str, path: Any, overwrite: bool) -> None:
    """Refuse to replace an existing output file unless ``overwrite`` (no data lost unasked).

    Parameters
    ----------
    option : str
        The option that named the file (``--json``), used in the message.
    path : path-like or None
        The output file; ``None`` means no output.
    overwrite : bool
        Whether the user asked to replace existing files.
    """
    from pathlib import Path

    if path is not None and Path(path).exists() and not overwrite:
        raise ProbkitError(f"{option} {path} exists; pass --overwrite to replace it.")
