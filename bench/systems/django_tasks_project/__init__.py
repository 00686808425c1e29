"""The Django project django-tasks-db runs in: bench/settings.py's database, its own apps."""
