"""Side-by-side benchmark: ``python -m swiftshm.bench [--quick]``.

Two Python processes pinned to different CPUs play ping-pong (one-way
latency = round trip / 2, median and p99) with 8-byte messages and 1080p
RGB frames (6,220,800 bytes), through:

- swiftshm (this package): loaned samples read in place for frames;
  ``send_copy`` / ``try_receive_copy`` (one call each) for small messages;
- iceoryx2's own Python binding (``pip install iceoryx2``), if installed;
- ``multiprocessing.shared_memory`` for the data plus a ``Pipe`` to signal;
- a pickled ``multiprocessing.Pipe`` (what people escape from);
- with the ``shm`` CLI (``--shm PATH``, else ``shm`` on PATH or the
  repository's ``.build/release/shm``): Python ↔ Swift ping-pong against
  ``shm bench-peer``'s Swift echo, and Swift ↔ Swift (``shm bench latency
  --mechanisms pubsub``) in the same run, beside the interpreter's own cost
  of one send plus one receive call measured in one process;
- frames/s: 1080p frames streamed Python → Python and Swift → Python under
  the ``block`` policy (none lost), each frame's sequence number checked.

Receivers poll (as iceoryx2's examples do), so wake-up latency of a
sleeping CPU is not measured. Every figure is from this run only; compare
ratios, not absolute numbers, across machines.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
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


# ---- Swift on the other side ---------------------------------------------

def _find_shm(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    found = shutil.which("shm")
    if found:
        return found
    repository = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    built = os.path.join(repository, ".build", "release", "shm")
    return built if os.access(built, os.X_OK) else None


def _swift_bench_pair(node, name: str, size: int, streaming: bool):
    """The services of ``shm bench-peer --mechanism pubsub`` (ServiceEndpoints.swift:
    the parent publishes on <name>.a, the peer on <name>.b), configured alike."""
    buffer = max(2, min(256, (256 << 20) // max(1, size))) if streaming else 2
    options = dict(max_bytes=size, max_publishers=1, max_subscribers=1, buffer_size=buffer, max_loans=1, max_borrowed=1,
                   overflow="block")
    return node.publish_subscribe(name + ".a", **options), node.publish_subscribe(name + ".b", **options)


def _spawn_swift_peer(shm: str, role: str, name: str, size: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([shm, "bench-peer", "--role", role, "--mechanism", "pubsub", "--size", str(size), "--name", name,
                             "--cpu", "1", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def bench_python_swift(shm: str, size: int, rounds: int) -> dict:
    """Python pings a Swift echo: one-way = round trip / 2, which is half a
    Swift → Python and half a Python → Swift delivery."""
    import swiftshm
    name = f"bench.{uuid.uuid4().hex[:8]}"
    _pin(0)
    with swiftshm.Node("bench") as node:
        a, b = _swift_bench_pair(node, name, size, streaming=False)
        outbound, inbound = a.publisher(), b.subscriber()
        swift = _spawn_swift_peer(shm, "pong", name, size)
        try:
            outbound.wait_for_subscribers(1, timeout=30)
            times = []
            for n in range(rounds):
                start = time.perf_counter_ns()
                if size <= SMALL:
                    outbound.send_copy(n.to_bytes(8, "little") + bytes(size - 8))
                    back = None
                    while back is None:
                        back = inbound.try_receive_copy(SMALL)
                    number = int.from_bytes(back[:8], "little")
                else:
                    loan = outbound.loan(size)
                    loan.memoryview[:8] = n.to_bytes(8, "little")
                    loan.send()
                    sample = None
                    while sample is None:
                        sample = inbound.try_receive()
                    number = int.from_bytes(sample.memoryview[:8], "little")
                    sample.release()
                times.append((time.perf_counter_ns() - start) / 2)
                assert number == n, (number, n)
            outbound.send_copy((2 ** 64 - 1).to_bytes(8, "little") + bytes(size - 8))
            if swift.wait(timeout=30) != 0:
                raise RuntimeError(f"the Swift echo failed: {swift.stderr.read()}")
        finally:
            swift.kill()
    return _summary("Python ↔ Swift (swiftshm)", size, times[rounds // 10:])


def bench_swift_swift(shm: str, size: int) -> dict:
    """Swift ↔ Swift over the same services, measured by ``shm bench latency``."""
    out = subprocess.run([shm, "bench", "latency", "--mechanisms", "pubsub", "--sizes", str(size), "--repeat", "3",
                          "--json", "--cpus", "0,1"], capture_output=True, text=True, timeout=600, check=True).stdout
    row = next(json.loads(line) for line in out.splitlines() if line.startswith("{") and '"pubsub"' in line)
    return {"mechanism": "Swift ↔ Swift (shm bench latency)", "bytes": size, "p50_ns": float(row["p50_ns"]),
            "p99_ns": float(row["p99_ns"]), "rounds": row["samples"]}


def python_call_cost(size: int, rounds: int = 20000) -> float:
    """Median ns of one Python send plus one receive on a service in this
    process (nothing crosses a core): what the interpreter adds per hop."""
    import swiftshm
    with swiftshm.Node("bench-calls") as node:
        service = node.publish_subscribe(f"bench.{uuid.uuid4().hex[:8]}", max_bytes=size, buffer_size=2, overflow="block")
        publisher, subscriber = service.publisher(), service.subscriber()
        message = bytes(size)
        times = []
        for _ in range(rounds):
            start = time.perf_counter_ns()
            if size <= SMALL:
                publisher.send_copy(message)
                subscriber.try_receive_copy(SMALL)
            else:
                loan = publisher.loan(size)
                loan.memoryview[:8] = message[:8]
                loan.send()
                sample = subscriber.try_receive()
                sample.memoryview[:8].tobytes()
                sample.release()
            times.append(time.perf_counter_ns() - start)
        return statistics.median(times[rounds // 10:])


# ---- frames per second -----------------------------------------------------

def _stream_frames_python(name: str, count: int, ready) -> None:
    import swiftshm
    _pin(1)
    with swiftshm.Node("bench-camera") as node:
        a, _ = _swift_bench_pair(node, name, FRAME, streaming=True)
        publisher = a.publisher()
        ready.set()
        publisher.wait_for_subscribers(1, timeout=30)
        publisher.set_send_timeout(30)
        for n in range(count):
            loan = publisher.loan(FRAME)
            loan.memoryview[:8] = n.to_bytes(8, "little")
            loan.send()


def frames_per_second(source: str, shm: str | None, count: int) -> dict:
    """Streams ``count`` 1080p frames from a Python or Swift publisher to a
    Python subscriber that reads each frame's number in place."""
    import swiftshm
    name = f"bench.{uuid.uuid4().hex[:8]}"
    _pin(0)
    with swiftshm.Node("bench-model") as node:
        a, b = _swift_bench_pair(node, name, FRAME, streaming=True)
        # A Python camera publishes on <name>.a; shm bench-peer's Swift one on
        # <name>.b, and waits for an acknowledgement on <name>.a.
        subscriber = a.subscriber() if source == "python" else b.subscriber()
        acknowledge = a.publisher() if source != "python" else None
        if source == "python":
            context = mp.get_context("spawn")
            ready = context.Event()
            producer = context.Process(target=_stream_frames_python, args=(name, count, ready))
            producer.start()
        else:
            producer = _spawn_swift_peer(shm, "produce", name, FRAME, "--streaming", "--count", str(count))
        try:
            start = None
            for n in range(count):
                sample = subscriber.receive(timeout=30)
                if start is None:
                    start = time.perf_counter_ns()  # from the first frame: start-up is not throughput
                number = int.from_bytes(sample.memoryview[:8], "little")
                assert number == n, (number, n)
                sample.release()
            elapsed = time.perf_counter_ns() - start
            if source != "python":
                acknowledge.wait_for_subscribers(1, timeout=30)
                acknowledge.send_copy((2 ** 64 - 1).to_bytes(8, "little"))
                producer.wait(timeout=30)
            else:
                producer.join(30)
        finally:
            producer.kill()
    return {"source": source, "frames": count, "frames_per_s": (count - 1) / (elapsed / 1e9),
            "gib_per_s": (count - 1) * FRAME / (elapsed / 1e9) / (1 << 30), "lost": subscriber.lost}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--shm", help="the shm CLI for the Swift rows (default: shm on PATH, or .build/release/shm)")
    arguments = parser.parse_args()
    rounds = {8: 2000 if arguments.quick else 20000, FRAME: 50 if arguments.quick else 300}
    shm = _find_shm(arguments.shm)
    rows = []
    calls = {}
    for size in SIZES:
        benches = [bench_swiftshm, bench_iceoryx2, bench_shared_memory_pipe, bench_pickled_pipe]
        if shm:
            benches += [lambda s, r: bench_python_swift(shm, s, r), lambda s, r: bench_swift_swift(shm, s)]
        for bench in benches:
            try:
                rows.append(bench(size, rounds[size]))
            except ImportError as error:
                print(f"# {getattr(bench, '__name__', 'bench')}: skipped ({error})")
            except Exception as error:  # a baseline that cannot run here is reported, not fatal
                print(f"# {getattr(bench, '__name__', 'bench')} at {size} B failed: {type(error).__name__}: {error}")
        calls[size] = python_call_cost(size, rounds[size])
    if not shm:
        print("# Swift rows skipped: no shm CLI (build it with swift build -c release, or pass --shm)")
    print(f"{'mechanism':32} {'bytes':>9} {'p50 one-way':>14} {'p99':>12}  vs swiftshm p50")
    for size in SIZES:
        ours = next((r["p50_ns"] for r in rows if r["bytes"] == size and r["mechanism"].startswith("swiftshm")), None)
        for row in (r for r in rows if r["bytes"] == size):
            ratio = f"{row['p50_ns'] / ours:8.2f}x" if ours else ""
            print(f"{row['mechanism']:32} {size:>9} {row['p50_ns'] / 1000:11.2f} µs {row['p99_ns'] / 1000:9.2f} µs  {ratio}")
        mixed = next((r["p50_ns"] for r in rows if r["bytes"] == size and r["mechanism"].startswith("Python ↔ Swift")), None)
        swift = next((r["p50_ns"] for r in rows if r["bytes"] == size and r["mechanism"].startswith("Swift ↔ Swift")), None)
        print(f"{'  Python send+receive calls':32} {size:>9} {calls[size] / 1000:11.2f} µs   (one process, nothing crosses)")
        if mixed and swift:
            budget = 1.5 * swift + calls[size] / 2
            print(f"{'  Swift → Python budget':32} {size:>9} {budget / 1000:11.2f} µs   = 1.5 × Swift↔Swift + the calls of one hop;"
                  f" measured {mixed / 1000:.2f} µs: {'within' if mixed <= budget else 'OVER'}")
    frame_count = 100 if arguments.quick else 600
    print(f"\n{'frames/s (1080p RGB, block)':32} {'frames':>9} {'frames/s':>14} {'GiB/s':>12}  lost")
    for source in ["python"] + (["swift"] if shm else []):
        try:
            result = frames_per_second(source, shm, frame_count)
            print(f"{source + ' → Python':32} {result['frames']:>9} {result['frames_per_s']:14.0f} {result['gib_per_s']:12.2f}"
                  f"  {result['lost']}")
        except Exception as error:
            print(f"# frames/s from {source} failed: {type(error).__name__}: {error}")


if __name__ == "__main__":
    main()
