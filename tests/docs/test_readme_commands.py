"""The README's commands are the real ones: every ``$ python manage.py ...`` line in it
parses with that command's own parser (they are not run: they name runs that do not exist),
and the README's Quickstart gives the SQLite options that the tutorial gives."""

from __future__ import annotations

import re
import shlex

import pytest
from django.core.management import get_commands, load_command_class

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
COMMANDS = re.findall(r"^\$ python manage\.py (.+)$", README, flags=re.MULTILINE)


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 5, COMMANDS  # the check below would pass on none


@pytest.mark.parametrize("line", COMMANDS)
def test_each_readme_command_parses(line):
    name, *args = shlex.split(line)
    commands = get_commands()
    assert name in commands, f"README names `manage.py {name}`, which does not exist"
    parser = load_command_class(commands[name], name).create_parser("manage.py", name)
    try:
        parser.parse_args(args)
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"`manage.py {line}` does not parse (exit {exc.code})")


def test_the_quickstart_gives_the_tutorial_s_sqlite_options():
    tutorial = (ROOT / "docs" / "tutorial.md").read_text()
    for option in ('"transaction_mode": "IMMEDIATE"', '"timeout": 20', "journal_mode=WAL"):
        assert option in README, option
        assert option in tutorial, option
