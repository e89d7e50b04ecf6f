"""Settings for the whole test session: library tests, the site test and the notebooks run by nbval."""
import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # The xdist workers share the machine's cores; one thread each (and in every kernel or build they start)
    # avoids the oversubscription that made a 1 s training run take 30 s.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
