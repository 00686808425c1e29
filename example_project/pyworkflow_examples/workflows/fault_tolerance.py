"""pyworkflow's ``06_fault_tolerance.py``: a data pipeline that survives its worker's death."""

from __future__ import annotations

import asyncio
from typing import Any

import django_durable as durable
from example_project.demos.timing import scaled

from ..notes import note

# The seed's sleep("10s") between steps, at the demo's speed.
PAUSE = scaled(seconds=10)
# The seed's simulated work (2 s, 2 s, 3 s, 2 s) at a quarter of it: long enough for the
# demo to kill the worker in the middle of the transform, as the seed suggests.
WORK_SECONDS = {"fetch": 0.5, "validate": 0.5, "transform": 0.75, "load": 0.5}


@durable.step
async def fetch_data(data_id: str) -> dict[str, Any]:
    """Fetch data from external source."""
    await note(f"Fetching data for {data_id}...")
    await asyncio.sleep(WORK_SECONDS["fetch"])  # Simulate network delay
    return {"data_id": data_id, "records": 1000, "fetched": True}


@durable.step
async def validate_data(data: dict[str, Any]) -> dict[str, Any]:
    """Validate the fetched data."""
    await note(f"Validating {data['records']} records...")
    await asyncio.sleep(WORK_SECONDS["validate"])  # Simulate validation time
    return {**data, "valid_records": 950, "validated": True}


@durable.step
async def transform_data(data: dict[str, Any]) -> dict[str, Any]:
    """Transform data for processing."""
    await note(f"Transforming {data['valid_records']} records...")
    await asyncio.sleep(WORK_SECONDS["transform"])  # Simulate CPU-intensive work
    return {**data, "transformed_records": 950, "transformed": True}


@durable.step
async def load_data(data: dict[str, Any]) -> dict[str, Any]:
    """Load transformed data into destination."""
    await note(f"Loading {data['transformed_records']} records...")
    await asyncio.sleep(WORK_SECONDS["load"])  # Simulate database writes
    return {**data, "loaded": True}


@durable.step
async def send_notification(data: dict[str, Any]) -> dict[str, Any]:
    """Send completion notification."""
    await note(f"Sending notification for {data['data_id']}...")
    return {**data, "notified": True}


@durable.workflow(name="pyworkflow.data_pipeline")
async def data_pipeline(ctx: durable.AsyncContext, data_id: str) -> dict[str, Any]:
    """Fetch, validate, transform, load, notify, with pauses between.

    Recovery needs no option: when the worker running this dies, its lease expires and
    another worker takes the run over, replays the steps already recorded (their bodies do
    not run again) and executes the rest. Only the step that was executing when the worker
    died runs again: steps are at-least-once. ``MAX_RECOVERIES`` (a setting, 5 by default)
    bounds how many times in a row a run is taken over before it fails.
    """
    data = await fetch_data(data_id)
    await ctx.sleep(PAUSE, name="before-validate")
    data = await validate_data(data)
    await ctx.sleep(PAUSE, name="before-transform")
    data = await transform_data(data)
    await ctx.sleep(PAUSE, name="before-load")
    data = await load_data(data)
    data = await send_notification(data)
    return data
