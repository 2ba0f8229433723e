"""argparse types for the commands' numbers and devices: a bad value is refused by argparse with one
line naming the option, before a command loads anything or writes a byte."""

from __future__ import annotations

import argparse
import math

MAX_PORT = 65535


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive whole number")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite number")
    return value


def decay(text: str) -> float:
    """A moving average's decay per step: 0 (off) up to, not including, 1."""
    value = _number(text, float)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 0 and below 1 (0: off)")
    return value


def bins_or_auto(text: str) -> int | str:
    """UV bins per axis of the tile key (1..MAX_BINS), or auto."""
    from backend.hashing import MAX_BINS

    if text == "auto":
        return text
    value = _number(text, int)
    if not 1 <= value <= MAX_BINS:
        raise argparse.ArgumentTypeError(f"{text!r} must be auto or 1..{MAX_BINS}")
    return value


def port_number(text: str) -> int:
    value = _number(text, int)
    if not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0..{MAX_PORT} (0 picks a free port)")
    return value


def torch_device(text: str) -> str:
    """A device string torch understands (cpu, cuda, cuda:1, ...); whether it is there is checked later."""
    import torch

    try:
        torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device; use cpu or cuda") from None
    return text


def _number(text: str, kind: type):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
