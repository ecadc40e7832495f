"""Python ↔ Swift ↔ C through real processes and interpreters: frames of
1920×1080×3 bytes with checksums and sequence numbers, the log written in
Swift and tailed here, a Python subscriber killed with SIGKILL, and the
lifetime of views of a sample."""
import asyncio
import gc
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import swiftshm

FRAME = 1920 * 1080 * 3


def frame_service(node, name, max_bytes=FRAME):
    # The same service as the Swift peer's frameService and the C defaults.
    return node.publish_subscribe(name, max_bytes=max_bytes, overflow="block")


def expected_tail(number, size):
    return ((number + np.arange(8, size, dtype=np.uint64)) & 0xFF).astype(np.uint8)


def check_frame(sample, number):
    data = sample.array()
    assert data[:8].view(np.uint64)[0] == number
    assert np.array_equal(data[8:], expected_tail(number, len(data)))


def fill_frame(array, number):
    flat = array.reshape(-1)
    flat[:8] = np.frombuffer(np.uint64(number).tobytes(), dtype=np.uint8)
    flat[8:] = expected_tail(number, flat.size)


def test_swift_publishes_python_receives_1080p_frames(peer, name):
    count = 30
    with swiftshm.Node("py-camera-sink") as node:
        subscriber = frame_service(node, name).subscriber()
        swift = subprocess.Popen([peer, "frames-pub", name, str(count), str(FRAME)], stdout=subprocess.PIPE, text=True)
        try:
            for number in range(count):
                sample = subscriber.receive(timeout=30)
                assert sample.nbytes == FRAME
                check_frame(sample, number)
                image = sample.array(np.uint8, (1080, 1920, 3))  # zero-copy view
                assert image.shape == (1080, 1920, 3) and not image.flags.writeable
                del image
                sample.release()
            assert subscriber.lost == 0
            assert swift.wait(timeout=30) == 0
        finally:
            swift.kill()


def publish_frames_to_swift(peer, name, publisher, count):
    """Publishes ``count`` 1080p frames to a Swift subscriber (the peer's
    frames-sub), which checks every byte; asserts it got them all intact."""
    publisher.set_send_timeout(30)
    swift = subprocess.Popen([peer, "frames-sub", name, str(count), str(FRAME)], stdout=subprocess.PIPE, text=True)
    try:
        publisher.wait_for_subscribers(1, timeout=30)
        for number in range(count):
            with publisher.loan(shape=(1080, 1920, 3), dtype=np.uint8) as loan:
                fill_frame(loan.array, number)
        out, _ = swift.communicate(timeout=60)
        assert f"received {count}, {count} intact, 0 lost" in out
    finally:
        swift.kill()


def test_python_publishes_swift_receives_1080p_frames(peer, name):
    with swiftshm.Node("py-camera") as node:
        publish_frames_to_swift(peer, name, frame_service(node, name).publisher(), 30)


def test_a_growing_pool_follows_the_frames_in_flight(peer, name):
    # Reserving what the frame service's limits allow in flight (8 subscribers
    # x (8 queued + 4 borrowed) + 4 loans = 100 frames) would take 622 MB of
    # /dev/shm; a growing pool takes what is in flight (~50 MB here).
    with swiftshm.Node("py-camera-growing") as node:
        publisher = frame_service(node, name).publisher(pool="growing")
        before = publisher.footprint
        assert before["segments"] == 1 and before["bytes"] < 64 * 1024, before
        publish_frames_to_swift(peer, name, publisher, 30)
        after = publisher.footprint
        assert after["chunk_capacity"] == FRAME, after  # the next power of two, at most the maximum
        assert after["segments"] >= 2 and after["bytes"] < 200 << 20, after
    with pytest.raises(ValueError):
        with swiftshm.Node("py-camera-bad-pool") as node:
            frame_service(node, name + "x").publisher(pool="elastic")


def test_python_and_c_exchange_frames_both_ways(c_frames, name):
    count, size = 50, 65536
    with swiftshm.Node("py-c") as node:
        service = frame_service(node, name, max_bytes=size)
        subscriber = service.subscriber()
        c_pub = subprocess.Popen([c_frames, "pub", name, str(count), str(size)], stdout=subprocess.PIPE, text=True)
        try:
            for number in range(count):
                check_frame(subscriber.receive(timeout=30), number)
            assert c_pub.wait(timeout=30) == 0
        finally:
            c_pub.kill()
        publisher = service.publisher()
        publisher.set_send_timeout(30)
        c_sub = subprocess.Popen([c_frames, "sub", name, str(count), str(size)], stdout=subprocess.PIPE, text=True)
        try:
            publisher.wait_for_subscribers(2, timeout=30)  # ours and C's
            for number in range(count):
                with publisher.loan(size) as loan:
                    fill_frame(loan.array, number)
                check_frame(subscriber.receive(timeout=30), number)
            out, err = c_sub.communicate(timeout=60)
            assert f"received {count}, {count} intact, 0 lost" in out, err
        finally:
            c_sub.kill()


