"""A Python wait set over Swift peers' samples, events and requests (blocking
and asyncio through its descriptor), and log claims written in place from
Python — committed, aborted, and left by a killed process — read by a Swift
tailer."""
import asyncio
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import swiftshm

ADD = dict(type_name="swiftshm.tests.Add", max_request_bytes=16, max_response_bytes=16, alignment=8,
           max_clients=8, max_servers=2, queue_depth=16)


def open_ports(node, name):
    frames = node.publish_subscribe(name + ".f", max_bytes=64, overflow="block").subscriber()
    listener = node.event(name + ".e", max_event_id=15).listener()
    server = node.request_response(name + ".r", **ADD).server()
    return frames, listener, server


def start_peers(peer, name):
    return [subprocess.Popen([peer, "frames-pub", name + ".f", "3", "64"], stdout=subprocess.PIPE, text=True),
            subprocess.Popen([peer, "ev-notify", name + ".e", "5", "3"], stdout=subprocess.PIPE, text=True),
            subprocess.Popen([peer, "rr-client", name + ".r", "3"], stdout=subprocess.PIPE, text=True)]


def serve(frames, listener, server, ready, indices, counts):
    f, e, r = indices
    if f in ready:
        while (sample := frames.try_receive()) is not None:
            assert sample.array(np.uint64)[0] == counts["frames"]
            counts["frames"] += 1
    if e in ready:
        for event_id in listener.wait(0):
            assert event_id == 5
            counts["events"] += 1
    if r in ready:
        try:
            while True:
                request = server.receive(timeout=0)
                a, b = request.array(np.int64)
                request.respond(np.array([a + b, 0], dtype=np.int64))
                counts["requests"] += 1
        except swiftshm.TimedOut:
            pass


def done(counts):
    # Notifications of one id coalesce until the listener looks (as in
    # iceoryx2): three notifications of id 5 are seen one to three times.
    return counts["frames"] == 3 and counts["requests"] == 3 and 1 <= counts["events"] <= 3


def finish(peers):
    for process in peers:
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, (out, err)


def test_a_wait_set_wakes_for_samples_events_and_requests_from_swift(peer, name):
    with swiftshm.Node("py-waiter") as node, swiftshm.WaitSet() as waitset:
        frames, listener, server = open_ports(node, name)
        indices = (waitset.attach(frames), waitset.attach(listener), waitset.attach(server))
        assert indices == (0, 1, 2)
        with pytest.raises(TypeError):
            waitset.attach(node)
        assert waitset.wait(timeout=0) == []
        peers = start_peers(peer, name)
        try:
            counts = {"frames": 0, "events": 0, "requests": 0}
            deadline = 200
            while not done(counts) and deadline:
                deadline -= 1
                serve(frames, listener, server, waitset.wait(timeout=0.2), indices, counts)
            assert done(counts), counts
            finish(peers)
        finally:
            for process in peers:
                process.kill()


def test_a_wait_set_descriptor_drives_asyncio_without_a_busy_thread(peer, name):
    async def run():
        with swiftshm.Node("py-async-waiter") as node, swiftshm.WaitSet() as waitset:
            frames, listener, server = open_ports(node, name)
            indices = (waitset.attach(frames), waitset.attach(listener), waitset.attach(server))
            fd = waitset.fileno()
            assert fd >= 0
            # Nothing ready: the descriptor is not readable.
            loop = asyncio.get_running_loop()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(waitset.wait_async(), 0.1)
            peers = start_peers(peer, name)
            try:
                counts = {"frames": 0, "events": 0, "requests": 0}
                cpu = os.times()
                while not done(counts):
                    ready = await asyncio.wait_for(waitset.wait_async(), 30)
                    serve(frames, listener, server, ready, indices, counts)
                await loop.run_in_executor(None, finish, peers)
                used = (os.times().user - cpu.user) + (os.times().system - cpu.system)
                assert used < 5, f"{used:.1f} s of CPU while waiting: a busy thread?"
            finally:
                for process in peers:
                    process.kill()
    asyncio.run(run())


CLAIM_AND_DIE = """
import sys, time, swiftshm
appender = swiftshm.Log(sys.argv[1], 64 << 10).appender()
claim = appender.claim(100)
claim.memoryview[:5] = b"doome"
print("claimed", claim.sequence, flush=True)
time.sleep(60)
"""


def test_log_claims_from_python_are_read_by_a_swift_tailer(peer, tmp_path):
    directory = str(tmp_path / "log")
    # A process killed holding a claim: tailers must step over it, not wait for ever.
    doomed = subprocess.Popen([sys.executable, "-c", CLAIM_AND_DIE, directory], stdout=subprocess.PIPE, text=True)
    try:
        line = doomed.stdout.readline().split()
        assert line[0] == "claimed", line
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        doomed.kill()
    log = swiftshm.Log(directory)
    appender = log.appender()
    payloads = [f"py:{i}:" + "x" * (i % 37) for i in range(5)]
    sequences = []
    for i, text in enumerate(payloads):
        data = text.encode()
        if i == 2:  # an aborted claim in the middle: a skip record
            aborted = appender.claim(10)
            aborted.abort()
            with pytest.raises(swiftshm.StateError):
                aborted.commit()
        if i % 2 == 0:
            with appender.claim(shape=(len(data),)) as claim:  # numpy, in place, committed on exit
                claim.array[:] = np.frombuffer(data, dtype=np.uint8)
            sequences.append(claim.sequence)
        else:
            claim = appender.claim(len(data))
            with pytest.raises(swiftshm.StateError):
                appender.claim(1)  # one claim per appender at a time
            claim.memoryview[:] = data
            sequences.append(claim.commit())
    assert sequences == sorted(sequences)
    swift = subprocess.run([peer, "log-tail", directory, "5"], capture_output=True, text=True, timeout=60)
    assert swift.returncode == 0, swift.stderr
    assert "tailed 5 py=4" in swift.stdout
    records = list(log.tailer())
    assert [r.data.decode() for r in records] == payloads
    assert [r.sequence for r in records] == sequences
