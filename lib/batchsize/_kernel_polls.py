"""Jupyter clients that cannot sleep through a message: asyncio ZMQ polls in slices of at most a second.

An asyncio ZMQ socket is woken by an edge-triggered file descriptor, and a wake-up can be lost: the message then
sits in the client's socket while its poll waits out the whole timeout, and only the final check at the timeout
finds it. Seen in CI: a cell of chapter 1 whose reply had arrived was read after nbclient's 600 s timeout, and the
chapter passed, 10 minutes late. `poll_in_slices` makes every `get_msg` of jupyter_client's asyncio channels poll
in slices of `SLICE_S` seconds, each ending with that check, so a lost wake-up costs a second; timeouts and
results are unchanged. Every process that runs notebooks calls it: the book's build (_ext/kernel_polls.py), the
test session (conftest.py), the robustness harness and coursework's otter child; it needs jupyter_client, which the
library itself does not.
"""
import time
from queue import Empty

SLICE_S = 1.0


def poll_in_slices():
    """Patch jupyter_client's AsyncZMQSocketChannel.get_msg to poll in slices of SLICE_S seconds (idempotent)."""
    from jupyter_client.channels import AsyncZMQSocketChannel

    whole = AsyncZMQSocketChannel.get_msg
    if getattr(whole, "polls_in_slices", False):
        return

    async def get_msg(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await whole(self, SLICE_S if left is None else min(SLICE_S, left))
            except Empty:
                if left is not None and left <= SLICE_S:
                    raise

    get_msg.polls_in_slices = True
    get_msg.__doc__ = whole.__doc__
    AsyncZMQSocketChannel.get_msg = get_msg
