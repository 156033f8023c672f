"""Faster random bits on CPU for JAX's default threefry keys, bit for bit the same numbers.

JAX lowers its threefry hash on CPU as a rolled loop of five iterations (to keep compile times
short); XLA then cannot fuse the rounds, and every iteration writes its intermediate arrays to
memory. Drawing millions of normals that way costs about five times more than the same hash
unrolled into one fused loop (measured on a 2-core x86 CPU: 4.2 million float32 normals in
16 ms instead of 81 ms). GPUs already get the unrolled lowering.

`fast_threefry` wraps a threefry key in a PRNG implementation whose ``random_bits`` is that
unrolled hash on exactly the counters JAX uses (``jax_threefry_partitionable``, JAX's default):
``jax.random.normal(fast_threefry(key), ...)`` equals ``jax.random.normal(key, ...)`` element
for element, and the uniform and normal transforms stay JAX's own. Keys of any other
implementation, or threefry keys while ``jax_threefry_partitionable`` is off, are returned
unchanged, so the numbers never depend on whether the fast path applies.

This module imports nothing of probkit (see ``DESIGN.md``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.random import define_prng_impl, threefry_prng_impl

__all__ = ["fast_threefry", "threefry2x32"]

# The rotation constants and key-schedule parity of Threefry-2x32 (Salmon et al., SC 2011),
# as in JAX's jax/_src/random/threefry2x32.py.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)
_UINT = {8: np.uint8, 16: np.uint16, 32: np.uint32}


def _rotate_left(x: jax.Array, distance: int) -> jax.Array:
    return lax.shift_left(x, np.uint32(distance)) | lax.shift_right_logical(
        x, np.uint32(32 - distance)
    )


def threefry2x32(
    key1: jax.Array, key2: jax.Array, count1: jax.Array, count2: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 hash with 20 rounds, unrolled (one fusible elementwise expression).

    Parameters
    ----------
    key1, key2 : uint32 scalars
        The two words of the key.
    count1, count2 : uint32 arrays of one shape
        The two words of each counter.

    Returns
    -------
    tuple of two uint32 arrays
        The two output words, as ``jax.extend.random.threefry2x32_p`` computes them.
    """
    schedule = (key1, key2, key1 ^ key2 ^ _PARITY)
    x1 = count1 + schedule[0]
    x2 = count2 + schedule[1]
    for block in range(5):
        for rotation in _ROTATIONS[block % 2]:
            x1 = x1 + x2
            x2 = x1 ^ _rotate_left(x2, rotation)
        x1 = x1 + schedule[(block + 1) % 3]
        x2 = x2 + schedule[(block + 2) % 3] + np.uint32(block + 1)
    return x1, x2


def _random_bits(key: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    """``random_bits`` of JAX's partitionable threefry, with the unrolled hash.

    The counter of element ``i`` (row-major) is the 64-bit ``i`` split into a high and a low
    word, as ``jax._src.random.prng.iota_2x32_shape`` builds it.
    """
    size = math.prod(shape)
    if size >= 2**32:  # the high counter word would be needed; JAX's own path handles it
        return threefry_prng_impl.random_bits(key, bit_width, shape)
    low = lax.iota(np.uint32, size).reshape(shape)
    high = jnp.zeros(shape, np.uint32)
    bits1, bits2 = threefry2x32(key[0], key[1], high, low)
    if bit_width == 64:
        return lax.shift_left(bits1.astype(np.uint64), np.uint64(32)) | bits2.astype(np.uint64)
    return (bits1 ^ bits2).astype(_UINT[bit_width])


_UNROLLED_THREEFRY = define_prng_impl(
    key_shape=(2,),
    seed=threefry_prng_impl.seed,
    split=threefry_prng_impl.split,
    random_bits=_random_bits,
    fold_in=threefry_prng_impl.fold_in,
    name="threefry2x32_unrolled",
    tag="pkt",
)


def fast_threefry(key: jax.Array) -> jax.Array:
    """The same key, drawing the same numbers with the unrolled threefry hash.

    Parameters
    ----------
    key : jax.Array
        A typed PRNG key (``jax.random.key``); may be traced or batched.

    Returns
    -------
    jax.Array
        A key whose draws equal ``key``'s bit for bit. Keys that are not threefry keys, and all
        keys while ``jax_threefry_partitionable`` is off, are returned unchanged.
    """
    if str(jax.random.key_impl(key)) != "threefry2x32":
        return key
    if not jax.config.jax_threefry_partitionable:
        return key
    return jax.random.wrap_key_data(jax.random.key_data(key), impl=_UNROLLED_THREEFRY)
