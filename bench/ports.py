"""TCP ports of this machine that nothing listens on: the kernel's picks, released at once."""

from __future__ import annotations

import contextlib
import socket


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports. Each socket stays bound until all are picked: released one at a
    time, the kernel may hand out the same port twice (seen: a service given one port for its API and
    its admin server, which then failed to bind the second)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port() -> int:
    return free_ports(1)[0]
