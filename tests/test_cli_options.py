"""The CLI's options derived from config dataclasses: nested config fields (flattened options collected back into
the nested dataclass) and every built-in agent's option names, which must not change under a refactor."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import test_runs  # noqa: F401  (registers toy-random, the base of the nested toy agent)
from test_cli import DST, FAST, run_cli

from morl import runs as R
from morl.agent import AgentSpec, register_agent
from morl.cli import options, train


@dataclasses.dataclass(frozen=True)
class InnerConfig:
    #: the inner learning rate
    lr: float = 3e-4
    #: the inner discount
    gamma: float = 0.99


@dataclasses.dataclass(frozen=True)
class NestedConfig(test_runs.RandomSetConfig):
    #: the outer discount
    gamma: float = 0.9
    inner: InnerConfig = dataclasses.field(default_factory=InnerConfig)


@dataclasses.dataclass(frozen=True)
class RequiredInner:
    inner: InnerConfig
    steps: int = 10


register_agent(
    AgentSpec(
        "toy-nested",
        NestedConfig,
        test_runs.RandomSetTrainer,
        budget_field="total_steps",
        action_kinds=("discrete",),
        env_defaults={DST: {"inner": InnerConfig(lr=0.5)}},
    )
)


def test_nested_config_fields_become_options_and_come_back_as_the_nested_dataclass():
    """A unique nested name keeps its own option (--lr); a clash gets the outer field's name (--inner-gamma)."""
    p = argparse.ArgumentParser()
    opts = options.add_dataclass_options(p, NestedConfig)
    assert opts["inner.lr"] == "--lr" and opts["inner.gamma"] == "--inner-gamma" and opts["gamma"] == "--gamma"
    assert opts["total_steps"] == "--total-steps" and "inner" not in opts
    ns = p.parse_args(["--lr", "0.1", "--inner-gamma", "0.5", "--total-steps", "1e3"])
    assert options.collect(ns, "cfg__", NestedConfig) == {"total_steps": 1000, "inner": InnerConfig(0.1, 0.5)}
    start = NestedConfig(inner=InnerConfig(lr=2.0, gamma=0.1))  # the given fields replace the base's, no others
    assert options.collect(p.parse_args(["--inner-gamma", "0.5"]), "cfg__", start) == {"inner": InnerConfig(2.0, 0.5)}
    assert options.collect(p.parse_args([]), "cfg__", NestedConfig) == {}
    q = argparse.ArgumentParser()  # a nested field without a default
    options.add_dataclass_options(q, RequiredInner)
    assert options.collect(q.parse_args(["--gamma", "0.5"]), "cfg__", RequiredInner) == {
        "inner": InnerConfig(gamma=0.5)
    }


def test_train_with_a_nested_config(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "train", "toy-nested", "--env", DST, "--help")
    flat = " ".join(out.split())
    assert code == 0 and "--lr" in out and "--inner-gamma" in out and "--gamma" in out
    assert "(inner.lr) the inner learning rate [float; default: 0.5]" in flat  # the env's default for it
    code, _, err = run_cli(
        capsys, "train", "toy-nested", "--env", DST, "--inner-gamma", "0.5", "--runs-dir", tmp_path, *FAST
    )
    assert code == 0, err
    (run,) = R.list_runs(tmp_path)[0]
    assert run.meta["config"]["gamma"] == 0.9
    assert run.meta["config"]["inner"] == {"lr": 0.5, "gamma": 0.5}  # env default kept, given field set
    code, _, err = run_cli(capsys, "train", "--resume", run.id, "--lr", "1", "--runs-dir", tmp_path)
    assert code == 2 and "drop" in err


