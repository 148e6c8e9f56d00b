"""The local stack starts the fake external systems and points the functions at them."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import pytest

from devstack.stack import LocalStack
from eventlog.settings import Settings


def test_the_stack_starts_the_fakes_points_the_functions_at_them_and_stops_them(settings: Settings) -> None:
    with LocalStack(port=0, endpoint_url=settings.endpoint_url, prefix=settings.prefix) as stack:
        assert stack.rates is not None
        assert stack.ledger is not None
        assert os.environ["ES_EXCHANGE_RATES_URL"] == stack.rates.url
        assert os.environ["ES_LEDGER_EXPORT_URL"] == stack.ledger.url
        exported = stack.environment()
        assert exported["ES_EXCHANGE_RATES_URL"] == stack.rates.url  # in the env file and the banner too
        assert stack.external_systems() == {
            "exchange rates": stack.rates.url,
            "ledger export": stack.ledger.url,
        }
        ledger_url = stack.ledger.url
    assert "ES_LEDGER_EXPORT_URL" not in os.environ
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{ledger_url}/entries", timeout=2)


def test_a_url_the_environment_names_is_used_instead_of_a_fake(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ES_LEDGER_EXPORT_URL", "https://ledger.example.com")

    with LocalStack(port=0, endpoint_url=settings.endpoint_url, prefix=settings.prefix) as stack:
        assert stack.ledger is None
        assert stack.rates is not None
        assert os.environ["ES_LEDGER_EXPORT_URL"] == "https://ledger.example.com"
        assert stack.external_systems()["ledger export"] == "https://ledger.example.com"
