"""Events through the C ABI: ids that fire faster than a caller's array is
large come with the next call, none lost (they were dropped: the listener had
marked them seen)."""
from ctypes import byref, c_uint32

import swiftshm
from swiftshm import _lib


def test_ids_that_do_not_fit_come_with_the_next_call(name):
    with swiftshm.Node("py-events") as node:
        event = node.event(name, max_event_id=15)
        listener = event.listener()
        notifier = event.notifier()
        for event_id in range(10):
            notifier.notify(event_id)
        ids = (c_uint32 * 3)()
        count = c_uint32()
        seen = []
        for _ in range(10):
            rc = _lib.lib.shm_listener_wait(listener._handle.pointer, 0, ids, 3, byref(count))
            assert rc == 0
            if count.value == 0:
                break
            assert count.value <= 3
            seen += list(ids[:count.value])
        assert sorted(seen) == list(range(10)), seen
        # Drained: nothing more, and a new notification is seen again.
        assert listener.wait(0) == []
        notifier.notify(7)
        assert listener.wait(1.0) == [7]
