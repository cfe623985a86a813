"""Settings: the engagement engine chosen by default, and the combinations refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ripple.settings import Settings


def test_auto_engine_is_batch_unless_exactly_once_is_asked_for(monkeypatch):
    assert Settings().engage_engine == "batch"
    assert Settings(engage_engine="auto").engage_engine == "batch"
    assert Settings(processing_guarantee="exactly_once").engage_engine == "faust"
    monkeypatch.setenv("RIPPLE_PROCESSING_GUARANTEE", "exactly_once")  # as an operator sets it
    assert Settings().engage_engine == "faust"


def test_an_engine_named_explicitly_is_kept():
    assert Settings(engage_engine="faust").engage_engine == "faust"
    assert Settings(engage_engine="batch").engage_engine == "batch"


def test_batch_engine_with_exactly_once_is_refused():
    with pytest.raises(ValidationError, match="does not use Kafka transactions"):
        Settings(engage_engine="batch", processing_guarantee="exactly_once")
