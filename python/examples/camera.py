"""The reverse direction: a Python camera publishing 1080p frames written in
place in shared memory (`swift run -c release example-camera stats` reads them).

    python python/examples/camera.py [FRAMES]
"""
import sys
import time

import numpy as np

import swiftshm

FRAMES = int(sys.argv[1]) if len(sys.argv) > 1 else 300

with swiftshm.Node("py-camera") as node:
    frames = node.publish_subscribe("camera.frames", max_bytes=1920 * 1080 * 3, overflow="overwrite")
    with frames.publisher() as publisher:
        for n in range(FRAMES):
            with publisher.loan(shape=(1080, 1920, 3), dtype=np.uint8) as loan:
                frame = loan.array
                frame[:] = (np.arange(1080, dtype=np.uint16)[:, None, None] + n).astype(np.uint8)
                del frame  # sent on leaving the block
            time.sleep(1 / 30)
        print(f"published {FRAMES} frames")
