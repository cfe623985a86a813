"""Settings: values read from the environment, and the values refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ripple.settings import Settings


def test_processing_guarantee_is_read_from_the_environment(monkeypatch):
    assert Settings().processing_guarantee == "at_least_once"
    monkeypatch.setenv("RIPPLE_PROCESSING_GUARANTEE", "exactly_once")  # as an operator sets it
    assert Settings().processing_guarantee == "exactly_once"


def test_an_unknown_processing_guarantee_is_refused():
    with pytest.raises(ValidationError, match="processing_guarantee"):
        Settings(processing_guarantee="at_most_once")


def test_the_engine_setting_is_gone():
    """One engagement engine: an old ``RIPPLE_ENGAGE_ENGINE`` is ignored like any unknown variable."""
    assert "engage_engine" not in Settings.model_fields


def test_sasl_without_credentials_is_refused():
    with pytest.raises(ValidationError, match="needs RIPPLE_SASL_USERNAME"):
        Settings(security_protocol="SASL_SSL")
