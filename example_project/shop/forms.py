"""The shop's one form: what a shopper fills in to place an order."""

from decimal import Decimal

from django import forms

from .models import Order


class OrderForm(forms.ModelForm):
    """A name and an amount; the rest of an order is filled in by its checkout."""

    amount = forms.DecimalField(
        label="Amount in euros",
        min_value=Decimal("0.01"),
        max_digits=10,
        decimal_places=2,
        initial=Decimal("42.00"),
    )

    class Meta:
        model = Order
        fields = ("customer", "amount")
        labels = {"customer": "Your name"}
