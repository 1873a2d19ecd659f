"""Regenerate ``energy_weights.npz``: MORL-Baselines' equally spaced weights, precomputed.

MORL-Baselines' ``equally_spaced_weights(dim, n, seed=42)`` is pymoo's Riesz s-energy reference
directions. We ship them so that pymoo stays a dev/test dependency. Run with pymoo installed:

    python morl/data/make_energy_weights.py

``tests/test_metrics.py`` checks every shipped set against pymoo's output (allclose 1e-12).
Keys are ``m{m}_n{n}_s{seed}``; ``pymoo_version`` records the generator.
"""

from __future__ import annotations

import pathlib

import numpy as np

SEED = 42
OBJECTIVES = range(2, 10)  # 2..9 objectives
# 50: expected utility and MUL; 100: MORL-Baselines' front building (num_eval_weights_for_front);
# 6: MORL/D's default population: equally_spaced_weights(m, pop_size=6, seed) with its default seed 42 (m <= 6)
SIZES = (6, 50, 100)
EXTRA = [(3, 15)]  # MORL/D's minecart population (agents/morld.py ENV_DEFAULTS)


def pairs():
    """The (m, n) pairs shipped (pymoo's energy method needs n >= m)."""
    return [(m, n) for m in OBJECTIVES for n in SIZES if n >= m] + EXTRA


def main() -> None:
    import pymoo
    from pymoo.util.ref_dirs import get_reference_directions

    out = {}
    for m, n in pairs():
        w = np.asarray(get_reference_directions("energy", m, n, seed=SEED), dtype=np.float64)
        assert w.shape == (n, m), (m, n, w.shape)
        out[f"m{m}_n{n}_s{SEED}"] = w
        print(f"m={m} n={n} done", flush=True)
    path = pathlib.Path(__file__).with_name("energy_weights.npz")
    np.savez_compressed(path, pymoo_version=np.array(pymoo.__version__), **out)
    print(f"wrote {len(out)} sets to {path}")


if __name__ == "__main__":
    main()
