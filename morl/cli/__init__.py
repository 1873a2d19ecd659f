"""The `morl` command line: envs, train, runs, eval, plot, leaderboard, suite, bench.

Run `morl --help` or `morl COMMAND --help`. `morl train AGENT --help` lists the agent's own options,
derived from its config dataclass (names, types, defaults and docs), so a new agent needs no CLI code.
Modules named in ``MORL_IMPORT`` (comma-separated) or ``--import MODULE`` are imported first, so
third-party packages can register agents and envs.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import json
import os
import sys
import time
import types
import typing
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from morl.compile_cache import enable_compilation_cache

#: console width when output is not a terminal (a pipe, a file, CI logs): wide enough that no table is cut
PIPE_WIDTH = 1000


def _tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# tables sized to the terminal; complete (never cut) when piped
console = Console(width=None if _tty(sys.stdout) else PIPE_WIDTH)
err_console = Console(stderr=True, width=None if _tty(sys.stderr) else PIPE_WIDTH)

SHORT_METRICS = (("hypervolume", "hv"), ("expected_utility", "eu"), ("sparsity", "sp"), ("cardinality", "card"),
                 ("igd", "igd"), ("maximum_utility_loss", "mul"))


class CLIError(Exception):
    """A user error: printed as one clear line, exit status 2."""

    code = 2


class TrainingFailed(CLIError):
    """Training raised: the message names the run and its error.txt; exit status 1."""

    code = 1


@dataclasses.dataclass
class Col:
    """A column of a `fit_table`: ``kind`` "id" (folded to fit, never cut), "text" (wrapped) or "num" (never
    wrapped or cut); ``drop``: 0 = always shown, higher = hidden first when the terminal is too narrow."""

    name: str
    kind: str = "text"
    drop: int = 0
    justify: str = "left"


def fit_table(title: str, cols: list[Col], rows: list[list[str]], width: int | None = None) -> tuple[Table, list[str]]:
    """A rich table that fits ``width`` columns (default: the console's): numbers are never cut; ids and text
    wrap; low-value columns (``drop`` > 0, highest first) are left out when even that does not fit. Returns the
    table and the names of the columns left out."""
    from rich.text import Text

    width = console.width if width is None else width
    plain = [[Text.from_markup(c).cell_len for c in r] for r in rows]
    natural = [max([len(c.name)] + [r[i] for r in plain]) for i, c in enumerate(cols)]
    floor = {"num": None, "id": 20, "text": 8}

    def least(i: int) -> int:  # the narrowest a column may get
        c = cols[i]
        return natural[i] if c.kind == "num" else min(natural[i], max(floor[c.kind], len(c.name) if c.kind != "id" else 0))

    shown = list(range(len(cols)))

    def need(idx: list[int], widths) -> int:  # content + 2 padding per column + n + 1 border lines
        return sum(widths[i] for i in idx) + 3 * len(idx) + 1

    while need(shown, [least(i) for i in range(len(cols))]) > width:
        droppable = [i for i in shown if cols[i].drop > 0]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: (cols[i].drop, i)))
    widths = list(natural)
    excess = need(shown, widths) - width
    while excess > 0:  # fold the ids first, then narrow the widest text column, one cell at a time
        cand = ([i for i in shown if cols[i].kind == "id" and widths[i] > least(i)]
                or [i for i in shown if widths[i] > least(i)])
        if not cand:
            break
        i = max(cand, key=lambda j: widths[j] - least(j))
        widths[i] -= 1
        excess -= 1
    table = Table(title=title)
    for i in shown:
        c = cols[i]
        if c.kind == "num":
            table.add_column(c.name, justify=c.justify, no_wrap=True, min_width=natural[i])
        else:
            table.add_column(c.name, justify=c.justify, overflow="fold", width=widths[i] if widths[i] < natural[i] else None,
                             min_width=None if widths[i] < natural[i] else natural[i])
    for r in rows:
        table.add_row(*[r[i] for i in shown])
    return table, [cols[i].name for i in range(len(cols)) if i not in shown]


def print_table(title: str, cols: list[Col], rows: list[list[str]]) -> None:
    table, hidden = fit_table(title, cols, rows)
    console.print(table)
    if hidden:
        console.print(f"(terminal too narrow: column(s) {', '.join(hidden)} left out; widen it or pipe the output)",
                      style="dim", markup=False, highlight=False)


def _fmt_point(p) -> str:
    return "-" if p is None else "[" + ", ".join(f"{x:g}" for x in p) + "]"


def cmd_envs(args: argparse.Namespace) -> int:
    import morl

    from rich.markup import escape

    rows = []
    for env_id in morl.list_envs():
        try:
            env, params = morl.make(env_id)
        except Exception as exc:  # an env whose optional dependency is missing still gets listed
            rows.append([env_id, f"[red]unavailable: {escape(str(exc))}[/red]", "", "", "", "", ""])
            continue
        names = ", ".join(env.reward_names) if env.reward_names else str(env.reward_dim)
        max_steps = getattr(params, "max_steps", None)
        if max_steps is None:  # host envs may have no params; their time limit lives on the env
            max_steps = getattr(env, "max_episode_steps", None) or getattr(env, "time_limit", None)
        rows.append([env_id, escape(f"{env.reward_dim}: {names}"), escape(env.observation_space.describe()),
                     escape(env.action_space.describe()), "-" if max_steps is None else str(int(max_steps)),
                     "yes" if env.has_known_front else "no", escape(_fmt_point(env.ref_point))])
    print_table("registered environments",
                [Col("id", "id"), Col("objectives"), Col("observation", drop=5), Col("action", drop=3),
                 Col("max steps", "num", drop=4, justify="right"), Col("known front", drop=1),
                 Col("ref point", drop=2)], rows)
    console.print("Any gymnasium / MO-Gymnasium id also works as 'gym:<id>' (host path).")
    return 0


def cmd_bench_rollout(args: argparse.Namespace) -> int:
    from morl.bench import bench_rollout, machine

    env_ids = args.env
    summary = Table(title=f"env steps/s, random policy ({machine()})")
    for col in ("env", "engine (num_envs)", "MO-Gym single", "MO-Gym MOSyncVectorEnv(64)", "ratio vs MOSync(64)"):
        summary.add_column(col, justify="right")
    for env_id in env_ids:
        with console.status(f"benchmarking {env_id} ..."):
            rows = bench_rollout(env_id, args.num_envs, args.num_steps, args.seconds, reference=not args.no_reference)
        detail = Table(title=env_id)
        for col in ("what", "num envs", "steps", "seconds", "steps/s"):
            detail.add_column(col, justify="right")
        for r in rows:
            detail.add_row(r.what, str(r.num_envs), f"{r.steps:,}", f"{r.seconds:.2f}", f"{r.steps_per_s:,.0f}")
        console.print(detail)
        single = next((r for r in rows if "single" in r.what), None)
        vector = next((r for r in rows if "MOSyncVectorEnv" in r.what), None)
        for engine in [r for r in rows if r.what.startswith("morl")]:  # one row per backend (MuJoCo: mjx, mujoco)
            ratio = engine.steps_per_s / vector.steps_per_s if vector else None
            summary.add_row(f"{env_id} ({engine.variant})" if engine.variant else env_id,
                            f"{engine.steps_per_s:,.0f} ({engine.num_envs})",
                            f"{single.steps_per_s:,.0f}" if single else "-",
                            f"{vector.steps_per_s:,.0f}" if vector else "-",
                            "-" if ratio is None else f"{ratio:,.1f}x" if ratio < 10 else f"{ratio:,.0f}x")
    console.print(summary)
    return 0




# ============================================================================ options from dataclasses
def field_docs(cls: type) -> dict[str, str]:
    """Per-field docs of a dataclass: ``metadata["help"]``, else the source's ``#:`` comment above the
    field, a docstring below it, or a trailing ``# comment``."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            src = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        lines = src.splitlines()
        tree = ast.parse(src)
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for i, node in enumerate(body):
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            name, doc = node.target.id, ""
            above = []
            j = node.lineno - 2
            while j >= 0 and lines[j].strip().startswith("#:"):
                above.insert(0, lines[j].strip()[2:].strip())
                j -= 1
            if above:
                doc = " ".join(above)
            elif i + 1 < len(body) and isinstance(body[i + 1], ast.Expr) and isinstance(
                    getattr(body[i + 1], "value", None), ast.Constant) and isinstance(body[i + 1].value.value, str):
                doc = " ".join(body[i + 1].value.value.split())
            else:
                line = lines[node.lineno - 1]
                if "#" in line:
                    doc = line.split("#", 1)[1].strip()
            if doc:
                docs[name] = doc
    for f in dataclasses.fields(cls):
        for k in ("help", "doc", "description"):
            if k in f.metadata:
                docs[f.name] = str(f.metadata[k])
    return docs


_NONE = ("none", "null")
_TRUE = ("true", "1", "yes", "on", "t", "y")
_FALSE = ("false", "0", "no", "off", "f", "n")


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_type_name(a) for a in inner) + (" or none" if len(inner) < len(args) else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (tuple, list):
        if len(args) == 2 and args[1] is Ellipsis or origin is list:
            return f"comma-separated {_type_name(args[0]) if args else 'values'}"
        return f"{len(args)} comma-separated values"
    return getattr(hint, "__name__", str(hint))


def _converter(hint: Any):
    """A function str -> value of type ``hint`` raising ArgumentTypeError with a clear message."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)

    def fail(s: str, what: str | None = None):
        raise argparse.ArgumentTypeError(f"invalid value {s!r}: expected {what or _type_name(hint)}")

    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        allow_none = len(inner) < len(args)
        convs = [_converter(a) for a in inner]

        def conv(s: str):
            if allow_none and s.strip().lower() in _NONE:
                return None
            for c in convs:
                try:
                    return c(s)
                except argparse.ArgumentTypeError:
                    continue
            fail(s)
        return conv
    if origin is typing.Literal:
        def conv(s: str):
            for a in args:
                if str(a) == s or (isinstance(a, bool) and s.lower() in (_TRUE if a else _FALSE)):
                    return a
            fail(s)
        return conv
    if hint is bool:
        def conv(s: str):
            v = s.strip().lower()
            if v in _TRUE:
                return True
            if v in _FALSE:
                return False
            fail(s, "true or false")
        return conv
    if hint is int:
        def conv(s: str):
            v = s.strip().replace("_", "")
            try:
                return int(v)
            except ValueError:
                pass
            try:
                f = float(v)
            except ValueError:
                fail(s, "an integer")
            if not f.is_integer():
                fail(s, "an integer")
            return int(f)
        return conv
    if hint is float:
        def conv(s: str):
            try:
                return float(s.strip().replace("_", ""))
            except ValueError:
                fail(s, "a number")
        return conv
    if hint is str:
        return str
    if origin in (tuple, list) or hint in (tuple, list):
        variadic = origin is list or not args or (len(args) == 2 and args[1] is Ellipsis)

        def conv(s: str):
            body = s.strip().strip("[]()")
            parts = [p.strip() for p in body.split(",") if p.strip()] if body else []
            if variadic:
                c = _converter(args[0]) if args else str
                vals = [c(p) for p in parts]
            else:
                if len(parts) != len(args):
                    fail(s, f"{len(args)} comma-separated values")
                vals = [_converter(a)(p) for a, p in zip(args, parts)]
            return list(vals) if origin is list else tuple(vals)
        return conv
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        def conv(s: str):
            for m in hint:
                if s in (m.name, str(m.value)):
                    return m
            fail(s, "one of " + ", ".join(m.name for m in hint))
        return conv

    def conv(s: str):  # anything else: JSON
        try:
            return json.loads(s)
        except json.JSONDecodeError:
            fail(s, f"a JSON value for {_type_name(hint)}")
    return conv


def add_dataclass_options(group, cls: type, defaults: Any = None, *, prefix: str = "", dest_prefix: str = "cfg__",
                          taken: set[str] = frozenset()) -> dict[str, str]:
    """One ``--option`` per field of ``cls``; returns {field: option}. Unset options stay unset (SUPPRESS)."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    options = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint = hints.get(f.name, str)
        opt = "--" + prefix + f.name.replace("_", "-")
        if opt in taken:
            opt = "--" + prefix + "cfg-" + f.name.replace("_", "-")
        names = [opt]
        if defaults is not None:
            default = getattr(defaults, f.name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = "required"
        doc = docs.get(f.name, "")
        help_text = f"{doc} [{_type_name(hint)}; default: {default}]".strip().replace("%", "%%")
        kwargs: dict[str, Any] = dict(dest=dest_prefix + f.name, type=_converter(hint), default=argparse.SUPPRESS,
                                      help=help_text, metavar=_metavar(hint))
        if hint is bool:
            kwargs.update(nargs="?", const=True)
        group.add_argument(*names, **kwargs)
        options[f.name] = opt
    return options


def _metavar(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "{" + ",".join(str(a) for a in args) + "}"
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _metavar(inner[0]) if len(inner) == 1 else "VALUE"
    if origin in (tuple, list):
        return "A,B,..."
    return {int: "INT", float: "X", bool: "BOOL", str: "STR"}.get(hint, "VALUE")


def _collect(ns: argparse.Namespace, dest_prefix: str) -> dict[str, Any]:
    return {k[len(dest_prefix):]: v for k, v in vars(ns).items() if k.startswith(dest_prefix)}


class _Parser(argparse.ArgumentParser):
    """argparse, with one-line errors that say where to look (the usage of `train` is pages long)."""

    def error(self, message: str):  # type: ignore[override]
        raise CLIError(f"{self.prog}: {message}. Run `{self.prog} --help` for the options.")


def _closest_option(token: str, parser: argparse.ArgumentParser) -> str:
    opts = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    name = token.split("=", 1)[0]
    close = difflib.get_close_matches(name, opts, n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def parse_seeds(spec: str) -> list[int]:
    """``"0-4"`` -> [0..4]; ``"0,2,5"``; ``"0-2,7"``."""
    seeds: list[int] = []
    try:
        for part in spec.split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            elif part:
                seeds.append(int(part))
    except ValueError:
        raise CLIError(f"invalid --seeds {spec!r}: use a range '0-4', a list '0,2,5', or both '0-2,7'") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise CLIError(f"invalid --seeds {spec!r}: seeds must be distinct non-negative integers")
    return seeds


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


# ============================================================================ train
def _train_base(prog: str = "morl train") -> _Parser:
    p = _Parser(prog=prog, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Train an agent on an env: progress bar, periodic evaluation, checkpoints, a run folder "
                            "and a row in the results store.\n\n"
                            "  morl train AGENT --env ID [--seed S | --seeds 0-4] [--steps N] [--FIELD VALUE ...]\n"
                            "  morl train --resume RUN\n\n"
                            "`morl train AGENT --help` adds the agent's own options (one per config field).")
    p.add_argument("agent", nargs="?", help="agent name")
    g = p.add_argument_group("run")
    g.add_argument("--env", help="env id (`morl envs` lists them; 'gym:<id>' for any gymnasium id)")
    g.add_argument("--env-arg", action="append", metavar="KEY=VALUE",
                   help="env constructor / params argument, repeatable (e.g. --env-arg depth=5)")
    g.add_argument("--seed", type=int, default=None, help="one seed (default 0)")
    g.add_argument("--seeds", default=None, help="several seeds, e.g. 0-4 or 0,2,5 (vmapped in one program when the "
                                                 "agent allows, else one after another)")
    g.add_argument("--steps", type=_converter(int), default=None,
                   help="training budget in env steps (sets the agent's budget field)")
    g.add_argument("--eval-every", type=_converter(int), default=None,
                   help="env steps between evaluations (default: budget/10; 0: only the final one)")
    g.add_argument("--checkpoint-secs", type=float, default=60.0,
                   help="wall seconds between checkpoints (one is also written after each evaluation) [default 60]")
    g.add_argument("--runs-dir", default=None, help="where run folders and results.sqlite live "
                                                     "(default: $MORL_RUNS_DIR or ./runs)")
    g.add_argument("--resume", nargs="+", metavar="RUN", help="continue run(s) from their last checkpoint")
    g.add_argument("--no-vmap", action="store_true", help="train several seeds one after another")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _train_parser(agent: str | None, env_id: str | None) -> tuple[_Parser, Any]:
    from morl.agent import agent_spec, make_config
    from morl.evaluate import EvalProtocol

    p = _train_base()
    taken = {o for a in p._actions for o in a.option_strings}
    pg = p.add_argument_group("evaluation protocol (periodic and final evaluations; recorded with every result)")
    add_dataclass_options(pg, EvalProtocol, prefix="protocol-", dest_prefix="proto__", taken=taken)
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
        add_dataclass_options(g, spec.config_cls, defaults, dest_prefix="cfg__", taken=taken)
    else:
        from morl.agent import list_agents

        p.epilog = "agents: " + (", ".join(list_agents()) or "none registered")
    return p, spec


def _peek(argv: list[str], option: str) -> str | None:
    for i, tok in enumerate(argv):
        if tok == option and i + 1 < len(argv):
            return argv[i + 1]
        if tok.startswith(option + "="):
            return tok.split("=", 1)[1]
    return None


def cmd_train(argv: list[str]) -> int:
    from morl.agent import agent_spec

    agent = argv[0] if argv and not argv[0].startswith("-") else None
    if agent is not None:
        try:
            agent_spec(agent)
        except KeyError as exc:
            raise CLIError(str(exc.args[0])) from None
    parser, spec = _train_parser(agent, _peek(argv, "--env"))
    args, extra = parser.parse_known_args(argv)
    if extra:
        tok = next((t for t in extra if t.startswith("-")), extra[0])
        if args.resume:
            raise CLIError(f"--resume continues runs with their recorded settings; drop {' '.join(extra)}")
        if not tok.startswith("-"):
            raise CLIError(f"unexpected argument {tok!r}; the agent comes first: `morl train AGENT --env ID ...`")
        if agent is None:
            raise CLIError(f"unknown option {tok}: name the agent first to use its options "
                           "(`morl train AGENT --env ID ...`); `morl train --help` lists the agents")
        raise CLIError(f"unknown option {tok} for agent {agent!r}.{_closest_option(tok, parser)} "
                       f"`morl train {agent} --help` lists every option.")
    from morl import runs as R

    runs_dir = Path(args.runs_dir) if args.runs_dir else R.default_runs_dir()
    _check_store(runs_dir)
    if args.resume:
        given = [o for o, v in (("AGENT", agent), ("--env", args.env), ("--seed", args.seed), ("--seeds", args.seeds),
                                ("--steps", args.steps), ("--eval-every", args.eval_every))
                 if v is not None] + [f"--{k}" for k in _collect(args, "cfg__")] + [f"--protocol-{k}" for k in _collect(args, "proto__")]
        if given:
            raise CLIError(f"--resume continues runs with their recorded settings; drop {', '.join(given)}")
        infos = [R.find_run(runs_dir, r) for r in args.resume]
        for info in infos:
            if info.status == "done":
                raise CLIError(f"run {info.id} is already finished; `morl eval {info.id}` re-evaluates it")
            if info.status == "corrupt":
                raise CLIError(f"run folder {info.path} is corrupt ({info.problem}); it cannot be resumed")
            if info.status == "running":
                raise CLIError(f"run {info.id} is being trained by another process; stop it first")
            try:
                R.protocol_from_dict(info.meta.get("protocol") or {}).check_env(R.build(info.meta)[1])
            except (TypeError, ValueError) as exc:
                raise CLIError(f"run {info.id} records an evaluation protocol that cannot evaluate {info.env} ({exc}); "
                               f"it can never finish: train it again with valid --protocol-* options") from None
            ck = R.Checkpointer(info.path / R.CKPT_DIR)
            latest = ck.latest()
            ck.close()
            if not args.quiet:
                console.print(f"resuming {info.id} from " + (f"checkpoint {latest}" if latest is not None
                                                             else "the start (no checkpoint was written)"))
        results = _train_with_progress(infos, resume=True, quiet=args.quiet, vmap=False)
        _print_results(infos, results)
        return 0
    if agent is None:
        raise CLIError("name an agent: `morl train AGENT --env ID` (or `morl train --resume RUN`); "
                       "`morl train --help` lists the agents")
    if not args.env:
        raise CLIError(f"--env is required: `morl train {agent} --env ID` (`morl envs` lists the ids)")
    requests = _train_requests(args, spec)
    infos = [R.create_run(runs_dir, r) for r in requests]
    if not args.quiet:
        how = ("one vmapped program" if len(infos) > 1 and not args.no_vmap and _vmappable(infos[0])
               else "one after another" if len(infos) > 1 else "")
        console.print(f"[bold]{agent}[/bold] on [bold]{args.env}[/bold], seed(s) {[r.seed for r in requests]}"
                      + (f" ({how})" if how else "") + f" -> {runs_dir}/")
    results = _train_with_progress(infos, resume=False, quiet=args.quiet, vmap=not args.no_vmap)
    _print_results(infos, results)
    return 0


def _check_store(runs_dir: Path) -> None:
    """A damaged results store is reported before training, not when the first run finishes."""
    from morl.runs import store_for
    from morl.store import DB_NAME

    db = runs_dir / DB_NAME
    problem = store_for(runs_dir).check() if db.exists() else None
    if problem is not None:
        raise CLIError(f"the results store {db} is damaged ({problem}); `morl runs --reindex --runs-dir {runs_dir}` "
                       "rebuilds it from the run folders (the damaged file is kept aside)")


def _vmappable(info) -> bool:
    from morl.runs import build

    return build(info.meta)[4].vmappable  # (cached: training reuses this trainer)


def _train_requests(args, spec) -> list:
    import morl
    from morl.agent import make_config, make_trainer
    from morl.evaluate import EvalProtocol
    from morl import runs as R
    from morl.registry import UnknownEnvError

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
    overrides = _collect(args, "cfg__")
    if args.steps is not None:
        bf = R.budget_field(spec)
        if bf in overrides and overrides[bf] != args.steps:
            raise CLIError(f"--steps {args.steps} and --{bf.replace('_', '-')} {overrides[bf]} disagree; give one")
        if args.steps <= 0:
            raise CLIError(f"--steps must be positive, got {args.steps}")
        overrides[bf] = args.steps
    try:
        config = make_config(spec.name, args.env, **overrides)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"invalid config for agent {spec.name!r}: {exc}") from None
    try:
        make_trainer(spec.name, env, env_params, config=config)  # checks action kinds and the agent's own validation
    except (TypeError, ValueError) as exc:
        raise CLIError(f"agent {spec.name!r} cannot train on {args.env}: {exc}") from None
    try:
        protocol = EvalProtocol(**_collect(args, "proto__"))
        protocol.check_env(env)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"invalid evaluation protocol: {exc} (options --protocol-*, `morl train --help`)") from None
    if args.eval_every is not None and args.eval_every < 0:
        raise CLIError(f"--eval-every must be >= 0, got {args.eval_every}")
    return [R.RunRequest(spec.name, args.env, s, config, env_kwargs, protocol, args.eval_every, args.checkpoint_secs)
            for s in seeds]


class _ProgressUI:
    """A rich progress bar per run: env steps, steps/s, latest HV, ETA."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tasks: dict[str, Any] = {}
        self.start: dict[str, tuple[float, int]] = {}
        self.progress = None

    def __enter__(self):
        if not self.quiet:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("steps"), TextColumn("{task.fields[sps]}"),
                                     TextColumn("HV {task.fields[hv]}"), TextColumn("ETA"), TimeRemainingColumn(),
                                     TimeElapsedColumn(), console=console)
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
            self.tasks[event.run_id] = self.progress.add_task(f"seed {event.seed}", total=event.budget or None,
                                                              completed=event.env_steps, sps="compiling...", hv="-")
            self.start[event.run_id] = (now, event.env_steps)
            return
        t0, s0 = self.start[event.run_id]
        sps = (event.env_steps - s0) / max(now - t0, 1e-9)
        total = event.budget
        if total is not None and (event.env_steps > total or event.finished):
            total = event.env_steps  # the agent decides when it is done (its step accounting may differ)
        self.progress.update(self.tasks[event.run_id], completed=event.env_steps, total=total,
                             sps=f"{sps:,.0f}/s", hv=fmt_num(event.hv) if event.hv is not None else "-")


def _train_with_progress(infos, resume: bool, quiet: bool, vmap: bool):
    from morl import runs as R

    ids = " ".join(i.id for i in infos)
    _INTERRUPT_HINT["text"] = f"; `morl train --resume {ids}` continues from the last checkpoint"
    with _ProgressUI(quiet) as ui:
        try:
            return R.train_runs(infos, resume=resume, progress=ui, vmap_seeds=vmap)
        except KeyboardInterrupt:
            ids = " ".join(i.id for i in infos)
            exc = CLIError(f"interrupted (Ctrl-C); the last finished chunk is checkpointed: "
                           f"`morl train --resume {ids}` continues")
            exc.code = EXIT_INTERRUPTED
            raise exc from None
        except (R.RunError, CLIError, OSError):
            raise
        except Exception as exc:
            from morl.store import StoreError

            if isinstance(exc, StoreError):  # the results store (the run folders keep every result)
                raise
            states = [R.read_run(i.path) for i in infos]
            failed = [s for s in states if s.status == "failed"]
            todo = [s.id for s in states if s.status in ("interrupted", "failed")]
            where = (f"run {failed[0].id} failed; the traceback is in {failed[0].path / R.ERROR_FILE}" if failed
                     else "training failed")
            raise TrainingFailed(f"{where}: {type(exc).__name__}: {exc}"
                                 + (f". Continue with `morl train --resume {' '.join(todo)}`" if todo else "")) from None


def _metric_cells(metrics: dict[str, Any]) -> list[str]:
    from morl.leaderboard import fmt_num

    return [fmt_num(metrics.get(k)) if metrics.get(k) is not None else "-" for k, _ in SHORT_METRICS]


def _print_results(infos, results) -> None:
    import numpy as np

    from morl.leaderboard import fmt_num

    rows = [[info.id, str(info.seed), f"{res['env_steps']:,}", f"{res['wall_time']:.1f}", *_metric_cells(res["metrics"])]
            for info, res in zip(infos, results)]
    if len(results) > 1:
        cells = []
        for k, _ in SHORT_METRICS:
            vals = [r["metrics"].get(k) for r in results if r["metrics"].get(k) is not None]
            cells.append(f"{fmt_num(float(np.mean(vals)))} ± {fmt_num(float(np.std(vals)))}" if vals else "-")
        rows.append(["mean ± std", "", "", "", *cells])
    drop = {"hv": 0, "eu": 0, "sp": 3, "card": 2, "igd": 1, "mul": 1}
    print_table("final evaluation",
                [Col("run", "id"), Col("seed", "num", justify="right"), Col("env steps", "num", justify="right"),
                 Col("wall s", "num", drop=4, justify="right")]
                + [Col(short, "num", drop=drop[short], justify="right") for _, short in SHORT_METRICS], rows)
    if results:
        proto = results[0]["protocol"]
        console.print(f"protocol {results[0]['protocol_hash']}: " + ", ".join(f"{k}={v}" for k, v in proto.items()),
                      markup=False)
        console.print(f"next: `morl plot {infos[0].id}`, `morl eval {infos[0].id}`, `morl leaderboard`")


# ============================================================================ runs / eval / plot
def _runs_dir(args) -> Path:
    from morl.runs import default_runs_dir

    return Path(args.runs_dir) if getattr(args, "runs_dir", None) else default_runs_dir()


def _find(args):
    from morl.runs import RunError, find_run

    try:
        return find_run(_runs_dir(args), args.run)
    except RunError as exc:
        raise CLIError(str(exc)) from None


def cmd_runs(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from morl import runs as R
    from morl.leaderboard import fmt_num

    runs_dir = _runs_dir(args)
    if args.reindex:
        moved: list[Path] = []
        n, bad = R.reindex(runs_dir, moved=moved)
        for m in moved:
            console.print(f"[yellow]the results store was damaged: kept it as {m}, rebuilt it from the run folders[/]")
        console.print(f"indexed {n} finished run(s) into {runs_dir / 'results.sqlite'}")
    good, bad = R.list_runs(runs_dir)
    good = [r for r in good if (not args.agent or r.agent in args.agent) and (not args.env or r.env in args.env)
            and (not args.status or r.status in args.status)]
    rows = []
    colors = {"done": "green", "running": "cyan", "interrupted": "yellow", "failed": "red"}
    for r in good:
        if r.result:
            steps, wall, m = r.result.get("env_steps"), r.result.get("wall_time"), r.result.get("metrics", {})
        else:
            rows = R.read_jsonl(r.path / R.METRICS_JSONL)
            last = rows[-1] if rows else {}
            steps, wall, m = last.get("env_steps"), last.get("wall_time"), {}
            evals = [x for x in rows if "eval/hypervolume" in x]
            if evals:
                m = {"hypervolume": evals[-1]["eval/hypervolume"], "expected_utility": evals[-1].get("eval/expected_utility")}
        rows.append([escape(r.id), escape(r.agent), escape(r.env), str(r.seed),
                     f"[{colors.get(r.status, 'white')}]{r.status}[/]",
                     f"{steps:,}" if isinstance(steps, int) else "-",
                     f"{wall:.1f}" if isinstance(wall, (int, float)) else "-",
                     fmt_num(m.get("hypervolume")), fmt_num(m.get("expected_utility")),
                     escape(str(r.meta.get("created", ""))[:19])])
    print_table(f"runs in {escape(str(runs_dir))}",
                # agent, env, seed and date are also spelled in the id: they go first when the terminal is narrow
                [Col("id", "id"), Col("agent", drop=3), Col("env", drop=2), Col("seed", "num", drop=5, justify="right"),
                 Col("status"), Col("env steps", "num", justify="right"), Col("wall s", "num", drop=4, justify="right"),
                 Col("hv", "num", justify="right"), Col("eu", "num", drop=1, justify="right"),
                 Col("created", drop=6)], rows)
    if not good:
        console.print(f"no runs in {runs_dir}; start one with `morl train AGENT --env ID`")
    stale = [r for r in good if r.status in ("interrupted", "failed")]
    if stale:
        console.print(f"[yellow]{len(stale)} unfinished run(s): `morl train --resume ID` continues them[/]")
    if bad:
        console.print(f"[yellow]skipped {len(bad)} corrupt or half-written run folder(s):[/]")
        for r in bad:
            console.print(f"  {r.path}: {r.problem}", markup=False, highlight=False)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import jax

    from morl import runs as R
    from morl.evaluate import EvalProtocol
    from morl.store import StoreError, protocol_hash

    info = _find(args)
    if info.status == "corrupt":
        raise CLIError(f"run folder {info.path} is corrupt ({info.problem}); it cannot be evaluated")
    overrides = _collect(args, "proto__")
    try:
        base = R.protocol_from_dict(info.meta.get("protocol") or {})
        protocol = dataclasses.replace(base, **overrides)
        protocol.check_env(R.build(info.meta)[1])
    except (TypeError, ValueError) as exc:
        raise CLIError(f"invalid evaluation protocol: {exc}; fix it with the option of the same name "
                       "(`morl eval --help`)") from None
    key = None if args.eval_seed is None else jax.random.PRNGKey(args.eval_seed)
    try:
        with console.status(f"evaluating {info.id} ..."):
            front, notes = R.reevaluate(info, protocol, key=key, record=not args.no_record)
    except R.RunError as exc:
        raise CLIError(str(exc)) from None
    except (OSError, StoreError) as exc:
        if args.no_record:
            raise
        if isinstance(exc, OSError):
            raise CLIError(_os_error_message(exc, "eval")) from None
        raise CLIError(f"{exc} (`morl eval {info.id} --no-record` evaluates without writing anything)") from None
    h = protocol_hash(front.protocol)
    table = Table(title=f"{info.id}: evaluation under protocol {h}")
    table.add_column("metric")
    table.add_column("this evaluation", justify="right")
    stored = (info.result or {}).get("metrics", {}) if info.result else {}
    same = info.result is not None and info.result.get("protocol_hash") == h
    table.add_column("final (training)" + (" same protocol" if same else " other protocol"), justify="right")
    from morl.leaderboard import fmt_num

    for k, short in SHORT_METRICS:
        if k in front.metrics or k in stored:
            table.add_row(f"{k} ({short})", fmt_num(front.metrics.get(k)), fmt_num(stored.get(k)))
    console.print(table)
    console.print("protocol: " + ", ".join(f"{k}={v}" for k, v in front.protocol.items()), markup=False)
    console.print(f"front: {front.front.shape[0]} point(s) from {front.returns.shape[0]} candidate(s)")
    for n in notes:
        console.print(n, style="yellow", markup=False)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    import morl
    import numpy as np

    from morl import runs as R
    from morl.plots import plot_curves, plot_front

    info = _find(args)
    if info.status == "corrupt":
        raise CLIError(f"run folder {info.path} is corrupt ({info.problem}); nothing to plot")
    if not (info.path / R.FRONT_CSV).exists():
        raise CLIError(f"run {info.id} has no final front yet (status {info.status}); "
                       f"resume it (`morl train --resume {info.id}`) or evaluate a checkpoint with `morl eval`")
    problem = R.front_files_problem(info.path, info.result) if info.status == "done" else None
    if problem is not None:
        raise CLIError(f"the front files of run {info.id} are damaged ({problem}); `morl eval {info.id}` re-evaluates "
                       "the run's last checkpoint and rewrites them")
    names, front = R.read_front_csv(info.path / R.FRONT_CSV)
    candidates = None
    if (info.path / R.RETURNS_CSV).exists():
        m = len(names)
        arr = np.loadtxt(info.path / R.RETURNS_CSV, delimiter=",", skiprows=1, ndmin=2)
        candidates = arr[:, 1 + m:1 + 2 * m]
    proto = (info.result or {}).get("protocol") or info.meta.get("protocol") or {}
    known = None
    if not args.no_true_front:
        try:
            env, _ = morl.make(info.env, **(info.meta.get("env_kwargs") or {}))
            if env.has_known_front:
                known = env.pareto_front(proto.get("gamma", 0.99))
        except Exception as exc:  # plotting never fails for want of the true front
            console.print(f"no true front overlaid: {exc}", style="yellow", markup=False)
    out = Path(args.out) if args.out else info.path / "front.png"
    hv = (info.result or {}).get("metrics", {}).get("hypervolume")
    title = f"{info.agent} on {info.env}, seed {info.seed}" + (f"  (HV {hv:.4g})" if hv is not None else "")
    plot_front(front, out, names=names, known_front=known, candidates=candidates, title=title,
               ref_point=proto.get("ref_point"))
    console.print(f"wrote {out}" + (" (true front overlaid)" if known is not None else ""))
    rows = R.read_jsonl(info.path / R.METRICS_JSONL)
    if info.result:  # the curve ends at the final evaluation (same protocol as the periodic ones)
        rows.append({"env_steps": info.result["env_steps"],
                     **{f"eval/{k}": v for k, v in info.result.get("metrics", {}).items()}})
    curve = plot_curves(rows, out.with_name(out.stem + "_curve.png"), title=title)
    if curve is not None:
        console.print(f"wrote {curve}")
    return 0


# ============================================================================ leaderboard / suites
def cmd_leaderboard(args: argparse.Namespace) -> int:
    from morl.leaderboard import leaderboard_from_store, render
    from morl.runs import store_for

    runs_dir = _runs_dir(args)
    try:
        lb = leaderboard_from_store(store_for(runs_dir), args.metric, env=args.env, agent=args.agent,
                                    suite=args.suite, protocol=args.protocol)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    text = render(lb, args.format)
    if args.out:
        from morl.runs import atomic_write_text

        atomic_write_text(args.out, text)
        console.print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    if not lb.columns:
        err_console.print(f"no finished runs match in {runs_dir / 'results.sqlite'}")
    return 0


def suite_leaderboard_path(name: str) -> Path:
    """Where `morl suite run NAME` writes its leaderboard when no --out is given.

    The rule: a suite given as a ``.toml`` path of the user's writes ``<stem>.md`` beside that file; a built-in
    suite (a name, or a file in the suites folder) writes ``experiments/leaderboards/NAME.md`` when that folder
    belongs to a source checkout (the current folder's ``experiments/``, or a git checkout of morl), and
    ``./NAME.md`` in the current folder otherwise -- never into an installed package."""
    from morl.leaderboard import leaderboards_dir, suites_dir

    p = Path(name)
    builtin = suites_dir().resolve()
    if p.suffix == ".toml" and p.exists() and p.resolve().parent != builtin:
        return p.with_suffix(".md")
    stem = p.stem if p.suffix == ".toml" else name
    board = leaderboards_dir()
    checkout = builtin.parent.parent
    in_checkout = (builtin == (Path.cwd() / "experiments" / "suites").resolve()
                   or (checkout / ".git").exists() or (checkout / "pyproject.toml").exists())
    return board / f"{stem}.md" if in_checkout else Path.cwd() / f"{stem}.md"


def cmd_suite_run(args: argparse.Namespace) -> int:
    from morl.leaderboard import run_suite

    runs_dir = _runs_dir(args)
    seeds = parse_seeds(args.seeds) if args.seeds else None
    out = args.out or suite_leaderboard_path(args.name)
    with _ProgressUI(args.quiet) as ui:
        try:
            path = run_suite(args.name, runs_dir, seeds=seeds, steps_scale=args.steps_scale, out=out,
                             progress=ui, log=lambda s: console.print(s), dry_run=args.dry_run)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    if path is not None:
        console.print(f"wrote {path}")
    return 0


def cmd_suite_list(args: argparse.Namespace) -> int:
    from morl.leaderboard import list_suites, load_suite, suites_dir

    table = Table(title=f"suites in {suites_dir()}")
    for col in ("name", "agents", "envs", "seeds", "description"):
        table.add_column(col)
    for name in list_suites():
        try:
            s = load_suite(name)
        except ValueError as exc:
            table.add_row(name, f"[red]{exc}[/]", "", "", "")
            continue
        table.add_row(s.name, ", ".join(s.agents), ", ".join(e.id for e in s.envs), str(s.seeds), s.description)
    console.print(table)
    return 0


# ============================================================================ parser and entry point
def build_parser() -> argparse.ArgumentParser:
    from morl.evaluate import EvalProtocol
    from morl.leaderboard import FORMATS, METRICS

    parser = _Parser(prog="morl", description="Multi-objective RL in JAX.", allow_abbrev=False)
    parser.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                        help="import MODULE first (registers third-party agents/envs); also $MORL_IMPORT")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("envs", help="list registered environments")
    p.set_defaults(func=cmd_envs)

    sub.add_parser("train", help="train an agent (`morl train AGENT --help` lists its options)", add_help=False)

    p = sub.add_parser("runs", help="list run folders (and report corrupt ones)")
    p.add_argument("--runs-dir", default=None, help="default: $MORL_RUNS_DIR or ./runs")
    p.add_argument("--agent", nargs="+")
    p.add_argument("--env", nargs="+")
    p.add_argument("--status", nargs="+", choices=("done", "running", "interrupted", "failed"))
    p.add_argument("--reindex", action="store_true", help="rebuild results.sqlite rows from finished run folders")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("eval", help="re-evaluate a run's last checkpoint under stated settings",
                       description="Re-evaluate a run. Settings default to the run's own protocol; the ones you "
                                   "give are changed. Same protocol and no --eval-seed: reproduces the final metrics.")
    p.add_argument("run", help="run id (or unique prefix, or folder)")
    p.add_argument("--runs-dir", default=None)
    add_dataclass_options(p.add_argument_group("protocol"), EvalProtocol, dest_prefix="proto__")
    p.add_argument("--eval-seed", type=int, default=None, help="evaluation key seed (default: the run's final one)")
    p.add_argument("--no-record", action="store_true", help="do not store the result")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("plot", help="PNG of a run's front (true front overlaid when known) and learning curve")
    p.add_argument("run")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--out", default=None, help="PNG path (default: RUN/front.png)")
    p.add_argument("--no-true-front", action="store_true")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("leaderboard", help="agents x envs table: mean and 95%% bootstrap CI over seeds")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--env", nargs="+")
    p.add_argument("--agent", nargs="+")
    p.add_argument("--suite", default=None, help="only runs of this suite")
    p.add_argument("--protocol", default=None, help="only this protocol hash (prefix)")
    p.add_argument("--metric", default="hv", choices=list(METRICS) + [k for k, _, _ in METRICS.values()])
    p.add_argument("--format", default="md", choices=FORMATS)
    p.add_argument("--out", default=None, help="write to a file instead of stdout")
    p.set_defaults(func=cmd_leaderboard)

    suite = sub.add_parser("suite", help="benchmark suites (experiments/suites/*.toml)").add_subparsers(
        dest="suite_command", required=True, parser_class=_Parser)
    p = suite.add_parser("run", help="train a suite's missing runs, write its leaderboard (see --out)")
    p.add_argument("name", help="suite name or .toml path")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--seeds", default=None, help="override the suite's seeds (e.g. 0-2)")
    p.add_argument("--steps-scale", type=float, default=1.0, help="scale every budget (smoke tests)")
    p.add_argument("--out", default=None, help="leaderboard path (default: MY.md beside a suite file MY.toml; "
                                                "experiments/leaderboards/NAME.md for a built-in suite in a source "
                                                "checkout, else ./NAME.md)")
    p.add_argument("--dry-run", action="store_true", help="only say what would be trained")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_suite_run)
    p = suite.add_parser("list", help="list suites")
    p.set_defaults(func=cmd_suite_list)

    bench = sub.add_parser("bench", help="benchmarks beside the reference stack").add_subparsers(
        dest="bench", required=True, parser_class=_Parser)
    p = bench.add_parser("rollout", help="env steps/s of the engine vs MO-Gymnasium")
    p.add_argument("--env", nargs="+", default=["deep-sea-treasure-v0"], help="env id(s)")
    p.add_argument("--num-envs", type=int, default=4096)
    p.add_argument("--num-steps", type=int, default=1000, help="steps per jitted call")
    p.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds per measurement")
    p.add_argument("--no-reference", action="store_true", help="skip the MO-Gymnasium measurements")
    p.set_defaults(func=cmd_bench_rollout)
    return parser


def use_all_cpu_cores() -> None:
    """Expose every CPU core as a JAX device (before JAX starts) so the engine shards envs across them.

    XLA runs one jitted scan on one thread; with N CPU devices the env axis is partitioned N ways. Has no
    effect on accelerators (their devices come first) and respects a user-set XLA_FLAGS.
    """
    import os

    # XLA reads the flag when the CPU backend starts (first use), so importing jax before this is fine
    if "XLA_FLAGS" not in os.environ:
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"


def _imports(argv: list[str]) -> list[str]:
    """Take every ``--import MODULE`` (anywhere on the line: before or after the subcommand) and ``$MORL_IMPORT``,
    import them (the current folder is importable), and note them so new runs record them; returns the rest."""
    from morl import runs as R

    modules = [m.strip() for m in os.environ.get("MORL_IMPORT", "").split(",") if m.strip()]
    rest: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            rest.extend(argv[i:])
            break
        if tok == "--import":
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                raise CLIError("--import needs a module name, e.g. `morl --import my_package.envs train ...`")
            modules.append(argv[i + 1])
            i += 2
            continue
        if tok.startswith("--import="):
            modules.append(tok.split("=", 1)[1])
            i += 1
            continue
        rest.append(tok)
        i += 1
    modules = list(dict.fromkeys(m.strip() for m in modules if m.strip()))
    R.IMPORTS[:] = modules
    R.import_modules(modules)
    return rest


def _stack_dumps_on_sigusr1() -> None:
    """`kill -USR1 PID` prints every thread's Python stack to stderr: what a long run is doing, or where it hangs."""
    import faulthandler
    import signal

    if hasattr(signal, "SIGUSR1") and sys.stderr is not None:
        try:
            faulthandler.register(signal.SIGUSR1, all_threads=True)
        except (ValueError, OSError, RuntimeError, AttributeError):  # not the main thread, or no real stderr
            pass


#: exit status after Ctrl-C (128 + SIGINT, the shell's convention)
EXIT_INTERRUPTED = 130


def _os_error_message(exc: OSError, command: str | None) -> str:
    """One line for a file-system error: what could not be done, where, and what to do."""
    import errno

    where = exc.filename or "a file"
    what = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = {"plot": "make the run folder writable, or write the picture elsewhere with --out FILE.png",
               "leaderboard": "make the folder writable, or write elsewhere with --out FILE",
               "eval": "make the run folder writable, or evaluate without recording (--no-record)"}.get(
            command or "", "make the folder writable, or choose another one with --runs-dir DIR")
        return f"cannot write {where}: {what} (read-only folder?); {fix}"
    if exc.errno == errno.ENOSPC:
        return f"cannot write {where}: no space left on the device; free some space and run the command again"
    if exc.errno == errno.ENOENT:
        return f"{where} does not exist: {what}; check the path (or --runs-dir)"
    return f"cannot access {where}: {what}; check the path, its permissions and free space"


#: what the Ctrl-C line adds (set once runs exist: how to resume them)
_INTERRUPT_HINT = {"text": ""}


def _on_sigint(signum, frame) -> None:
    """Ctrl-C in the CLI. Inside a training loop: KeyboardInterrupt (the loop checkpoints its last finished chunk
    and stops). Anywhere else (imports, compiling, a final evaluation): one line and exit 130 at once; run folders
    are safe to leave at any instant (atomic files, WAL store, checkpoint saves hold Ctrl-C back until committed)."""
    from morl import runs as R

    if R.INTERRUPT["depth"] > 0:
        R.INTERRUPT["requested"] = True
        raise KeyboardInterrupt
    try:
        sys.stdout.flush()
    except Exception:
        pass
    try:
        sys.stderr.write("morl: error: interrupted (Ctrl-C)" + _INTERRUPT_HINT["text"] + "\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_INTERRUPTED)


def _install_sigint() -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        try:
            signal.signal(signal.SIGINT, _on_sigint)
        except (ValueError, OSError):
            pass


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the command line itself; in-process callers (tests, notebooks) keep Python's own Ctrl-C
        _install_sigint()
    argv = list(sys.argv[1:] if argv is None else argv)
    _INTERRUPT_HINT["text"] = ""
    command = next((a for a in argv if not a.startswith("-")), None)
    from rich.markup import escape

    def fail(message: str, code: int) -> int:
        err_console.print(f"[red]morl: error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
        return code

    try:
        use_all_cpu_cores()
        enable_compilation_cache()
        _stack_dumps_on_sigusr1()
        argv = _imports(argv)
        command = next((a for a in argv if not a.startswith("-")), None)
        if argv and argv[0] == "train":
            return cmd_train(argv[1:])
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return fail("interrupted (Ctrl-C)", EXIT_INTERRUPTED)
    except Exception as exc:
        import sqlite3

        from morl.runs import RunError
        from morl.store import StoreError, _translate

        if isinstance(exc, (CLIError, RunError, StoreError)):
            return fail(str(exc), getattr(exc, "code", 2))
        if isinstance(exc, sqlite3.Error):
            return fail(str(_translate(Path(getattr(exc, "filename", None) or "results.sqlite"), exc)), 2)
        if isinstance(exc, OSError):
            return fail(_os_error_message(exc, command), 2)
        raise
    except SystemExit as exc:  # --help
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2


if __name__ == "__main__":
    sys.exit(main())
