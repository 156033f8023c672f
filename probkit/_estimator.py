"""scikit-learn's parameter protocol for probkit's estimators, without importing scikit-learn.

:class:`ParamsMixin` gives a class whose ``__init__`` stores each argument under its own name
the ``get_params``/``set_params`` pair and the ``repr`` of :class:`sklearn.base.BaseEstimator`,
which is all :func:`sklearn.base.clone`, pipelines and grid searches need.
"""

from __future__ import annotations

import inspect
from typing import Any

from probkit._errors import ProbkitError

__all__ = ["ParamsMixin"]


class ParamsMixin:
    """``get_params``, ``set_params`` and a ``repr`` showing the non-default parameters."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return sorted(name for name in signature.parameters if name != "self")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The hyper-parameters, as passed to ``__init__`` (``deep`` is accepted and ignored)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any):
        """Set hyper-parameters by name; returns ``self``."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ProbkitError(
                    f"{type(self).__name__} has no parameter {name!r}; its parameters are "
                    f"{', '.join(valid)}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        changed = []
        defaults = inspect.signature(type(self).__init__).parameters
        for name in self._get_param_names():
            value = getattr(self, name)
            if value is not defaults[name].default and value != defaults[name].default:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"
