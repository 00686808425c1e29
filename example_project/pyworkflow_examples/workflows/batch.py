"""pyworkflow's ``04_batch_processing.py``: fetch items, process each as a step, aggregate."""

from __future__ import annotations

from typing import Any

import django_durable as durable

from ..notes import note


@durable.step
async def fetch_batch_items(batch_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """Fetch items to process in this batch."""
    await note(f"Fetching batch {batch_id} with limit {limit}...")
    # Simulate fetching items from database
    return [{"id": f"item-{i}", "batch_id": batch_id} for i in range(min(limit, 10))]


@durable.step
async def process_item(item: dict[str, Any]) -> dict[str, Any]:
    """Process a single item."""
    await note(f"Processing item {item['id']}...")
    return {**item, "processed": True, "result": f"processed_{item['id']}"}


@durable.step
async def aggregate_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate processing results."""
    successful = len([r for r in results if r.get("processed")])
    await note(f"Aggregating {len(results)} results ({successful} successful)...")
    return {"total": len(results), "successful": successful, "failed": len(results) - successful}


@durable.workflow(name="pyworkflow.batch_workflow")
async def batch_workflow(ctx: durable.AsyncContext, batch_id: str, limit: int = 100) -> dict:
    """Fetch the batch, process its items one by one, and sum up.

    Each item's processing is a step of its own: a run taken over half-way through its
    items starts again at the first item without a checkpoint.
    """
    items = await fetch_batch_items(batch_id, limit)
    results = []
    for item in items:
        result = await process_item(item)
        results.append(result)
    summary = await aggregate_results(results)
    return {"batch_id": batch_id, **summary}
