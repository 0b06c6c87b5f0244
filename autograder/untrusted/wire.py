"""Length-prefixed messages of tensors and plain data between the grader and its worker.

Messages are written with `torch.save` and read with `torch.load(weights_only=True)`, whose
restricted unpickler builds only tensors and plain containers: nothing the worker sends can
run code in the grader. `check_plain` then rejects anything but the expected types.
"""
import io
import os
import select
import struct
import time

import torch

HEADER = struct.Struct("<Q")
MAX_MESSAGE_BYTES = 256 * 2**20
PLAIN_SCALARS = (str, int, float, bool, type(None))


class WireError(Exception):
    """The other side sent something that is not a valid message, or went away."""


def send(fd: int, message: dict) -> None:
    buffer = io.BytesIO()
    torch.save(message, buffer)
    data = buffer.getvalue()
    view = memoryview(HEADER.pack(len(data)) + data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes:
    chunks, remaining = [], size
    while remaining:
        if deadline is not None:
            timeout = deadline - time.monotonic()
            if timeout <= 0 or not select.select([fd], [], [], timeout)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise WireError("the other side closed the connection")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def receive(fd: int, timeout: float | None = None) -> dict:
    """Read one message; TimeoutError when none is complete within `timeout` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    (size,) = HEADER.unpack(_read_exactly(fd, HEADER.size, deadline))
    if size > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {size} bytes is over the {MAX_MESSAGE_BYTES} byte limit")
    data = _read_exactly(fd, size, deadline)
    try:
        message = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as error:  # noqa: BLE001 - any failure to decode is the sender's fault
        raise WireError(f"undecodable message: {type(error).__name__}: {error}") from None
    check_plain(message)
    if not isinstance(message, dict):
        raise WireError("a message must be a dict")
    return message


def check_plain(value: object, depth: int = 0) -> None:
    """Accept only dense tensors, plain scalars and lists/tuples/dicts (str keys) of them."""
    if depth > 20:
        raise WireError("message nested too deeply")
    if type(value) is torch.Tensor:
        if value.layout != torch.strided or value.is_quantized:
            raise WireError("only dense tensors may be sent")
    elif type(value) in PLAIN_SCALARS:
        pass
    elif type(value) in (list, tuple):
        for item in value:
            check_plain(item, depth + 1)
    elif type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise WireError("dict keys must be str")
            check_plain(item, depth + 1)
    else:
        raise WireError(f"unexpected type in message: {type(value).__name__}")