def test_c_and_swift_exchange_frames_both_ways(c_frames, peer, name):
    # The C example (cc + pkg-config against libswiftshm) against the Swift peer, no Python in between.
    count, size = 40, 65536
    swift_sub = subprocess.Popen([peer, "frames-sub", name, str(count), str(size)], stdout=subprocess.PIPE, text=True)
    try:
        assert swift_sub.stdout.readline().strip() == "subscribed"
        c_pub = subprocess.run([c_frames, "pub", name, str(count), str(size)], capture_output=True, text=True, timeout=60)
        assert c_pub.returncode == 0, c_pub.stderr
        out, err = swift_sub.communicate(timeout=60)
        assert f"received {count}, {count} intact, 0 lost" in out, err
    finally:
        swift_sub.kill()
    back = name + ".back"
    c_sub = subprocess.Popen([c_frames, "sub", back, str(count), str(size)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        swift_pub = subprocess.run([peer, "frames-pub", back, str(count), str(size)], capture_output=True, text=True, timeout=60)
        assert swift_pub.returncode == 0, swift_pub.stderr
        out, err = c_sub.communicate(timeout=60)
        assert f"received {count}, {count} intact, 0 lost" in out, err
    finally:
        c_sub.kill()


def test_log_written_in_swift_is_tailed_in_python_while_written(peer, tmp_path):
    directory = str(tmp_path / "log")
    count = 500
    swift = subprocess.Popen([peer, "log-append", directory, "sw", str(count), "none"], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        log = None
        while log is None:
            try:
                log = swiftshm.Log(directory)
            except swiftshm.NotFound:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        tailer = log.tailer()
        seen = []
        while len(seen) < count:
            record = tailer.next(timeout=30)
            tag, index, pad = record.data.decode().split(":", 2)
            assert tag == "sw" and pad == "x" * (int(index) % 37)
            seen.append(int(index))
        assert seen == list(range(count))
        assert swift.wait(timeout=30) == 0
        with pytest.raises(swiftshm.TimedOut):
            tailer.next(timeout=0.05)
    finally:
        swift.kill()


SUBSCRIBER_SCRIPT = """
import sys, time, swiftshm
node = swiftshm.Node("py-doomed")
subscriber = node.publish_subscribe(sys.argv[1], max_bytes=64, overflow="block").subscriber()
print("subscribed", flush=True)
time.sleep(60)
"""


def test_a_python_subscriber_killed_with_sigkill_is_cleaned_up(shm_cli, name):
    doomed = subprocess.Popen([sys.executable, "-c", SUBSCRIBER_SCRIPT, name], stdout=subprocess.PIPE, text=True,
                              env=os.environ)
    try:
        assert doomed.stdout.readline().strip() == "subscribed"
        with swiftshm.Node("py-survivor") as node:
            service = frame_service(node, name, max_bytes=64)
            publisher = service.publisher()
            assert publisher.subscribers == 1
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
            # The publisher finds it dead (liveness by lease) and lets it go.
            cleanup = subprocess.run([shm_cli, "cleanup"], capture_output=True, text=True, timeout=30)
            assert cleanup.returncode == 0, cleanup.stderr
            assert name in cleanup.stdout, cleanup.stdout
            publisher.send_copy(b"after")
            assert publisher.subscribers == 0
    finally:
        doomed.kill()


def test_views_keep_the_sample_and_release_refuses_while_they_exist(name):
    with swiftshm.Node("py-lifetime") as node:
        service = node.publish_subscribe(name, max_bytes=64, overflow="overwrite", buffer_size=2)
        subscriber, publisher = service.subscriber(), service.publisher()
        publisher.send_copy(bytes([7]) * 64)
        sample = subscriber.receive(timeout=5)
        view = sample.array()[10:20]
        with pytest.raises(BufferError):
            sample.release()
        del sample
        gc.collect()
        # The chunk is still held by the view: the publisher cannot reuse it,
        # however many samples it sends now.
        for _ in range(200):
            publisher.send_copy(bytes([9]) * 64)
            while subscriber.try_receive() is not None:
                pass
        assert (view == 7).all()
        del view
        gc.collect()


def test_asyncio_receives_without_a_busy_thread(name):
    async def run():
        with swiftshm.Node("py-async") as node:
            service = node.publish_subscribe(name, max_bytes=64, overflow="block")
            subscriber, publisher = service.subscriber(), service.publisher()

            async def produce():
                for value in range(5):
                    await asyncio.sleep(0.01)
                    publisher.send_copy(bytes([value]) * 8)

            producer = asyncio.ensure_future(produce())
            got = []
            async for sample in subscriber:
                got.append(sample.bytes()[0])
                if len(got) == 5:
                    break
            await producer
            return got

    assert asyncio.run(asyncio.wait_for(run(), timeout=30)) == [0, 1, 2, 3, 4]


def test_errors_are_typed(name):
    with swiftshm.Node("py-errors") as node:
        kept = node.publish_subscribe(name, max_bytes=64)  # the service lives while a handle does
        with pytest.raises(swiftshm.Incompatible):
            node.publish_subscribe(name, max_bytes=65)
        with pytest.raises(swiftshm.NotFound):
            node.publish_subscribe(name + ".missing", max_bytes=0, mode="open")
        with pytest.raises(swiftshm.InvalidArgument):
            node.publish_subscribe("bad name with spaces", max_bytes=64)
        with pytest.raises(swiftshm.TimedOut):
            node.publish_subscribe(name, max_bytes=64).subscriber().receive(timeout=0.01)
        with pytest.raises(swiftshm.InvalidArgument):
            node.publish_subscribe(name, max_bytes=64).publisher().loan(65)
        kept.close()


def test_the_readme_camera_and_model_run_as_two_commands(name):
    from conftest import BUILD, REPO, executable
    camera = executable("example-camera")
    # The example imports swiftshm as a user's program would: from where this test found it.
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(swiftshm.__file__))))
    model = subprocess.Popen([sys.executable, "-u", os.path.join(REPO, "python", "examples", "model.py"), "3"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert model.stdout.readline().startswith("waiting for frames")
        swift = subprocess.Popen([camera, "publish", "45"], stdout=subprocess.DEVNULL)
        try:
            out, err = model.communicate(timeout=60)
            assert model.returncode == 0, err
            lines = [line for line in out.splitlines() if line.startswith("frame ")]
            assert len(lines) == 3 and all("mean" in line for line in lines), out
            assert swift.wait(timeout=60) == 0  # it ends by itself and leaves nothing behind
        finally:
            swift.kill()
    finally:
        model.kill()


def test_small_messages_by_copy_in_one_call(peer, name):
    with swiftshm.Node("py-copy") as node:
        service = node.publish_subscribe(name, max_bytes=64, overflow="block")
        subscriber, publisher = service.subscriber(), service.publisher()
        assert subscriber.try_receive_copy() is None
        assert publisher.send_copy(b"ping") == 1
        assert subscriber.try_receive_copy() == b"ping"
        publisher.send_copy(bytes(range(64)))
        with pytest.raises(swiftshm.InvalidArgument):
            subscriber.try_receive_copy(16)  # does not fit: handed back unread, reported
        assert subscriber.try_receive_copy() is None
        with pytest.raises(swiftshm.InvalidArgument):
            publisher.send_copy(bytes(65))


SLOW_SUBSCRIBER_PUBLISHER = """
import sys, swiftshm
node = swiftshm.Node("py-fast")
service = node.publish_subscribe(sys.argv[1], max_bytes=64, max_publishers=1, max_subscribers=1,
                                 buffer_size=int(sys.argv[2]), max_loans=1, max_borrowed=1, overflow="block")
publisher = service.publisher()
publisher.wait_for_subscribers(1, timeout=30)
publisher.set_send_timeout(30)
for n in range(200):
    loan = publisher.loan(8)
    loan.memoryview[:] = n.to_bytes(8, "little")
    loan.send()
print("sent", flush=True)
"""


@pytest.mark.parametrize("buffer", [3, 43])
def test_a_slow_subscriber_with_an_odd_buffer_size_never_starves_the_publisher(name, buffer):
    # The queue's power-of-two capacity once let it hold more than the buffer
    # size the pool is sized by: the publisher ran out of samples under block.
    with swiftshm.Node("py-slow") as node:
        service = node.publish_subscribe(name, max_bytes=64, max_publishers=1, max_subscribers=1, buffer_size=buffer,
                                         max_loans=1, max_borrowed=1, overflow="block")
        subscriber = service.subscriber()
        fast = subprocess.Popen([sys.executable, "-c", SLOW_SUBSCRIBER_PUBLISHER, name, str(buffer)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for n in range(200):
                sample = subscriber.receive(timeout=30)
                assert int.from_bytes(sample.memoryview[:8], "little") == n
                sample.release()
                if n % 10 == 0:
                    time.sleep(0.002)  # let the publisher fill the queue
            out, err = fast.communicate(timeout=30)
            assert fast.returncode == 0 and "sent" in out, err
            assert subscriber.lost == 0
        finally:
            fast.kill()
