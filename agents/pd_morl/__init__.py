"""PD-MORL (Basaklar, Gumussoy, Ogras, ICLR 2023) in JAX: one preference-conditioned network for all preferences.

Two agents, as in the official code (``tbasaklar/PDMORL-...``, docs/sources.md):

- ``pd-morl`` (continuous actions): **MO-TD3-HER**. Actor ``pi(s, w)`` and twin vector critics ``Q_i(s, w, a)``.
  Target ``y = r + gamma (1 - terminated) Q'_k(s', w, a')`` where ``k`` is the twin whose ``w . Q'`` is smaller and
  its **whole vector** is used (`agents.td.td3_min_vector`); critic loss ``SmoothL1(Q_i, y)`` plus the angle
  ``g(w_p, Q_i)`` in degrees between the interpolated preference ``w_p = I(w)`` and ``Q_i`` (no coefficient);
  actor loss ``-w . Q_1 + 10 g(w_p, Q_1)`` every ``policy_freq`` steps, followed by Polyak updates of both targets.
- ``pd-morl-discrete``: **MO-DDQN-HER**. ``Q(s, w) -> [A, m]``; target action of the paper's Eq. 5,
  ``argmax_a clip(cos(w_p, Q'(s', a, w)), 0, 0.9999) * w . Q'(s', a, w)`` on the target network; SmoothL1 loss.

Shared pieces:

- **Key-preference runs** (phase 1). One single-preference agent per key preference (the m corners and the
  uniform preference), trained without HER and without angle terms, as ONE program vmapped over the keys. Each
  key policy is evaluated (greedy, discounted returns) after every chunk and its best scalarised return kept.
- **Interpolator** ``I``: a linear-kernel RBF interpolator (scipy's ``RBFInterpolator(kernel='linear')``, degree-1
  polynomial, solved in JAX by least squares) from the key preferences to their **L2**-normalised key returns.
  During the main run the conditioned policy is re-evaluated at the key preferences after every chunk; a key
  return is replaced when its scalarised value improved, and ``I`` is refitted on **L1**-normalised returns
  (the official code's L2/L1 mismatch, kept: ``refit_norm``).
- **Parallel scheme** (phase 2): the preference grid (step ``w_step``) is split into ``num_subspaces`` contiguous
  sub-spaces (the official 10 processes); env ``i`` draws its episode preferences from sub-space
  ``i mod num_subspaces``, rounded to 3 decimals. All envs step in one vmapped program.
- **HER**: every stored transition also gets ``weight_num`` copies with preferences ``|N(0, I)| / L1`` rounded to
  3 decimals, once the buffer holds more than ``her_start`` entries (official: ``start_timesteps x processes``).
- One gradient step per env transition (``updates_per_step``), as the official main loop (10 ``learn`` calls per
  10 transitions), all inside the jitted chunk.

Deviations from the official code, and why
------------------------------------------
- **Discrete interpolator from key runs, never from the true front.** The official DST/FTN scripts build ``I`` from
  the known Pareto front (``x_new = argmax_{front} w_key . x``) and pick the checkpoint with the best CR-F1 against
  the true front. Here ``I`` comes from key-preference runs as in the continuous case, the final network is the
  one returned, and nothing reads ``env.pareto_front``.
- **Cosine shift.** The official DST code adds 19 to the time objective inside the cosine (and to the key returns):
  cosines of vectors with negative parts are meaningless against non-negative preferences. Here the shift is
  ``cosine_shift`` or, by default (None), computed from the key runs: ``max(0, -min_k G_k)`` per objective (about
  17.4 on DST at gamma 0.99; 0 for fruit tree, as the official code).
- **Continuous key runs inside the same run.** The official code trains keys with separate scripts (2M steps each,
  returns committed as ``interp_objs_*.txt``); here they are phase 1 of the same run (``key_timesteps`` each),
  inside its budget: ``total_timesteps`` covers the key runs and the main run together (docs/budgets.md).
- **Preference grid**: the full Das-Dennis grid (`agents.preferences.grid`); the official float-equality filter
  drops simplex points for m >= 3.
- **Bootstrapping**: targets bootstrap on ``terminated`` only, truncated transitions from their true final
  observation (the official code treats time-limit ends as terminal).
- **Replay**: a device-array ring with the same capacity and the same eviction order (the official list with
  ``pop(0)`` is a performance bug, not a semantic choice).
- **Refit timing**: after every chunk (official: whenever every child finished one more episode).
- **Exploration epsilon** (discrete): ``max(final, start - t / T)`` with ``t`` and ``T`` the per-env step count and
  per-env budget, the official ``EpsilonTracker`` (updated per step here, per episode there). The official start
  0.8 suits the official 1M-step budget; at a few tens of thousands of steps the run is mostly random walks, which
  on DST end at the shallow treasures, so the deepest two are never found (93-95% of the HV at 20-40k steps): short
  runs should start lower (the CI test: 0.3, 99.4%).
- **Key-run exploration**: continuous and discrete key runs jitter the key preference per step (official
  continuous: per call of the agent, i.e. per step too; the official discrete code has no key runs). On DST the
  exact ``w = [1, 0]`` gives time no weight and a Q-network easily settles on wall-bumping loops.
- **Degenerate keys**: a key whose shifted return is the zero vector (a looping key policy: no treasure, the
  largest time cost, which the ``-min`` shift maps to 0) is replaced by its own preference in the fit; a zero
  ``w_p`` would zero every Eq. 5 score around that key, and the main run could never improve on it.
- **Observation scaling** (continuous, ``normalize_obs``, default on): observation dims with finite Box bounds are
  mapped to [-1, 1] before the networks (the official code feeds raw observations). MuJoCo observation spaces are
  unbounded, so nothing changes there; on mountain car it puts the velocity (|v| <= 0.07) on the position's scale.
- **Correlated exploration** (continuous, ``noise_correlation``, default 0 = official i.i.d. Gaussian noise and
  uniform random warm-up): the exploration noise is AR(1) across steps with unit variance, and the warm-up acts
  ``clip(center + half z)``. Sparse-goal tasks where momentum must be built (mountain car) need it, the standard
  DDPG/TD3 practice there: i.i.d. uniform actions reach the goal in ~2% of 999-step episodes, rho = 0.9 in ~96%.
- **Critic angle coefficient** (``critic_angle_coeff``, default 1 = official, no coefficient). The angle terms are
  in degrees whatever the return scale, and their gradient w.r.t. Q shrinks like 1 / |Q + shift|, so the official
  weights (1 in the critic, ``actor_loss_coeff`` 10 in the actor) were set for MuJoCo returns in the thousands. On
  returns of ~100 (mountain car, gamma 0.99) they dominate the TD loss: the critic is pulled toward ``w_p`` instead
  of the TD target and no preference learns to reach the goal (measured: 1-point front with the official weights,
  4-6 points with 0.1 / 1, same budget and seed; with both angle terms off, 3 points).
- **Episode cap** (``max_episode_steps``): training and key-evaluation episodes end at the official cap (DST: 30,
  the env default for DST); the env's own limit (100) stays for the evaluator.
"""

from morl.agents.pd_morl.base import Lane, PDMORLBase, PDState
from morl.agents.pd_morl.continuous import (CONTINUOUS_SPEC, PDMORLConfig, PDMORLTrainer,
                                            make_continuous_trainer)
from morl.agents.pd_morl.discrete import (DISCRETE_SPEC, PDMORLDiscreteConfig, PDMORLDiscreteTrainer,
                                          make_discrete_trainer)
from morl.agents.pd_morl.interpolator import (Interpolator, eval_rbf, fit_rbf, interpolate, key_preferences,
                                              make_interpolator)

__all__ = ["CONTINUOUS_SPEC", "DISCRETE_SPEC", "PDMORLConfig", "PDMORLDiscreteConfig", "PDMORLTrainer",
           "PDMORLDiscreteTrainer", "PDMORLBase", "PDState", "Lane", "Interpolator", "fit_rbf", "eval_rbf",
           "make_interpolator", "interpolate", "key_preferences", "make_continuous_trainer", "make_discrete_trainer"]
