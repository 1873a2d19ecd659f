"""`morl tune` (Optuna studies over an agent's config, `morl.tune`) and `morl pbt` (population-based training of a
vmapped population, `morl.pbt`)."""

from __future__ import annotations

import argparse
import shlex
import sys

from morl.cli import common, process
from morl.cli.common import CLIError, Col, parse_seeds, print_table


def _metric_list(values: list[str]) -> list[str]:
    return [m.strip() for v in values for m in v.split(",") if m.strip()]


def add_parsers(sub) -> None:
    """`morl tune` and `morl pbt`."""
    from morl.cli import options
    from morl.evaluate import EvalProtocol

    p = sub.add_parser(
        "tune",
        help="tune an agent's hyperparameters with Optuna (resumable study; trials are runs in the store)",
        description="Optuna study over AGENT's config on ENV: each trial trains one run per seed and scores the "
        "mean final metric; TPE for one metric, NSGA-II for several; pruning on the runs' periodic evaluations. "
        "Running the same command again resumes the study (--trials is its total of finished trials). "
        "Writes <runs-dir>/tune/<study>/best.json (for `morl train AGENT --env ID --config best.json`), "
        "trials.csv, history.png, importances.png. Needs pip install 'morl[tune]'.",
    )
    p.add_argument("agent", help="agent name")
    p.add_argument("--env", required=True, help="env id")
    p.add_argument("--env-arg", action="append", metavar="KEY=VALUE", help="env argument, repeatable")
    p.add_argument("--trials", type=int, required=True, help="finished trials the study should hold")
    p.add_argument("--seeds", default="0-2", help="seeds of every trial (its metric is their mean) [default 0-2]")
    p.add_argument(
        "--metric",
        nargs="+",
        default=["hv"],
        help="metric(s) to optimise: hv, eu, sp, card, igd, mul (several: NSGA-II, e.g. --metric hv sp) [default hv]",
    )
    p.add_argument("--steps", type=options.converter(int), default=None, help="budget of every run in env steps")
    p.add_argument("--space", default=None, help="search space TOML (default experiments/spaces/AGENT.toml)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///<runs-dir>/optuna.sqlite)")
    p.add_argument("--study", default=None, help="study name (default AGENT_ENV_METRICS_STEPS)")
    p.add_argument("--pruner", default="median", choices=("median", "halving", "none"), help="[default median]")
    p.add_argument("--sampler-seed", type=int, default=0, help="seed of the sampler [default 0]")
    p.add_argument(
        "--eval-every",
        type=options.converter(int),
        default=None,
        help="env steps between the runs' evaluations, the pruner's intermediate values (default budget/10)",
    )
    p.add_argument("--runs-dir", default=None, help="where runs, results.sqlite and optuna.sqlite live")
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run the trials as Ray tasks (morl.cluster; no address: a local Ray instance); no pruning then",
    )
    p.add_argument("--parallel", type=int, default=None, help="with --ray: trials per batch (default: all left)")
    p.add_argument("--quiet", action="store_true", help="no per-trial lines")
    g = p.add_argument_group("evaluation protocol (every run of the study)")
    options.add_dataclass_options(g, EvalProtocol, prefix="protocol-", dest_prefix="proto__")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser(
        "pbt",
        help="population-based training: MO-PBT, PBT or random search over a vmapped population",
        description="P members of AGENT train as one vmapped program; every --interval env steps the members "
        "are ranked (MO-PBT: non-dominated sorting + crowding distance over --objectives; PBT: by the first "
        "objective) and the bottom --fraction copy a top member's state and perturb its hyperparameters "
        "(x0.8 / x1.2, or resample). --strategy random trains the initial population without exploit, the "
        "baseline at the same budget.",
    )
    p.add_argument("agent", help="agent name (one with a population adapter: morl.pbt.ADAPTERS)")
    p.add_argument("--env", required=True, help="env id")
    p.add_argument("--population", type=int, default=8, help="members P [default 8]")
    p.add_argument("--objectives", default="hv,sp", help="objectives of the ranking, comma-separated [default hv,sp]")
    p.add_argument("--strategy", default="mo-pbt", choices=("mo-pbt", "pbt", "random"), help="[default mo-pbt]")
    p.add_argument("--steps", type=options.converter(int), default=None, help="budget per member in env steps")
    p.add_argument(
        "--interval", type=options.converter(int), default=None, help="env steps per member between rankings"
    )
    p.add_argument("--fraction", type=float, default=0.25, help="share of members replaced per ranking [default 0.25]")
    p.add_argument("--resample", type=float, default=0.25, help="chance a hyperparameter is resampled [default 0.25]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="agent config field, repeatable")
    p.add_argument("--runs-dir", default=None, help="the result goes to <runs-dir>/pbt/<name>/")
    p.add_argument("--quiet", action="store_true")
    g = p.add_argument_group("evaluation protocol (the rankings and the final evaluation)")
    options.add_dataclass_options(g, EvalProtocol, prefix="protocol-", dest_prefix="proto__")
    p.set_defaults(func=cmd_pbt)


def _protocol(args: argparse.Namespace, env_id: str, env_kwargs: dict):
    import morl
    from morl.cli import options
    from morl.evaluate import EvalProtocol

    try:
        protocol = EvalProtocol(**options.collect(args, "proto__", EvalProtocol))
        protocol.check_env(morl.make(env_id, **env_kwargs)[0])
    except (TypeError, ValueError) as exc:
        raise CLIError(f"invalid evaluation protocol: {exc} (options --protocol-*)") from None
    return protocol


def cmd_tune(args: argparse.Namespace) -> int:
    from morl.cli.train import _env_kwargs

    try:
        import optuna  # noqa: F401
    except ImportError:
        raise CLIError("`morl tune` needs Optuna: pip install 'morl[tune]'") from None
    from morl import tune as T
    from morl.agent import agent_spec
    from morl.registry import UnknownEnvError

    try:
        agent_spec(args.agent)
    except KeyError as exc:
        raise CLIError(str(exc.args[0])) from None
    env_kwargs = _env_kwargs(args.env_arg)
    try:
        protocol = _protocol(args, args.env, env_kwargs)
    except UnknownEnvError as exc:
        raise CLIError(str(exc)) from None
    try:
        req = T.TuneRequest(
            agent=args.agent,
            env=args.env,
            trials=args.trials,
            seeds=parse_seeds(args.seeds),
            metrics=_metric_list(args.metric),
            steps=args.steps,
            space=args.space,
            runs_dir=common.runs_dir(args),
            storage=args.storage,
            study=args.study,
            pruner=args.pruner,
            sampler_seed=args.sampler_seed,
            env_kwargs=env_kwargs,
            protocol=protocol,
            eval_every=args.eval_every,
        )
        T.load_space(req.agent, req.space)
    except T.TuneError as exc:
        raise CLIError(str(exc)) from None
    process.INTERRUPT_HINT["text"] = f"; run `morl {shlex.join(sys.argv[1:])}` again to resume the study"
    if not args.quiet:
        common.console.print(
            f"study [bold]{req.study_name}[/bold] ({'+'.join(req.metrics)}, seeds {req.seeds}) in {req.storage_url}"
        )

    def on_trial(frozen, requeued):
        if args.quiet:
            return
        if requeued:
            common.console.print(f"trial(s) {requeued} were cut short by a stopped process: queued again")
            return
        vals = ", ".join(f"{m} {v:.4g}" for m, v in zip(req.metrics, frozen.values or []))
        why = frozen.user_attrs.get("error", "")
        common.console.print(
            f"trial {frozen.number}: {frozen.state.name.lower()} {vals} {frozen.params}" + (f" ({why})" if why else ""),
            markup=False,
        )

    ray = None
    if args.ray is not None:
        from morl.cluster import ClusterError, TrainOptions, require_ray

        try:
            require_ray()
        except ClusterError as exc:
            raise CLIError(str(exc)) from None
        ray = TrainOptions(address=args.ray or None)
    elif args.parallel is not None:
        raise CLIError("--parallel sets how many trials run at once on Ray; give it with --ray")
    try:
        study = T.tune(req, on_trial=on_trial, ray=ray, parallel=args.parallel)
    except T.TuneError as exc:
        raise CLIError(str(exc)) from None
    from morl.tune_outputs import trial_rows

    rows = trial_rows(study, req.metrics)
    params = sorted({k for r in rows for k in r if k.startswith("param:")})
    print_table(
        f"study {req.study_name}",
        [Col("trial", "num", justify="right"), Col("state", "text")]
        + [Col(m, "num", justify="right") for m in req.metrics]
        + [Col(k[6:], "text", drop=2) for k in params],
        [
            [str(r["trial"]), r["state"]]
            + [f"{r[m]:.4g}" if r[m] is not None else "-" for m in req.metrics]
            + [str(r.get(k, "")) for k in params]
            for r in rows
        ],
    )
    best = req.out_dir / T.BEST_FILE
    if best.exists():
        common.console.print(
            f"best config: {best}\nreproduce: morl train {req.agent} --env {req.env} --config {best} "
            f"--seeds {args.seeds}",
            markup=False,
        )
    common.console.print(f"trials table and plots: {req.out_dir}/", markup=False)
    return 0


def cmd_pbt(args: argparse.Namespace) -> int:
    import json

    from morl import pbt as PBT
    from morl.agent import agent_spec

    try:
        agent_spec(args.agent)
    except KeyError as exc:
        raise CLIError(str(exc.args[0])) from None
    protocol = _protocol(args, args.env, {})
    overrides = {}
    for item in args.set or []:
        if "=" not in item:
            raise CLIError(f"--set {item!r}: use FIELD=VALUE, e.g. --set batch_size=32")
        k, v = item.split("=", 1)
        try:
            overrides[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k.strip()] = v
    try:
        req = PBT.PBTRequest(
            agent=args.agent,
            env=args.env,
            population=args.population,
            objectives=tuple(_metric_list([args.objectives])),
            strategy=args.strategy,
            steps=args.steps,
            interval=args.interval,
            fraction=args.fraction,
            resample=args.resample,
            seed=args.seed,
            overrides=overrides,
            protocol=protocol,
        )
        result = PBT.run_pbt(req, log=None if args.quiet else lambda s: common.console.print(s, markup=False))
    except (PBT.PBTError, TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    out = PBT.write_result(result, common.runs_dir(args))
    from morl.tune import METRICS

    shown = [m for m in ("hv", "eu", "sp") if result["final"] and METRICS[m][0] in result["final"][0]]
    rows = [
        [str(i), *(f"{m[METRICS[k][0]]:.4g}" for k in shown), ", ".join(f"{k}={v:.3g}" for k, v in h.items())]
        for i, (m, h) in enumerate(zip(result["final"], result["hparams"]))
    ]
    print_table(
        f"{req.strategy} final population (objectives {', '.join(req.objectives)})",
        [Col("member", "num", justify="right")] + [Col(k, "num", justify="right") for k in shown] + [Col("hparams")],
        rows,
    )
    common.console.print(f"result: {out}", markup=False)
    return 0
