"""`morl train`: an agent's options from its config dataclass, the run requests, a progress bar, the final table.

`morl train AGENT --help` lists the agent's own options (one per config field: names, types, defaults and docs),
so a new agent needs no CLI code.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

import morl
from morl.cli import common, options, process
from morl.cli.common import SHORT_METRICS, CLIError, Col, Parser, TrainingFailed, parse_seeds, print_table
from morl.registry import UnknownEnvError
from morl.store import DB_NAME, StoreError


def add_parser(sub) -> None:
    """`morl train` parses its own arguments (`cmd_train`): its options depend on the agent named first."""
    sub.add_parser("train", help="train an agent (`morl train AGENT --help` lists its options)", add_help=False)


def _train_base(prog: str = "morl train") -> Parser:
    p = Parser(
        prog=prog,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train an agent on an env: progress bar, periodic evaluation, checkpoints, a run folder "
        "and a row in the results store.\n\n"
        "  morl train AGENT --env ID [--seed S | --seeds 0-4] [--steps N] [--FIELD VALUE ...]\n"
        "  morl train --resume RUN\n\n"
        "`morl train AGENT --help` adds the agent's own options (one per config field).",
    )
    p.add_argument("agent", nargs="?", help="agent name")
    g = p.add_argument_group("run")
    g.add_argument("--env", help="env id (`morl envs` lists them; 'gym:<id>' for any gymnasium id)")
    g.add_argument(
        "--env-arg",
        action="append",
        metavar="KEY=VALUE",
        help="env constructor / params argument, repeatable (e.g. --env-arg depth=5)",
    )
    g.add_argument("--seed", type=int, default=None, help="one seed (default 0)")
    g.add_argument(
        "--seeds",
        default=None,
        help="several seeds, e.g. 0-4 or 0,2,5 (on a GPU/TPU vmapped in one program when the agent allows; "
        "else --lanes at a time)",
    )
    g.add_argument(
        "--steps",
        type=options.converter(int),
        default=None,
        help="training budget in env steps (sets the agent's budget field)",
    )
    g.add_argument(
        "--eval-every",
        type=options.converter(int),
        default=None,
        help="env steps between evaluations (default: budget/10; 0: only the final one)",
    )
    g.add_argument(
        "--checkpoint-secs",
        type=float,
        default=60.0,
        help="wall seconds between checkpoints (one is also written after each evaluation) [default 60]",
    )
    g.add_argument(
        "--runs-dir", default=None, help="where run folders and results.sqlite live (default: $MORL_RUNS_DIR or ./runs)"
    )
    g.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="start the agent's config from FILE: a run's config.json or `morl tune`'s best.json (its \"config\" "
        "object); options given here override it",
    )
    g.add_argument("--resume", nargs="+", metavar="RUN", help="continue run(s) from their last checkpoint")
    g.add_argument(
        "--vmap",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train several seeds of a vmappable agent as one vmapped program (default: on a GPU/TPU only; on a "
        "CPU seeds in lanes are faster and bit-identical to one-seed runs)",
    )
    g.add_argument(
        "--lanes",
        type=int,
        default=None,
        metavar="N",
        help="runs trained at once (threads, each its one-seed program) when seeds are not vmapped (default: one "
        "per core on a CPU, at most 8; 1 on a GPU/TPU; loggers keep to 1)",
    )
    g.add_argument(
        "--log",
        action="append",
        choices=("tensorboard", "wandb"),
        default=[],
        help="also log to TensorBoard (event files in the run folder) or W&B (offline unless $WANDB_MODE "
        "says otherwise); repeatable; needs pip install 'morl[tensorboard]' / 'morl[wandb]'",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    add_cluster_options(p)
    return p


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    """``--ray [ADDRESS]`` and the options of its tasks (docs/cluster.md)."""
    g = p.add_argument_group("cluster (pip install 'morl[cluster]'; docs/cluster.md)")
    g.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="train as Ray tasks on the cluster at ADDRESS (host:port, or 'auto'); without ADDRESS a local Ray "
        "instance; the results come back to this process, which writes the run folders and results.sqlite",
    )
    g.add_argument(
        "--storage",
        default=None,
        metavar="DIR",
        help="with --ray: where tasks keep checkpoints to resume from (a path every node reaches; default: "
        "<runs dir>/.cluster-storage)",
    )
    g.add_argument("--task-cpus", type=float, default=1.0, help="with --ray: CPU cores per task [default 1]")
    g.add_argument(
        "--task-gpus", type=float, default=0.0, help="with --ray: GPUs per task; a fraction shares a GPU [default 0]"
    )
    g.add_argument(
        "--task-retries",
        type=int,
        default=3,
        help="with --ray: retries of a task whose worker or node dies (it resumes from its checkpoint) [default 3]",
    )
    g.add_argument(
        "--seeds-per-task",
        type=int,
        default=None,
        help="with --ray: seeds per task for agents that vmap seeds (default: a group's seeds in one program, as "
        "without --ray); other agents run one seed per task",
    )


def cluster_options(args: argparse.Namespace):
    """The `morl.cluster.TrainOptions` of ``--ray`` and its options (None without ``--ray``)."""
    given = [o for o in ("storage", "seeds_per_task") if getattr(args, o, None) is not None]
    if args.ray is None:
        if given:
            raise CLIError(f"--{given[0].replace('_', '-')} applies to --ray only; add --ray [ADDRESS]")
        return None
    from morl.cluster import Resources, TrainOptions

    if args.seeds_per_task is not None and args.seeds_per_task < 1:
        raise CLIError(f"--seeds-per-task must be >= 1, got {args.seeds_per_task}")
    try:
        resources = Resources(args.task_cpus, args.task_gpus, args.task_retries)
    except ValueError as exc:
        raise CLIError(f"--task-cpus/--task-gpus/--task-retries: {exc}") from None
    seeds_per_task = 1 if getattr(args, "vmap", None) is False else args.seeds_per_task
    return TrainOptions(args.ray or None, args.storage, resources, seeds_per_task)


def train_parser(agent: str | None, env_id: str | None) -> tuple[Parser, Any]:
    """The parser of `morl train AGENT` (the agent's config options, with ``env_id``'s defaults), and its AgentSpec."""
    from morl.agent import agent_spec, list_agents, make_config
    from morl.evaluate import EvalProtocol

    p = _train_base()
    taken = {o for a in p._actions for o in a.option_strings}
    pg = p.add_argument_group("evaluation protocol (periodic and final evaluations; recorded with every result)")
    options.add_dataclass_options(pg, EvalProtocol, prefix="protocol-", dest_prefix="proto__", taken=taken)
    spec = None
    if agent is not None:
        spec = agent_spec(agent)
        try:
            defaults = make_config(agent, env_id)
        except Exception:
            defaults = None
        taken = {o for a in p._actions for o in a.option_strings}
        title = f"{agent} config" + (f" (defaults for {env_id})" if env_id else "")
        g = p.add_argument_group(title, spec.summary or None)
        options.add_dataclass_options(g, spec.config_cls, defaults, dest_prefix="cfg__", taken=taken)
    else:
        p.epilog = "agents: " + (", ".join(list_agents()) or "none registered")
    return p, spec


def peek(argv: list[str], option: str) -> str | None:
    """The value of ``option`` in ``argv`` before it is parsed (the parser itself depends on it)."""
    for i, tok in enumerate(argv):
        if tok == option and i + 1 < len(argv):
            return argv[i + 1]
        if tok.startswith(option + "="):
            return tok.split("=", 1)[1]
    return None


def cmd_train(argv: list[str]) -> int:
    """`morl train ...`: start runs (or resume them), with a progress bar, then print their final metrics."""
    from morl import runs as R
    from morl.agent import agent_spec

    agent = argv[0] if argv and not argv[0].startswith("-") else None
    if agent is not None:
        try:
            agent_spec(agent)
        except KeyError as exc:
            raise CLIError(str(exc.args[0])) from None
    parser, spec = train_parser(agent, peek(argv, "--env"))
    args, extra = parser.parse_known_args(argv)
    if extra:
        tok = next((t for t in extra if t.startswith("-")), extra[0])
        if args.resume:
            raise CLIError(f"--resume continues runs with their recorded settings; drop {' '.join(extra)}")
        if not tok.startswith("-"):
            raise CLIError(f"unexpected argument {tok!r}; the agent comes first: `morl train AGENT --env ID ...`")
        if agent is None:
            raise CLIError(
                f"unknown option {tok}: name the agent first to use its options "
                "(`morl train AGENT --env ID ...`); `morl train --help` lists the agents"
            )
        raise CLIError(
            f"unknown option {tok} for agent {agent!r}.{options.closest_option(tok, parser)} "
            f"`morl train {agent} --help` lists every option."
        )
    if args.lanes is not None and args.lanes < 1:
        raise CLIError(f"--lanes must be >= 1 (runs trained at once), got {args.lanes}")
    runs_dir = common.runs_dir(args)
    _check_store(runs_dir)
    cluster = cluster_options(args)
    if cluster is not None and args.log:
        raise CLIError("--log runs in the training process; with --ray it is not available (drop --log)")
    callback = _loggers(args.log)
    if args.resume:
        return _resume(args, agent, runs_dir, callback)
    if agent is None:
        raise CLIError(
            "name an agent: `morl train AGENT --env ID` (or `morl train --resume RUN`); "
            "`morl train --help` lists the agents"
        )
    if not args.env:
        raise CLIError(f"--env is required: `morl train {agent} --env ID` (`morl envs` lists the ids)")
    requests = train_requests(args, spec)
    infos = [R.create_run(runs_dir, r) for r in requests]
    if not args.quiet:
        lanes = 1 if callback is not None else R.seed_lanes(len(infos), args.lanes)
        how = (
            "one vmapped program"
            if len(infos) > 1 and R.seeds_in_one_program(args.vmap) and R.build(infos[0].meta)[4].vmappable
            else f"{lanes} at a time"
            if lanes > 1
            else "one after another"
            if len(infos) > 1
            else ""
        )  # (build is cached: training reuses the trainer)
        common.console.print(
            f"[bold]{agent}[/bold] on [bold]{args.env}[/bold], seed(s) {[r.seed for r in requests]}"
            + (f" ({how})" if how else "")
            + f" -> {runs_dir}/"
        )
    if cluster is not None:
        return _train_on_ray([infos], cluster, runs_dir, args.quiet)
    results = _train_with_progress(
        infos, resume=False, quiet=args.quiet, vmap=args.vmap, callback=callback, lanes=args.lanes
    )
    print_results(infos, results)
    return 0


def _train_on_ray(groups, cluster, runs_dir: Path, quiet: bool) -> int:
    """`morl train ... --ray`: the groups' runs as Ray tasks under one progress line; the final table of those that
    finished, then the failures (exit status 1)."""
    from morl import runs as R
    from morl.cluster import ClusterError, train_on_ray

    infos = [i for g in groups for i in g]
    ids = " ".join(i.id for i in infos)
    words = ["morl train --resume", ids, "--ray", cluster.address or ""]
    words += ["--storage", cluster.storage] if cluster.storage else []
    again = "`" + " ".join(w for w in words if w) + "`"
    process.INTERRUPT_HINT["text"] = f"; {again} continues from the last checkpoint"
    try:
        results, failures = train_on_ray(
            groups,
            cluster,
            store=R.store_for(runs_dir),
            log=common.console.print,
            display=not quiet,
            console=common.console,
            title=f"{infos[0].agent} on {infos[0].env}",
        )
    except KeyboardInterrupt:
        exc = CLIError(f"interrupted (Ctrl-C); the tasks in flight are cancelled: {again} continues")
        exc.code = common.EXIT_INTERRUPTED
        raise exc from None
    except ClusterError as exc:
        raise CLIError(str(exc)) from None
    done = [i for i in infos if i.id in results]
    if done:
        print_results(done, [results[i.id] for i in done])
    if failures:
        f = failures[0]
        raise TrainingFailed(
            f"{sum(len(x.runs) for x in failures)} run(s) failed ({f.error}); the traceback is in "
            f"{f.runs[0].path / R.ERROR_FILE}"
        )
    return 0


def _loggers(names: list[str]):
    """The driver's callback for `--log` (`morl.loggers`); a missing package is a user error before training."""
    if not names:
        return None
    from morl.loggers import make_loggers

    try:
        return make_loggers(names)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _resume(args: argparse.Namespace, agent: str | None, runs_dir: Path, callback=None) -> int:
    """`morl train --resume RUN...`: the runs continue from their last checkpoint with their recorded settings."""
    from morl import runs as R

    given = [
        o
        for o, v in (
            ("AGENT", agent),
            ("--env", args.env),
            ("--seed", args.seed),
            ("--seeds", args.seeds),
            ("--steps", args.steps),
            ("--eval-every", args.eval_every),
            ("--config", args.config),
        )
        if v is not None
    ]
    given += [f"--{k}" for k in options.given(args, "cfg__")]
    given += [f"--protocol-{k}" for k in options.given(args, "proto__")]
    if given:
        raise CLIError(f"--resume continues runs with their recorded settings; drop {', '.join(given)}")
    infos = [R.find_run(runs_dir, r) for r in args.resume]
    for info in infos:
        R.check_trainable(info, resume=True)
        try:
            R.protocol_from_dict(info.meta.get("protocol") or {}).check_env(R.build(info.meta)[1])
        except (TypeError, ValueError) as exc:
            raise CLIError(
                f"run {info.id} records an evaluation protocol that cannot evaluate {info.env} ({exc}); "
                f"it can never finish: train it again with valid --protocol-* options"
            ) from None
        ck = R.Checkpointer(info.path / R.CKPT_DIR)
        latest = ck.latest()
        ck.close()
        if not args.quiet:
            common.console.print(
                f"resuming {info.id} from "
                + (f"checkpoint {latest}" if latest is not None else "the start (no checkpoint was written)")
            )
    cluster = cluster_options(args)
    if cluster is not None:
        return _train_on_ray([[i] for i in infos], cluster, runs_dir, args.quiet)
    results = _train_with_progress(
        infos, resume=True, quiet=args.quiet, vmap=False, callback=callback, lanes=args.lanes
    )
    print_results(infos, results)
    return 0


