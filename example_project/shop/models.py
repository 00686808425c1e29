"""Orders, and a log of which process executed which step (the demo measures with it)."""

import secrets

from django.db import models


def new_public_id() -> str:
    """Return a random id for an order's page: 128 bits, too many to guess."""
    return secrets.token_urlsafe(16)


class Order(models.Model):
    """A customer's order, moved along by ``shop.fulfill_order`` or ``shop.checkout``."""

    class Status(models.TextChoices):
        # Placed; nothing has happened yet.
        NEW = "new", "New"
        # The items are set aside in the warehouse.
        RESERVED = "reserved", "Reserved"
        # Handed to the carrier; ``tracking`` is set.
        SHIPPED = "shipped", "Shipped"
        # Not approved by the shopper (in time); the items went back on the shelf.
        CANCELLED = "cancelled", "Cancelled"

    customer = models.CharField(max_length=100)
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    tracking = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    # The order page's address: the shopper has no login, so the URL is their key. Not the
    # primary key, which anyone could count through.
    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    # The ``shop.checkout`` run that moves the order along (the demo's orders have none).
    run_id = models.UUIDField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"Order #{self.pk} for {self.customer} ({self.status})"


class StepLog(models.Model):
    """One execution of a step body, by the process ``pid``.

    Written by the body itself, so it counts every execution: in an atomic step it
    commits (or rolls back) with the checkpoint, in a plain step it stays even when the
    worker dies before the checkpoint.
    """

    run_id = models.CharField(max_length=64, db_index=True)
    step = models.CharField(max_length=100)
    pid = models.IntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.step} of run {self.run_id} in pid {self.pid}"
