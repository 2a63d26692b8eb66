"""nudge: purchase events -> customer state -> models -> campaigns, live or replayed on event time."""

__version__ = "0.1.0"
