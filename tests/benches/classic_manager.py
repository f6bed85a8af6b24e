"""The classic pattern crowdfactor replaces, as the reference for the load benchmark.

A port to Python 3 of the multiprocessing "manager" example this project grew
from: a SyncManager serves a job queue and a result queue over TCP; client
processes connect to it, take chunks with get_nowait() and put a dict of
factorizations on the result queue; the server collects results through the
manager until it has them all.

Measures chunk round trips per second (one get + one put per chunk) with
one-number chunks of small numbers, so the factoring itself costs nothing and
the figure is the queue's. Prints one line: `round_trips_per_s=<float> ...`.
"""

import argparse
import multiprocessing
import queue
import time
from multiprocessing.managers import SyncManager

AUTHKEY = b"crowdfactor-bench"


def factorize_naive(n):
    """Naive trial division, as in the original example."""
    factors = []
    p = 2
    while True:
        if n == 1:
            return factors
        if n % p == 0:
            factors.append(p)
            n = n // p
        elif p * p >= n:
            factors.append(n)
            return factors
        elif p > 2:
            p += 2
        else:
            p += 1


_job_q = queue.Queue()
_result_q = queue.Queue()


def _get_job_q():
    return _job_q


def _get_result_q():
    return _result_q


class JobQueueManager(SyncManager):
    pass


JobQueueManager.register("get_job_q", callable=_get_job_q)
JobQueueManager.register("get_result_q", callable=_get_result_q)


class ServerQueueManager(SyncManager):
    pass


ServerQueueManager.register("get_job_q")
ServerQueueManager.register("get_result_q")


def factorizer_worker(address):
    manager = ServerQueueManager(address=address, authkey=AUTHKEY)
    manager.connect()
    job_q = manager.get_job_q()
    result_q = manager.get_result_q()
    while True:
        try:
            job = job_q.get_nowait()
        except queue.Empty:
            return
        result_q.put({n: factorize_naive(n) for n in job})


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--chunk-size", type=int, default=1)
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    args = parser.parse_args()

    manager = JobQueueManager(address=("127.0.0.1", 0), authkey=AUTHKEY)
    manager.start()
    job_q = manager.get_job_q()
    result_q = manager.get_result_q()
    n = 1000
    for _ in range(args.chunks):
        job_q.put(list(range(n, n + args.chunk_size)))
        n += args.chunk_size

    started = time.perf_counter()
    procs = [
        multiprocessing.Process(target=factorizer_worker, args=(manager.address,))
        for _ in range(args.procs)
    ]
    for p in procs:
        p.start()
    results = {}
    got = 0
    while got < args.chunks:
        results.update(result_q.get())
        got += 1
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join()
    manager.shutdown()
    assert len(results) == args.chunks * args.chunk_size
    print(
        f"round_trips_per_s={args.chunks / elapsed:.1f} chunks={args.chunks} "
        f"chunk_size={args.chunk_size} procs={args.procs} seconds={elapsed:.3f}"
    )


if __name__ == "__main__":
    main()
