"""auth_service: a high-throughput user and token service."""

__version__ = "0.1.0"
