"""Length-prefixed messages of tensors and plain data between the grader and its worker.

A message is a dict of plain values: None, bool, int, float, str, lists (tuples become
lists), dicts with str keys, and dense tensors. It travels as a JSON description followed by
the raw bytes of its tensors:

    <u64 length of the rest> <u32 length of the JSON> JSON tensor-bytes...

where the JSON is {"m": message, "t": [[dtype, shape], ...]} with every list written as
{"l": [...]}, every dict as {"d": {...}} and the i-th tensor as {"t": i}. Reading builds
only those types (no pickle, no code), checks every size against its dtype and shape, and
rejects anything else, so nothing the worker sends can run code in the grader.
"""
import json
import math
import os
import select
import struct
import time

import torch

HEADER = struct.Struct("<Q")
JSON_LENGTH = struct.Struct("<I")
MAX_MESSAGE_BYTES = 256 * 2**20
MAX_DEPTH = 20
PLAIN_SCALARS = (str, int, float, bool, type(None))
DTYPES = {str(dtype).removeprefix("torch."): dtype for dtype in (
    torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128)}


class WireError(Exception):
    """The other side sent something that is not a valid message, or went away."""


def _describe(value: object, tensors: list[torch.Tensor], depth: int) -> object:
    if depth > MAX_DEPTH:
        raise WireError("message nested too deeply")
    kind = type(value)
    if kind is torch.Tensor:
        if value.layout != torch.strided or value.is_quantized or value.dtype not in DTYPES.values():
            raise WireError("only dense tensors of plain dtypes may be sent")
        tensors.append(value)
        return {"t": len(tensors) - 1}
    if kind in PLAIN_SCALARS:
        return value
    if kind in (list, tuple):
        return {"l": [_describe(item, tensors, depth + 1) for item in value]}
    if kind is dict:
        if any(type(key) is not str for key in value):
            raise WireError("dict keys must be str")
        return {"d": {key: _describe(item, tensors, depth + 1) for key, item in value.items()}}
    raise WireError(f"unexpected type in message: {kind.__name__}")


def raw_bytes(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().resolve_conj().resolve_neg().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def encode(message: dict) -> bytes:
    """The bytes of `message` (WireError for anything but plain values and dense tensors)."""
    if type(message) is not dict:
        raise WireError("a message must be a dict")
    tensors: list[torch.Tensor] = []
    description = _describe(message, tensors, 0)
    layout = [[str(t.dtype).removeprefix("torch."), list(t.shape)] for t in tensors]
    text = json.dumps({"m": description, "t": layout}, separators=(",", ":")).encode()
    return b"".join([JSON_LENGTH.pack(len(text)), text, *(raw_bytes(t) for t in tensors)])


def _tensors(layout: object, data: memoryview) -> list[torch.Tensor]:
    if type(layout) is not list:
        raise WireError("malformed tensor layout")
    tensors, offset = [], 0
    for entry in layout:
        if not (type(entry) is list and len(entry) == 2 and entry[0] in DTYPES and type(entry[1]) is list
                and all(type(n) is int and n >= 0 for n in entry[1])):
            raise WireError("malformed tensor layout")
        dtype, shape = DTYPES[entry[0]], entry[1]
        size = math.prod(shape) * dtype.itemsize
        if offset + size > len(data):
            raise WireError("the tensors' bytes are cut short")
        raw = bytearray(data[offset:offset + size])
        tensors.append(torch.frombuffer(raw, dtype=dtype).reshape(shape) if size else torch.empty(shape, dtype=dtype))
        offset += size
    if offset != len(data):
        raise WireError("bytes left over after the tensors")
    return tensors


def _text(text: str) -> str:
    """`text` as valid Unicode: an unpaired surrogate, which JSON can carry and no UTF-8 file,
    terminal or database takes, becomes U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _build(node: object, tensors: list[torch.Tensor], depth: int) -> object:
    if depth > MAX_DEPTH:
        raise WireError("message nested too deeply")
    if type(node) is str:
        return _text(node)
    if type(node) in PLAIN_SCALARS:
        return node
    if type(node) is dict and len(node) == 1:
        (tag, content), = node.items()
        if tag == "t" and type(content) is int and 0 <= content < len(tensors):
            return tensors[content]
        if tag == "l" and type(content) is list:
            return [_build(item, tensors, depth + 1) for item in content]
        if tag == "d" and type(content) is dict:
            return {_text(key): _build(item, tensors, depth + 1) for key, item in content.items()}
    raise WireError("malformed message")


def decode(data: bytes) -> dict:
    """The message in `data`, built from plain values and fresh tensors only, or WireError."""
    view = memoryview(data)
    try:
        (size,) = JSON_LENGTH.unpack(view[:JSON_LENGTH.size])
        document = json.loads(bytes(view[JSON_LENGTH.size:JSON_LENGTH.size + size]))
    except (struct.error, ValueError, RecursionError) as error:
        raise WireError(f"undecodable message: {type(error).__name__}: {error}") from None
    if not (type(document) is dict and set(document) == {"m", "t"}):
        raise WireError("malformed message")
    message = _build(document["m"], _tensors(document["t"], view[JSON_LENGTH.size + size:]), 0)
    if type(message) is not dict:
        raise WireError("a message must be a dict")
    return message


def send(fd: int, message: dict) -> None:
    data = encode(message)
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
    return decode(_read_exactly(fd, size, deadline))
