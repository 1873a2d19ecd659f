"""PD-MORL (Basaklar, Gumussoy, Ogras, ICLR 2023) in JAX: one preference-conditioned network for all preferences.

Two agents, as in the official code: ``pd-morl`` (continuous actions, MO-TD3-HER, `continuous.py`) and
``pd-morl-discrete`` (MO-DDQN-HER with the preference-driven target of the paper's Eq. 5, `discrete.py`). Both run
key-preference learners first, fit the interpolator ``I`` from their returns (`interpolator.py`), then train one
conditioned network with HER over preference sub-spaces (`base.py`: what both share). Importing this package
registers both agents. The algorithm and where it differs from the official code: docs/algorithms/pd-morl.md.
"""

from morl.agents.pd_morl.base import Lane, PDMORLBase, PDState
from morl.agents.pd_morl.continuous import CONTINUOUS_SPEC, PDMORLConfig, PDMORLTrainer, make_continuous_trainer
from morl.agents.pd_morl.discrete import (
    DISCRETE_SPEC,
    PDMORLDiscreteConfig,
    PDMORLDiscreteTrainer,
    make_discrete_trainer,
)
from morl.agents.pd_morl.interpolator import (
    Interpolator,
    eval_rbf,
    fit_rbf,
    interpolate,
    key_preferences,
    make_interpolator,
)

__all__ = [
    "CONTINUOUS_SPEC",
    "DISCRETE_SPEC",
    "PDMORLConfig",
    "PDMORLDiscreteConfig",
    "PDMORLTrainer",
    "PDMORLDiscreteTrainer",
    "PDMORLBase",
    "PDState",
    "Lane",
    "Interpolator",
    "fit_rbf",
    "eval_rbf",
    "make_interpolator",
    "interpolate",
    "key_preferences",
    "make_continuous_trainer",
    "make_discrete_trainer",
]
