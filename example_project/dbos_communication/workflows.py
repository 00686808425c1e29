"""DBOS's workflow communication examples (seed 002), written with django-durable.

- ``values_workflow`` publishes its progress (0-100 %), its status and its result, which
  clients read one by one or all at once (DBOS's ``set_event``/``get_event``).
- ``messages_workflow``, an ``async def`` workflow, waits for an approval message, with a
  timeout, then runs its steps or stops (DBOS's ``recv_async``/``send``).
- ``streams_workflow`` writes its progress and results to a stream that clients read
  live, or page by page (DBOS's ``write_stream``/``read_stream``).

Each can be started over HTTP (``http_start=True``): ``POST /durable/runs/`` plays the part
of the seed's ``POST /start-workflow-.../{workflow_id}/{steps}``, with the seed's workflow
id as the idempotency key. ``python manage.py demo dbos-values dbos-messages dbos-streams``
runs them.
"""

from __future__ import annotations

import time
from typing import Any

import django_durable as durable
from example_project.demos.timing import scaled

# Each step pauses this long, standing in for real work, so that a client sees the
# progress move and the stream grow while the run works.
WORK_SECONDS = 0.25
# How long a run waits for its approval: a day, two seconds in the demo.
APPROVAL_TIMEOUT = scaled(days=1)
# What ctx.recv returns when the timeout passes: no message can be this object.
NO_ANSWER = object()
STREAM_KEY = "progress_stream"


def fibonacci(n: int) -> int:
    """Return the n-th Fibonacci number."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def compute(step: int) -> dict[str, int]:
    """The seed's work for one step: a Fibonacci number (step 1 computes fib(30))."""
    time.sleep(WORK_SECONDS)
    n = 29 + step
    return {"n": n, "fibonacci": fibonacci(n)}


# --- values: what clients query ------------------------------------------------------


@durable.workflow(name="dbos.values", http_start=True)
def values_workflow(ctx: durable.Context, steps: int) -> dict[str, Any]:
    """Run ``steps`` steps, publishing progress and status, and finally the result."""
    ctx.set_progress(0, steps, "starting")
    results = []
    for step in range(1, steps + 1):
        ctx.set_value("status", f"Running step {step}/{steps}")
        results.append(ctx.step(f"step-{step}", compute, step))
        ctx.set_progress(step, steps, f"step {step} of {steps} done")
    ctx.set_value("status", "Completed")
    result = {"steps": steps, "results": results}
    ctx.set_value("result", result)
    return result


# --- messages: approve or reject a waiting run -----------------------------------------


@durable.workflow(name="dbos.messages", http_start=True)
async def messages_workflow(ctx: durable.AsyncContext, steps: int) -> dict[str, Any]:
    """Wait for an approval on topic "notification"; run the steps only if approved.

    An ``async def`` workflow, as DBOS's: ``await ctx.recv()`` suspends the run (stored as
    ``waiting``, it holds no worker and blocks no event loop) until a message comes.
    """
    await ctx.set_value("status", "Waiting for approval")
    notification = await ctx.recv("notification", timeout=APPROVAL_TIMEOUT, default=NO_ANSWER)
    if notification is NO_ANSWER:
        await ctx.set_value("status", "Timed out")
        return {"outcome": "timed out"}
    if not (isinstance(notification, dict) and notification.get("approved") is True):
        await ctx.set_value("status", "Rejected")
        return {"outcome": "rejected", "notification": notification}
    await ctx.set_value("status", "Approved")
    results = [await ctx.step(f"step-{step}", compute, step) for step in range(1, steps + 1)]
    await ctx.set_value("status", "Completed")
    return {"outcome": "approved", "notification": notification, "results": results}


# --- streams: a run writes items, clients read them live ---------------------------------


def write(ctx: durable.Context, item: dict[str, Any]) -> int:
    """Append ``item`` to the stream with a timestamp (``ctx.now()``: recorded once)."""
    return ctx.write_stream(STREAM_KEY, {"timestamp": ctx.now().timestamp(), **item})


@durable.workflow(name="dbos.streams", http_start=True)
def streams_workflow(ctx: durable.Context, steps: int) -> dict[str, Any]:
    """Stream a start line, then each step's progress and result; close the stream."""
    write(ctx, {"type": "start", "message": f"Workflow started with {steps} steps"})
    for step in range(1, steps + 1):
        message = f"Starting step {step}/{steps}"
        write(ctx, {"type": "progress", "step": step, "total_steps": steps, "message": message})
        result = ctx.step(f"step-{step}", compute, step)
        write(ctx, {"type": "result", "step": step, "result": result})
    items = write(ctx, {"type": "complete", "message": "Workflow completed"}) + 1
    ctx.close_stream(STREAM_KEY)  # readers that follow the stream stop here
    return {"steps": steps, "total_messages": items}
