"""The features stage's worker threads run one torch thread each."""

import torch

from audioclf.features.workers import worker_pool


def test_each_worker_thread_and_the_caller_run_one_torch_thread_and_the_caller_gets_its_back():
    threads = torch.get_num_threads()
    with worker_pool(2) as pool:
        seen = [pool.submit(torch.get_num_threads).result() for _ in range(4)]
        seen.append(torch.get_num_threads())
    assert seen == [1] * 5
    assert torch.get_num_threads() == threads
