"""Shared test set-up."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test runs with one intra-op thread: the tensors here are tiny, and on a busy 2-core machine OpenMP
    threads spinning at barriers make 2-thread convolutions 10-40x slower. The previous setting is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
