"""Side-by-side benchmark: ``python -m swiftshm.bench [--quick]``.

Two Python processes pinned to different CPUs play ping-pong (one-way
latency = round trip / 2, median and p99) with 8-byte messages and 1080p
RGB frames (6,220,800 bytes), through:

- swiftshm (this package): loaned samples read in place for frames;
  ``send_copy`` / ``try_receive_copy`` (one call each) for small messages;
- iceoryx2's own Python binding (``pip install iceoryx2``), if installed;
- ``multiprocessing.shared_memory`` for the data plus a ``Pipe`` to signal;
- a pickled ``multiprocessing.Pipe`` (what people escape from).

Receivers poll (as iceoryx2's examples do), so wake-up latency of a
sleeping CPU is not measured. Every figure is from this run only; compare
ratios, not absolute numbers, across machines.
"""
from __future__ import annotations

import argparse
import ctypes
import multiprocessing as mp
import os
import statistics
import time
import uuid

import numpy as np

FRAME = 1920 * 1080 * 3
SIZES = [8, FRAME]
SMALL = 4096  # up to this size swiftshm's rows use send_copy / try_receive_copy, above it loans


def _pin(cpu: int) -> None:
    try:
        os.sched_setaffinity(0, {cpu % os.cpu_count()})
    except (AttributeError, OSError):
        pass


def _summary(name: str, size: int, one_way_ns: list[float]) -> dict:
    one_way_ns.sort()
    return {"mechanism": name, "bytes": size, "p50_ns": statistics.median(one_way_ns),
            "p99_ns": one_way_ns[min(len(one_way_ns) - 1, int(len(one_way_ns) * 0.99))], "rounds": len(one_way_ns)}


# ---- swiftshm ------------------------------------------------------------

def _swiftshm_echo(ping: str, pong: str, size: int, rounds: int, ready) -> None:
    import swiftshm
    _pin(1)
    with swiftshm.Node("bench-echo") as node:
        inbound = node.publish_subscribe(ping, max_bytes=size, overflow="block").subscriber()
        outbound = node.publish_subscribe(pong, max_bytes=size, overflow="block").publisher()
        ready.set()
        outbound.wait_for_subscribers(1, timeout=30)
        if size <= SMALL:
            # Small messages: one call each way, copying them (as iceoryx2's write_payload copies).
            for _ in range(rounds):
                message = None
                while message is None:
                    message = inbound.try_receive_copy(SMALL)
                outbound.send_copy(message)
            return
        for _ in range(rounds):
            sample = None
            while sample is None:
                sample = inbound.try_receive()
            number = sample.memoryview[:8].tobytes()
            sample.release()
            loan = outbound.loan(size)
            loan.memoryview[:8] = number
            loan.send()


