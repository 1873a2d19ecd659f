"""Population-based training of a vmapped population (`morl pbt`): MO-PBT, single-objective PBT, random search.

MO-PBT (Dushatskiy, Chebykin, Alderliesten, Bosman, ICML 2023) is PBT (Jaderberg et al. 2017) whose exploit step
ranks the members by NSGA-II's order (non-dominated sorting, then crowding distance within a front) over several
objectives instead of by one score. Here the P members of one agent train as ONE ``jit(vmap(update))`` program:
seeds and hyperparameters are population axes, so every hyperparameter PBT changes must be a traced value of the
train state. An adapter per agent (`ADAPTERS`) says which ones and where they live; for Envelope they are the
learning rate and the gradient-clip norm, made leaves of the optimiser state by ``optax.inject_hyperparams``.

Every ``interval`` env steps (per member) each member is evaluated under the protocol (its front's metrics), and
(`exploit_explore`):

* ``mo-pbt``: members are ordered by (front, -crowding distance); the bottom ``fraction`` (at least one) each copy
  a member of the first front that is not itself in the bottom: params, optimiser state, replay buffer, env state,
  with a fresh PRNG key, and perturb the copied hyperparameters (each x0.8 or x1.2, or, with probability
  ``resample``, drawn again from its range).
* ``pbt``: the same with the first objective alone (truncation selection: the bottom ``fraction`` copy one of the
  top ``fraction``).
* ``random``: no exploit; the initial population (hyperparameters drawn from their ranges) trains to the end.
  With the same seed, all three start from the same population and spend the same budget.

Objectives are the evaluator's metrics by short name (``hv``, ``sp``, ``eu``, ...; `morl.tune.METRICS` gives each
its direction); the choice is recorded in the result with every ranking.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from morl.pareto import crowding_distance, non_dominated
from morl.tune import METRICS

PyTree = Any
STRATEGIES = ("mo-pbt", "pbt", "random")
PERTURB = (0.8, 1.2)


class PBTError(ValueError):
    """A problem with a PBT request; the message names it and the fix."""


@dataclass(frozen=True)
class HParam:
    """A hyperparameter PBT explores: its range (initial draws, resampling, clipping) and scale."""

    name: str
    low: float
    high: float
    log: bool = True

    def sample(self, rng: np.random.Generator, n: int | None = None):
        if self.log:
            return np.exp(rng.uniform(math.log(self.low), math.log(self.high), n))
        return rng.uniform(self.low, self.high, n)


# ====================================================================== ranking and exploit / explore
def nsga2_order(objectives: np.ndarray, directions: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """NSGA-II's order of the rows of ``objectives [P, k]``: (order best first, front index of each row).

    Non-dominated sorting (fronts peeled off one by one; minimised objectives are negated), then within a front
    the larger crowding distance first, then the lower index."""
    pts = np.asarray(objectives, np.float64) * np.array([1.0 if d == "maximize" else -1.0 for d in directions])
    n = pts.shape[0]
    front = np.full(n, -1)
    crowd = np.zeros(n)
    left = np.arange(n)
    f = 0
    while left.size:
        mask = non_dominated(pts[left], return_mask=True, keep_duplicates=True)
        members = left[mask]
        front[members] = f
        crowd[members] = crowding_distance(pts[members])
        left = left[~mask]
        f += 1
    order = np.array(sorted(range(n), key=lambda i: (front[i], -crowd[i], i)))
    return order, front


def select(
    objectives: np.ndarray, directions: list[str], strategy: str, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, dict[int, int]]:
    """(order best first, {replaced member: the member it copies}) for one exploit step."""
    n = objectives.shape[0]
    if strategy == "random":
        return np.arange(n), {}
    q = min(n - 1, max(1, round(fraction * n)))
    if strategy == "pbt":
        order, _ = nsga2_order(objectives[:, :1], directions[:1])
        bottom, top = order[n - q :], order[:q]
    else:
        order, front = nsga2_order(objectives, directions)
        bottom = order[n - q :]
        top = np.array([i for i in order if front[i] == 0 and i not in set(bottom.tolist())])
    return order, {int(b): int(rng.choice(top)) for b in bottom}


def explore(values: dict[str, float], hparams: tuple[HParam, ...], resample: float, rng: np.random.Generator):
    """A copied member's hyperparameters: each x0.8 or x1.2 (or, with probability ``resample``, drawn again),
    kept inside its range."""
    out = {}
    for h in hparams:
        v = float(h.sample(rng)) if rng.random() < resample else values[h.name] * float(rng.choice(PERTURB))
        out[h.name] = float(np.clip(v, h.low, h.high))
    return out


def exploit_explore(
    state: PyTree,
    hvalues: dict[str, np.ndarray],
    objectives: np.ndarray,
    directions: list[str],
    hparams: tuple[HParam, ...],
    *,
    strategy: str,
    fraction: float,
    resample: float,
    rng: np.random.Generator,
) -> tuple[PyTree, dict[str, np.ndarray], dict[int, int]]:
    """One PBT step on a stacked population (``state`` leaves ``[P, ...]``, ``hvalues`` name -> ``[P]``): the
    replaced members get their source's whole state and its perturbed hyperparameters. Returns the new state, the
    new hyperparameters and {replaced: source}."""
    _, moves = select(objectives, directions, strategy, fraction, rng)
    if not moves:
        return state, hvalues, moves
    n = objectives.shape[0]
    src = np.arange(n)
    for b, s in moves.items():
        src[b] = s
    state = jax.tree.map(lambda x: x[jnp.asarray(src)], state)
    new = {k: np.array(v, np.float64) for k, v in hvalues.items()}
    for b, s in sorted(moves.items()):
        for k, v in explore({k: float(hvalues[k][s]) for k in hvalues}, hparams, resample, rng).items():
            new[k][b] = v
    return state, new, moves


# ====================================================================== agents
class EnvelopeAdapter:
    """Envelope with its learning rate and gradient-clip norm as leaves of the optimiser state
    (``optax.inject_hyperparams``), so each member of the vmapped population has its own."""

    agent = "envelope"
    hparams = (HParam("learning_rate", 1e-5, 1e-2), HParam("max_grad_norm", 0.1, 10.0))

    def trainer(self, config, env, env_params):
        import optax

        from morl.agents.envelope import EnvelopeTrainer

        trainer = EnvelopeTrainer(config, env, env_params)
        # the optimiser its init and gradient step read (at trace time): the same chain with traced numbers
        trainer.tx = optax.chain(
            optax.inject_hyperparams(optax.clip_by_global_norm)(max_norm=config.max_grad_norm or 1.0),
            optax.inject_hyperparams(optax.adam)(learning_rate=config.learning_rate),
        )
        return trainer

    def chunk_steps(self, config) -> int:
        return config.steps_per_chunk * config.num_envs

    def get(self, state) -> dict[str, np.ndarray]:
        clip, adam = state.opt_state
        return {
            "learning_rate": np.asarray(adam.hyperparams["learning_rate"], np.float64),
            "max_grad_norm": np.asarray(clip.hyperparams["max_norm"], np.float64),
        }

    def set(self, state, values: dict[str, np.ndarray]):
        clip, adam = state.opt_state
        f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
        clip = clip._replace(hyperparams={**clip.hyperparams, "max_norm": f32(values["max_grad_norm"])})
        adam = adam._replace(hyperparams={**adam.hyperparams, "learning_rate": f32(values["learning_rate"])})
        return state.replace(opt_state=(clip, adam))

    def reseed(self, state, replaced: list[int], salt: int):
        """Fresh PRNG keys for the members that were just overwritten by a copy (else they would repeat it)."""
        keys = state.key
        for i in replaced:
            keys = keys.at[i].set(jax.random.fold_in(keys[i], 1_000_003 * (salt + 1) + i))
        return state.replace(key=keys)


ADAPTERS: dict[str, Any] = {"envelope": EnvelopeAdapter()}


# ====================================================================== the run
@dataclass
class PBTRequest:
    """Everything a PBT run needs; `morl pbt`'s options."""

    agent: str
    env: str
    population: int = 8
    objectives: tuple[str, ...] = ("hv", "sp")
    strategy: str = "mo-pbt"
    steps: int | None = None  # budget per member (None: the agent's default)
    interval: int | None = None  # env steps per member between rankings (None: a tenth of the budget)
    fraction: float = 0.25
    resample: float = 0.25
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    protocol: Any = None
    hparam_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # replaces an adapter's ranges

    def __post_init__(self):
        if self.agent not in ADAPTERS:
            raise PBTError(
                f"agent {self.agent!r} has no population adapter (its hyperparameters must be traced values of the "
                f"train state); agents with one: {', '.join(sorted(ADAPTERS))}"
            )
        if self.strategy not in STRATEGIES:
            raise PBTError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        bad = [o for o in self.objectives if o not in METRICS]
        if bad or not self.objectives:
            raise PBTError(f"unknown objective(s) {bad or '(none)'}; choose from {', '.join(METRICS)}")
        if self.population < 2:
            raise PBTError(f"--population must be >= 2, got {self.population}")
        if not 0 < self.fraction < 1:
            raise PBTError(f"--fraction must be in (0, 1), got {self.fraction}")
        if not 0 <= self.resample <= 1:
            raise PBTError(f"--resample must be in [0, 1], got {self.resample}")
        unknown = sorted(set(self.hparam_ranges) - {h.name for h in ADAPTERS[self.agent].hparams})
        if unknown:
            raise PBTError(f"{self.agent} explores no hyperparameter(s) {unknown}")

    @property
    def directions(self) -> list[str]:
        return [METRICS[o][1] for o in self.objectives]

    @property
    def hparams(self) -> tuple[HParam, ...]:
        hs = ADAPTERS[self.agent].hparams
        return tuple(
            dataclasses.replace(h, low=self.hparam_ranges[h.name][0], high=self.hparam_ranges[h.name][1])
            if h.name in self.hparam_ranges
            else h
            for h in hs
        )


