"""``prepare`` jobs of a study: inputs a study makes for itself (a corpus, QA files, a source model), each
written into a fresh folder that is renamed into place.

The study does not know the kinds: a package registers each under the entry-point group
``longify.prepare_kinds`` (its name is the kind, its value ``module:attribute`` names a ``PrepareKind``), so
a new kind is a function and one line of its package's metadata, and every process sees the same kinds: the
``study plan`` that checks a spec's options and the ``python -m longify.study.prepare`` job that runs one.
A kind's module is imported only when that kind is checked or run. longify's demo registers ``demo-data``,
``demo-source`` and ``minilm`` (``longify.demo.prepare``; pyproject.toml).

Run as ``python -m longify.study.prepare DEST --kind KIND [--option value ...]``.
"""

from __future__ import annotations

import argparse
import functools
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from longify.errors import LongifyError

ENTRY_POINTS = "longify.prepare_kinds"


@dataclass(frozen=True)
class PrepareKind:
    """A kind of prepare job. ``make(dest, **options)`` writes the folder ``dest`` (absent when it is called:
    made by ``make``); ``options`` maps each option, an integer, to its ``(default, least value)``, against
    which a spec's entry is checked when it is planned; ``help`` says what an option does."""

    make: Callable[..., Any]
    options: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    help: Mapping[str, str] = field(default_factory=dict)


@functools.cache
def _registered() -> dict[str, Any]:
    """The entry points of ``ENTRY_POINTS`` by kind (the first of a name wins), sorted; none imported."""
    found: dict[str, Any] = {}
    for point in sorted(entry_points(group=ENTRY_POINTS), key=lambda p: p.name):
        found.setdefault(point.name, point)
    return found


def kind_names() -> tuple[str, ...]:
    """The registered kinds, sorted (no kind's module is imported)."""
    return tuple(_registered())


@functools.cache
def prepare_kind(name: str) -> PrepareKind:
    """The registered kind ``name``, its module imported on first use; an unknown name is one line."""
    point = _registered().get(name)
    if point is None:
        known = (
            ", ".join(kind_names()) or f"none: no package registers {ENTRY_POINTS} (is longify installed?)"
        )
        raise LongifyError(f"prepare kind {name!r}: not registered (registered: {known})")
    kind = point.load()
    if not isinstance(kind, PrepareKind):
        raise LongifyError(f"prepare kind {name!r}: {point.value} is not a longify.study.prepare.PrepareKind")
    return kind


def _whole(value: Any) -> int | None:
    """An integer option's value as the command parses it: an int, or a string of one (``${VAR}`` expands
    to a string); None for anything else."""
    if type(value) is int:
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def option_problems(entry: dict[str, Any], where: str) -> list[str]:
    """One line per option of a prepare ``entry`` (with its ``kind``, a registered one) that its kind does
    not take or whose value is not a whole number of at least its least value."""
    kind = entry["kind"]
    accepted = prepare_kind(kind).options
    problems = []
    for key, value in entry.items():
        if key == "kind":
            continue
        if key not in accepted:
            expected = f"expected one of {', '.join(accepted)}" if accepted else "it takes none"
            problems.append(f"{where}.{key}: not an option of kind {kind} ({expected})")
        elif (number := _whole(value)) is None or number < accepted[key][1]:
            least = "a positive integer" if accepted[key][1] == 1 else f"an integer >= {accepted[key][1]}"
            problems.append(f"{where}.{key}: expected {least}, got {value!r}")
    return problems


def _parser(kind: PrepareKind | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m longify.study.prepare")
    p.add_argument("dest")
    p.add_argument("--kind", choices=kind_names(), required=True)
    for name, (default, _) in (kind.options if kind else {}).items():
        p.add_argument(f"--{name}", type=int, default=default, help=kind.help.get(name) if kind else None)
    return p


def main(argv: list[str] | None = None) -> int:
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--kind", choices=kind_names())
    chosen = first.parse_known_args(argv)[0].kind
    kind = prepare_kind(chosen) if chosen else None
    args = _parser(kind).parse_args(argv)  # (--help, or no --kind: exits here)
    assert kind is not None
    dest = Path(args.dest)
    if dest.is_dir():
        print(f"{dest}: already made")
        return 0
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    kind.make(tmp, **{name: getattr(args, name) for name in kind.options})
    tmp.rename(dest)
    print(f"{dest}: {args.kind} made")
    return 0


if __name__ == "__main__":
    # run from the module under its own name: kinds are instances of longify.study.prepare.PrepareKind, which
    # is not this __main__ module's class of the same name
    from longify.study.prepare import main as _main

    raise SystemExit(_main())
