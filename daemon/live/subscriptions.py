"""Subscriptions: which countries a connection wants, and the rules that change them."""

from __future__ import annotations

Countries = frozenset[str] | None
"""A subscription: a set of ISO 3166-1 alpha-2 codes, or None for every country."""


class SubscriptionError(ValueError):
    """The requested change makes no sense for the current subscription; the client gets an error message."""


def add_countries(current: Countries, countries: Countries) -> Countries:
    """`subscribe`: None subscribes to all; codes are added (already included when subscribed to all)."""
    if current is None or countries is None:
        return None
    return current | countries


def remove_countries(current: Countries, countries: Countries) -> Countries:
    """`unsubscribe`: None unsubscribes from everything (empty set); codes are removed from an explicit set."""
    if countries is None:
        return frozenset()
    if current is None:
        raise SubscriptionError(
            "subscribed to all countries: send unsubscribe with countries null (nothing), "
            "then subscribe to the countries you want"
        )
    return current - countries
