"""The public face: ``import django_durable`` offers every name the Python API reference
documents, and nothing that needs the models until Django is set up."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import django_durable as durable

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference" / "python-api.md"


def documented_names() -> set[str]:
    """Return the names of the reference's ``### `name``` headings, before its Testing part."""
    text = REFERENCE.read_text().split("\n## Testing")[0]
    headings = re.findall(r"^### (.+)$", text, flags=re.MULTILINE)
    return {name for heading in headings for name in re.findall(r"`(\w+)`", heading)}


def test_every_documented_name_is_importable_from_the_package():
    names = documented_names()
    assert {"workflow", "start", "RunHandle", "watch_value", "Worker"} <= names
    missing = sorted(name for name in names if name not in durable.__all__)
    assert missing == []
    for name in names:
        assert getattr(durable, name) is not None


def test_all_names_resolve_and_no_module_is_re_exported():
    for name in durable.__all__:
        value = getattr(durable, name)
        assert not isinstance(value, types.ModuleType), name
    assert "client" not in durable.__all__ and "store" not in durable.__all__


def test_importing_the_package_loads_no_model_and_no_lower_layer_it_does_not_need():
    # A fresh interpreter, Django not set up: as in a settings module or an apps.py.
    code = (
        "import sys, django_durable as d\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('django_durable.'))\n"
        "print('\\n'.join(loaded))\n"
        "d.workflow, d.step, d.RetryPolicy, d.RunStatus, d.DurableError\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "django_durable.declarations.workflows" in loaded
    for heavy in ("models", "client", "engine", "worker", "store", "api", "admin"):
        assert not any(
            module == f"django_durable.{heavy}" or module.startswith(f"django_durable.{heavy}.")
            for module in loaded
        ), (heavy, loaded)


def test_the_testing_module_offers_what_the_reference_documents():
    from django_durable import testing

    section = REFERENCE.read_text().split("\n## Testing")[1].split("\n## ")[0]
    imports = re.findall(r"^from django_durable\.testing import (.+)$", section, re.MULTILINE)
    documented = {name.strip() for line in imports for name in line.split(",")}
    assert {"run_until_finished", "time_machine", "skip", "TimeMachine"} <= documented
    assert documented == set(testing.__all__)
    for name in testing.__all__:
        assert getattr(testing, name) is not None


def test_first_of_and_callbacks_are_public():
    names = {
        "Callback", "CallbackClosed", "CallbackFailed", "CallbackNotFound", "CallbackTimeout",
        "Winner", "event", "message", "timer", "complete_callback", "fail_callback",
        "acomplete_callback", "afail_callback",
    }  # fmt: skip
    assert names <= set(durable.__all__)
    assert {"Callback", "Winner", "event", "timer", "complete_callback"} <= documented_names()
    assert durable.timer(5).seconds == 5.0
    assert durable.message().topic == ""
    assert issubclass(durable.CallbackTimeout, TimeoutError)
    assert issubclass(durable.CallbackNotFound, LookupError)
