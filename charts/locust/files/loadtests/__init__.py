"""Locust scenarios against the service, their pass/fail gates, and the capacity model."""
