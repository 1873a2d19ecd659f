"""float64 arithmetic in a float32 world, for the envs that must match a float64 reference bit for bit.

MO-Gymnasium's minecart, mountain car and water reservoir compute in float64 and test the results exactly (a
wall at ``y == 1``, a distance below a radius), so only the same float64 operations in the same order give the
same trajectories. JAX runs in float32 by default, so these envs trace their physics under
``jax.enable_x64`` and keep each float64 value in the state as its two uint32 words: the state stays a valid
pytree in float32 mode and the rollout engine carries it untouched.

- words: ``f64_bits`` / ``bits_f64`` on the host, ``as_f64`` / ``as_bits`` inside an x64 trace;
- rounding as the reference rounds: XLA's CPU backend fuses ``a * b + c`` into one fma where numpy rounds the
  product first; ``rn`` stops that fusion. ``dot2`` is ``np.dot`` of a float64 pair as this machine's numpy
  rounds it (OpenBLAS picks an fma kernel or a plain one per processor, ``numpy_dot_rounding``), with an
  exact emulated fma (``fma_square``) where the backend does not fuse (``fma_by_contraction``);
- ``np_sum`` (numpy's left-to-right sum of a short vector) and ``sqrt_threshold`` (a comparison of a
  correctly rounded sqrt turned into one on its argument).

``tests/test_envs_minecart.py`` checks these blocks against exact rational arithmetic under jit and vmap.
"""

from __future__ import annotations

import functools
import warnings
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "f64_bits",
    "bits_f64",
    "as_f64",
    "as_bits",
    "rn",
    "fma_square",
    "dot2",
    "dot_rounding",
    "numpy_dot_rounding",
    "fma_by_contraction",
    "np_sum",
    "sqrt_threshold",
]


def f64_bits(v) -> np.ndarray:
    """float64 value(s) -> their two uint32 words, shape ``(..., 2)`` (host side; what the state holds)."""
    v = np.array(v, np.float64)  # a contiguous copy (keeps 0-d shapes)
    return v.reshape(v.shape + (1,)).view(np.uint32)


def bits_f64(b) -> np.ndarray:
    """Inverse of ``f64_bits``: uint32 words ``(..., 2)`` -> float64 ``(...)`` (host side)."""
    b = np.array(b, np.uint32)
    return b.view(np.float64)[..., 0]


def as_f64(bits):
    """uint32 words (..., 2) -> float64 (...), inside an x64 trace."""
    return lax.bitcast_convert_type(bits, jnp.float64)


def as_bits(x):
    """float64 (...) -> uint32 words (..., 2), inside an x64 trace."""
    return lax.bitcast_convert_type(jnp.asarray(x, jnp.float64), jnp.uint32)


def rn(x):
    """The rounded value of a product, as an operand XLA cannot fuse into an fma with a following add."""
    return lax.nextafter(x, x)


