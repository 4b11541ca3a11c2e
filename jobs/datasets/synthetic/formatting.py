"""Vectorized building of arrow string columns from numpy arrays: fixed-width ASCII, hex,
UUIDs, timestamps, ISO dates, prefixed ids and IPv4 addresses."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def fixed_width_strings(chars: np.ndarray) -> pa.Array:
    """An arrow string array from an (n, width) uint8 array of ASCII characters."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars).tobytes()))


def hex_chars(rng: np.random.Generator, n: int, nbytes: int) -> np.ndarray:
    """An (n, 2 * nbytes) uint8 array of the lowercase hex digits of random bytes."""
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    return np.frombuffer(raw.tobytes().hex().encode("ascii"), dtype=np.uint8).reshape(n, 2 * nbytes)


def uuid4_strings(rng: np.random.Generator, n: int) -> pa.Array:
    """Random RFC 4122 version-4 UUIDs ("3f2b...-4...-8...")."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = np.frombuffer(raw.tobytes().hex().encode("ascii"), dtype=np.uint8).reshape(n, 32)
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for src, dst in ((slice(0, 8), slice(0, 8)), (slice(8, 12), slice(9, 13)), (slice(12, 16), slice(14, 18)),
                     (slice(16, 20), slice(19, 23)), (slice(20, 32), slice(24, 36))):  # fmt: skip
        out[:, dst] = hexed[:, src]
    return fixed_width_strings(out)


def timestamp_strings(seconds: np.ndarray) -> pa.Array:
    """'YYYY-MM-DDTHH:MM:SSZ' strings from epoch seconds, built digit by digit (the dates,
    few in practice, are formatted once each)."""
    seconds = np.asarray(seconds, dtype=np.int64)
    days, second_of_day = np.divmod(seconds, 86400)
    first = int(days.min()) if len(days) else 0
    span = (int(days.max()) - first + 1) if len(days) else 0
    date_text = np.datetime_as_string(np.arange(first, first + span).astype("datetime64[D]"), unit="D")
    date_chars = np.frombuffer(date_text.astype("S10").tobytes(), dtype=np.uint8).reshape(span, 10)
    chars = np.empty((len(seconds), 20), dtype=np.uint8)
    chars[:, :10] = date_chars[days - first]
    chars[:, [10, 13, 16, 19]] = np.frombuffer(b"T::Z", dtype=np.uint8)
    for position, value in ((11, second_of_day // 3600), (14, second_of_day // 60 % 60), (17, second_of_day % 60)):
        chars[:, position] = ord("0") + value // 10
        chars[:, position + 1] = ord("0") + value % 10
    return fixed_width_strings(chars)


def iso_dates(days_since_epoch: np.ndarray) -> np.ndarray:
    """'YYYY-MM-DD' strings from dates (datetime64[D], or integer days since 1970-01-01)."""
    return np.datetime_as_string(days_since_epoch.astype("datetime64[D]"), unit="D")


def prefixed_ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """``prefix`` followed by each number zero-padded to ``width`` digits ("acc-000042")."""
    return np.strings.add(prefix, np.strings.zfill(numbers.astype(str), width))


def ipv4_strings(octets: np.ndarray) -> np.ndarray:
    """Dotted quads from an (n, 4) integer array."""
    text = octets.astype(str)
    out = text[:, 0]
    for i in range(1, 4):
        out = np.strings.add(np.strings.add(out, "."), text[:, i])
    return out
