"""swiftshm — zero-copy shared memory between Python, Swift and C processes.

A Python binding of swift-shm's C ABI (libswiftshm.so, built by
``pip install ./python``): publish/subscribe with samples that live in
shared memory (numpy arrays and memoryviews over them, no copy),
request/response, events, wait sets (blocking or asyncio), named segments
and the persistent log (append, claim/commit, tail).

    import numpy as np, swiftshm
    with swiftshm.Node("model") as node:
        frames = node.publish_subscribe("camera.frames", max_bytes=1920 * 1080 * 3)
        with frames.subscriber() as subscriber:
            sample = subscriber.receive(timeout=5.0)
            image = sample.array(np.uint8, (1080, 1920, 3))   # a view into the publisher's memory
            print(image.mean())
            del image; sample.release()                          # or just drop both

A received sample holds its chunk of the publisher's pool for as long as
any view of it (memoryview, numpy array, slices of them) exists, and hands
it back after; ``Sample.release()`` raises ``BufferError`` while views
exist. So no view ever points at memory the publisher has reused.
"""
from __future__ import annotations

from .api import (Event, Listener, Loan, Node, Notifier, Publisher, PublishSubscribe, Sample, Segment, Subscriber,
                  abi_version)
from .log import Appender, Claim, Log, Record, Tailer
from .request_response import (ActiveRequest, Client, PendingResponse, RequestLoan, RequestResponse, Response,
                               ResponseLoan, Server)
from .waitset import WaitSet
from .errors import (AlreadyExists, Corrupt, Exhausted, Incompatible, InvalidArgument, NoSpace, NotFound, ShmError,
                     StateError, SystemCallError, TimedOut, Truncated)

__all__ = [
    "Node", "PublishSubscribe", "Publisher", "Subscriber", "Loan", "Sample", "Event", "Notifier", "Listener",
    "Segment", "Log", "Appender", "Claim", "Tailer", "Record", "abi_version",
    "RequestResponse", "Client", "RequestLoan", "PendingResponse", "Response", "Server", "ActiveRequest", "ResponseLoan",
    "WaitSet",
    "ShmError", "InvalidArgument", "NotFound", "AlreadyExists", "TimedOut", "Incompatible", "NoSpace", "Exhausted",
    "Corrupt", "Truncated", "SystemCallError", "StateError",
]
