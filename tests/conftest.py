"""Shared fixtures: float32/float64 runs without touching JAX's global configuration."""

import jax
import jax.numpy as jnp
import pytest


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    """Run the test once in float32 and once in float64 (x64 enabled only inside the test)."""
    with jax.enable_x64(request.param == "float64"):
        yield jnp.dtype(request.param)


@pytest.fixture
def x64():
    """Run the test with float64 enabled, as the exact oracle and the checks need."""
    with jax.enable_x64(True):
        yield
