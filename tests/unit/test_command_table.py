"""The command table maps every ``longify`` command to functions named in it, which grep and IDEs follow
(``longify --help`` importing nothing heavy: tests/integration/test_help_imports.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from longify import cli


def leaves(table: cli.Table, words: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], cli.Command]]:
    for name, node in table.items():
        if isinstance(node, dict):
            yield from leaves(node, (*words, name))
        else:
            yield (*words, name), node


COMMANDS = dict(leaves(cli.COMMANDS))


def entries(command: cli.Command) -> list[Callable[..., object]]:
    named = (command.arguments, command.run, command.hf_main, command.hf_dataclasses)
    return [f for f in named if f is not None]


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=" ".join)
def test_every_entry_is_a_function_of_cli_under_its_own_name(words: tuple[str, ...]) -> None:
    """Each entry is a module-level function of cli, so ``grep _study_plan`` or go-to-definition leads from
    the table to the code, with no name built from a string on the way."""
    for entry in entries(COMMANDS[words]):
        assert entry.__module__ == "longify.cli", entry
        assert "<locals>" not in entry.__qualname__, entry.__qualname__
        assert getattr(cli, entry.__name__) is entry, entry.__name__


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=" ".join)
def test_every_entry_reaches_its_command(words: tuple[str, ...]) -> None:
    """The argument declarations build each parser, and the HF-style commands name their flag groups."""
    command = COMMANDS[words]
    assert (command.arguments is None) == (command.run is None) != (command.hf_main is None)
    if command.arguments is not None:
        assert (
            cli.command_parser(words, command).format_help().startswith(f"usage: longify {' '.join(words)}")
        )
    else:
        assert command.hf_dataclasses is not None and command.hf_dataclasses()


def test_the_table_holds_every_command() -> None:
    assert sorted(" ".join(w) for w in COMMANDS) == [
        "convert",
        "data download",
        "data list",
        "data stats",
        "demo",
        "export",
        "inspect",
        "pretrain",
        "qa evaluate",
        "qa predict",
        "qa train",
        "report",
        "study plan",
        "study run",
        "study status",
    ]