def bench_swiftshm(size: int, rounds: int) -> dict:
    import swiftshm
    ping, pong = f"bench.{uuid.uuid4().hex[:8]}.ping", f"bench.{uuid.uuid4().hex[:8]}.pong"
    context = mp.get_context("spawn")
    ready = context.Event()
    echo = context.Process(target=_swiftshm_echo, args=(ping, pong, size, rounds, ready))
    _pin(0)
    with swiftshm.Node("bench") as node:
        outbound = node.publish_subscribe(ping, max_bytes=size, overflow="block").publisher()
        echo.start()
        ready.wait(30)
        inbound = node.publish_subscribe(pong, max_bytes=size, overflow="block").subscriber()
        outbound.wait_for_subscribers(1, timeout=30)
        times = []
        if size <= SMALL:
            for n in range(rounds):
                message = n.to_bytes(8, "little") + bytes(size - 8)
                start = time.perf_counter_ns()
                outbound.send_copy(message)
                back = None
                while back is None:
                    back = inbound.try_receive_copy(SMALL)
                times.append((time.perf_counter_ns() - start) / 2)
                assert int.from_bytes(back[:8], "little") == n
            echo.join(30)
            return _summary("swiftshm (Python ↔ Python)", size, times[rounds // 10:])
        for n in range(rounds):
            start = time.perf_counter_ns()
            loan = outbound.loan(size)
            loan.memoryview[:8] = n.to_bytes(8, "little")
            loan.send()
            sample = None
            while sample is None:
                sample = inbound.try_receive()
            assert int.from_bytes(sample.memoryview[:8], "little") == n
            sample.release()
            times.append((time.perf_counter_ns() - start) / 2)
        echo.join(30)
    return _summary("swiftshm (Python ↔ Python)", size, times[rounds // 10:])


# ---- iceoryx2 ------------------------------------------------------------

def _iceoryx2_payload(size: int):
    return ctypes.c_uint64 if size == 8 else ctypes.c_uint8 * size


def _iceoryx2_echo(ping: str, pong: str, size: int, rounds: int, ready) -> None:
    import iceoryx2 as iox2
    _pin(1)
    payload = _iceoryx2_payload(size)
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    inbound = node.service_builder(iox2.ServiceName.new(ping)).publish_subscribe(payload).open_or_create() \
        .subscriber_builder().create()
    outbound = node.service_builder(iox2.ServiceName.new(pong)).publish_subscribe(payload).open_or_create() \
        .publisher_builder().create()
    ready.set()
    for _ in range(rounds):
        sample = None
        while sample is None:
            sample = inbound.receive()
        first = bytes(sample.payload().contents)[:8]
        del sample
        out = outbound.loan_uninit()
        value = payload()
        ctypes.memmove(ctypes.addressof(value), first, 8)
        out.write_payload(value).send()


def bench_iceoryx2(size: int, rounds: int) -> dict:
    import iceoryx2 as iox2
    payload = _iceoryx2_payload(size)
    ping, pong = f"bench/{uuid.uuid4().hex[:8]}/ping", f"bench/{uuid.uuid4().hex[:8]}/pong"
    context = mp.get_context("spawn")
    ready = context.Event()
    _pin(0)
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    outbound = node.service_builder(iox2.ServiceName.new(ping)).publish_subscribe(payload).open_or_create() \
        .publisher_builder().create()
    inbound = node.service_builder(iox2.ServiceName.new(pong)).publish_subscribe(payload).open_or_create() \
        .subscriber_builder().create()
    echo = context.Process(target=_iceoryx2_echo, args=(ping, pong, size, rounds, ready))
    echo.start()
    ready.wait(30)
    time.sleep(0.2)
    times = []
    for n in range(rounds):
        start = time.perf_counter_ns()
        value = payload()
        ctypes.memmove(ctypes.addressof(value), n.to_bytes(8, "little"), 8)
        outbound.loan_uninit().write_payload(value).send()
        sample = None
        while sample is None:
            sample = inbound.receive()
        del sample
        times.append((time.perf_counter_ns() - start) / 2)
    echo.join(30)
    return _summary("iceoryx2 (Python ↔ Python)", size, times[rounds // 10:])


# ---- multiprocessing baselines ------------------------------------------

def _shm_pipe_echo(name: str, size: int, rounds: int, connection) -> None:
    from multiprocessing import shared_memory
    _pin(1)
    memory = shared_memory.SharedMemory(name=name)
    for _ in range(rounds):
        connection.recv_bytes()
        number = bytes(memory.buf[:8])
        memory.buf[size:size + 8] = number  # the answer goes in the second half
        connection.send_bytes(b"!")
    memory.close()


def bench_shared_memory_pipe(size: int, rounds: int) -> dict:
    from multiprocessing import shared_memory
    memory = shared_memory.SharedMemory(create=True, size=2 * size + 8)
    context = mp.get_context("spawn")
    mine, theirs = context.Pipe()
    echo = context.Process(target=_shm_pipe_echo, args=(memory.name, size, rounds, theirs))
    _pin(0)
    echo.start()
    times = []
    try:
        for n in range(rounds):
            start = time.perf_counter_ns()
            memory.buf[:8] = n.to_bytes(8, "little")
            mine.send_bytes(b"?")
            mine.recv_bytes()
            assert int.from_bytes(memory.buf[size:size + 8], "little") == n
            times.append((time.perf_counter_ns() - start) / 2)
        echo.join(30)
    finally:
        memory.close()
        memory.unlink()
    return _summary("shared_memory + Pipe", size, times[rounds // 10:])


def _pickle_echo(rounds: int, connection) -> None:
    _pin(1)
    for _ in range(rounds):
        connection.send(connection.recv())


def bench_pickled_pipe(size: int, rounds: int) -> dict:
    context = mp.get_context("spawn")
    mine, theirs = context.Pipe()
    echo = context.Process(target=_pickle_echo, args=(rounds, theirs))
    _pin(0)
    echo.start()
    frame = np.zeros(size, dtype=np.uint8)
    times = []
    for n in range(rounds):
        frame[:8] = np.frombuffer(n.to_bytes(8, "little"), dtype=np.uint8)
        start = time.perf_counter_ns()
        mine.send(frame)
        back = mine.recv()
        assert int.from_bytes(back[:8].tobytes(), "little") == n
        times.append((time.perf_counter_ns() - start) / 2)
    echo.join(30)
    return _summary("pickled Pipe", size, times[rounds // 10:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    arguments = parser.parse_args()
    rounds = {8: 2000 if arguments.quick else 20000, FRAME: 50 if arguments.quick else 300}
    rows = []
    for size in SIZES:
        for bench in (bench_swiftshm, bench_iceoryx2, bench_shared_memory_pipe, bench_pickled_pipe):
            try:
                rows.append(bench(size, rounds[size]))
            except ImportError as error:
                print(f"# {bench.__name__}: skipped ({error})")
            except Exception as error:  # a baseline that cannot run here is reported, not fatal
                print(f"# {bench.__name__} at {size} B failed: {type(error).__name__}: {error}")
    print(f"{'mechanism':32} {'bytes':>9} {'p50 one-way':>14} {'p99':>12}  vs swiftshm p50")
    for size in SIZES:
        ours = next((r["p50_ns"] for r in rows if r["bytes"] == size and r["mechanism"].startswith("swiftshm")), None)
        for row in (r for r in rows if r["bytes"] == size):
            ratio = f"{row['p50_ns'] / ours:8.2f}x" if ours else ""
            print(f"{row['mechanism']:32} {size:>9} {row['p50_ns'] / 1000:11.2f} µs {row['p99_ns'] / 1000:9.2f} µs  {ratio}")


if __name__ == "__main__":
    main()
