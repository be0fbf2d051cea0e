"""Validation of the arguments every model shares (classes, channels, input size)."""

from __future__ import annotations

from collections.abc import Sequence

from robustfair.errors import ConfigError

InputSize = int | Sequence[int]


def check_positive(value: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{field}: {value!r} must be an integer >= 1")
    return value


def spatial_shape(input_size: InputSize) -> tuple[int, ...]:
    """The spatial shape of one input: int s -> (s, s); a tuple is taken as given.

    An empty tuple means no spatial dimensions (tabular input [B, D] with D = in_channels).
    """
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        return (check_positive(input_size, "input_size"),) * 2
    if isinstance(input_size, (str, bytes)) or not isinstance(input_size, Sequence):
        raise ConfigError(f"input_size: expected an integer or a list of integers, got {input_size!r}")
    return tuple(check_positive(s, "input_size") for s in input_size)


def image_shape(input_size: InputSize) -> tuple[int, int]:
    """(H, W) for a convolutional model; rejects anything that is not 2-D."""
    shape = spatial_shape(input_size)
    if len(shape) != 2:
        raise ConfigError(f"input_size: {input_size!r} is not an image size; give H (square) or [H, W]")
    return shape  # type: ignore[return-value]
