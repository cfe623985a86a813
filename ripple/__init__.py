"""Ripple: live recommendations and suggested replies from engagement streams."""

__version__ = "0.1.0"
