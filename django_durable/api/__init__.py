"""django-durable's HTTP API (Django REST framework).

Mount it with ``path("durable/", include("django_durable.api.urls"))``. Who may see and
operate which run is decided by the access policy (``DJANGO_DURABLE["API_ACCESS_POLICY"]``).
"""
