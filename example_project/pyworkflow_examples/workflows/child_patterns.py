"""pyworkflow's ``10_child_workflow_patterns.py``: nesting, parallel children, failures."""

from __future__ import annotations

import asyncio
from typing import Any

import django_durable as durable

from ..notes import note


@durable.step
async def do_work(name: str, duration: float = 0.1) -> dict[str, Any]:
    """Simulate some work."""
    await note(f"[{name}] Working for {duration}s...")
    await asyncio.sleep(duration)
    return {"name": name, "completed": True}


# No retries, so that the failure reaches the parent at once.
@durable.step(retry=durable.RetryPolicy(max_attempts=1))
async def failing_step() -> dict[str, Any]:
    """A step that always fails."""
    await note("Failing, as always")
    raise ValueError("This step always fails!")


# --- nesting: parent -> child -> grandchild ---------------------------------------------


@durable.workflow(name="pyworkflow.patterns_demo_level_3_workflow")
async def level_3_workflow(ctx: durable.AsyncContext, task_id: str) -> dict[str, Any]:
    """Grandchild workflow (nesting depth 2 below the top-level run)."""
    return await do_work(f"level3-{task_id}")


@durable.workflow(name="pyworkflow.patterns_demo_level_2_workflow")
async def level_2_workflow(ctx: durable.AsyncContext, task_id: str) -> dict[str, Any]:
    """Child workflow that spawns a grandchild."""
    grandchild_result = await ctx.run_child(level_3_workflow, task_id)
    return {"level2": task_id, "grandchild": grandchild_result}


@durable.workflow(name="pyworkflow.patterns_demo_level_1_workflow")
async def level_1_workflow(ctx: durable.AsyncContext) -> dict[str, Any]:
    """Parent of a child that has a child of its own."""
    child_result = await ctx.run_child(level_2_workflow, "nested-task")
    return {"level1": True, "child": child_result}


# --- parallel children ------------------------------------------------------------------


@durable.workflow(name="pyworkflow.patterns_demo_parallel_task_workflow")
async def parallel_task_workflow(
    ctx: durable.AsyncContext, task_id: str, duration: float
) -> dict[str, Any]:
    """A simple workflow for parallel execution."""
    result = await do_work(f"parallel-{task_id}", duration)
    return {"task_id": task_id, **result}


@durable.workflow(name="pyworkflow.patterns_demo_parallel_parent_workflow")
async def parallel_parent_workflow(ctx: durable.AsyncContext) -> dict[str, Any]:
    """Start three children at once, then wait for all of them."""
    handles = []
    for i in range(3):
        handle = await ctx.start_child(parallel_task_workflow, f"task-{i}", 0.1 * (i + 1))
        handles.append(handle)
    # Waits for every child, suspended: the results come in the order of the handles.
    results = await ctx.gather(*handles)
    return {"children_count": len(results), "results": results}


# --- a child's failure, caught by its parent --------------------------------------------


@durable.workflow(name="pyworkflow.patterns_demo_failing_child_workflow")
async def failing_child_workflow(ctx: durable.AsyncContext) -> dict[str, Any]:
    """A child workflow that fails."""
    await failing_step()
    return {"should": "never reach here"}


@durable.workflow(name="pyworkflow.patterns_demo_error_handling_parent_workflow")
async def error_handling_parent_workflow(ctx: durable.AsyncContext) -> dict[str, Any]:
    """Start a child that fails, and catch its failure."""
    try:
        await ctx.run_child(failing_child_workflow)
    except durable.ChildWorkflowFailed as e:
        return {
            "status": "child_failed",
            "error": e.error_message,
            "error_type": e.error_type,
            "child_run_id": e.run_id,
        }
    return {"status": "success"}