#: (agent, env, config) -> (env, env params, trainer, jit(vmap(init)), jit(vmap(update))): runs of the same
#: population settings (the three strategies at one budget) share their compiled programs
_PROGRAMS: dict[str, tuple] = {}


def _programs(adapter, req: PBTRequest, config):
    import morl

    key = json.dumps([req.agent, req.env, dataclasses.asdict(config)], sort_keys=True, default=str)
    if key not in _PROGRAMS:
        env, env_params = morl.make(req.env)
        trainer = adapter.trainer(config, env, env_params)
        _PROGRAMS[key] = (env, env_params, trainer, jax.jit(jax.vmap(trainer.init)), jax.jit(jax.vmap(trainer.update)))
    return _PROGRAMS[key]


def _member(tree, i: int):
    return jax.tree.map(lambda x: x[i], tree)


def evaluate_population(trainer, state, env, env_params, protocol, key, population: int) -> list[dict[str, float]]:
    """Every member's front metrics under ``protocol`` (the same evaluation key for all: common random numbers)."""
    from morl.evaluate import evaluate

    return [
        dict(evaluate(trainer.solution(_member(state, i)), env, env_params, protocol, key=key).metrics)
        for i in range(population)
    ]


def _objectives(metrics: list[dict[str, float]], names: tuple[str, ...]) -> np.ndarray:
    """``[P, k]``; a missing or NaN metric counts as the worst value of its direction."""
    out = np.zeros((len(metrics), len(names)))
    for j, o in enumerate(names):
        key, direction = METRICS[o]
        worst = -np.inf if direction == "maximize" else np.inf
        for i, m in enumerate(metrics):
            v = m.get(key)
            out[i, j] = v if v is not None and math.isfinite(v) else worst
    # dominance and crowding need finite numbers: the worst stand-in is just past the finite extremes
    for j in range(out.shape[1]):
        col = out[:, j]
        finite = col[np.isfinite(col)]
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
        col[col == -np.inf] = lo - 1.0 - abs(lo)
        col[col == np.inf] = hi + 1.0 + abs(hi)
    return out


