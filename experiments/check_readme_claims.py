"""Check the README's agent figures: every command of README.md's "Agent figures" section still runs with the
current CLI and library, resolves to the settings its figure needs, and (with ``--run``) produces the documented
output at a small scale.

    python experiments/check_readme_claims.py               # resolve every README command (no training, ~30 s)
    python experiments/check_readme_claims.py --run         # also run each at a small scale (~10 min, 2 cores)
    python experiments/check_readme_claims.py --run --only morld-minecart envelope-dst

What is checked, per README command (the "command" column of the table, and the commands in backticks in the
text below it; the speed tables are not claims checked here):

1. **It resolves**: the command is parsed by the script or CLI it names exactly as a user's shell would run it
   (placeholders such as ``S`` for a seed become ``0``, ``DIR`` a temporary folder), its agent, env, options
   and config overrides are accepted, and the trainer builds (`morl.agent.make_trainer` validates the
   config), without training. A command that no longer parses is an error.
2. **Its settings are the figure's**: each claim below lists what its figure needs (budget, population,
   seeds, options); the resolved settings are compared with that list. A difference means the command as
   written, with the current defaults, does not run what was measured: the report names the field, the
   value the command gets and the value the figure needs, and the ``proposed`` command that does.
3. **Its output has the documented shape** (``--run``): the command, shrunk to a small budget by the claim's
   ``small`` options (or as written, where the claim itself is cheap), runs to the end and prints / writes
   what the README describes (e.g. the "100% at" time, the HV/EU/SP lines, the SUMMARY JSON, the run folder
   with config, metrics and front CSV, the suite's groups). The figures themselves are not re-measured.

A README command that matches no claim here is an error, so a new figure cannot slip in unchecked.
``tests/test_readme_claims.py`` runs steps 1 and 2 (the README's commands must resolve; the proposed commands
must resolve to their figures' settings).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PLACEHOLDERS = {"S": "0", "ID": "deep-sea-treasure-v0"}  # DIR: a temporary folder (see substitute)


# ============================================================================ the claims
@dataclass(frozen=True)
class Claim:
    key: str
    match: str  # regex on the README command (after whitespace normalisation)
    figure: str  # the README's figure, in short
    needs: dict[str, Any]  # settings the figure was measured with (resolved facts / config fields)
    proposed: str  # a command that runs exactly those settings
    small: tuple[str, ...] = ()  # options appended for the small-scale run (empty: run as written)
    shape: Callable[[str, Path], list[str]] | None = None  # problems in the small run's output (stdout, tmp dir)
    one_seed: bool = False  # the small run keeps only seed 0 of ``--seeds``
    timeout_s: int = 600


def _shape_bench_dst(out: str, tmp: Path) -> list[str]:
    m = re.search(r"seed 0: 95% at ([\d.,]+) s, 100% at ([\d.,]+) s, final HV ([\d.]+)/([\d.]+)", out)
    if not m:
        return ["no 'seed 0: 95% at X s, 100% at Y s, final HV a/b' line (the run did not reach 100% of the true HV)"]
    return [] if m.group(3) == m.group(4) else [f"final HV {m.group(3)} is not the true HV {m.group(4)}"]


def _shape_paper(out: str, tmp: Path) -> list[str]:
    problems = []
    if not re.search(
        r"seed 0: HV [\d.]+, EU -?[\d.]+ \(C-MORL grid\) / -?[\d.]+ \(50 w\), SP [\d.]+, \d+ points, "
        r"[\d,]+ steps",
        out,
    ):
        problems.append("no per-seed 'HV, EU, SP, points, steps' line")
    for k in ("hv", "eu_cmorl_grid", "sp", "wall_s"):
        if not re.search(rf"^{k}: -?[\d.]+ \+- [\d.]+ \(over \d+ seeds\)$", out, re.M):
            problems.append(f"no '{k}: mean +- std (over N seeds)' line")
    return problems


def _summary(out: str) -> dict | None:
    lines = [ln for ln in out.splitlines() if ln.startswith("SUMMARY ")]
    return json.loads(lines[-1][len("SUMMARY ") :]) if lines else None


def _shape_decomposition(true_hv: float | None) -> Callable[[str, Path], list[str]]:
    def check(out: str, tmp: Path) -> list[str]:
        s = _summary(out)
        if s is None:
            return ["no SUMMARY line"]
        problems = [
            f"SUMMARY has no {k!r}"
            for k in ("env_steps", "train_wall_s", "steps_per_s", "final", "true_hv")
            if k not in s
        ]
        if not problems:
            if s["env_steps"] <= 0 or not {"hv", "points"} <= set(s["final"]):
                problems.append(f"SUMMARY without training or a final evaluation: {s}")
            if s["true_hv"] != true_hv:
                problems.append(f"SUMMARY true_hv {s['true_hv']} != {true_hv}")
        return problems

    return check


def _shape_pdmorl_ftn(out: str, tmp: Path) -> list[str]:
    s = _summary(out)
    if s is None:
        return ["no SUMMARY line"]
    grid = s.get("final", {}).get("grid0.1", {})
    missing = [k for k in ("hv_pct", "eu", "fruits") if k not in grid]
    return [f"SUMMARY's final grid0.1 evaluation has no {k!r}" for k in missing]


def _shape_run_folder(out: str, tmp: Path) -> list[str]:
    runs = [p for p in (tmp / "runs").iterdir() if p.is_dir()] if (tmp / "runs").is_dir() else []
    if len(runs) != 1:
        return [f"expected one run folder in {tmp / 'runs'}, found {len(runs)}"]
    missing = [f for f in ("config.json", "metrics.jsonl", "front.csv", "result.json") if not (runs[0] / f).is_file()]
    problems = [f"run folder lacks {f}" for f in missing]
    if not missing:
        result = json.loads((runs[0] / "result.json").read_text())
        if "hypervolume" not in result.get("metrics", {}):
            problems.append("result.json has no hypervolume")
    return problems


def _shape_suite(out: str, tmp: Path) -> list[str]:
    from morl.suites import load_suite

    groups = re.findall(r"^(\S+) on (\S+): 3 seeds", out, re.M)
    agents = {a for a, _ in groups}
    want = set(load_suite("classic").agents)
    return [] if agents == want else [f"dry run lists agents {sorted(agents)}, the suite has {sorted(want)}"]


MORLD_15 = dict(pop_size=15, total_timesteps=6_000_000, net_arch=(64, 64), batch_size=64, num_envs=4)
CLAIMS = [
    Claim(
        "c-morl-dst",
        r"^python experiments/bench_c_morl\.py (?!.*--paper-protocol).*--stop-at-full",
        "C-MORL DST to 100% of the true HV, cold 13.3/20.6/14.0 s and warm-cache 8.7/17.6/9.5 s (seeds 0/1/2)",
        needs=dict(
            agent="c-morl",
            env="deep-sea-treasure-v0",
            stop_at_full=True,
            total_steps=1_085_440,
            compilation_cache="DIR",
        ),
        proposed="python experiments/bench_c_morl.py --seeds 0 1 2 --stop-at-full --compilation-cache DIR",
        shape=_shape_bench_dst,
        one_seed=True,
    ),  # cheap: the small run is the claim itself, for seed 0
    Claim(
        "c-morl-minecart",
        r"^python experiments/bench_c_morl\.py --paper-protocol --env minecart-v0",
        "C-MORL minecart-v0 at the official budget, HV over seeds 0-2",
        needs=dict(
            agent="c-morl",
            env="minecart-v0",
            paper_protocol=True,
            seeds=[0, 1, 2],
            total_steps=3_956_736,
            init_steps=1_597_440,
            max_episode_steps=500,
        ),
        proposed="python experiments/bench_c_morl.py --paper-protocol --env minecart-v0 --seeds 0 1 2",
        small=(
            "--set",
            "total_steps=49152",
            "init_steps=24576",
            "eval_episodes=1",
            "max_episode_steps=50",
            "num_steps=64",
        ),
        shape=_shape_paper,
        one_seed=True,
    ),
    Claim(
        "morld-minecart",
        r"^python experiments/decomposition\.py morld-minecart",
        "MORL/D minecart-deterministic-v0, 15 members, 6M steps: HV 147.31 = 99.6% in 525 s",
        needs=dict(agent="morld", env="minecart-deterministic-v0", max_wall=600.0, **MORLD_15),
        proposed="python experiments/decomposition.py morld-minecart --max-wall 600 --set total_timesteps=6_000_000 "
        "pop_size=15 'net_arch=(64,64)' batch_size=64 num_envs=4",
        small=(
            "--set",
            "total_timesteps=6000",
            "exchange_every=1000",
            "pop_size=3",
            "net_arch=(16,16)",
            "batch_size=16",
            "num_envs=2",
            "learning_starts=500",
            "--eval-every",
            "1000",
        ),
        shape=_shape_decomposition(147.84),
    ),
    Claim(
        "c-morl-hopper",
        r"^morl train c-morl --env mo-hopper-2obj",
        "C-MORL mo-hopper-2obj-v5 at the official budget (native MuJoCo, 500-step cap): 11.96M steps, HV 143,527",
        needs=dict(
            agent="c-morl",
            env="mo-hopper-2obj-v5",
            env_kwargs={"backend": "mujoco", "max_steps": 500},
            total_steps=11_960_320,
            init_steps=7_987_200,
            max_episode_steps=500,
            seeds=[0],
        ),
        proposed="morl train c-morl --env mo-hopper-2obj-v5 --env-arg backend=mujoco --env-arg max_steps=500",
        small=(
            "--steps",
            "49152",
            "--init-steps",
            "24576",
            "--num-steps",
            "64",
            "--eval-episodes",
            "1",
            "--protocol-episodes",
            "1",
            "--quiet",
        ),
        shape=_shape_run_folder,
    ),
    Claim(
        "pgmorl-mcc",
        r"^python experiments/decomposition\.py pgmorl-mcc",
        "PGMORL defaults on mo-mountaincarcontinuous-v0: 4.96M steps in 167 s, 16-point front",
        needs=dict(
            agent="pgmorl",
            env="mo-mountaincarcontinuous-v0",
            total_timesteps=5_000_000,
            steps_per_iteration=2048,
            num_envs=4,
        ),
        proposed="python experiments/decomposition.py pgmorl-mcc --eval-every 1000",
        small=(
            "--set",
            "total_timesteps=60000",
            "warmup_iterations=1",
            "evolutionary_iterations=1",
            "steps_per_iteration=256",
            "--eval-every",
            "1000",
        ),
        shape=_shape_decomposition(None),
    ),
    Claim(
        "suite-classic",
        r"^morl suite run classic",
        "the classic suite at its full budgets (1M steps per env), 3 seeds, from the committed runs",
        needs=dict(suite="classic", steps_scale=1.0),
        proposed="morl suite run classic --runs-dir experiments/leaderboards/runs/classic",
        small=("--dry-run",),  # hours of training: its dry run shows what it would train
        shape=_shape_suite,
    ),
    Claim(
        "pdmorl-ftn",
        r"^python experiments/pdmorl_fruit_tree\.py train",
        "PD-MORL discrete, fruit-tree-v0 depth 6 at the paper's budget: 98.55 / 100 / 98.55% of the true HV on the "
        "step-0.1 preference grid (seeds 0/1/2)",
        needs=dict(
            agent="pd-morl-discrete",
            env="fruit-tree-v0",
            env_kwargs={"depth": 6},
            total_timesteps=1_140_000,
            updates_per_step=1.0,
            hidden=512,
        ),
        proposed="python experiments/pdmorl_fruit_tree.py train --seed S --eval-every 10",
        small=(
            "--steps",
            "3000",
            "--eval-every",
            "1",
            "--set",
            "key_timesteps=200",
            "hidden=32",
            "steps_per_chunk=100",
        ),
        shape=_shape_pdmorl_ftn,
    ),
    Claim(
        "envelope-dst",
        r"^morl train envelope --env deep-sea-treasure-v0",
        "Envelope: 100% of DST in 64 s (tests/test_envelope.py's setting: batch 32, seed 1, evaluated every 1,000 "
        "steps, time to the first full-HV evaluation)",
        needs=dict(agent="envelope", env="deep-sea-treasure-v0", batch_size=32, seeds=[1], eval_every=1000),
        proposed="morl train envelope --env deep-sea-treasure-v0 --seed 1 --batch-size 32 --eval-every 1000",
        small=("--steps", "2000", "--protocol-episodes", "1", "--quiet"),
        shape=_shape_run_folder,
    ),
]


# ============================================================================ the README's commands
def readme_commands(readme: Path = README) -> list[tuple[str, str]]:
    """``(row label, command)`` for every command of the "Agent figures" section: the table's command column,
    then the ``morl ...`` / ``python experiments/...`` commands in backticks in the text after the table."""
    text = readme.read_text()
    start = text.find("### Agent figures")
    if start < 0:
        raise ValueError(f"{readme}: no '### Agent figures' section")
    end = min((i for i in (text.find("\n## ", start), text.find("\n### ", start + 1)) if i >= 0), default=len(text))
    section = text[start:end]
    found = []
    for line in section.splitlines():
        if line.startswith("|") and not set(line) <= set("|- "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            cmds = re.findall(r"`((?:morl|python) [^`]+)`", cells[1]) if len(cells) > 1 else []
            found += [(cells[0], c) for c in cmds]
        elif not line.startswith("|"):
            found += [("text: " + c.split(" --")[0], c) for c in re.findall(r"`((?:morl|python) [^`]+)`", line)]
    return found


def claim_for(command: str) -> Claim | None:
    cmd = " ".join(command.split())
    return next((c for c in CLAIMS if re.search(c.match, cmd)), None)


# ============================================================================ resolving a command (no training)
class _Stop(Exception):
    pass


class _Row(dict):
    """A stand-in result row: any field a script prints reads as 1.0."""

    def __missing__(self, key):
        return 1.0


def _load_script(rel: str):
    path = ROOT / rel
    if not path.is_file():
        raise FileNotFoundError(f"{rel} does not exist")
    spec = importlib.util.spec_from_file_location(f"_readme_claims_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def substitute(tokens: list[str], tmp: Path) -> list[str]:
    return [str(tmp / "dir") if t == "DIR" else PLACEHOLDERS.get(t, t) for t in tokens]


def _trainer_facts(agent: str, env_id: str, env_kwargs: dict, overrides: dict) -> dict:
    """Build the config and the trainer as the script does (validates fields and budgets; nothing is trained)."""
    import dataclasses

    import morl
    from morl.agent import make_config, make_trainer

    env, params = morl.make(env_id, **env_kwargs)
    config = make_config(agent, env_id, **overrides)
    make_trainer(agent, env, params, config=config)
    return {"agent": agent, "env": env_id, "env_kwargs": dict(env_kwargs), **dataclasses.asdict(config)}


def resolve(command: str, tmp: Path) -> dict:
    """The settings ``command`` runs with, found by parsing it with its own script / CLI; raises if it does not
    parse, names an unknown agent/env/option, or its config is rejected."""
    tokens = substitute(shlex.split(command), tmp)
    if tokens[:1] == ["python"] and len(tokens) > 1 and tokens[1].startswith("experiments/"):
        return _resolve_script(tokens[1], tokens[2:])
    if tokens[:2] == ["morl", "train"]:
        return _resolve_train(tokens[2:])
    if tokens[:3] == ["morl", "suite", "run"]:
        return _resolve_suite(tokens[1:], tmp)
    raise ValueError(f"{command!r}: not a `morl train`, `morl suite run` or `python experiments/...` command")


def _call_main(main: Callable, argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main(argv)
        except SystemExit as exc:  # argparse: unknown option, bad value
            if exc.code not in (0, None):
                raise ValueError(
                    f"the script rejected {' '.join(argv)!r}: {out.getvalue().strip().splitlines()[-1]}"
                ) from None
    return out.getvalue()


def _resolve_script(rel: str, argv: list[str]) -> dict:
    import jax

    module = _load_script(rel)
    calls: list[tuple[str, tuple, dict]] = []
    cache: list[Any] = []
    real_update = jax.config.update

    def config_update(name, value):  # --compilation-cache: record, do not touch this process's JAX
        if name == "jax_compilation_cache_dir":
            cache.append(value)
        elif not name.startswith("jax_persistent_cache"):
            real_update(name, value)

    if Path(rel).name == "bench_c_morl.py":

        def bench(env_id="deep-sea-treasure-v0", seed=0, stop_at_full=False, env_kwargs=None, **overrides):
            calls.append(
                (
                    "bench",
                    (env_id, seed),
                    dict(stop_at_full=stop_at_full, env_kwargs=env_kwargs or {}, overrides=overrides),
                )
            )
            return _Row(seed=seed, t95_s=None, t100_s=None, machine="-")

        def paper(env_id="minecart-v0", seed=0, env_kwargs=None, **overrides):
            calls.append(("paper", (env_id, seed), dict(env_kwargs=env_kwargs or {}, overrides=overrides)))
            return _Row(seed=seed)

        module.bench_c_morl, module.paper_protocol_run = bench, paper
        jax.config.update = config_update
        try:
            _call_main(module.main, argv)
        finally:
            jax.config.update = real_update
        if not calls:
            raise ValueError(f"{rel} {' '.join(argv)}: ran nothing")
        kind, (env_id, _), kw = calls[0]
        facts = _trainer_facts("c-morl", env_id, kw["env_kwargs"], kw["overrides"])
        facts.update(
            seeds=[c[1][1] for c in calls],
            paper_protocol=kind == "paper",
            stop_at_full=kw.get("stop_at_full", False),
            compilation_cache="DIR" if cache else None,
        )
        return facts
    if Path(rel).name == "decomposition.py":

        def run(
            name, seed=0, overrides=None, max_wall=None, eval_every=1, out=None, trace=False, then_at=None, then=None
        ):
            if then_at is not None:
                raise ValueError(f"{rel} {' '.join(argv)}: --then-at changes the config mid-run; no figure uses it")
            calls.append(
                ("run", (name, seed), dict(overrides=overrides or {}, max_wall=max_wall, eval_every=eval_every))
            )
            return {}

        module.run = run
        module.suite_timing = lambda *a, **k: calls.append(("suite_timing", a, k)) or []
        _call_main(module.main, argv)
        if not calls or calls[0][0] != "run":
            raise ValueError(f"{rel} {' '.join(argv)}: not an experiment run")
        _, (name, seed), kw = calls[0]
        agent, env_id, env_kwargs, cfg, _proto, _true_hv = module.EXPERIMENTS[name]
        facts = _trainer_facts(agent, env_id, env_kwargs, {**cfg, **kw["overrides"]})
        facts.update(experiment=name, seeds=[seed], max_wall=kw["max_wall"], eval_every=kw["eval_every"])
        return facts
    if Path(rel).name == "pdmorl_fruit_tree.py":
        module.train = lambda seed, steps, eval_every, overrides, out, checkpoint=None: calls.append(
            ("train", (seed, steps), dict(eval_every=eval_every, overrides=overrides))
        )
        _call_main(module.main, argv)
        if not calls:
            raise ValueError(f"{rel} {' '.join(argv)}: not a training run")
        _, (seed, steps), kw = calls[0]
        facts = _trainer_facts(
            "pd-morl-discrete", "fruit-tree-v0", {"depth": 6}, {"total_timesteps": steps, **kw["overrides"]}
        )
        facts.update(seeds=[seed], eval_every=kw["eval_every"])
        return facts
    raise ValueError(f"{rel}: no resolver for this script (add one to experiments/check_readme_claims.py)")


def _resolve_train(argv: list[str]) -> dict:
    import dataclasses

    from morl.agent import agent_spec
    from morl.cli import CLIError, train

    agent = argv[0] if argv and not argv[0].startswith("-") else None
    if agent is None:
        raise ValueError("`morl train` without an agent")
    try:
        agent_spec(agent)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    parser, spec = train.train_parser(agent, train.peek(argv, "--env"))
    out = io.StringIO()
    with contextlib.redirect_stderr(out):
        try:
            args, extra = parser.parse_known_args(argv)
        except SystemExit:
            raise ValueError(f"`morl train` rejected {' '.join(argv)!r}: {out.getvalue().strip()}") from None
    if extra:
        raise ValueError(f"`morl train {agent}` does not know {' '.join(extra)}")
    try:
        requests = train.train_requests(args, spec)  # makes the env and the trainer, as `morl train` does first
    except CLIError as exc:
        raise ValueError(str(exc)) from None
    req = requests[0]
    return {
        "agent": agent,
        "env": req.env,
        "env_kwargs": dict(req.env_kwargs),
        "seeds": [r.seed for r in requests],
        "eval_every": args.eval_every,
        **dataclasses.asdict(req.config),
    }


def _resolve_suite(argv: list[str], tmp: Path) -> dict:
    from morl import cli

    args = cli.build_parser().parse_args(argv)  # SystemExit on an unknown option

    def dry_run(a: list[str]) -> None:
        code = cli.main(
            a + ["--dry-run", "--runs-dir", str(tmp / "suite-runs"), "--out", str(tmp / "suite.md"), "--quiet"]
        )
        if code != 0:
            raise ValueError(f"`morl {' '.join(a)} --dry-run` exited {code}")

    _call_main(dry_run, argv)
    return {"suite": args.name, "steps_scale": args.steps_scale, "seeds_override": args.seeds}


def differences(claim: Claim, facts: dict) -> list[str]:
    """Where the resolved settings differ from what the claim's figure needs."""
    diffs = []
    for k, want in claim.needs.items():
        have = facts.get(k, "<absent>")
        if isinstance(want, tuple) and isinstance(have, list):
            have = tuple(have)
        if have != want:
            diffs.append(f"{k}: the command gets {have!r}, the figure needs {want!r}")
    return diffs


