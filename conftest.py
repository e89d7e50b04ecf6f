"""Settings for the whole test session: library tests, the site test and the notebooks run by nbval."""
import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # The xdist workers share the machine's cores; one thread each (and in every kernel or build they start)
    # avoids the oversubscription that made a 1 s training run take 30 s.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Group tests for `--dist loadgroup`: one group per file, except that everything that starts Jupyter
    kernels (the notebooks run by nbval and the site test, which builds the book) shares one group.

    Kernels started at the same moment by two workers can be handed the same free TCP ports; a client then
    talks to the wrong kernel, a reply is lost and execution waits forever. Run on one worker, they start
    one after another.
    """
    for item in items:
        path = item.nodeid.split("::")[0]
        starts_kernels = path.endswith(".ipynb") or path == "tests/test_site.py"
        item.add_marker(pytest.mark.xdist_group("kernels" if starts_kernels else path))
