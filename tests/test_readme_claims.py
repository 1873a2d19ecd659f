"""The README's agent-figure commands keep working: each one parses with its script / the CLI and builds its
trainer (`experiments/check_readme_claims.py`, no training), every one is covered by a claim, the commands that
reproduce each figure resolve to that figure's settings, and a broken command is reported, not skipped.

The small-scale runs of every command (``check_readme_claims.py --run``) take minutes (a minute of compiles even
for a 2,000-step Envelope run) and stay out of CI; their output-shape checks are tested here on the documented
output lines.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


#: the claims whose commands the README carries (each must be matched by a README command)
README_CLAIMS = (
    "c-morl-dst",
    "c-morl-minecart",
    "morld-minecart",
    "c-morl-hopper",
    "pgmorl-mcc",
    "suite-classic",
    "envelope-dst",
    "pdmorl-ftn",
)


@pytest.fixture(scope="module")
def claims():
    spec = importlib.util.spec_from_file_location(
        "check_readme_claims", ROOT / "experiments" / "check_readme_claims.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_readme_command_resolves_and_has_a_claim(claims):
    commands = claims.readme_commands()
    assert len(commands) >= 6, commands  # the table's five rows and the suite line
    rows = claims.check()
    errors = [(r["row"], r["command"], r["error"]) for r in rows if "error" in r]
    assert not errors, errors
    assert {r["claim"] for r in rows if not r.get("unmatched")} >= set(README_CLAIMS)


@pytest.mark.parametrize("key", README_CLAIMS)
def test_proposed_commands_resolve_to_their_figures_settings(claims, key, tmp_path):
    claim = next(c for c in claims.CLAIMS if c.key == key)
    facts = claims.resolve(claim.proposed, tmp_path)
    assert claims.differences(claim, facts) == []
    assert claims.claim_for(claim.proposed) is claim  # the README can carry it verbatim


def test_settings_that_differ_from_the_figure_are_named(claims, tmp_path):
    claim = next(c for c in claims.CLAIMS if c.key == "morld-minecart")
    diffs = claims.differences(claim, claims.resolve("python experiments/decomposition.py morld-minecart", tmp_path))
    assert any(d.startswith("num_envs: the command gets 1, the figure needs 4") for d in diffs), diffs


def test_a_broken_readme_command_is_an_error(claims, tmp_path):
    readme = (ROOT / "README.md").read_text()
    good = "`python experiments/decomposition.py pgmorl-mcc"
    assert good in readme
    broken = tmp_path / "README.md"
    broken.write_text(
        readme.replace(good, "`python experiments/decomposition.py pgmorl-mcc --max-walltime 300").replace(
            "--env mo-hopper-2obj-v5", "--env mo-hopper-2obj-v9"
        )
    )
    rows = {r["command"]: r for r in claims.check(broken)}
    pg = next(r for c, r in rows.items() if "pgmorl-mcc --max-walltime" in c)
    assert "error" in pg and "--max-walltime" in pg["error"], pg
    hopper = next(r for c, r in rows.items() if "mo-hopper-2obj-v9" in c)
    assert "error" in hopper and "mo-hopper-2obj-v9" in hopper["error"], hopper
    assert claims.main(["--readme", str(broken)]) == 1


def test_output_shape_checks_accept_the_documented_output_and_reject_others(claims, tmp_path):
    """The --run mode's shape checks on the scripts' documented output lines (the runs themselves take minutes)."""
    ok = "seed 0: 95% at 9.1 s, 100% at 13.3 s, final HV 360.40/360.40 (10 points), 1,085,440 steps in 20.1 s"
    assert claims._shape_bench_dst(ok, tmp_path) == []
    assert claims._shape_bench_dst(ok.replace("100% at 13.3 s", "100% at -"), tmp_path) != []
    assert claims._shape_bench_dst(ok.replace("final HV 360.40/", "final HV 356.20/"), tmp_path) != []
    paper = (
        "seed 0: HV 560.20, EU -0.1 (C-MORL grid) / -0.2 (50 w), SP 0.50000, 12 points, 3,956,736 steps, 900 s\n"
        + "".join(f"{k}: 1.0000 +- 0.0000 (over 1 seeds)\n" for k in ("hv", "eu_cmorl_grid", "sp", "wall_s"))
    )
    assert claims._shape_paper(paper, tmp_path) == []
    assert claims._shape_paper(paper.replace("sp: ", "spread: "), tmp_path) != []
    summary = (
        'SUMMARY {"env_steps": 10, "train_wall_s": 1.0, "steps_per_s": 10, "final": {"hv": 1.0, "points": 2}, '
        '"true_hv": 147.84}'
    )
    assert claims._shape_decomposition(147.84)(summary, tmp_path) == []
    assert claims._shape_decomposition(147.84)(summary.replace('"env_steps": 10', '"env_steps": 0'), tmp_path) != []
    assert claims._shape_decomposition(147.84)("no summary", tmp_path) != []
    assert claims._shape_run_folder("", tmp_path) != []  # no run folder
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    for f in ("config.json", "metrics.jsonl", "front.csv"):
        (run / f).write_text("{}")
    (run / "result.json").write_text('{"metrics": {"hypervolume": 1.0}}')
    assert claims._shape_run_folder("", tmp_path) == []
    (run / "front.csv").unlink()
    assert claims._shape_run_folder("", tmp_path) == ["run folder lacks front.csv"]
