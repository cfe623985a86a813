"""Argument types shared by the command lines: positive integers, alone or comma-separated.

>>> positive_ints("2000,10000")
[2000, 10000]
>>> positive_int("0")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: must be at least 1, got 0
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_ints(text: str) -> list[int]:
    """``"2000,10000"`` → ``[2000, 10000]``; an argparse error naming the text otherwise."""
    try:
        return [positive_int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
