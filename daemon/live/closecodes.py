"""The websocket close codes the live feed ends connections with."""

from __future__ import annotations

# RFC 6455 section 7.4; 4000-4999 are for applications.
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
POLICY_VIOLATION = 1008
"""Sent to a client that sends messages faster than live.message_rate allows."""
LAGGING = 4000
"""Our code: the client dropped more than `LAG_LIMIT_FACTOR * queue_size` starts without catching up."""
