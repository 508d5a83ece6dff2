"""A command run in the background for the length of a block, its output read through a pipe."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def background(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """The process, stdout piped and stderr dropped; killed if still running at the end."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()
