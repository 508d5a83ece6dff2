"""The baseline: the service's API written the straightforward FastAPI way, the "before" picture."""
