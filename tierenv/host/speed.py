"""How fast a simulated kernel (``tierenv fakehost``) may run against real time."""

from __future__ import annotations

# Simulated seconds per second. Below a thousandth a control interval lasts minutes to days
# (and a tiny speed overflowed the clock's wait); above a thousand the host cannot keep up.
MIN_SPEED = 1e-3
MAX_SPEED = 1e3


def check_speed(speed: float) -> float:
    """``speed`` if it is in [MIN_SPEED, MAX_SPEED] (NaN and infinity refused)."""
    if not MIN_SPEED <= speed <= MAX_SPEED:  # NaN fails too
        raise ValueError(
            f"speed (simulated seconds per second) must be in [{MIN_SPEED:g}, {MAX_SPEED:g}], "
            f"got {speed}"
        )
    return float(speed)
