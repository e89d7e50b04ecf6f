"""The build's notebook clients poll their kernels in slices of a second (batchsize._kernel_polls): a lost
wake-up of an asyncio ZMQ socket once held a chapter for 600 s."""
from batchsize._kernel_polls import poll_in_slices


def setup(app):
    poll_in_slices()
    return {"parallel_read_safe": True, "parallel_write_safe": True}