# ============================================================================ small-scale runs
def _one_seed(tokens: list[str]) -> list[str]:
    if "--seeds" not in tokens:
        return tokens
    i = tokens.index("--seeds")
    j = next((k for k in range(i + 1, len(tokens)) if tokens[k].startswith("--")), len(tokens))
    return tokens[: i + 1] + ["0"] + tokens[j:]


def run_small(claim: Claim, command: str, tmp: Path) -> tuple[list[str], float, str]:
    """Run ``command`` shrunk by ``claim.small``: (shape problems, wall seconds, the output's key line)."""
    tokens = substitute(shlex.split(command), tmp)
    tokens = (_one_seed(tokens) if claim.one_seed else tokens) + list(claim.small)
    if tokens[0] == "python":
        argv = [sys.executable] + tokens[1:]
    else:  # morl ...
        argv = [sys.executable, "-m", "morl.cli"] + tokens[1:]
        if tokens[1] == "train":
            argv += ["--runs-dir", str(tmp / "runs")]
        if tokens[1:3] == ["suite", "run"]:
            argv += ["--runs-dir", str(tmp / "suite-runs"), "--out", str(tmp / "suite.md")]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=claim.timeout_s)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return [f"exit {proc.returncode}: {' / '.join(tail)}"], wall, ""
    key = [ln for ln in proc.stdout.splitlines() if ln.startswith(("seed ", "SUMMARY "))]
    evidence = key[0][:300] if key else ""
    return (claim.shape(proc.stdout, tmp) if claim.shape else []), wall, evidence


