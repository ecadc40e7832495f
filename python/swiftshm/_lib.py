"""ctypes declarations of libswiftshm.so (Sources/CSwiftShm/include/swiftshm.h)."""
from __future__ import annotations

import ctypes
import os
from ctypes import POINTER, c_char_p, c_int, c_int32, c_int64, c_uint32, c_uint64, c_void_p

ABI_MAJOR = 1
ABI_MINOR = 2  # the oldest minor version this package calls into (2: pool allocation, footprint)

OK = 0
E_INVALID_ARGUMENT = -1
E_NOT_FOUND = -2
E_EXISTS = -3
E_TIMED_OUT = -4
E_INCOMPATIBLE = -5
E_NO_SPACE = -6
E_EXHAUSTED = -7
E_CORRUPT = -8
E_TRUNCATED = -9
E_SYSTEM = -10
E_STATE = -11

OVERFLOW = {"overwrite": 0, "discard": 1, "block": 2}
POOL = {"automatic": 0, "reserved": 1, "growing": 2}
OPEN_MODE = {"open_or_create": 0, "open": 1, "create": 2}


class PubSubOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("type_name", c_char_p),
        ("type_size", c_uint64),
        ("type_alignment", c_uint64),
        ("max_publishers", c_uint32),
        ("max_subscribers", c_uint32),
        ("buffer_size", c_uint32),
        ("history_size", c_uint32),
        ("max_loans", c_uint32),
        ("max_borrowed", c_uint32),
        ("overflow", c_uint32),
        ("open_mode", c_uint32),
    ]


class ReqResOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("type_name", c_char_p),
        ("request_size", c_uint64),
        ("request_alignment", c_uint64),
        ("response_size", c_uint64),
        ("max_clients", c_uint32),
        ("max_servers", c_uint32),
        ("queue_depth", c_uint32),
        ("open_mode", c_uint32),
    ]


def _find_library() -> str:
    explicit = os.environ.get("SWIFTSHM_LIBRARY")
    if explicit:
        return explicit
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libswiftshm.so")
    if os.path.exists(here):
        return here
    raise ImportError("libswiftshm.so not found: install with `pip install ./python` (it builds the library), "
                      "or set SWIFTSHM_LIBRARY to its path")


lib = ctypes.CDLL(_find_library())

_H = c_void_p
_PH = POINTER(c_void_p)


def _declare(name, restype, *argtypes):
    function = getattr(lib, name)
    function.restype = restype
    function.argtypes = list(argtypes)


_declare("shm_abi_version", c_uint32)
# Checked before anything else is looked up: an older library lacks later functions.
_version = lib.shm_abi_version()
if (_version >> 16) != ABI_MAJOR or (_version & 0xFFFF) < ABI_MINOR:
    raise ImportError(f"libswiftshm ABI {_version >> 16}.{_version & 0xFFFF}, this package needs {ABI_MAJOR}.{ABI_MINOR} or a "
                      "later minor version")

_declare("shm_last_error", c_char_p)
_declare("shm_node_create", c_int, c_char_p, _PH)
_declare("shm_node_free", None, _H)
_declare("shm_pubsub_options_init", None, POINTER(PubSubOptions))
_declare("shm_pubsub_open", c_int, _H, c_char_p, POINTER(PubSubOptions), _PH)
_declare("shm_pubsub_free", None, _H)
_declare("shm_pubsub_max_bytes", c_uint64, _H)
_declare("shm_publisher_create", c_int, _H, _PH)
_declare("shm_publisher_create_with_pool", c_int, _H, c_uint32, _PH)
_declare("shm_publisher_free", None, _H)
_declare("shm_publisher_footprint", c_int, _H, POINTER(c_uint64), POINTER(c_uint32), POINTER(c_uint64), POINTER(c_uint64))
_declare("shm_publisher_set_send_timeout", c_int, _H, c_int64)
_declare("shm_publisher_subscribers", c_int, _H, POINTER(c_uint32))
_declare("shm_publisher_wait_for_subscribers", c_int, _H, c_uint32, c_int64)
_declare("shm_publisher_loan", c_int, _H, c_uint64, _PH, _PH)
_declare("shm_loan_send", c_int, _H, POINTER(c_uint32))
_declare("shm_loan_discard", None, _H)
_declare("shm_publisher_send_copy", c_int, _H, c_void_p, c_uint64, POINTER(c_uint32))
_declare("shm_subscriber_create", c_int, _H, _PH)
_declare("shm_subscriber_free", None, _H)
_declare("shm_subscriber_receive", c_int, _H, c_int64, _PH, _PH, POINTER(c_uint64))
_declare("shm_subscriber_receive_copy", c_int, _H, c_int64, c_void_p, c_uint64, POINTER(c_uint64))
_declare("shm_subscriber_lost", c_uint64, _H)
_declare("shm_subscriber_fd", c_int, _H, POINTER(c_int32))
_declare("shm_subscriber_rearm", c_int, _H)
_declare("shm_sample_sequence", c_uint64, _H)
_declare("shm_sample_publisher", c_uint64, _H)
_declare("shm_sample_release", None, _H)
_declare("shm_event_open", c_int, _H, c_char_p, c_uint32, _PH)
_declare("shm_event_free", None, _H)
_declare("shm_notifier_create", c_int, _H, _PH)
_declare("shm_notifier_free", None, _H)
_declare("shm_notify", c_int, _H, c_uint32)
_declare("shm_listener_create", c_int, _H, _PH)
_declare("shm_listener_free", None, _H)
_declare("shm_listener_wait", c_int, _H, c_int64, POINTER(c_uint32), c_uint32, POINTER(c_uint32))
_declare("shm_segment_create", c_int, c_char_p, c_uint64, _PH)
_declare("shm_segment_open", c_int, c_char_p, _PH)
_declare("shm_segment_free", None, _H)
_declare("shm_segment_data", c_void_p, _H)
_declare("shm_segment_size", c_uint64, _H)
_declare("shm_segment_unlink", c_int, c_char_p)
_declare("shm_log_open", c_int, c_char_p, c_uint64, _PH)
_declare("shm_log_free", None, _H)
_declare("shm_appender_create", c_int, _H, _PH)
_declare("shm_appender_free", None, _H)
_declare("shm_append", c_int, _H, c_void_p, c_uint64, POINTER(c_uint64))
_declare("shm_tailer_create", c_int, _H, c_uint64, _PH)
_declare("shm_tailer_free", None, _H)
_declare("shm_tailer_next", c_int, _H, c_int64, _PH, _PH, POINTER(c_uint64), POINTER(c_uint64), POINTER(c_uint64))
_declare("shm_record_free", None, _H)


