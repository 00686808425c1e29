"""pyworkflow's ``02_long_running.py``: onboarding emails with durable sleeps between them."""

from __future__ import annotations

from typing import Any

import django_durable as durable
from example_project.demos.timing import scaled

from ..notes import note

# The seed's sleep("30s"), at the demo's speed (example_project/demos/timing.py).
BETWEEN_EMAILS = scaled(seconds=30)


@durable.step
async def send_welcome_email(user_id: str) -> dict[str, Any]:
    """Send welcome email to new user."""
    await note(f"Sending welcome email to {user_id}...")
    return {"user_id": user_id, "welcome_sent": True}


@durable.step
async def send_tips_email(user: dict[str, Any]) -> dict[str, Any]:
    """Send helpful tips email after delay."""
    await note(f"Sending tips email to {user['user_id']}...")
    return {**user, "tips_sent": True}


@durable.step
async def send_survey_email(user: dict[str, Any]) -> dict[str, Any]:
    """Send feedback survey after delay."""
    await note(f"Sending survey email to {user['user_id']}...")
    return {**user, "survey_sent": True}


@durable.workflow(name="pyworkflow.onboarding_workflow")
async def onboarding_workflow(ctx: durable.AsyncContext, user_id: str) -> dict[str, Any]:
    """Send the welcome email now, the tips after a pause, the survey after another.

    During each sleep the run is stored ``waiting`` and its worker goes on to other runs;
    when the time comes, a worker claims it again and replays it past the sleep.
    """
    user = await send_welcome_email(user_id)
    await ctx.sleep(BETWEEN_EMAILS, name="before-tips")
    user = await send_tips_email(user)
    await ctx.sleep(BETWEEN_EMAILS, name="before-survey")
    user = await send_survey_email(user)
    return user
