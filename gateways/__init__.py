"""Gateways to external systems (live, replay and fix modes). Built in its own issue."""
