"""The configuration reference (``docs/config-reference.md``), generated from the config dataclasses
so that it cannot drift from them: every field's dotted key, type and default, the rule its
section's ``validate`` enforces, and its description (the attribute docstring or the comment on
the field's line, read from the source).

The rules are read, not restated: each ``require(where, name, ok, rule)`` in a ``validate`` (and in
the helpers it calls: ``at_least``, ``fraction``, ``kube.quantity``, ...) is evaluated on the
field's default, so the reference says what the error message says.

``videostar config reference [-o FILE]`` writes it; ``make docs`` regenerates the
committed copy and ``tests/config/test_reference.py`` fails when that copy is stale.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import re
import textwrap
import tokenize
import typing
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from videostar.config import RunConfig
from videostar.config.fields import SEED_MAX, require

HEADER = f"""# Configuration reference

Generated from the config dataclasses in `src/videostar/config/` by `make docs`
(`videostar config reference -o docs/config-reference.md`); do not edit it by hand:
`tests/config/test_reference.py` fails when it is stale.

A run configuration is one YAML file (`videostar --config run.yaml ...`); every key is optional and
a missing one takes the default below. An unknown key, a wrong type or a key given twice stops
with one line naming the dotted key (exit code 2). *allowed* is what the section's `validate`
checks; besides, every number is finite, every integer fits in 64 bits, and every seed (`seed`,
`*_seed`) is an integer from 0 to {SEED_MAX}. How the checks work:
[configuration.md](configuration.md).
"""
LONG_DEFAULT = 300
"""A default whose JSON is longer than this is shown as its source expression."""


@dataclasses.dataclass(frozen=True)
class Row:
    """One leaf field of the configuration."""

    key: str
    type: str
    default: str
    allowed: str
    description: str


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _markdown(doc: str) -> str:
    """A docstring as one line of Markdown: RST literals and roles as code spans."""
    text = " ".join(inspect.cleandoc(doc).split())
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    return re.sub(r"``(.+?)``", r"`\1`", text)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


@cache
def _class_source(cls: type) -> tuple[ast.ClassDef, dict[int, str]]:
    """The class's syntax tree and its comments by line (both numbered from the class's first line)."""
    source = textwrap.dedent(inspect.getsource(cls))
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    comments = {t.start[0]: t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT}
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.ClassDef)
    return node, comments


def _field_sources(cls: type) -> dict[str, tuple[str, str]]:
    """Per field: its description and the source text of its default."""
    node, comments = _class_source(cls)
    source = textwrap.dedent(inspect.getsource(cls))
    out = {}
    for stmt, after in zip(node.body, [*node.body[1:], None], strict=True):
        if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
            continue
        if (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            description = _markdown(after.value.value)
        else:
            description = " ".join(comments[n] for n in range(stmt.lineno, stmt.end_lineno + 1)
                                   if n in comments)
        default = ""
        if stmt.value is not None:
            value = stmt.value
            factory = [k.value for k in getattr(value, "keywords", []) if k.arg == "default_factory"]
            value = factory[0].body if factory and isinstance(factory[0], ast.Lambda) else (
                factory[0] if factory else value)
            default = ast.get_source_segment(source, value) or ""
        out[stmt.target.id] = (description, default)
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _default(f: dataclasses.Field[Any], value: Any, source: str) -> str:
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        return "required"
    text = json.dumps(_plain(value), ensure_ascii=False)
    return f"`{text}`" if len(text) <= LONG_DEFAULT else f"`{source}` (in the source)"


def _item_type(tp: Any) -> type | None:
    """The dataclass a ``list[...]`` field holds, if it holds one."""
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        if dataclasses.is_dataclass(item):
            return item
    return None


def _stand_in(cls: type) -> Any:
    """An instance of a list item's dataclass: its defaults, and empty values where it has none."""
    hints = typing.get_type_hints(cls)
    empty = {f.name: (typing.get_origin(hints[f.name]) or hints[f.name])() for f in dataclasses.fields(cls)
             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    return cls(**empty)


def _helper_rule(func: Callable[..., Any], args: dict[str, Any]) -> str:
    """What a checking helper allows: its one ``require``'s rule evaluated on these arguments,
    else the first sentence of its docstring."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
        calls = [c for c in ast.walk(tree) if isinstance(c, ast.Call)
                 and isinstance(c.func, ast.Name) and c.func.id == "require"]
        if len(calls) == 1 and len(calls[0].args) == 4:
            return str(eval(compile(ast.Expression(calls[0].args[3]), "<rule>", "eval"),
                            func.__globals__, args))
    except Exception:  # a rule built from the value checked: fall back to the docstring
        pass
    return _markdown(func.__doc__ or "").split(". ")[0].rstrip(".")


def _rules(obj: Any, where: str) -> Iterator[tuple[str, str]]:
    """(dotted key, rule) for every check ``obj.validate`` makes, read from its source."""
    validate = getattr(obj, "validate", None)
    if validate is None:
        return
    tree = ast.parse(textwrap.dedent(inspect.getsource(validate))).body[0]
    assert isinstance(tree, ast.FunctionDef)
    namespace = {**validate.__globals__, "self": obj, "where": where}

    def visit(stmts: list[ast.stmt], local: dict[str, Any]) -> Iterator[tuple[str, str]]:
        for stmt in stmts:
            if isinstance(stmt, ast.If):
                yield from visit(stmt.body, local)
                yield from visit(stmt.orelse, local)
            elif isinstance(stmt, ast.For) and isinstance(stmt.target, ast.Name):
                try:
                    items = ast.literal_eval(stmt.iter)
                except ValueError:  # a loop over the value itself: no rule to read off
                    continue
                for item in items:
                    yield from visit(stmt.body, {**local, stmt.target.id: item})
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
                yield from call(stmt.value, local)

    def call(node: ast.Call, local: dict[str, Any]) -> Iterator[tuple[str, str]]:
        def ev(expr: ast.expr) -> Any:
            return eval(compile(ast.Expression(expr), "<validate>", "eval"), namespace, local)

        try:
            func = ev(node.func)
            bound = inspect.signature(func).bind(*map(ev, node.args),
                                                 **{k.arg: ev(k.value) for k in node.keywords if k.arg})
        except Exception:  # not a check of one field (e.g. another section's method)
            return
        bound.apply_defaults()
        args = bound.arguments
        if not isinstance(args.get("where"), str):
            return
        key = _join(args["where"], args["name"]) if isinstance(args.get("name"), str) else args["where"]
        rule = args["rule"] if func is require else _helper_rule(func, args)
        rule = re.sub(r",? got .*$", "", str(rule))
        if rule:
            yield key, rule

    yield from visit(tree.body, {})


def _sections(cls: type, obj: Any, where: str) -> Iterator[tuple[str, type, Any]]:
    """(dotted path, dataclass, its default) for ``cls`` and every dataclass nested in it."""
    yield where, cls, obj
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _sections(hints[f.name], getattr(obj, f.name), _join(where, f.name))


def _table(cls: type, obj: Any, where: str, rules: dict[str, list[str]]) -> list[Row]:
    hints = typing.get_type_hints(cls)
    sources = _field_sources(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            continue
        key = _join(where, f.name)
        description, source = sources[f.name]
        rows.append(Row(key=key, type=str(f.type), default=_default(f, getattr(obj, f.name), source),
                        allowed="; ".join(rules.get(key, [])), description=description))
    return rows


def _render_section(title: str, cls: type, rows: list[Row]) -> list[str]:
    lines = [f"## {title}", ""]
    if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):  # not the generated one
        lines += [_markdown(cls.__doc__), ""]
    lines += ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
    lines += [f"| `{r.key}` | `{_cell(r.type)}` | {_cell(r.default)} | {_cell(r.allowed)} "
              f"| {_cell(r.description)} |" for r in rows]
    return [*lines, ""]


def leaf_keys() -> list[str]:
    """Every leaf field of :class:`RunConfig` by its dotted key (a field that is not a section)."""
    return [row.key for where, cls, obj in _sections(RunConfig, RunConfig(), "")
            for row in _table(cls, obj, where, {})]


def _collect(checks: Iterator[tuple[str, str]], into: dict[str, list[str]]) -> None:
    for key, rule in checks:
        if rule not in into.setdefault(key, []):
            into[key].append(rule)


def render() -> str:
    """The reference as Markdown: one table per section of :class:`RunConfig`, then one per kind
    of list item (tolerations, secrets, evaluation suites)."""
    sections = list(_sections(RunConfig, RunConfig(), ""))
    rules: dict[str, list[str]] = {}  # a section's validate may check a nested section's field
    items: dict[type, list[str]] = {}
    for where, cls, obj in sections:
        _collect(_rules(obj, where), rules)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            item = _item_type(hints[f.name])
            if item is not None:
                items.setdefault(item, []).append(_join(where, f.name))
    lines = [HEADER]
    for where, cls, obj in sections:
        title = f"`{where}`" if where else "Top level"
        lines += _render_section(f"{title} ({cls.__name__})", cls, _table(cls, obj, where, rules))
    for item, paths in items.items():
        where, stand_in = f"{paths[0]}[]", _stand_in(item)
        _collect(_rules(stand_in, where), rules)
        title = f"Each item of {', '.join(f'`{p}`' for p in paths)} ({item.__name__})"
        lines += _render_section(title, item, _table(item, stand_in, where, rules))
    return "\n".join(lines).rstrip("\n") + "\n"
