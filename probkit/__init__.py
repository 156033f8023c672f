"""probkit: probabilistic inference building blocks on JAX and NumPyro, checked against theory.

Importing :mod:`probkit` is cheap: the subpackages :mod:`probkit.inference` (how you infer) and
:mod:`probkit.theory` (how you know it is right) load on first use. probkit never changes JAX's
global configuration; enable float64 yourself (``jax.config.update("jax_enable_x64", True)``)
when you need it. The ``probkit check`` command does so for its own run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from probkit._errors import ProbkitError
from probkit._version import __version__

if TYPE_CHECKING:
    from probkit import inference, theory

__all__ = ["ProbkitError", "__version__", "inference", "theory"]

_SUBPACKAGES = ("inference", "theory")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"probkit.{name}")
    raise AttributeError(f"module 'probkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
