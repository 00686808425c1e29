"""The shop's pages for shoppers, who have no login: place an order, then follow it."""

from django.urls import path

from . import views

app_name = "shop"

urlpatterns = [
    path("", views.place_order, name="place-order"),
    path("orders/<str:public_id>/", views.order_page, name="order"),
]