# ============================================================================ main
def check(readme: Path = README, run: bool = False, only: list[str] | None = None) -> list[dict]:
    rows = []
    for label, command in readme_commands(readme):
        claim = claim_for(command)
        row = {"row": label, "command": command, "claim": claim.key if claim else None}
        rows.append(row)
        if claim is None:
            row["error"] = "no claim in experiments/check_readme_claims.py matches this command"
            continue
        if only and claim.key not in only:
            row["skipped"] = True
            continue
        with tempfile.TemporaryDirectory(prefix="readme-claim-") as d:
            tmp = Path(d)
            try:
                facts = resolve(command, tmp)
            except Exception as exc:  # noqa: BLE001  (the report names it)
                row["error"] = f"does not resolve: {type(exc).__name__}: {exc}"
                continue
            row["differences"] = differences(claim, facts)
            row["proposed"] = claim.proposed if row["differences"] else None
            if run:
                row["small_run_problems"], row["small_run_s"], row["small_run_output"] = run_small(claim, command, tmp)
    seen = {r["claim"] for r in rows}
    for c in CLAIMS:  # a figure the README states without its command (or whose command changed beyond `match`)
        if c.key not in seen and not (only and c.key not in only):
            rows.append(
                {
                    "row": f"claim {c.key}: {c.figure}",
                    "command": "(no README command matches)",
                    "claim": c.key,
                    "unmatched": True,
                    "proposed": c.proposed,
                }
            )
    return rows