def _check_store(runs_dir: Path) -> None:
    """A damaged results store is reported before training, not when the first run finishes."""
    from morl.runs import store_for

    db = runs_dir / DB_NAME
    problem = store_for(runs_dir).check() if db.exists() else None
    if problem is not None:
        raise CLIError(
            f"the results store {db} is damaged ({problem}); `morl runs --reindex --runs-dir {runs_dir}` "
            "rebuilds it from the run folders (the damaged file is kept aside)"
        )


def _env_kwargs(items: list[str] | None) -> dict[str, Any]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise CLIError(f"--env-arg {item!r}: use KEY=VALUE, e.g. --env-arg depth=5")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def train_requests(args: argparse.Namespace, spec) -> list:
    """One RunRequest per seed, checked as far as possible before any run folder exists: the env is made, the
    config built and the trainer made (its own validation), the evaluation protocol checked against the env."""
    from morl import runs as R
    from morl.agent import make_config, make_trainer
    from morl.evaluate import EvalProtocol

    if args.seed is not None and args.seeds is not None:
        raise CLIError("give --seed or --seeds, not both")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else [args.seed if args.seed is not None else 0]
    if any(s < 0 for s in seeds):
        raise CLIError("seeds must be non-negative")
    env_kwargs = _env_kwargs(args.env_arg)
    try:
        env, env_params = morl.make(args.env, **env_kwargs)
    except UnknownEnvError as exc:
        raise CLIError(str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise CLIError(f"cannot make env {args.env!r}: {exc}") from None
    from_file = {}
    if args.config:
        from morl.tune import config_file_overrides

        try:
            from_file = config_file_overrides(args.config, spec.name)
        except ValueError as exc:
            raise CLIError(f"--config {args.config}: {exc}") from None
    try:  # what nested config fields given on the command line start from
        base = make_config(spec.name, args.env, **from_file)
    except Exception:
        base = spec.config_cls
    given = options.collect(args, "cfg__", base)
    if args.steps is not None:
        bf = R.budget_field(spec)
        if bf in given and given[bf] != args.steps:
            raise CLIError(f"--steps {args.steps} and --{bf.replace('_', '-')} {given[bf]} disagree; give one")
        if args.steps <= 0:
            raise CLIError(f"--steps must be positive, got {args.steps}")
        given[bf] = args.steps
    overrides = {**from_file, **given}
    try:
        config = make_config(spec.name, args.env, **overrides)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"invalid config for agent {spec.name!r}: {exc}") from None
    try:
        make_trainer(spec.name, env, env_params, config=config)  # checks action kinds and the agent's own validation
    except (TypeError, ValueError) as exc:
        raise CLIError(f"agent {spec.name!r} cannot train on {args.env}: {exc}") from None
    try:
        protocol = EvalProtocol(**options.collect(args, "proto__", EvalProtocol))
        protocol.check_env(env)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"invalid evaluation protocol: {exc} (options --protocol-*, `morl train --help`)") from None
    if args.eval_every is not None and args.eval_every < 0:
        raise CLIError(f"--eval-every must be >= 0, got {args.eval_every}")
    return [
        R.RunRequest(spec.name, args.env, s, config, env_kwargs, protocol, args.eval_every, args.checkpoint_secs)
        for s in seeds
    ]


