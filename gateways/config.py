"""The gateways' settings, read from the environment (never at import time).

ES_EXCHANGE_RATES_URL   the exchange-rate service (the example's external query)
ES_LEDGER_EXPORT_URL    the ledger-export service (the example's external update)
ES_GATEWAY_MISSING      error (default) | skip | live: what a replay does without a recording it needs
ES_GATEWAY_TIMEOUT_S    seconds to connect and to wait for each answer (default 5)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from gateways.types import MISSING_POLICIES, MissingPolicy


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Where the external systems are and how the gateways behave."""

    exchange_rates_url: str | None = None
    ledger_export_url: str | None = None
    missing: MissingPolicy = "error"
    timeout_s: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        """Read the settings; ValueError (one line) for a value that cannot work."""
        env = os.environ if environ is None else environ
        missing = (env.get("ES_GATEWAY_MISSING") or "error").strip().lower()
        if missing not in MISSING_POLICIES:
            raise ValueError(f"ES_GATEWAY_MISSING={missing!r} must be one of {', '.join(MISSING_POLICIES)}")
        timeout_text = env.get("ES_GATEWAY_TIMEOUT_S") or "5"
        try:
            timeout = float(timeout_text)
        except ValueError:
            timeout = 0.0
        if not 0 < timeout <= 60:
            raise ValueError(f"ES_GATEWAY_TIMEOUT_S={timeout_text!r} must be a number of seconds, 0-60")
        return cls(
            exchange_rates_url=env.get("ES_EXCHANGE_RATES_URL") or None,
            ledger_export_url=env.get("ES_LEDGER_EXPORT_URL") or None,
            missing=missing,
            timeout_s=timeout,
        )
