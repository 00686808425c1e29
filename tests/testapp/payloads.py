"""Pydantic models for typed events (pydantic is an optional extra of django-durable)."""

from pydantic import BaseModel


class Payment(BaseModel):
    amount: float
    currency: str