class ProgressUI:
    """A rich progress bar per run: env steps, steps/s, latest HV, ETA."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tasks: dict[str, Any] = {}
        self.start: dict[str, tuple[float, int]] = {}
        self.progress = None

    def __enter__(self):
        if not self.quiet:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("steps"),
                TextColumn("{task.fields[sps]}"),
                TextColumn("HV {task.fields[hv]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TimeElapsedColumn(),
                console=common.console,
            )
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)
        return False

    def __call__(self, event) -> None:
        if self.progress is None:
            return
        from morl.leaderboard import fmt_num

        now = time.perf_counter()
        if event.run_id not in self.tasks:
            self.tasks[event.run_id] = self.progress.add_task(
                f"seed {event.seed}", total=event.budget or None, completed=event.env_steps, sps="compiling...", hv="-"
            )
            self.start[event.run_id] = (now, event.env_steps)
            return
        t0, s0 = self.start[event.run_id]
        sps = (event.env_steps - s0) / max(now - t0, 1e-9)
        total = event.budget
        if total is not None and (event.env_steps > total or event.finished):
            total = event.env_steps  # the agent decides when it is done (its step accounting may differ)
        self.progress.update(
            self.tasks[event.run_id],
            completed=event.env_steps,
            total=total,
            sps=f"{sps:,.0f}/s",
            hv=fmt_num(event.hv) if event.hv is not None else "-",
        )


def _train_with_progress(
    infos, resume: bool, quiet: bool, vmap: bool | None, callback=None, lanes: int | None = None
) -> list[dict[str, Any]]:
    """`runs.train_runs` under a progress bar; Ctrl-C and failures become one line that says how to continue."""
    from morl import runs as R

    ids = " ".join(i.id for i in infos)
    process.INTERRUPT_HINT["text"] = f"; `morl train --resume {ids}` continues from the last checkpoint"
    with ProgressUI(quiet) as ui:
        try:
            return R.train_runs(infos, resume=resume, progress=ui, vmap_seeds=vmap, callback=callback, lanes=lanes)
        except KeyboardInterrupt:
            exc = CLIError(
                f"interrupted (Ctrl-C); the last finished chunk is checkpointed: `morl train --resume {ids}` continues"
            )
            exc.code = common.EXIT_INTERRUPTED
            raise exc from None
        except (R.RunError, CLIError, OSError, StoreError):  # a StoreError: the run folders keep every result
            raise
        except Exception as exc:
            states = [R.read_run(i.path) for i in infos]
            failed = [s for s in states if s.status == "failed"]
            todo = [s.id for s in states if s.status in ("interrupted", "failed")]
            where = (
                f"run {failed[0].id} failed; the traceback is in {failed[0].path / R.ERROR_FILE}"
                if failed
                else "training failed"
            )
            raise TrainingFailed(
                f"{where}: {type(exc).__name__}: {exc}"
                + (f". Continue with `morl train --resume {' '.join(todo)}`" if todo else "")
            ) from None


def print_results(infos, results: list[dict[str, Any]]) -> None:
    """The final-evaluation table of the runs just trained (with mean ± std over seeds), and what to run next."""
    import numpy as np

    from morl.leaderboard import fmt_num

    def cells(metrics: dict[str, Any]) -> list[str]:
        return [fmt_num(metrics.get(k)) if metrics.get(k) is not None else "-" for k, _ in SHORT_METRICS]

    rows = [
        [info.id, str(info.seed), f"{res['env_steps']:,}", f"{res['wall_time']:.1f}", *cells(res["metrics"])]
        for info, res in zip(infos, results)
    ]
    if len(results) > 1:
        means = []
        for k, _ in SHORT_METRICS:
            vals = [r["metrics"].get(k) for r in results if r["metrics"].get(k) is not None]
            means.append(f"{fmt_num(float(np.mean(vals)))} ± {fmt_num(float(np.std(vals)))}" if vals else "-")
        rows.append(["mean ± std", "", "", "", *means])
    drop = {"hv": 0, "eu": 0, "sp": 3, "card": 2, "igd": 1, "mul": 1}
    print_table(
        "final evaluation",
        [
            Col("run", "id"),
            Col("seed", "num", justify="right"),
            Col("env steps", "num", justify="right"),
            Col("wall s", "num", drop=4, justify="right"),
        ]
        + [Col(short, "num", drop=drop[short], justify="right") for _, short in SHORT_METRICS],
        rows,
    )
    if results:
        proto = results[0]["protocol"]
        common.console.print(
            f"protocol {results[0]['protocol_hash']}: " + ", ".join(f"{k}={v}" for k, v in proto.items()), markup=False
        )
        common.console.print(f"next: `morl plot {infos[0].id}`, `morl eval {infos[0].id}`, `morl leaderboard`")
