"""The shop's pages: place an order, then follow its checkout live on the order's page.

A shopper has no Django login. The order page's address holds a random public id (whoever
has the link is the shopper), and the page carries a per-run access token with which its
script talks to the run through the HTTP API mounted at ``/durable/``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache

import django_durable as durable

from .forms import OrderForm
from .models import Order
from .workflows import checkout

# The page's token lives this long. Short, because EventSource sends it in the stream's
# query string, where proxies and access logs may write it down: a copy found there later
# is of no use. A page left open longer says so and is reloaded, which makes a new one.
TOKEN_LIFETIME = timedelta(minutes=15)
# What the page's script needs: read the run and its progress, follow its "steps" stream,
# send it the approval. Nothing more (it cannot cancel or start anything).
TOKEN_ABILITIES = ("read", "stream", "send")


def place_order(request: HttpRequest) -> HttpResponse:
    """Show the order form; on a valid POST, create the order, start its checkout, go there."""
    form = OrderForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():  # the order and its run, together or not at all
            order = form.save()
            order.run_id = checkout.start(order.pk).id
            order.save(update_fields=["run_id"])
        return redirect("shop:order", public_id=order.public_id)
    return render(request, "shop/place_order.html", {"form": form})


@never_cache  # the page carries a token: no cache, proxy or back button may keep a copy
def order_page(request: HttpRequest, public_id: str) -> HttpResponse:
    """Show an order: live while its checkout runs, rendered here once it has finished."""
    order = get_object_or_404(Order, public_id=public_id)
    if order.run_id is None:  # one of the demo's orders: no checkout, no page
        raise Http404
    run = durable.get_run(order.run_id)
    context: dict[str, Any] = {"order": order, "progress": run.get_value("progress")}
    if run.is_finished:
        # Everything is on the page now, so no page needs a token any more: end those that
        # earlier visits were given instead of letting them run out.
        durable.revoke_tokens(run.id)
        context["steps"] = latest_states(run.read_stream("steps"))
        context["outcome"] = outcome(run)
    else:
        context["follow"] = follow_urls(run) | {
            "token": run.create_token(TOKEN_ABILITIES, TOKEN_LIFETIME)
        }
    return render(request, "shop/order.html", context)


def follow_urls(run: durable.RunHandle) -> dict[str, str]:
    """Return the API addresses the page's script uses, built here rather than in JavaScript."""
    return {
        "run": reverse("django_durable:run", args=[run.id]),
        "progress": reverse("django_durable:run-value", args=[run.id, "progress"]),
        "steps": reverse("django_durable:run-stream", args=[run.id, "steps"]),
        "messages": reverse("django_durable:run-messages", args=[run.id]),
    }


def latest_states(items: Any) -> list[dict[str, Any]]:
    """Return each step's latest state from the "steps" stream, in first-seen order."""
    steps: dict[str, dict[str, Any]] = {}
    for item in items:
        steps[item["step"]] = item
    return list(steps.values())


def outcome(run: durable.RunHandle) -> dict[str, str]:
    """Return a finished run's outcome as a heading and a line for the shopper.

    order.js words a run that finishes while the page is open the same way.
    """
    if run.status == durable.RunStatus.COMPLETED:
        result = run.result()
        if result.get("outcome") == "shipped":
            return {
                "kind": "shipped",
                "title": "Your order is on its way",
                "text": f"Tracking number: {result['tracking']}",
            }
        return {
            "kind": "cancelled",
            "title": "Order cancelled",
            "text": f"The order was {result['reason']}. The hold on your card was released.",
        }
    if run.status == durable.RunStatus.CANCELLED:
        return {"kind": "cancelled", "title": "Order cancelled", "text": "The shop cancelled it."}
    return {
        "kind": "failed",
        "title": "Something went wrong",
        "text": "We could not complete your order. Please contact the shop.",
    }
