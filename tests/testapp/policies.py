"""Access policies the API tests switch to."""

from django_durable.api.access import AccessPolicy


class OpenPolicy(AccessPolicy):
    """Lets anonymous users in and start any workflow declared for HTTP."""

    def allows(self, user, *, request=None):
        return True

    def can_start(self, user, workflow, *, request=None):
        return workflow.http_start


class AuditorPolicy(AccessPolicy):
    """Users named 'auditor' see every run of tests.add, one at a time."""

    def can_view(self, user, run, *, request=None):
        return super().can_view(user, run, request=request) or (
            user.username == "auditor" and run.workflow_name == "tests.add"
        )


class ApiKeyPolicy(AccessPolicy):
    """Lets a request with the header ``X-Api-Key: sesame`` read every run (a project's scheme)."""

    def allows(self, user, *, request=None):
        return self._keyed(request) or super().allows(user, request=request)

    def can_view(self, user, run, *, request=None):
        return self._keyed(request) or super().can_view(user, run, request=request)

    def visible_runs(self, user, runs, *, request=None):
        return runs if self._keyed(request) else super().visible_runs(user, runs, request=request)

    @staticmethod
    def _keyed(request):
        return request is not None and request.headers.get("X-Api-Key") == "sesame"


class OldStylePolicy(AccessPolicy):
    """A hook written before hooks received the request."""

    def can_view(self, user, run):
        return True
