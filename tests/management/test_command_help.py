"""Every argument of every ``manage.py durable`` subcommand (and of the worker) says what it
takes: a help text, and a metavar when it takes a value."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest
from django.core.management import load_command_class

# Django's own options (--settings, -v...) are Django's business: only ours are checked.
DJANGO_OPTIONS = {
    "--version", "--verbosity", "--settings", "--pythonpath", "--traceback", "--no-color",
    "--force-color", "--skip-checks",
}  # fmt: skip


def parsers(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    """Yield ``(subcommand path, argument)`` for every argument of ``parser`` and under it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield path, action
            helped = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                assert helped.get(name), f"{path} {name} has no help"
                yield from parsers(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction) and not (
            set(action.option_strings) & DJANGO_OPTIONS
        ):
            yield path, action


def arguments(command: str) -> list[tuple[str, argparse.Action]]:
    parser = load_command_class("django_durable", command).create_parser("manage.py", command)
    return list(parsers(parser, command))


def lacking(found: list[tuple[str, argparse.Action]]) -> tuple[list[str], list[str]]:
    """Return the arguments without a help text, and those that take a value without a metavar."""
    no_help = [f"{path} {action.dest}" for path, action in found if not action.help]
    no_metavar = [
        f"{path} {action.dest}"
        for path, action in found
        if action.nargs != 0 and not action.metavar
    ]
    return no_help, no_metavar


@pytest.mark.parametrize("command", ["durable", "run_workflow_worker"])
def test_every_argument_has_help_and_a_metavar(command):
    found = arguments(command)
    assert len(found) > (40 if command == "durable" else 5)
    assert lacking(found) == ([], [])


def test_the_check_sees_what_is_missing():
    parser = argparse.ArgumentParser()
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")
    sub = groups.add_parser("x", help="X.")
    sub.add_argument("--limit", type=int, metavar="N")
    sub.add_argument("--name", help="A name.")
    sub.add_argument("--flag", action="store_true", help="A flag.")
    assert lacking(list(parsers(parser, "p"))) == (["p group", "p x limit"], ["p x name"])
    groups.add_parser("y")
    with pytest.raises(AssertionError, match="p y has no help"):
        list(parsers(parser, "p"))