_declare("shm_appender_claim", c_int, _H, c_uint64, _PH, _PH, POINTER(c_uint64))
_declare("shm_claim_commit", c_int, _H, POINTER(c_uint64))
_declare("shm_claim_abort", None, _H)
_declare("shm_reqres_options_init", None, POINTER(ReqResOptions))
_declare("shm_reqres_open", c_int, _H, c_char_p, POINTER(ReqResOptions), _PH)
_declare("shm_reqres_free", None, _H)
_declare("shm_reqres_max_request_bytes", c_uint64, _H)
_declare("shm_reqres_max_response_bytes", c_uint64, _H)
_declare("shm_client_create", c_int, _H, _PH)
_declare("shm_client_free", None, _H)
_declare("shm_client_set_send_timeout", c_int, _H, c_int64)
_declare("shm_client_loan", c_int, _H, c_uint64, _PH, _PH)
_declare("shm_request_send", c_int, _H, _PH)
_declare("shm_request_discard", None, _H)
_declare("shm_client_send_copy", c_int, _H, c_void_p, c_uint64, _PH)
_declare("shm_pending_response_id", c_uint64, _H)
_declare("shm_pending_response_receive", c_int, _H, c_int64, _PH, _PH, POINTER(c_uint64), POINTER(c_int))
_declare("shm_pending_response_receive_copy", c_int, _H, c_int64, c_void_p, c_uint64, POINTER(c_uint64), POINTER(c_int))
_declare("shm_pending_response_free", None, _H)
_declare("shm_response_release", None, _H)
_declare("shm_server_create", c_int, _H, _PH)
_declare("shm_server_free", None, _H)
_declare("shm_server_set_send_timeout", c_int, _H, c_int64)
_declare("shm_server_receive", c_int, _H, c_int64, _PH, _PH, POINTER(c_uint64))
_declare("shm_active_request_client", c_uint64, _H)
_declare("shm_active_request_id", c_uint64, _H)
_declare("shm_active_request_loan", c_int, _H, c_uint64, _PH, _PH)
_declare("shm_response_send", c_int, _H, c_int, POINTER(c_int))
_declare("shm_response_discard", None, _H)
_declare("shm_active_request_respond_copy", c_int, _H, c_void_p, c_uint64, c_int, POINTER(c_int))
_declare("shm_active_request_free", None, _H)
_declare("shm_waitset_create", c_int, _PH)
_declare("shm_waitset_free", None, _H)
_declare("shm_waitset_attach_subscriber", c_int, _H, _H, POINTER(c_uint32))
_declare("shm_waitset_attach_listener", c_int, _H, _H, POINTER(c_uint32))
_declare("shm_waitset_attach_server", c_int, _H, _H, POINTER(c_uint32))
_declare("shm_waitset_wait", c_int, _H, c_int64, POINTER(c_uint32), c_uint32, POINTER(c_uint32))
_declare("shm_waitset_fd", c_int, _H, POINTER(c_int32))
_declare("shm_waitset_rearm", c_int, _H)
