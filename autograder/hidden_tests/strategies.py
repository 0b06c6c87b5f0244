"""Hypothesis strategies for the hidden tests: shapes first, then tensors of those shapes."""
from __future__ import annotations

import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


@st.composite
def batch_shapes(draw, *, min_dims: int = 1, max_dims: int = 3, max_side: int = 5) -> tuple[int, ...]:
    """A shape (..., last) whose leading sides differ from the last one when possible."""
    return tuple(draw(st.lists(st.integers(1, max_side), min_size=min_dims, max_size=max_dims)))


@st.composite
def tensors(draw, shape: tuple[int, ...], *, low: float = -3.0, high: float = 3.0,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A tensor of the given shape with finite entries in [low, high]."""
    elements = st.floats(low, high, allow_nan=False, allow_infinity=False, width=32)
    array = draw(hnp.arrays(dtype="float64", shape=shape, elements=elements))
    return torch.from_numpy(array).to(dtype)


@st.composite
def gaussians(draw, *, shape: tuple[int, ...] | None = None, dtype: torch.dtype = torch.float32,
              logvar_range: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar) of one shape."""
    shape = shape or draw(batch_shapes())
    mu = draw(tensors(shape, dtype=dtype))
    logvar = draw(tensors(shape, low=-logvar_range, high=logvar_range, dtype=dtype))
    return mu, logvar


@st.composite
def binary_images(draw, shape: tuple[int, ...], *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    bits = draw(hnp.arrays(dtype="bool", shape=shape))
    return torch.from_numpy(bits).to(dtype)
