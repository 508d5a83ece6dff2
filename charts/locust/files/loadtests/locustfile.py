"""The auth service under load: `locust -f loadtests/locustfile.py --host http://127.0.0.1:8000`.

What the run does is in loadtests/README.md: the clients (users.py) in the mix's proportions
(LOADTEST_MIX), the accounts seeded at the start (sharing.py), the shape (LOADTEST_SHAPE), and
the gate that decides the exit code (gate.py). Imports stay within the standard library, locust and
this package: the chart runs this file in the official Locust image, from a ConfigMap.
"""

from __future__ import annotations

import os

from locust import events

from loadtests import gate, options, shapes, sharing
from loadtests.users import ProfileEditor, ProfileReader, TokenVerifier, Visitor

__all__ = ["ProfileEditor", "ProfileReader", "TokenVerifier", "Visitor"]

events.init_command_line_parser.add_listener(options.add_arguments)
events.init.add_listener(sharing.on_init)
events.init.add_listener(gate.on_init)

# Locust runs the first shape class it finds in this module, and --class-picker offers them all:
# the one LOADTEST_SHAPE names comes first ("none": none, for Locust's own --users and --run-time).
OFFERED_SHAPES = {
    shape.__name__: shape for shape in shapes.offered(os.environ.get(shapes.SHAPE_ENV, shapes.DEFAULT_SHAPE))
}
globals().update(OFFERED_SHAPES)
__all__ += list(OFFERED_SHAPES)
