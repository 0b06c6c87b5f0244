"""Hypothesis's examples (tensors, tuples, lists, dicts, numbers) as JSON, read back exactly.

Unlike the worker's wire format, which turns tuples into lists, this keeps every type: a
test body replayed on a value read back must see what hypothesis gave it, down to the bits
of each tensor. Each container is tagged ({"tuple": [...]}, {"list": [...]},
{"dict": {...}}), a tensor is {"tensor": [dtype, shape, base64 of its bytes]}, and None,
bool, int, float and str are themselves (floats keep their repr, NaN and infinities
included). Reading builds only those types and raises ValueError on anything else.
"""
from __future__ import annotations

import base64
import binascii
import math

import torch

from autograder.untrusted.wire import DTYPES, raw_bytes

SCALARS = (type(None), bool, int, float, str)
CONTAINERS = {"tuple": tuple, "list": list}


def to_json(value: object) -> object:
    """The JSON document of `value`; ValueError for a type this format does not keep exactly."""
    kind = type(value)
    if kind in SCALARS:
        return value
    if kind in (tuple, list):
        return {kind.__name__: [to_json(item) for item in value]}
    if kind is dict and all(type(key) is str for key in value):
        return {"dict": {key: to_json(item) for key, item in value.items()}}
    if kind is torch.Tensor and _plain(value):
        dtype = str(value.dtype).removeprefix("torch.")
        return {"tensor": [dtype, list(value.shape), base64.b64encode(raw_bytes(value)).decode("ascii")]}
    raise ValueError(f"cannot keep a {kind.__name__} exactly")


def _plain(tensor: torch.Tensor) -> bool:
    """A tensor that its dtype, shape and bytes describe whole."""
    return (tensor.device.type == "cpu" and tensor.layout == torch.strided and tensor.is_contiguous()
            and not tensor.requires_grad and tensor.dtype in DTYPES.values())


def from_json(document: object) -> object:
    """The value `to_json` gave `document` for; ValueError for anything else."""
    if type(document) in SCALARS:
        return document
    if type(document) is not dict or len(document) != 1:
        raise ValueError("not a value of this format")
    (tag, content), = document.items()
    if tag in CONTAINERS and type(content) is list:
        return CONTAINERS[tag](from_json(item) for item in content)
    if tag == "dict" and type(content) is dict:
        return {key: from_json(item) for key, item in content.items()}
    if tag == "tensor":
        return _tensor(content)
    raise ValueError("not a value of this format")


def _tensor(content: object) -> torch.Tensor:
    if not (type(content) is list and len(content) == 3 and content[0] in DTYPES and type(content[1]) is list
            and all(type(n) is int and n >= 0 for n in content[1]) and type(content[2]) is str):
        raise ValueError("malformed tensor")
    dtype, shape = DTYPES[content[0]], content[1]
    try:
        data = bytearray(base64.b64decode(content[2], validate=True))
    except binascii.Error as error:
        raise ValueError(f"malformed tensor bytes: {error}") from None
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise ValueError("tensor bytes do not match its shape")
    return torch.frombuffer(data, dtype=dtype).reshape(shape) if data else torch.empty(shape, dtype=dtype)
