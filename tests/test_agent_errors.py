"""An agent given an env with the wrong action kind: one error that names the agents that do fit, the closest
name first (``pd-morl`` <-> ``pd-morl-discrete``), in the library and as one CLI line (exit 2).

The check runs before the agent builds anything, so nothing here compiles.
"""

from __future__ import annotations

import re

import pytest

import morl
from morl.agent import _AGENTS, AgentSpec, agent_spec, agents_supporting, list_agents, make_trainer, register_agent
from morl.cli import main

DISCRETE_ENV = "deep-sea-treasure-v0"
CONTINUOUS_ENV = "mo-mountaincarcontinuous-v0"


def suggestion(err: str) -> list[str]:
    """The agents an action-kind error proposes, in its order: "use 'X' instead, or another agent ...: A, B"."""
    tail = err.split("; use '", 1)[1]
    first, rest = tail.split("' instead", 1)
    others = rest.split(": ", 1)[1].strip().split(", ") if ": " in rest else []
    return [first] + [o.rstrip(".") for o in others]


@pytest.mark.parametrize(
    "agent, env_id, kind, sibling",
    [
        ("pd-morl", DISCRETE_ENV, "discrete", "pd-morl-discrete"),
        ("pd-morl-discrete", CONTINUOUS_ENV, "continuous", "pd-morl"),
    ],
)
def test_make_trainer_names_the_sibling_agent_first(agent, env_id, kind, sibling):
    env, params = morl.make(env_id)
    with pytest.raises(ValueError) as info:
        make_trainer(agent, env, params)
    msg = str(info.value)
    other = "continuous" if kind == "discrete" else "discrete"
    assert f"agent {agent!r} supports {other} actions only" in msg and f"{env_id} has {kind} actions" in msg, msg
    proposed = suggestion(msg)
    assert proposed[0] == sibling, msg
    # every agent that supports this kind, and only those, each once
    expected = {n for n in list_agents() if kind in agent_spec(n).action_kinds}
    assert sorted(proposed) == sorted(expected) and agent not in proposed, (proposed, expected)


def test_agents_supporting_ranks_by_name_and_filters_by_kind():
    discrete = agents_supporting("discrete")
    assert discrete == sorted(discrete) and "pd-morl-discrete" in discrete and "pd-morl" not in discrete
    continuous = agents_supporting("continuous", near="pd-morl-discrete")
    assert continuous[0] == "pd-morl" and "envelope" not in continuous and "pd-morl-discrete" not in continuous
    assert agents_supporting("discrete", near="pd-morl")[0] == "pd-morl-discrete"


def test_no_agent_for_the_kind_says_so():
    """With every other agent unregistered, the error says no agent fits instead of proposing nothing."""
    env, params = morl.make(DISCRETE_ENV)
    saved = dict(_AGENTS)
    try:
        only = agent_spec("pd-morl")
        _AGENTS.clear()
        register_agent(
            AgentSpec(
                only.name,
                only.config_cls,
                only.make_trainer,
                action_kinds=("continuous",),
                budget_field=only.budget_field,
            )
        )
        with pytest.raises(ValueError, match="no registered agent supports discrete actions"):
            make_trainer("pd-morl", env, params)
    finally:
        _AGENTS.clear()
        _AGENTS.update(saved)


@pytest.mark.parametrize(
    "agent, env_id, sibling",
    [
        ("pd-morl", DISCRETE_ENV, "pd-morl-discrete"),
        ("pd-morl-discrete", CONTINUOUS_ENV, "pd-morl"),
    ],
)
def test_cli_prints_one_line_naming_the_sibling(agent, env_id, sibling, capsys, tmp_path):
    code = main(["train", agent, "--env", env_id, "--steps", "100", "--runs-dir", str(tmp_path), "--quiet"])
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("morl: error: ") and f"use {sibling!r} instead" in lines[0], lines[0]
    assert not any(tmp_path.iterdir())  # rejected before any run folder is made


@pytest.mark.parametrize("agent", ["envelope", "morld", "pd-morl-discrete"])
def test_agents_with_their_own_jitted_loop_refuse_host_envs(agent):
    """Envelope, MORL/D and PD-MORL step the env inside their own jitted program: a host env gets a clear error that
    names the way out, not a trace failure."""
    env, params = morl.make("gym:deep-sea-treasure-v0")
    with pytest.raises(ValueError, match="needs a pure-JAX env"):
        make_trainer(agent, env, params)


@pytest.mark.parametrize("agent", ["envelope", "eupg", "gpi-ls", "mo-q", "pcn", "pd-morl-discrete", "pql"])
def test_discrete_trainers_built_directly_refuse_continuous_actions(agent):
    """`make_trainer` checks the action kind first; a trainer built by its spec's factory says so itself."""
    env, params = morl.make(CONTINUOUS_ENV)
    spec = agent_spec(agent)
    with pytest.raises(ValueError, match=f"needs discrete actions; {re.escape(env.name)} has Box"):
        spec.make_trainer(spec.config_cls(), env, params)
