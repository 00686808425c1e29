"""The worker: the loop that owns time and I/O.

It claims runs and hands them to the engine, stores their outcomes, renews their leases,
and does the rounds every worker shares (due timers, lost runs, schedules, triggers).
``Worker`` is public: ``from django_durable import Worker`` to embed one in a process.
"""
