"""A budget is a budget (docs/budgets.md): for every agent, ``--steps`` bounds every real env transition the agent
consumes (warm-up, key runs and Pareto initialisation included), shares that do not fit are refused with a one-line
error (exit 2), the progress bar's total is the budget, and the leaderboard shows the steps the runs really used.

Each agent trains once through the CLI (`main([...])` in-process, the path `morl train` takes), on a small env (DST
for the discrete agents, continuous mountain car for the continuous ones) with tiny networks and chunks. Measured:
241 s for the whole file with no compilation cache on the shared 2-core machine at load average 7.5 (most of it
compiling: PD-MORL continuous 62 s, discrete 43 s, C-MORL 38 s, PGMORL 37 s, MORL/D 30 s with 2 seeds vmapped,
Envelope 24 s).
"""

from __future__ import annotations

import math

import pytest

from morl import runs as R
from morl.agent import make_trainer
from morl.cli import main
from morl.cli import train as cli_train
from morl.leaderboard import build_leaderboard, render

DST = "deep-sea-treasure-v0"
MC = "mo-mountaincarcontinuous-v0"
#: a cheap final evaluation: 1 episode of at most 50 steps, 3 preferences for the conditioned agents
PROTO = [
    "--protocol-episodes",
    "1",
    "--protocol-front-weights",
    "3",
    "--protocol-eu-weights",
    "3",
    "--protocol-max-steps",
    "50",
    "--eval-every",
    "0",
]


def _ceil(n: int, k: int) -> int:
    return math.ceil(n / k) * k


# agent -> (env, --steps N, config options, real transitions the budget rule gives (or a range, lowest first, where
# the algorithm may stop before its budget), allowed over-run, seeds, why)
# The over-run is what the agent's unit of work allows past the budget (0 for the agents that spend it in whole
# units, rounded down; under num_envs per stepping lane for the per-step agents, whose last vector step may cross
# the budget): never more than one chunk.
CASES = {
    # C-MORL: M = 2 initial policies x 32 transitions per update; init 200 -> 3 updates (192); extension: 1 policy x
    # 2 objectives x 32 -> (1000 - 192) // 64 = 12 updates (768); 960 in all. A chunk is one update (64). C-MORL ends
    # early when selection has no new policy to extend (here a 1-point buffer after a few rounds): >= the init share.
    "c-morl": (
        MC,
        1000,
        [
            "--init-steps",
            "200",
            "--init-weight-delta",
            "1.0",
            "--num-select",
            "1",
            "--update-iter",
            "2",
            "--num-envs",
            "2",
            "--num-steps",
            "16",
            "--num-minibatches",
            "2",
            "--epochs",
            "1",
            "--hidden",
            "8",
            "--eval-episodes",
            "1",
            "--max-episode-steps",
            "50",
        ],
        (192, 192 + 768),
        0,
        [0],
        "whole PPO updates, chunk = one update of 2 x 32 transitions",
    ),
    # PGMORL: 3 tasks (delta 0.5) x 2 envs x 16 steps = 96 per iteration; 1000 // 96 = 10 iterations (960), the
    # warm-up (2) and one generation (1) inside. A chunk is one iteration (96).
    "pgmorl": (
        MC,
        1000,
        [
            "--delta-weight",
            "0.5",
            "--num-envs",
            "2",
            "--steps-per-iteration",
            "16",
            "--num-minibatches",
            "2",
            "--epochs",
            "1",
            "--hidden",
            "8",
            "--warmup-iterations",
            "2",
            "--evolutionary-iterations",
            "1",
            "--max-episode-steps",
            "50",
        ],
        960,
        0,
        [0],
        "whole PPO iterations, chunk = one iteration of 3 x 2 x 16 transitions",
    ),
    # Envelope: 4 envs in lockstep; the vector step that reaches 1002 ends training: 1004 (over-run < num_envs).
    "envelope": (
        DST,
        1002,
        [
            "--num-envs",
            "4",
            "--steps-per-chunk",
            "25",
            "--batch-size",
            "8",
            "--net-arch",
            "16",
            "--buffer-size",
            "2000",
            "--learning-starts",
            "50",
        ],
        1004,
        3,
        [0],
        "per vector step of 4 envs, chunk = 25 x 4 transitions",
    ),
    # PD-MORL discrete: 2 envs per lane; 3 key runs x 101 -> 102 each (306), the main run gets 701 - 303 = 398.
    "pd-morl-discrete": (
        DST,
        701,
        [
            "--key-timesteps",
            "101",
            "--num-subspaces",
            "2",
            "--hidden",
            "16",
            "--num-layers",
            "1",
            "--batch-size",
            "8",
            "--buffer-size",
            "500",
            "--her-start",
            "50",
            "--steps-per-chunk",
            "50",
            "--w-step",
            "0.1",
        ],
        3 * 102 + 398,
        4,
        [0],
        "per vector step of 2 envs in each of 4 lanes, chunk = 50 x 2 x 3",
    ),
    # PD-MORL continuous: the same accounting with TD3 lanes.
    "pd-morl": (
        MC,
        701,
        [
            "--key-timesteps",
            "101",
            "--num-subspaces",
            "2",
            "--hidden",
            "16",
            "--num-layers",
            "1",
            "--batch-size",
            "16",
            "--key-batch-size",
            "16",
            "--buffer-size",
            "2000",
            "--key-buffer-size",
            "500",
            "--start-timesteps",
            "10",
            "--key-start-timesteps",
            "20",
            "--steps-per-chunk",
            "50",
            "--w-step",
            "0.1",
            "--eval-episodes",
            "1",
        ],
        3 * 102 + 398,
        4,
        [0],
        "per vector step of 2 envs in each of 4 lanes, chunk = 50 x 2 x 3",
    ),
    # MORL/D: rounds of 3 members x 100 = 300; 1000 // 300 = 3 rounds (900). Two seeds: the vmapped path.
    "morld": (
        DST,
        1000,
        [
            "--pop-size",
            "3",
            "--exchange-every",
            "100",
            "--net-arch",
            "16",
            "--buffer-size",
            "1000",
            "--batch-size",
            "16",
            "--learning-starts",
            "50",
            "--update-passes",
            "1",
            "--eval-episodes",
            "1",
        ],
        900,
        0,
        [0, 1],
        "whole exchange rounds, chunk = one round of 3 x 100 transitions",
    ),
}


