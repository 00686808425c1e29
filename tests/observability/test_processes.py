"""In other processes: a real worker's signals, a process without OpenTelemetry, and one
whose TracerProvider is set after django-durable first looked for it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from django.db import connection

from django_durable.models import Run, RunStatus
from tests.conftest import ROOT, wait_for
from tests.testapp import workflows as wf
from tests.testapp.models import Execution

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = ("--lease", "2", "--poll-interval", "0.1")


def test_a_worker_process_sends_the_signals_and_survives_a_broken_receiver(worker_processes):
    added = wf.add.start(1, 2)
    boom = wf.boom.start()
    flaky = wf.flaky.start(1)
    # Its receivers write a row per signal; another one always raises (tests/testapp).
    proc = worker_processes.start(*FAST, extra_env={"DURABLE_TEST_RECORD_SIGNALS": "1"})
    runs = Run.objects.filter(pk__in=[added.id, boom.id, flaky.id])
    wait_for(lambda: all(run.is_terminal for run in runs.all()), 60, "the runs finished")
    expected = {
        added.id: {"signal:run_started", "signal:run_finished:completed"},
        boom.id: {"signal:run_started", "signal:run_finished:failed", "signal:run_failed"},
        flaky.id: {
            "signal:run_started",
            "signal:step_retried",
            "signal:run_finished:completed",
        },
    }

    def heard() -> dict[str, set[str]]:
        rows = Execution.objects.filter(label__startswith="signal:")
        found: dict[str, set[str]] = {}
        for row in rows:
            found.setdefault(row.run_id, set()).add(row.label)
        return found

    wait_for(lambda: heard() == expected, 30, f"the signals: {heard()}")
    rows = Execution.objects.filter(label__startswith="signal:")
    assert set(rows.values_list("pid", flat=True)) == {proc.pid}  # sent in the worker
    assert rows.count() == 8  # each once
    assert Run.objects.get(pk=flaky.id).status == RunStatus.COMPLETED
    assert proc.poll() is None  # the broken receiver broke nothing
    assert worker_processes.logs().count("RuntimeError: a broken receiver); the run goes on") == 3


def run_script(code: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter set up on the test database; return its output."""
    prelude = textwrap.dedent(
        """
        import django
        django.setup()
        from django_durable import Worker
        from django_durable.models import Run
        from tests.testapp import workflows as wf
        """
    )
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DURABLE_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
        "PYTHONPATH": str(ROOT),
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_without_the_opentelemetry_api_runs_work_and_nothing_of_it_is_imported(tmp_path):
    # A blocked import is what a missing package looks like: ImportError, from the start.
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text('import sys\nsys.modules["opentelemetry"] = None\n')
    out = run_script(
        """
        import sys
        handle = wf.step_function.start(3)
        Worker().run_once()
        assert handle.result(timeout=5) == 12
        assert Run.objects.get(pk=handle.id).trace_context is None
        from django_durable.core import telemetry
        assert not telemetry.enabled()
        print(sorted(n for n in sys.modules if n.startswith("opentelemetry.")))
        """,
        PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}",
    )
    assert out.strip() == "[]"


def test_a_tracer_provider_set_after_the_first_run_is_used_from_then_on():
    out = run_script(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        before = wf.add.start(1, 2)
        Worker().run_once()  # django-durable looked for a provider: there was none
        assert Run.objects.get(pk=before.id).trace_context is None
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        after = wf.add.start(2, 3)
        Worker().run_once()
        assert after.result(timeout=5) == 5
        assert "traceparent" in Run.objects.get(pk=after.id).trace_context
        print(sorted(span.name for span in exporter.get_finished_spans()))
        """
    )
    assert out.strip() == "['durable.run tests.add', 'durable.start tests.add', 'durable.step add']"