def report(rows: list[dict]) -> int:
    bad = 0
    for r in rows:
        if r.get("skipped"):
            continue
        status = (
            "ERROR"
            if "error" in r
            else "no command"
            if r.get("unmatched")
            else "differs"
            if r.get("differences")
            else "ok"
        )
        run = ""
        if "small_run_problems" in r:
            run = f"; small run {r['small_run_s']:.0f} s: " + (
                "shape ok" if not r["small_run_problems"] else "; ".join(r["small_run_problems"])
            )
            bad += bool(r["small_run_problems"])
        print(f"[{status}] {r['row']}\n    {r['command']}{run}")
        if r.get("small_run_output"):
            print(f"    small run said: {r['small_run_output']}")
        if "error" in r:
            bad += 1
            print(f"    {r['error']}")
        for d in r.get("differences", []):
            print(f"    {d}")
        if r.get("proposed"):
            print(f"    proposed: {r['proposed']}")
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--readme", default=str(README))
    p.add_argument("--run", action="store_true", help="also run each command at a small scale (minutes)")
    p.add_argument("--only", nargs="*", default=None, help="claim keys: " + ", ".join(c.key for c in CLAIMS))
    p.add_argument("--strict", action="store_true", help="exit 1 when a command's settings differ from its figure's")
    args = p.parse_args(argv)
    rows = check(Path(args.readme), args.run, args.only)
    bad = report(rows)
    if args.strict:
        bad += sum(bool(r.get("differences")) for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