#: every built-in agent's config options: what users type, so they never change under a refactor
AGENT_OPTIONS = {
    "c-morl": "--adam-eps --barrier-t --beta --clip-eps --entropy-coef --epochs --eval-episodes --eval-gamma "
    "--eval-interval --extension-lr --gae-lambda --gamma --hidden --init-steps --init-weight-delta "
    "--init-weight-max --init-weight-min --lr --max-episode-steps --max-grad-norm --normalize-obs "
    "--normalize-reward --num-envs --num-minibatches --num-select --num-steps --policy-buffer --ref-point "
    "--slack-floor --total-steps --update-iter --value-coef",
    "capql": "--alpha --batch-size --buffer-size --gamma --gradient-updates --learning-rate --learning-starts "
    "--net-arch --num-envs --num-q-nets --steps-per-chunk --stochastic-behaviour --tau --total-timesteps "
    "--weight-angle",
    "envelope": "--batch-size --buffer-size --envelope --epsilon-decay-steps --final-epsilon --final-homotopy-lambda "
    "--gamma --gradient-updates --homotopy-decay-steps --initial-epsilon --initial-homotopy-lambda "
    "--learning-rate --learning-starts --max-grad-norm --net-arch --num-envs --num-sample-w --per "
    "--per-alpha --steps-per-chunk --target-net-update-freq --tau --total-timesteps",
    "gpi-ls": "--alpha-per --batch-size --buffer-size --corner-top-k --drop-rate --epsilon-decay-steps --eval-episodes "
    "--final-epsilon --gamma --gpi-priority --gradient-updates --gradient-updates-starts --initial-epsilon "
    "--layer-norm --learning-rate --learning-starts --max-grad-norm --max-support --min-priority --net-arch "
    "--num-nets --per --steps-per-chunk --target-net-update-freq --tau --timesteps-per-iter --total-timesteps "
    "--use-gpi",
    "gpi-pd": "--alpha-per --batch-size --buffer-size --corner-top-k --drop-rate --dyna --dynamics-buffer-size "
    "--dynamics-ensemble-size --dynamics-learning-rate --dynamics-net-arch --dynamics-num-elites "
    "--dynamics-rollout-batch-size --dynamics-rollout-freq --dynamics-rollout-len --dynamics-rollout-starts "
    "--dynamics-train-freq --dynamics-uncertainty-threshold --epsilon-decay-steps --eval-episodes --final-epsilon "
    "--gamma --gpi-priority --gradient-updates --gradient-updates-starts --initial-epsilon --layer-norm "
    "--learning-rate --learning-starts --max-grad-norm --max-support --min-priority --net-arch --num-nets --per "
    "--real-ratio --steps-per-chunk --target-net-update-freq --tau --timesteps-per-iter --total-timesteps --use-gpi",
    "hyper-ppo": "--clip-eps --dirichlet-alpha --entropy-coef --epochs --gae-lambda --gamma --hidden --hyper-hidden "
    "--iterations-per-chunk --learning-rate --max-grad-norm --network --normalize-obs --num-clusters --num-envs "
    "--num-features --num-minibatches --num-steps --sampling --total-timesteps --value-coef",
    "morld": "--alpha --archive-size --autotune --batch-size --buffer-size --epsilon-decay-steps --eval-episodes "
    "--eval-gamma --exchange-every --final-epsilon --gamma --gradient-updates --initial-epsilon "
    "--learning-starts --max-episode-steps --max-grad-norm --neighborhood-size --net-arch "
    "--normalize-rewards --num-envs --obs-encoding --policy-freq --policy-lr --pop-size --psa-delta "
    "--psa-nondominated --q-lr "
    "--scalarization --shared-buffer --target-net-freq --tau --tch-tau --total-timesteps --transfer "
    "--update-passes --weight-adaptation --weight-init --weight-seed --weighted-loss",
    "pcn": "--batch-size --crowding-threshold --gamma --hidden-dim --iterations-per-chunk --learning-rate "
    "--max-buffer-size --max-episode-steps --max-return --num-er-episodes --num-model-updates --num-points-pf "
    "--num-step-episodes --obs-encoding --scaling-factor --total-timesteps",
    "pd-morl": "--actor-loss-coeff --batch-size --buffer-size --cosine-shift --critic-angle-coeff --envs-per-subspace "
    "--eval-episodes --expl-noise --gamma --her-start --hidden --key-batch-size --key-buffer-size "
    "--key-gamma --key-policy-freq --key-start-timesteps --key-timesteps --lr-actor --lr-critic "
    "--max-grad-norm --noise-clip --noise-correlation --normalize-obs --num-layers --num-subspaces "
    "--policy-freq --policy-noise --refit-interpolator --refit-norm --start-timesteps --steps-per-chunk "
    "--tau --total-timesteps --updates-per-step --w-step --weight-num",
    "pd-morl-discrete": "--batch-size --buffer-size --cosine-shift --envs-per-subspace --epsilon-final "
    "--epsilon-start --eval-episodes --gamma --her-start --hidden --key-jitter --key-timesteps "
    "--learning-rate --max-episode-steps --num-layers --num-subspaces --refit-interpolator "
    "--refit-norm --steps-per-chunk --tau --total-timesteps --updates-per-step --w-step "
    "--weight-num",
    "pgmorl": "--adam-eps --anneal-lr --clip-eps --delta-weight --entropy-coef --ep-capacity --epochs --eval-episodes "
    "--eval-gamma --evolutionary-iterations --gae-lambda --gamma --hidden --lr --max-episode-steps "
    "--max-grad-norm --max-weight --min-weight --normalize-obs --normalize-reward --num-envs "
    "--num-minibatches --num-performance-buffer --num-weight-candidates --performance-buffer-size "
    "--pop-size --ref-point --sparsity-coef --steps-per-iteration --total-timesteps --value-coef "
    "--warmup-iterations",
    "eupg": "--episodes-per-chunk --gamma --learning-rate --max-episode-steps --net-arch --total-timesteps --utility "
    "--utility-input --weights",
    "mo-q": "--epsilon-decay-steps --final-epsilon --gamma --initial-epsilon --learning-rate --learning-starts "
    "--steps-per-chunk --total-timesteps --weights",
    "ols": "--epsilon-decay-steps --epsilon-ols --eval-episodes --final-epsilon --gamma --initial-epsilon "
    "--learning-rate --learning-starts --restart-epsilon --steps-per-chunk --timesteps-per-iteration "
    "--total-timesteps --transfer-q-table",
    "pql": "--action-eval --epsilon-decay-steps --final-epsilon --gamma --initial-epsilon --ref-point --set-capacity "
    "--steps-per-chunk --total-timesteps --track-tolerance",
}


@pytest.mark.parametrize("agent", sorted(AGENT_OPTIONS))
def test_agent_option_names_do_not_change(agent):
    """Also when a config nests another (PPOConfig inside C-MORL's or PGMORL's): the options stay as they were."""
    base = {o for a in train.train_parser(None, None)[0]._actions for o in a.option_strings}
    parser, _ = train.train_parser(agent, None)
    assert sorted({o for a in parser._actions for o in a.option_strings} - base) == AGENT_OPTIONS[agent].split()
