"""The model of the README: receives the Swift camera's frames
(`swift run -c release example-camera publish`) as numpy arrays in shared
memory — no copy, no pickling — and prints per-frame statistics.

    python python/examples/model.py [FRAMES]
"""
import sys

import numpy as np

import swiftshm

FRAMES = int(sys.argv[1]) if len(sys.argv) > 1 else 300

with swiftshm.Node("model") as node:
    # The camera's service: byte slices of one frame, the same configuration.
    frames = node.publish_subscribe("camera.frames", max_bytes=1920 * 1080 * 3, overflow="overwrite")
    with frames.subscriber() as subscriber:
        print("waiting for frames on camera.frames")
        for _ in range(FRAMES):
            sample = subscriber.receive(timeout=30)
            image = sample.array(np.uint8, (1080, 1920, 3))  # a view of the camera's memory
            print(f"frame {sample.sequence}: mean {image.mean():.1f}, std {image.std():.1f}, "
                  f"lost so far {subscriber.lost}")
            del image  # the frame goes back to the camera when its last view goes
            sample.release()
