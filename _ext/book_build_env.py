"""Tells the kernels of a book build that they run inside it (batchsize.prose glues quoted values only there)."""
import os

from batchsize.prose import BUILD_ENV


def setup(app):
    # Kernels started by myst-nb inherit this process's environment.
    os.environ[BUILD_ENV] = "1"
    return {"parallel_read_safe": True, "parallel_write_safe": True}