def run_pbt(req: PBTRequest, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the population to the end of the budget with exploit/explore every ``interval`` steps; returns the
    record: request, every ranking (metrics, hyperparameters, moves) and the final population."""
    from morl.agent import agent_spec, make_config
    from morl.evaluate import EvalProtocol

    adapter = ADAPTERS[req.agent]
    spec = agent_spec(req.agent)
    overrides = dict(req.overrides)
    if req.steps is not None:
        overrides[spec.budget_field] = req.steps
    config = make_config(req.agent, req.env, **overrides)
    protocol = req.protocol or EvalProtocol()
    env, env_params, trainer, vinit, vupdate = _programs(adapter, req, config)
    budget = int(getattr(config, spec.budget_field))
    chunk = adapter.chunk_steps(config)
    interval = req.interval if req.interval is not None else max(chunk, (budget // 10) // chunk * chunk)
    if interval <= 0 or interval % chunk:
        raise PBTError(
            f"--interval {interval} must be a positive multiple of the env steps of one training chunk ({chunk}: "
            f"steps_per_chunk x num_envs)"
        )
    hparams = req.hparams
    rng = np.random.default_rng(req.seed)
    P = req.population
    hvalues = {h.name: np.asarray(h.sample(rng, P), np.float64) for h in hparams}
    initial = {k: v.tolist() for k, v in hvalues.items()}
    keys = jax.random.split(jax.random.PRNGKey(req.seed), P)
    state = adapter.set(vinit(keys), hvalues)
    eval_base = jax.random.fold_in(jax.random.PRNGKey(req.seed), 0x9B7)
    rankings: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    steps, rnd = 0, 0
    while steps < budget:
        target = min(budget, steps + interval)
        while steps < target:
            state, _ = vupdate(state)
            steps = int(np.asarray(state.env_steps).max())
        rnd += 1
        metrics = evaluate_population(trainer, state, env, env_params, protocol, jax.random.fold_in(eval_base, rnd), P)
        objectives = _objectives(metrics, req.objectives)
        entry: dict[str, Any] = {
            "round": rnd,
            "env_steps": steps,
            "metrics": metrics,
            "hparams": {k: v.tolist() for k, v in hvalues.items()},
        }
        if steps < budget:
            state, hvalues, moves = exploit_explore(
                state,
                hvalues,
                objectives,
                req.directions,
                hparams,
                strategy=req.strategy,
                fraction=req.fraction,
                resample=req.resample,
                rng=rng,
            )
            if moves:
                state = adapter.reseed(adapter.set(state, hvalues), sorted(moves), rnd)
            entry["moves"] = {str(b): s for b, s in moves.items()}
        rankings.append(entry)
        if log is not None:
            hv = [m.get("hypervolume", float("nan")) for m in metrics]
            log(
                f"{req.strategy} round {rnd}: {steps:,} steps/member, HV max {max(hv):.4g} mean {np.mean(hv):.4g}"
                + (f", replaced {sorted(entry.get('moves', {}), key=int)}" if entry.get("moves") else "")
            )
    final = rankings[-1]["metrics"]
    hv = np.array([m.get("hypervolume", np.nan) for m in final])
    return {
        "agent": req.agent,
        "env": req.env,
        "strategy": req.strategy,
        "objectives": list(req.objectives),
        "directions": req.directions,
        "population": P,
        "budget_per_member": budget,
        "interval": interval,
        "fraction": req.fraction,
        "resample": req.resample,
        "seed": req.seed,
        "hparam_ranges": {h.name: [h.low, h.high, "log" if h.log else "linear"] for h in hparams},
        "initial_hparams": initial,
        "config": json.loads(json.dumps(dataclasses.asdict(config), default=str)),
        "protocol": protocol.as_dict(),
        "rankings": rankings,
        "final": final,
        "hparams": [{k: float(v[i]) for k, v in hvalues.items()} for i in range(P)],
        "summary": {"hv_max": float(np.nanmax(hv)), "hv_mean": float(np.nanmean(hv))},
        "wall_time": time.perf_counter() - t0,
    }


def write_result(result: dict[str, Any], runs_dir: str | Path) -> Path:
    """``<runs-dir>/pbt/<agent>_<env>_<strategy>_s<seed>_<time>.json``."""
    from morl.runs import atomic_write_json
    from morl.store import clean_json

    out = Path(runs_dir) / "pbt"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = out / f"{result['agent']}_{result['env']}_{result['strategy']}_s{result['seed']}_{stamp}.json"
    atomic_write_json(path, clean_json(result))
    return path
