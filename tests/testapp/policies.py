"""Access policies the API tests switch to."""

from django_durable.api.access import AccessPolicy


class OpenPolicy(AccessPolicy):
    """Lets anonymous users in and start any workflow declared for HTTP."""

    def allows(self, user):
        return True

    def can_start(self, user, workflow):
        return workflow.http_start


class AuditorPolicy(AccessPolicy):
    """Users named 'auditor' see every run of tests.add, one at a time."""

    def can_view(self, user, run):
        return super().can_view(user, run) or (
            user.username == "auditor" and run.workflow_name == "tests.add"
        )
