"""Request/response across languages: a Python client against a typed Swift
server (streams of responses), a Python server answering a typed Swift
client, and the byte-message rules (lengths, oversize, answered twice,
timeouts, views) between Python processes."""
import subprocess
import sys

import numpy as np
import pytest

import swiftshm

# The Swift peer's service: RequestResponseService<TestRequest, TestResponse>
# named "swiftshm.tests.Add", both types two Int64s (16 bytes, alignment 8).
ADD = dict(type_name="swiftshm.tests.Add", max_request_bytes=16, max_response_bytes=16, alignment=8,
           max_clients=8, max_servers=2, queue_depth=16)


def test_python_client_receives_streams_from_a_swift_server(peer, name):
    count, parts = 50, 3
    swift = subprocess.Popen([peer, "rr-serve", name, str(count), str(parts)], stdout=subprocess.PIPE, text=True)
    try:
        assert swift.stdout.readline().strip() == "serving"
        with swiftshm.Node("py-client") as node:
            client = node.request_response(name, **ADD).client()
            for i in range(count):
                loan = client.loan(shape=(2,), dtype=np.int64)
                loan.array[:] = (i, 1000)
                pending = loan.send()
                got = []
                for response in pending:  # in place: two Int64s in the client's queue buffer
                    values = response.array(np.int64)
                    got.append((int(values[0]), int(values[1]), response.is_final))
                    del values
                    response.release()
                assert got == [(i + 1000, part, part == parts - 1) for part in range(parts)]
                with pytest.raises(swiftshm.StateError):
                    pending.receive(timeout=0)  # the final one came
        out, err = swift.communicate(timeout=30)
        assert swift.returncode == 0, err
        assert f"served {count}" in out
    finally:
        swift.kill()


def test_python_server_answers_a_swift_client(peer, name):
    count = 50
    with swiftshm.Node("py-server") as node:
        server = node.request_response(name, **ADD).server()
        swift = subprocess.Popen([peer, "rr-client", name, str(count)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        try:
            for _ in range(count):
                with server.receive(timeout=30) as request:
                    a, b = request.array(np.int64)
                    loan = request.loan(shape=(2,), dtype=np.int64)
                    loan.array[:] = (a + b, 0)
                    assert loan.send(final=True)
                    with pytest.raises(swiftshm.StateError):
                        request.respond(b"\0" * 16)  # answered with a final response already
            out, err = swift.communicate(timeout=30)
            assert swift.returncode == 0, err
            assert f"answered {count}" in out
        finally:
            swift.kill()


SERVER_SCRIPT = """
import sys, swiftshm
node = swiftshm.Node("py-echo")
server = node.request_response(sys.argv[1], max_request_bytes=256, max_response_bytes=512).server()
print("serving", flush=True)
for request in server:
    data = request.bytes()
    if data == b"stop":
        request.respond(b"stopping")
        break
    # A stream: the request back, then its length, then the reversed request (final).
    request.respond(data, final=False)
    request.respond(str(len(data)).encode(), final=False)
    loan = request.loan(len(data))
    loan.memoryview[:] = data[::-1]
    loan.send(final=True)
"""


def test_byte_messages_between_python_processes(name):
    server = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, name], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "serving"
        with swiftshm.Node("py-asker") as node:
            service = node.request_response(name, max_request_bytes=256, max_response_bytes=512)
            assert (service.max_request_bytes, service.max_response_bytes) == (256, 512)
            client = service.client()
            for size in (0, 1, 7, 255, 256):
                data = bytes((size + i) & 0xFF for i in range(size))
                responses = [r.bytes() for r in client.send_copy(data)]
                assert responses == [data, str(size).encode(), data[::-1]]
            with pytest.raises(swiftshm.InvalidArgument):
                client.send_copy(b"x" * 257)
            with pytest.raises(swiftshm.InvalidArgument):
                client.loan(257)
            # A view of a response keeps its buffer: release refuses while it lives.
            response = client.request(np.arange(4, dtype=np.uint8))
            view = response.array()
            with pytest.raises(BufferError):
                response.release()
            assert list(view) == [0, 1, 2, 3]
            del view
            response.release()
            assert client.request(b"stop", timeout=10).bytes() == b"stopping"
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()


def test_a_request_nobody_serves_times_out_and_mismatches_are_named(name):
    with swiftshm.Node("py-alone") as node:
        service = node.request_response(name, **ADD)
        pending = service.client().send_copy(np.array([1, 2], dtype=np.int64))
        with pytest.raises(swiftshm.TimedOut):
            pending.receive(timeout=0.05)
        with pytest.raises(swiftshm.Incompatible) as info:
            node.request_response(name, type_name="swiftshm.tests.Add", max_request_bytes=24, max_response_bytes=16,
                                  alignment=8)
        assert "request size" in str(info.value)
        server = service.server()
        # Sent before any server: it waited in the client, which hands it to
        # the first server when it next sends or waits for a response.
        with pytest.raises(swiftshm.TimedOut):
            pending.receive(timeout=0.01)
        request = server.receive(timeout=5)
        assert list(request.array(np.int64)) == [1, 2] and request.request_id == pending.request_id
        assert request.respond(np.array([3, 0], dtype=np.int64))
        assert list(pending.receive(timeout=5).array(np.int64)) == [3, 0]
        with pytest.raises(swiftshm.TimedOut):
            server.receive(timeout=0)
