"""Orchestration: cron schedules and event triggers, which start runs through the client."""
