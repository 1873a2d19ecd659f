"""Command-line options derived from config dataclasses: one ``--option`` per field, with its type, default and doc.

Nothing here is specific to `morl`: a dataclass's fields become argparse options (``add_dataclass_options``), the
values given on the command line come back as keyword arguments for it (``collect``). A field whose type is itself a
dataclass is flattened: its fields get options too, and ``collect`` rebuilds the nested dataclass from them.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import enum
import inspect
import json
import textwrap
import types
import typing
from collections.abc import Callable
from typing import Any


def field_docs(cls: type) -> dict[str, str]:
    """Per-field docs of a dataclass: ``metadata["help"]``, else the source's ``#:`` comment above the
    field, a docstring below it, or a trailing ``# comment``."""
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
            elif (
                i + 1 < len(body)
                and isinstance(body[i + 1], ast.Expr)
                and isinstance(getattr(body[i + 1], "value", None), ast.Constant)
                and isinstance(body[i + 1].value.value, str)
            ):
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


def type_name(hint: Any) -> str:
    """How a type reads in ``--help`` and in error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(type_name(a) for a in inner) + (" or none" if len(inner) < len(args) else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (tuple, list):
        if len(args) == 2 and args[1] is Ellipsis or origin is list:
            return f"comma-separated {type_name(args[0]) if args else 'values'}"
        return f"{len(args)} comma-separated values"
    return getattr(hint, "__name__", str(hint))


def converter(hint: Any) -> Callable[[str], Any]:
    """A function str -> value of type ``hint`` raising ArgumentTypeError with a clear message."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)

    def fail(s: str, what: str | None = None):
        raise argparse.ArgumentTypeError(f"invalid value {s!r}: expected {what or type_name(hint)}")

    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        allow_none = len(inner) < len(args)
        convs = [converter(a) for a in inner]

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
                c = converter(args[0]) if args else str
                vals = [c(p) for p in parts]
            else:
                if len(parts) != len(args):
                    fail(s, f"{len(args)} comma-separated values")
                vals = [converter(a)(p) for a, p in zip(args, parts)]
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
            fail(s, f"a JSON value for {type_name(hint)}")

    return conv


def _is_nested(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _default(f: dataclasses.Field, defaults: Any) -> Any:
    """The value a field starts from: ``defaults``'s (an instance), else the field's own default, else "required"."""
    if defaults is not None:
        return getattr(defaults, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return "required"


def _leaves(cls: type, defaults: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any, Any, str]]:
    """(path, type, default, doc) of every init field of ``cls``, descending into dataclass-typed fields."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint = hints.get(f.name, str)
        default = _default(f, defaults)
        if _is_nested(hint):
            inner = default if dataclasses.is_dataclass(default) and not isinstance(default, type) else None
            out.extend(_leaves(hint, inner, path + (f.name,)))
        else:
            out.append((path + (f.name,), hint, default, docs.get(f.name, "")))
    return out


def add_dataclass_options(
    group,
    cls: type,
    defaults: Any = None,
    *,
    prefix: str = "",
    dest_prefix: str = "cfg__",
    taken: set[str] = frozenset(),
) -> dict[str, str]:
    """One ``--option`` per field of ``cls``; returns {field: option}. Unset options stay unset (SUPPRESS).

    ``defaults`` (an instance of ``cls``) supplies the defaults shown in the help. The fields of a nested dataclass
    field are options too, named ``--NAME`` when no other field of the config has that name, else ``--OUTER-NAME``;
    their keys in the result (and in ``given``) are dotted paths, ``outer.name``.
    """
    leaves = _leaves(cls, defaults)
    counts: dict[str, int] = {}
    for path, *_ in leaves:
        counts[path[-1]] = counts.get(path[-1], 0) + 1
    options = {}
    for path, hint, default, doc in leaves:
        name = path[-1] if len(path) == 1 or counts[path[-1]] == 1 else "-".join(path)
        opt = "--" + prefix + name.replace("_", "-")
        if opt in taken:
            opt = "--" + prefix + "cfg-" + name.replace("_", "-")
        if len(path) > 1:
            doc = f"({'.'.join(path)}) {doc}"
        help_text = f"{doc} [{type_name(hint)}; default: {default}]".strip().replace("%", "%%")
        kwargs: dict[str, Any] = dict(
            dest=dest_prefix + ".".join(path),
            type=converter(hint),
            default=argparse.SUPPRESS,
            help=help_text,
            metavar=metavar(hint),
        )
        if hint is bool:
            kwargs.update(nargs="?", const=True)
        group.add_argument(opt, **kwargs)
        options[".".join(path)] = opt
    return options


def metavar(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "{" + ",".join(str(a) for a in args) + "}"
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return metavar(inner[0]) if len(inner) == 1 else "VALUE"
    if origin in (tuple, list):
        return "A,B,..."
    return {int: "INT", float: "X", bool: "BOOL", str: "STR"}.get(hint, "VALUE")


def given(ns: argparse.Namespace, dest_prefix: str) -> dict[str, Any]:
    """The options given on the command line, as {field path: value}; options left unset are absent."""
    return {k[len(dest_prefix) :]: v for k, v in vars(ns).items() if k.startswith(dest_prefix)}


def collect(ns: argparse.Namespace, dest_prefix: str, base: Any) -> dict[str, Any]:
    """The options given on the command line, as keyword arguments for the dataclass they came from.

    A nested dataclass field comes back whole: ``base``'s value of it (``base`` is an instance, or the class for
    its defaults) with the given fields replaced."""
    return _assemble({tuple(k.split(".")): v for k, v in given(ns, dest_prefix).items()}, base)


def _assemble(values: dict[tuple[str, ...], Any], base: Any) -> dict[str, Any]:
    out = {p[0]: v for p, v in values.items() if len(p) == 1}
    for head in dict.fromkeys(p[0] for p in values if len(p) > 1):
        inner = {p[1:]: v for p, v in values.items() if len(p) > 1 and p[0] == head}
        start = _field_value(base, head)
        if isinstance(start, type):  # a nested field without a default: its class's defaults and the given fields
            out[head] = start(**_assemble(inner, start))
        else:
            out[head] = dataclasses.replace(start, **_assemble(inner, start))
    return out


def _field_value(base: Any, name: str) -> Any:
    """An instance's value of field ``name``; for a class, the field's default, else the field's (dataclass) type."""
    if not isinstance(base, type):
        return getattr(base, name)
    f = next(f for f in dataclasses.fields(base) if f.name == name)
    default = _default(f, None)
    return typing.get_type_hints(base)[name] if isinstance(default, str) and default == "required" else default


def closest_option(token: str, parser: argparse.ArgumentParser) -> str:
    """ " Did you mean: --x, --y?" for an unknown option ``token`` (empty when nothing is close)."""
    opts = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    name = token.split("=", 1)[0]
    close = difflib.get_close_matches(name, opts, n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""
