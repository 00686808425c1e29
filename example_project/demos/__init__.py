"""``manage.py demo``: every scenario of the seeds this app was built from, run end to end.

Each example app keeps its workflows in ``workflows.py`` and its scenario in ``scenario.py``:
a function, registered with :func:`~example_project.demos.registry.scenario`, that starts
runs, talks to them as its seed's documents do, and measures from the database what
happened, failing loudly when something did not. ``manage.py demo`` runs them all in order;
``demo --list`` names them and ``demo NAME`` runs one.
"""
