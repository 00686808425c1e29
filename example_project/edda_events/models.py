"""What the payment service knows: the payments it received, by order.

Edda's ``order_with_timeout`` waits a while, then asks the payment service whether the order
was paid (``check_payment_status``). Here the payment service is this table: the demo records
a payment in it while a run sleeps, as the service would when the customer pays.
"""

from django.db import models


class Payment(models.Model):
    """A payment the payment service received for an order."""

    order_id = models.CharField(max_length=100, unique=True)
    transaction_id = models.CharField(max_length=100)
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.amount} for {self.order_id} ({self.transaction_id})"
