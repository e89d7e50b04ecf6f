"""Tests for _kernel_polls.py: asyncio Jupyter clients poll in slices, with the same timeouts and results."""
import asyncio
from queue import Empty

import pytest
from jupyter_client.channels import AsyncZMQSocketChannel

from batchsize import _kernel_polls


class Clock:
    """A monotonic clock that only the fake poll advances."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def sliced(monkeypatch):
    """get_msg patched over a fake whole poll: it answers after `ready_at` seconds of polling, or never (None)."""
    clock, calls, state = Clock(), [], {"ready_at": None}

    async def whole(self, timeout=None):
        calls.append(timeout)
        if state["ready_at"] is not None and clock.now + timeout >= state["ready_at"]:
            clock.now = max(clock.now, state["ready_at"])
            return {"msg": "reply"}
        clock.now += timeout
        raise Empty

    monkeypatch.setattr(AsyncZMQSocketChannel, "get_msg", whole)
    monkeypatch.setattr(_kernel_polls.time, "monotonic", clock)
    _kernel_polls.poll_in_slices()
    return AsyncZMQSocketChannel.get_msg, clock, calls, state


def test_a_timeout_is_kept_and_polled_in_slices(sliced):
    get_msg, clock, calls, _ = sliced
    with pytest.raises(Empty):
        asyncio.run(get_msg(None, timeout=2.5))
    assert calls == [1.0, 1.0, 0.5] and clock.now == 2.5


def test_a_message_is_returned_at_the_slice_it_arrives_in(sliced):
    get_msg, clock, calls, state = sliced
    state["ready_at"] = 1.7
    assert asyncio.run(get_msg(None, timeout=600)) == {"msg": "reply"}
    assert calls == [1.0, 1.0] and clock.now == 1.7


def test_no_timeout_polls_until_a_message(sliced):
    get_msg, clock, calls, state = sliced
    state["ready_at"] = 5.2
    assert asyncio.run(get_msg(None)) == {"msg": "reply"}
    assert calls == [1.0] * 6


def test_zero_timeout_polls_once(sliced):
    get_msg, _, calls, _ = sliced
    with pytest.raises(Empty):
        asyncio.run(get_msg(None, timeout=0))
    assert calls == [0.0]


def test_patching_twice_wraps_once(sliced):
    get_msg = sliced[0]
    _kernel_polls.poll_in_slices()
    assert AsyncZMQSocketChannel.get_msg is get_msg and get_msg.polls_in_slices


def test_a_real_kernel_answers_through_the_sliced_poll(kernel_start_lock):
    from jupyter_client.manager import start_new_async_kernel

    _kernel_polls.poll_in_slices()

    async def run():
        with kernel_start_lock:  # kernels start one at a time on this machine (conftest.py)
            km, kc = await start_new_async_kernel(kernel_name="python3", startup_timeout=120)
        try:
            msg_id = kc.execute("6 * 7", user_expressions={"x": "6 * 7"})
            while True:
                reply = await kc.shell_channel.get_msg(timeout=120)
                if reply["parent_header"].get("msg_id") == msg_id:
                    return reply
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=True)

    reply = asyncio.run(run())
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["user_expressions"]["x"]["data"]["text/plain"] == "42"