@pytest.mark.parametrize("agent", list(CASES))
def test_steps_bound_every_real_transition_and_the_progress_bar_total_is_the_budget(
    agent, tmp_path, monkeypatch, capsys
):
    env, budget, options, expected, over, seeds, chunk = CASES[agent]
    seen: list[tuple] = []
    original = cli_train.ProgressUI.__call__

    def spy(self, event):  # the CLI's rich progress bar, read after each event it draws
        original(self, event)
        task = next(t for t in self.progress.tasks if t.id == self.tasks[event.run_id])
        seen.append((event, task.total, task.completed))

    monkeypatch.setattr(cli_train.ProgressUI, "__call__", spy)
    code = main(
        [
            "train",
            agent,
            "--env",
            env,
            "--seeds",
            ",".join(map(str, seeds)),
            "--steps",
            str(budget),
            "--runs-dir",
            str(tmp_path),
            *PROTO,
            *options,
        ]
    )
    assert code == 0, capsys.readouterr().err
    good, bad = R.list_runs(tmp_path)
    assert not bad and len(good) == len(seeds) and all(r.status == "done" for r in good)
    for run in good:
        used = run.result["env_steps"]
        assert used <= budget + over, (
            f"{agent}: {used} real transitions for --steps {budget}; the rule allows {over} over ({chunk})"
        )
        lo, hi = expected if isinstance(expected, tuple) else (expected, expected)
        assert lo <= used <= hi, f"{agent}: {used} real transitions, the budget rule gives {expected} ({chunk})"
        assert run.meta["budget"] == budget
        events = [(e, total, done) for e, total, done in seen if e.run_id == run.id]
        assert len(events) >= 3 and events[-1][0].finished
        assert all(e.budget == budget for e, _, _ in events)
        # the bar's total is the budget while training runs; at the end the bar is full at the real count
        assert all(total == budget for e, total, _ in events if not e.finished and e.env_steps <= budget)
        assert events[-1][1] == events[-1][2] == used
        # ... and it is not full before the last chunk (the ETA then still has something to say)
        assert all(done < total for e, total, done in events[:-2])
        steps = [e.env_steps for e, _, _ in events]
        assert steps == sorted(steps) and steps[0] == 0