def _two_sum(a, b):
    """s + e == a + b exactly, s = fl(a + b) (Knuth; no products, so no contraction can change it)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a):
    """a = hi + lo, hi = a rounded to 26 significant bits (integer rounding of its words), so |lo| has at
    most 26 bits too (Veltkamp's split, without the product an fma contraction could change)."""
    bits = lax.bitcast_convert_type(a, jnp.uint64)
    hi = lax.bitcast_convert_type(
        (bits + jnp.uint64(1 << 26)) & jnp.uint64(~((1 << 27) - 1) & (2**64 - 1)), jnp.float64
    )
    return hi, a - hi


def _two_square(a):
    """p + e == a * a exactly, p = fl(a * a) (Dekker; the partial products are exact, so an fma
    contraction of them changes nothing)."""
    p = rn(a * a)
    hi, lo = _split(a)
    return p, ((hi * hi - p) + (hi + hi) * lo) + lo * lo


def _add_round_odd(x, y):
    """x + y rounded to odd: the float64 next to it with an odd last bit, unless exact."""
    s, e = _two_sum(x, y)
    bits = lax.bitcast_convert_type(s, jnp.int64)
    step = jnp.where((s > 0) == (e > 0), 1, -1).astype(jnp.int64)
    bits = jnp.where((e != 0) & ((bits & 1) == 0), bits + step, bits)
    return lax.bitcast_convert_type(bits, jnp.float64)


def fma_square(a, c):
    """fl(a * a + c) with one rounding (Boldo & Melquiond 2008, emulated FMA via rounding to odd)."""
    uh, ul = _two_square(a)
    th, tl = _two_sum(c, uh)
    return th + _add_round_odd(tl, ul)


def dot2(dx, dy, rounding: str = "fma"):
    """``np.dot([dx, dy], [dx, dy])`` as this machine's numpy rounds it (``numpy_dot_rounding``):
    ``"fma"``: fma(dy, dy, dx * dx) with the exact emulated fma; ``"fma-contract"``: the same by the
    backend's own fma (a backend that fuses ``a * b + c``, ``fma_by_contraction``); ``"plain"``: both
    products rounded, then added."""
    if rounding == "plain":
        return rn(dx * dx) + rn(dy * dy)
    if rounding == "fma-contract":
        return rn(dx * dx) + dy * dy
    return fma_square(dy, rn(dx * dx))


def dot_rounding() -> str:
    """The ``dot2`` mode that reproduces numpy's ``np.dot`` of two float64 pairs on this machine, computed
    the fastest exact way on the default backend."""
    if numpy_dot_rounding() == "plain":
        return "plain"
    return "fma-contract" if fma_by_contraction() else "fma"


@functools.cache
def numpy_dot_rounding() -> str:
    """How this machine's numpy rounds ``np.dot(v, v)`` for a float64 pair: ``"fma"`` (fma(v1, v1, v0 * v0),
    OpenBLAS's ddot kernels for AVX-512 and arm64) or ``"plain"`` (v0 * v0 + v1 * v1 with both products
    rounded: its Haswell/Zen and older x86-64 kernels). OpenBLAS picks the kernel per processor (and
    ``OPENBLAS_CORETYPE``), so MO-Gymnasium's own minecart trajectories differ between machines; probing
    numpy here keeps the envs equal to MO-Gymnasium on the machine they run on. Any other rounding warns:
    bit-equality cannot hold there."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, 1024)
    y = rng.uniform(0.0, 1.0, 1024)
    got = np.array([np.dot(v, v) for v in np.stack([x, y], 1)])
    if np.array_equal(got, x * x + y * y):
        return "plain"
    fused = np.array([float(Fraction(float(a * a)) + Fraction(b) ** 2) for a, b in zip(x, y)])
    if np.array_equal(got, fused):
        return "fma"
    warnings.warn(
        "minecart: numpy's np.dot rounds neither as fma(v1, v1, v0 * v0) nor as v0 * v0 + v1 * v1 "
        "on this machine; trajectories may differ from MO-Gymnasium's in the last bits",
        RuntimeWarning,
        stacklevel=2,
    )
    return "fma"


def fma_by_contraction() -> bool:
    """``_fma_by_contraction`` for the default backend (the one an env's step is compiled for)."""
    return _fma_by_contraction(jax.default_backend())


@functools.cache
def _fma_by_contraction(backend: str) -> bool:
    """Whether XLA on ``backend`` computes ``rn(x * x) + y * y`` as one
    fma: probed once per backend on 256 cases where one rounding and two differ, against exact
    rational arithmetic. XLA's CPU backend contracts (LLVM fuses the multiply into the add); where a
    backend does not, ``dot2`` takes the emulated fma."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, 4096)
    y = rng.uniform(0.0, 1.0, 4096)
    once = np.array([float(Fraction(float(a * a)) + Fraction(b) ** 2) for a, b in zip(x, y)])
    differ = np.nonzero(once != x * x + y * y)[0][:256]
    with jax.enable_x64(True):
        f = jax.jit(jax.vmap(lambda a, b: dot2(a, b, "fma-contract")))
        got = np.asarray(f(x[differ], y[differ]))
    return bool(len(differ) > 0 and np.array_equal(got, once[differ]))


def np_sum(v):
    """``np.sum`` of a float64 vector of at most 8 values: left to right."""
    total = v[..., 0]
    for i in range(1, v.shape[-1]):
        total = total + v[..., i]
    return total


def sqrt_threshold(radius: float, strict: bool) -> float:
    """``sqrt(s) < r`` (strict) <=> ``s < T``, or ``sqrt(s) <= r`` <=> ``s <= T``, for float64 s >= 0:
    numpy's sqrt is correctly rounded and so monotone; T is found by stepping ulp by ulp from r * r."""
    r, s = np.float64(radius), np.float64(radius) * np.float64(radius)
    if strict:  # smallest s with sqrt(s) >= r
        while np.sqrt(s) >= r:
            s = np.nextafter(s, 0.0)
        while np.sqrt(s) < r:
            s = np.nextafter(s, 1.0)
    else:  # largest s with sqrt(s) <= r
        while np.sqrt(s) > r:
            s = np.nextafter(s, 0.0)
        while np.sqrt(np.nextafter(s, 1.0)) <= r:
            s = np.nextafter(s, 1.0)
    return float(s)
