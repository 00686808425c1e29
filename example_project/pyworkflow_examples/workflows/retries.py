"""pyworkflow's ``03_retries.py``: a flaky API, ``RetryableError``, ``FatalError``, backoff."""

from __future__ import annotations

from typing import Any

import django_durable as durable
from example_project.demos.timing import scaled

from ..notes import note

# The seed's retry_after="5s", at the demo's speed.
RETRY_AFTER = scaled(seconds=5).total_seconds()

# The seed's @step(max_retries=3): four attempts in all. Other exceptions wait 0.2 s, then
# 0.4 s, then 0.8 s (exponential backoff; no jitter, so that the demo can measure it).
API_RETRY = durable.RetryPolicy(max_attempts=4, initial_delay=0.2, backoff=2.0, jitter=0.0)

# The seed rolls a die (30% retryable, 10% fatal). Here each endpoint answers the same way
# every time, attempt after attempt, so that every demo shows the same.
API_ANSWERS = {
    "/api/data": ["busy", "busy", "ok"],
    "/api/slow": ["timeout", "timeout", "timeout", "ok"],
    "/api/invalid": ["invalid"],
}


@durable.step(retry=API_RETRY)
async def flaky_api_call(endpoint: str) -> dict[str, Any]:
    """Call a flaky API: busy (retry after 5 s), timing out (backoff), or invalid (fatal)."""
    attempt = durable.step_info().attempt
    await note(f"Calling API: {endpoint}...")
    answers = API_ANSWERS[endpoint]
    answer = answers[min(attempt, len(answers)) - 1]
    if answer == "busy":
        raise durable.RetryableError("API temporarily unavailable", retry_after=RETRY_AFTER)
    if answer == "timeout":
        raise TimeoutError(f"{endpoint} did not answer in time")
    if answer == "invalid":
        raise durable.FatalError("API returned invalid response - cannot retry")
    return {"endpoint": endpoint, "status": "success", "data": {"value": 42}}


@durable.step
async def process_response(response: dict[str, Any]) -> dict[str, Any]:
    """Process the API response."""
    await note(f"Processing response from {response['endpoint']}...")
    return {**response, "processed": True}


@durable.workflow(name="pyworkflow.retry_demo_workflow")
async def retry_demo_workflow(ctx: durable.AsyncContext, endpoint: str) -> dict[str, Any]:
    """Call the API until it answers (or fails for good), then process the answer.

    Between attempts the run waits without holding a worker. A ``FatalError`` fails the
    step, and the run, at once.
    """
    response = await flaky_api_call(endpoint)
    result = await process_response(response)
    return {"message": "API call and processing succeeded", **result}
