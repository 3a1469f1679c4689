"""The features stage's worker threads run one torch, BLAS and OpenMP thread each."""

from concurrent.futures import ThreadPoolExecutor

import torch
from threadpoolctl import ThreadpoolController

from audioclf.features.workers import one_thread_each, single_threaded_kernels


def _pools_seen_here() -> tuple[int, dict[str, int]]:
    """torch's threads and each BLAS/OpenMP library's, as the calling thread sees them."""
    info = ThreadpoolController().info()
    return torch.get_num_threads(), {p["filepath"]: p["num_threads"] for p in info}


def test_each_worker_thread_and_the_caller_run_one_thread_of_every_pool():
    threads = torch.get_num_threads()
    with (
        single_threaded_kernels() as pools,
        ThreadPoolExecutor(2, initializer=one_thread_each, initargs=(pools,)) as pool,
    ):
        seen = [pool.submit(_pools_seen_here).result() for _ in range(4)] + [_pools_seen_here()]
    assert any(p.get("user_api") == "openmp" for p in pools.info())  # torch's OpenMP is there
    for torch_threads, libraries in seen:
        assert torch_threads == 1 and set(libraries.values()) == {1}, libraries
    assert torch.get_num_threads() == threads  # the caller's setting comes back
