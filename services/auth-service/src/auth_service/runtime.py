"""Process-wide tuning for a long-running server: the garbage collector."""

from __future__ import annotations

import gc

from auth_service.settings import Settings


def tune_gc(settings: Settings) -> None:
    """Collect rarely, and never scan what start-up built (modules, app, pools: all long-lived).

    A request allocates many short-lived container objects; CPython's default gen-0 threshold (700)
    then runs a collection every few requests. Freezing moves everything alive now to a permanent
    generation that later collections skip.
    """
    gc.set_threshold(*settings.gc_thresholds)
    if settings.gc_freeze:
        gc.collect()
        gc.freeze()