def test_leaderboard_shows_the_steps_runs_used(capsys):
    """A cell says how many real steps its runs trained on when that differs from the column's nominal budget."""
    proto = {"gamma": 0.99, "episodes": 1}

    def row(run_id, agent, seed, used):
        return {
            "run_id": run_id,
            "agent": agent,
            "env": DST,
            "seed": seed,
            "config": {},
            "budget": 1000,
            "env_steps": used,
            "protocol": proto,
            "protocol_hash": "abc",
            "metrics": {"hypervolume": 1.0 + seed},
        }

    rows = [row("a0", "a", 0, 900), row("a1", "a", 1, 900), row("b0", "b", 0, 1000)]
    lb = build_leaderboard(rows, "hv")
    md = render(lb, "md")
    (line_a,) = [ln for ln in md.splitlines() if ln.startswith("| a ")]
    (line_b,) = [ln for ln in md.splitlines() if ln.startswith("| b ")]
    assert "(n=2) · 900 steps" in line_a and "steps" not in line_b.replace("(n=1)", "")
    assert "budget 1k steps" in md
    header, csv_a = render(lb, "csv").splitlines()[:2]
    fields = [h.strip('"').rsplit(" | ", 1)[-1] for h in header.split('","')]
    assert fields[1:8] == ["mean", "ci_low", "ci_high", "n", "best", "env_steps", "mean_rank"]
    assert csv_a.split(",")[6] == "900.0"


@pytest.mark.parametrize(
    "argv, names",
    [
        # the commands: each trained far past its budget; now refused before anything is trained
        (["c-morl", "--env", MC, "--steps", "20000"], ["init_steps", "--steps"]),
        (["c-morl", "--env", DST, "--init-steps", "99999999", "--steps", "100000"], ["init_steps", "--init-steps"]),
        (["pgmorl", "--env", MC, "--steps", "20000"], ["warmup_iterations", "--warmup-iterations", "--steps"]),
        (["pgmorl", "--env", DST, "--steps", "5000"], ["warmup_iterations", "--steps"]),
        (["pd-morl-discrete", "--env", DST, "--steps", "2000"], ["key_timesteps", "--key-timesteps", "--steps"]),
        (["pd-morl", "--env", MC, "--steps", "20000"], ["key_timesteps", "--key-timesteps"]),
        (["morld", "--env", DST, "--steps", "5000"], ["exchange_every", "--exchange-every", "--steps"]),
    ],
)
def test_shares_that_do_not_fit_the_budget_are_a_one_line_error(argv, names, tmp_path, capsys):
    code = main(["train", *argv, "--seed", "0", "--runs-dir", str(tmp_path), "--quiet"])
    out, err = capsys.readouterr()
    msg = " ".join(err.split())  # rich wraps long lines at the terminal's width
    assert code == 2, (out, err)
    assert "Traceback" not in err and msg.startswith("morl: error:") and msg.count("morl: error:") == 1
    assert all(n in msg for n in names), msg
    assert not list(tmp_path.iterdir())  # refused before a run folder was made


def test_the_python_api_refuses_the_same_configs():
    import morl

    env, params = morl.make(DST)
    with pytest.raises(ValueError, match=r"init_steps 2,000 .* more than the whole budget total_steps 1,000"):
        make_trainer("c-morl", env, params, total_steps=1_000, init_steps=2_000)
    with pytest.raises(ValueError, match=r"3 key-preference runs \(3 x key_timesteps 500 = 1,500"):
        make_trainer("pd-morl-discrete", env, params, total_timesteps=1_500, key_timesteps=500)
    with pytest.raises(ValueError, match=r"less than one exchange round \(pop_size 10 x exchange_every 1,000"):
        make_trainer("morld", env, params, total_timesteps=9_999)
    with pytest.raises(ValueError, match=r"does not cover the warm-up and one generation"):
        make_trainer("pgmorl", env, params, total_timesteps=4_915_199)
    # the smallest budgets that fit are accepted
    make_trainer("pd-morl-discrete", env, params, total_timesteps=1_501, key_timesteps=500)
    make_trainer("pgmorl", env, params, total_timesteps=4_915_200)
