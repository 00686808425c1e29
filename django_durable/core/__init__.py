"""The bottom layer: settings, statuses, retry policy, JSON, durations, names and cron.

Nothing here imports a model or does I/O; every other layer may import it.
"""
