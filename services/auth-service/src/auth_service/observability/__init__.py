"""Telemetry: traces, metrics, logs and profiles."""
