"""Tests for ddp.py: DistributedDataParallel under torchrun, two processes with gloo on the CPU."""
import subprocess
import sys

import pytest

from batchsize import ddp


@pytest.fixture(scope="module")
def ddp_result():
    try:
        return ddp.launch_ddp(nproc_per_node=2, per_worker_batch_size=8, accumulation_steps=3, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("torchrun did not finish in 240 s (is the loopback interface up?)")


def test_ddp_gradient_equals_single_process_gradient_on_the_concatenated_batch(ddp_result):
    r = ddp_result
    assert r["world_size"] == 2
    # float32 sums in a different order: a few ulps of the largest entry
    assert r["ddp_grad_max_diff"] <= 1e-6 * max(1.0, r["ddp_grad_max_abs"])
    # and the check can fail: one worker's local gradient is far from it
    assert r["local_grad_max_diff"] > 1e3 * max(r["ddp_grad_max_diff"], 1e-9)


def test_global_batch_is_per_worker_times_workers_times_accumulation(ddp_result):
    r = ddp_result
    assert r["global_batch_size"] == r["per_worker_batch_size"] * r["world_size"] * r["accumulation_steps"] == 48
    # the accumulated DDP gradient is the single-process gradient on exactly those 48 examples, not on half of them
    assert r["no_sync_grad_max_diff"] <= 1e-6 and r["every_step_grad_max_diff"] <= 1e-6
    assert r["half_batch_grad_max_diff"] > 1e3 * max(r["no_sync_grad_max_diff"], 1e-9)


def test_no_sync_accumulation_gives_the_same_update_with_one_allreduce(ddp_result):
    r = ddp_result
    assert r["no_sync_update_max_diff"] <= 1e-6
    assert r["no_sync_allreduce_calls"] == 1
    assert r["every_step_allreduce_calls"] == r["accumulation_steps"]
    # no_sync around backward only (forward outside) does not skip the all-reduce
    assert r["no_sync_backward_only_allreduce_calls"] == r["accumulation_steps"]


def test_distributed_sampler_reshuffles_only_with_set_epoch(ddp_result):
    r = ddp_result
    assert r["sampler_same_without_set_epoch"] and r["sampler_changes_with_set_epoch"]
    assert r["sampler_covers_dataset"]
    assert r["sampler_samples_per_epoch"] == 12 and r["dataset_size"] == 11  # padded by repeating one sample


def test_finder_under_ddp_agrees_on_every_rank(ddp_result):
    # rank 0 fits 100, rank 1 fits 137: every rank must use 100
    assert ddp_result["finder_per_rank"] == [100, 100]


def test_torchrun_command_names_the_module_and_rejects_bad_counts():
    cmd = ddp.torchrun_command("out.json", nproc_per_node=4)
    assert "--standalone" in cmd and "--nproc_per_node=4" in cmd and "batchsize.ddp" in cmd
    with pytest.raises(ValueError, match="nproc_per_node"):
        ddp.torchrun_command("out.json", nproc_per_node=0)


def test_the_package_does_not_import_ddp():
    """torchrun's workers run batchsize.ddp as __main__; imported by the package as well, it would run twice."""
    done = subprocess.run([sys.executable, "-c", "import sys, batchsize; print('batchsize.ddp' in sys.modules)"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stdout + done.stderr
