"""The agent protocol's value codec and frames, Python side (see docs/protocol.md).

Mirror of ``lua/bioxen/wire.lua``.  Mapping:

=================  =====================================================
Lua                Python
=================  =====================================================
nil                ``None``
true / false       ``bool``
integer            ``int`` (|n| < 2**63; Lua 5.1/LuaJIT keep 53 bits)
float              ``float`` (inf, -inf, nan included)
string             ``str`` when valid UTF-8, else ``bytes``
table              ``list`` if it has only an array part, else ``dict``;
                   the empty table is ``{}``
=================  =====================================================

Python → Lua: ``str`` is sent as UTF-8; ``bytes``/``bytearray``/``memoryview`` as they are;
``list``/``tuple`` become arrays (``None`` items kept: the count is exact); ``dict`` becomes
key/value pairs.  Anything else, a cycle, or nesting deeper than 200 raises
:class:`WireError` naming the path of the bad value (``value #2.seqs[3]``).

Big strings are the common case (sequences, whole FASTA files), so nothing here loops per
byte: text is decoded straight out of the frame buffer (``str(memoryview, "utf-8")``),
:class:`FrameReader` (the one frame reader, used by the VM handle for every backend) checks
each header and declared length against a limit before it believes it and reads a big payload
into a buffer that grows as the bytes arrive and becomes the value without a copy, and
:func:`request_parts` sends strings of 1 MiB or more as ``B`` (blob) frames that
:func:`write_parts` writes without joining, and the agent reads without copying.  Agents
configured with ``blobs`` answer the same way: big strings of a reply come in ``B`` frames
before the ``R`` frame, each read into a buffer of its own, and the
decoders take them from the ``blobs`` list they are given (``S<i>;`` refers to ``blobs[i-1]``).
"""
from __future__ import annotations

import math
import os
import re
from sys import getsizeof as sys_getsizeof
TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import Any, Iterator

__all__ = [
    "WireError",
    "encode",
    "encode_list",
    "decode",
    "decode_at",
    "frame",
    "frame_parts",
    "request",
    "request_parts",
    "write_parts",
    "decode_reply",
    "FrameReader",
    "read_frame",
    "MAX_DEPTH",
    "HELLO",
    "REQUEST",
    "OUTPUT",
    "REPLY",
    "BLOB",
    "BLOB_THRESHOLD",
    "encode_parts",
    "big_buffer",
    "skip_value",
    "check_header",
    "FrameError",
    "AGENT_KINDS",
    "MAX_HELLO",
    "MAX_REPLY",
    "MAX_BLOB",
]

#: Frame kinds.  BLOB frames carry a big string of the next request or reply (protocol.md, "Blobs").
HELLO, REQUEST, OUTPUT, REPLY, BLOB = b"H", b"Q", b"O", b"R", b"B"

#: Strings at least this long travel in their own BLOB frame (request_parts).
BLOB_THRESHOLD = 1 << 20

MAX_DEPTH = 200
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_MAX_FRAME = 2**53


class WireError(ValueError):
    """A value that cannot be encoded, or bytes that are not valid wire data."""


# ------------------------------------------------------------------------------------------
# Paths for error messages


def _key_text(key: Any) -> str:
    if isinstance(key, str) and key.isidentifier() and key.isascii():
        return "." + key
    if isinstance(key, bool):
        return "[true]" if key else "[false]"
    return f"[{key!r}]"


def _path(root: str, keys: list) -> str:
    return root + "".join(_key_text(k) for k in keys)


# ------------------------------------------------------------------------------------------
# Encoding


def _encode_float(v: float) -> bytes:
    if v != v:
        return b"dnan;"
    if v == math.inf:
        return b"dinf;"
    if v == -math.inf:
        return b"d-inf;"
    return b"d" + repr(v).encode("ascii") + b";"


def _encode_into(v: Any, parts: list, keys: list, on_path: set, root: str, blobs: list | None = None) -> None:
    # Most frequent types first.
    t = type(v)
    if t is str:
        b = (len(v) >= BLOB_THRESHOLD and _ascii_view(v)) or v.encode("utf-8", "surrogatepass")
        if blobs is not None and len(b) >= BLOB_THRESHOLD:
            blobs.append(b)
            parts.append(b"S%d;" % len(blobs))
        else:
            parts.append(b"s%d:" % len(b))
            parts.append(b)
    elif t is bytes or t is bytearray or t is memoryview:
        n = v.nbytes if t is memoryview else len(v)
        if blobs is not None and n >= BLOB_THRESHOLD:
            blobs.append(v)
            parts.append(b"S%d;" % len(blobs))
        else:
            parts.append(b"s%d:" % n)
            parts.append(v)
    elif v is None:
        parts.append(b"n")
    elif v is True:
        parts.append(b"t")
    elif v is False:
        parts.append(b"f")
    elif isinstance(v, int):
        if not _INT_MIN <= v <= _INT_MAX:
            raise WireError(f"cannot encode {_path(root, keys)}: integer {v} does not fit in 64 bits")
        parts.append(b"i%d;" % v)
    elif isinstance(v, float):
        parts.append(_encode_float(v))
    elif isinstance(v, (list, tuple, dict)):
        if id(v) in on_path:
            raise WireError(f"cannot encode a cycle at {_path(root, keys)} (the container is its own ancestor)")
        if len(keys) >= MAX_DEPTH:
            raise WireError(f"cannot encode {_path(root, keys)}: nesting deeper than {MAX_DEPTH}")
        on_path.add(id(v))
        if isinstance(v, dict):
            parts.append(b"{0;")
            for k, item in v.items():
                if isinstance(k, (dict, list, tuple)) or k is None:
                    raise WireError(
                        f"cannot encode {_path(root, keys)}: a key of type {type(k).__name__} ({k!r:.40})"
                    )
                if isinstance(k, float) and k != k:
                    raise WireError(f"cannot encode {_path(root, keys)}: nan as a table key")
                keys.append(k)
                _encode_into(k, parts, keys, on_path, root)
                _encode_into(item, parts, keys, on_path, root, blobs)
                keys.pop()
        else:
            parts.append(b"{%d;" % len(v))
            append = parts.append
            keys.append(0)
            for i, item in enumerate(v, 1):
                ti = type(item)
                # Fast paths for the common scalars; the rest (and every error) below.
                if ti is int and _INT_MIN <= item <= _INT_MAX:
                    append(b"i%d;" % item)
                elif ti is float and item == item and item not in (math.inf, -math.inf):
                    append(b"d%r;" % item)
                elif ti is str and len(item) < 4096:
                    b = item.encode("utf-8", "surrogatepass")
                    append(b"s%d:" % len(b))
                    append(b)
                else:
                    keys[-1] = i
                    _encode_into(item, parts, keys, on_path, root, blobs)
            keys.pop()
        parts.append(b"}")
        on_path.discard(id(v))
    else:
        raise WireError(f"cannot encode a {type(v).__name__} at {_path(root, keys)}")


_ASCII_DATA_OFFSET: int | None = None  # where a compact ASCII str keeps its bytes; 0: unknown


def _ascii_view(s: str) -> memoryview | None:
    """The bytes of a big ASCII ``str`` (DNA, protein…) as a read-only view, without the copy
    ``encode`` makes; ``None`` where that is not possible.  ASCII text is its own UTF-8, and
    CPython keeps a compact ASCII string's characters in one block right after its header;
    the view holds a reference to the string, so it cannot outlive it."""
    global _ASCII_DATA_OFFSET
    if _ASCII_DATA_OFFSET is None:
        offset = 0
        try:
            import ctypes
            import sys

            if sys.implementation.name == "cpython":
                candidate = sys.getsizeof("") - 1  # sizeof(PyASCIIObject); "" is compact ASCII
                probe = "".join(["probe-", str(id(candidate)), "-ascii"])
                if ctypes.string_at(id(probe) + candidate, len(probe)) == probe.encode():
                    offset = candidate
        except Exception:
            offset = 0
        _ASCII_DATA_OFFSET = offset
    offset = _ASCII_DATA_OFFSET
    # Compact ASCII: isascii() and exactly header + characters + NUL in size.
    if not offset or not s.isascii() or sys_getsizeof(s) != offset + len(s) + 1:
        return None
    import ctypes

    cells = (ctypes.c_char * len(s)).from_address(id(s) + offset)
    cells._string = s  # keeps the string alive as long as the view
    return memoryview(cells).cast("B").toreadonly()


def encode_parts(value: Any, root: str = "value", blobs: list | None = None) -> list:
    """Encode ``value`` as a list of bytes-like pieces (join them, or write them in order).

    With ``blobs``, strings of at least :data:`BLOB_THRESHOLD` bytes are appended there and
    referred to as ``S<i>;`` (``i`` counts from 1 over the whole list): send each one as a
    ``B`` frame, in order, before the frame that holds the pieces."""
    parts: list = []
    _encode_into(value, parts, [], set(), root, blobs)
    return parts


def encode(value: Any, root: str = "value") -> bytes:
    """Encode one value.  ``root`` names it in error messages."""
    return b"".join(encode_parts(value, root))


def encode_list(values: list | tuple) -> bytes:
    """Encode a value list (arguments or results: ``None`` items kept, count exact)."""
    parts: list = [b"{%d;" % len(values)]
    for i, item in enumerate(values, 1):
        _encode_into(item, parts, [], set(), f"value #{i}")
    parts.append(b"}")
    return b"".join(parts)


# ------------------------------------------------------------------------------------------
# Decoding

_TAG_S, _TAG_I, _TAG_D, _TAG_OPEN, _TAG_CLOSE = b"s"[0], b"i"[0], b"d"[0], b"{"[0], b"}"[0]
_TAG_N, _TAG_T, _TAG_F, _TAG_BLOB = b"n"[0], b"t"[0], b"f"[0], b"S"[0]
#: The only spellings of numbers (Python's int() and float() would also take "1_0", " 5", "+5").
_INT_TEXT = re.compile(rb"-?[0-9]+")
_UINT_TEXT = re.compile(rb"[0-9]+")
_FLOAT_TEXT = re.compile(rb"-?(?:inf|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)")


def _fail(pos: int, root: str, keys: list, what: str):
    raise WireError(f"malformed wire data at byte {pos + 1} (in {_path(root, keys)}): {what}")


_PROBE = 65536


def _is_binary(view: memoryview) -> bool:
    """True when the first 64 KiB of a long string are not UTF-8 (so it stays bytes).

    Decoding a 100 MB binary string as UTF-8 fails in its first bytes, but the
    UnicodeDecodeError takes a copy of everything it was given: probing a prefix first keeps
    that copy small.  (A truncated character at the probe's end is not an error.)"""
    if len(view) <= _PROBE:
        return False
    try:
        str(view[:_PROBE], "utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < _PROBE - 3
    return False


def _string(view: memoryview) -> str | bytes:
    # Decoding straight from the buffer: one pass and one copy for text (DNA, protein…);
    # binary data usually fails in its first bytes and is then copied once as bytes.
    if _is_binary(view):
        return bytes(view)
    try:
        return str(view, "utf-8")
    except UnicodeDecodeError:
        return bytes(view)


def _blob_value(blob: Any) -> str | bytes:
    """A blob as a Python string: text is decoded (one copy), and binary data that arrived
    in a ``bytes`` buffer (see :func:`big_buffer`) is that very object, not copied."""
    if type(blob) is bytes:
        with memoryview(blob) as view:
            if _is_binary(view):
                return blob
        try:
            return str(blob, "utf-8")
        except UnicodeDecodeError:
            return blob
    return _string(memoryview(blob).cast("B"))


def _decode_blob(data: bytes, pos: int, root: str, keys: list, blobs: list | None) -> tuple[Any, int]:
    semi = data.find(b";", pos + 1, pos + 22)
    text = data[pos + 1 : semi] if semi > 0 else b""
    index = int(text) if text.isdigit() else 0
    if not blobs or not 1 <= index <= len(blobs):
        _fail(pos, root, keys, "reference to a blob that did not come")
    return _blob_value(blobs[index - 1]), semi + 1


def _decode(data: bytes, mv: memoryview, pos: int, root: str, keys: list,
            blobs: list | None = None) -> tuple[Any, int]:
    try:
        tag = data[pos]
    except IndexError:
        _fail(pos, root, keys, "unexpected end of data")
    if tag == _TAG_S:
        colon = data.find(b":", pos + 1, pos + 22)
        text = data[pos + 1 : colon] if colon > 0 else b""
        if not text.isdigit():
            _fail(pos, root, keys, f"bad string length {bytes(text[:24])!r}")
        n = int(text)
        end = colon + 1 + n
        if end > len(data):
            _fail(pos, root, keys, "string runs past the end of the data")
        return _string(mv[colon + 1 : end]), end
    if tag == _TAG_I or tag == _TAG_D:
        semi = data.find(b";", pos + 1, pos + 40)
        if semi < 0:
            _fail(pos, root, keys, "bad number")
        text = data[pos + 1 : semi]
        if (_INT_TEXT if tag == _TAG_I else _FLOAT_TEXT).fullmatch(text) is None:
            _fail(pos, root, keys, f"bad number {bytes(text)!r}")
        return (int(text) if tag == _TAG_I else float(text)), semi + 1
    if tag == _TAG_N:
        return None, pos + 1
    if tag == _TAG_T:
        return True, pos + 1
    if tag == _TAG_F:
        return False, pos + 1
    if tag == _TAG_OPEN:
        if len(keys) >= MAX_DEPTH:
            _fail(pos, root, keys, f"nesting deeper than {MAX_DEPTH}")
        semi = data.find(b";", pos + 1, pos + 22)
        text = data[pos + 1 : semi] if semi > 0 else b""
        if not text.isdigit():
            _fail(pos, root, keys, f"bad array count {bytes(text[:24])!r}")
        count = int(text)
        pos = semi + 1
        items: list = []
        append = items.append
        find = data.find
        size = len(data)
        keys.append(0)
        for i in range(1, count + 1):
            # Fast paths for the common scalars (no call, no error bookkeeping); anything
            # unusual, and every error, goes through _decode.
            tag = data[pos] if pos < size else -1
            if tag == _TAG_I:
                semi = find(b";", pos + 1, pos + 24)
                if semi > 0:
                    text = data[pos + 1 : semi]
                    if text.isdigit() or (text[:1] == b"-" and text[1:].isdigit()):
                        append(int(text))
                        pos = semi + 1
                        continue
            elif tag == _TAG_S:
                colon = find(b":", pos + 1, pos + 22)
                if colon > 0:
                    text = data[pos + 1 : colon]
                    end = colon + 1 + int(text) if text.isdigit() else -1
                    if colon < end <= size and end - colon < 4096:
                        chunk = data[colon + 1 : end]
                        try:
                            append(chunk.decode("utf-8"))
                        except UnicodeDecodeError:
                            append(bytes(chunk))
                        pos = end
                        continue
            keys[-1] = i
            item, pos = _decode(data, mv, pos, root, keys, blobs)
            append(item)
        keys.pop()
        if pos < len(data) and data[pos] == _TAG_CLOSE:
            return items if items else {}, pos + 1
        table: dict = {i: item for i, item in enumerate(items, 1)}
        while True:
            if pos >= size:
                _fail(pos, root, keys, "table not closed with '}'")
            tag = data[pos]
            if tag == _TAG_CLOSE:
                return table, pos + 1
            keys.append("?")
            key = None
            if tag == _TAG_S:  # fast path: a short string key
                colon = find(b":", pos + 1, pos + 8)
                if colon > 0:
                    text = data[pos + 1 : colon]
                    end = colon + 1 + int(text) if text.isdigit() else -1
                    if colon < end <= size:
                        try:
                            key = data[colon + 1 : end].decode("utf-8")
                            pos = end
                        except UnicodeDecodeError:
                            key = None
            if key is None:
                key, pos = _decode(data, mv, pos, root, keys, blobs)
            keys[-1] = key
            try:
                hash(key)
            except TypeError:
                _fail(pos, root, keys[:-1], "a table used as a key")
            table[key], pos = _decode(data, mv, pos, root, keys, blobs)
            keys.pop()
    if tag == _TAG_BLOB:
        return _decode_blob(data, pos, root, keys, blobs)
    _fail(pos, root, keys, f"unknown tag {bytes([tag])!r}")


def skip_value(data: bytes | bytearray, pos: int, refs: list | None = None, depth: int = 0) -> int:
    """The position just after the encoded value at ``pos``, checked as strictly as
    :func:`decode` checks it, without building it.  Blob references met on the way are listed
    in ``refs`` as ``(start, end, index)``.  Raises :class:`WireError`."""
    size = len(data)
    if pos >= size:
        raise WireError(f"malformed wire data at byte {pos + 1}: unexpected end of data")
    c = data[pos]
    if c == _TAG_N or c == _TAG_T or c == _TAG_F:
        return pos + 1
    if c == _TAG_I or c == _TAG_D or c == _TAG_BLOB:
        semi = data.find(b";", pos + 1, pos + 40)
        text = data[pos + 1:semi] if semi > 0 else b"?"
        pattern = _INT_TEXT if c == _TAG_I else _FLOAT_TEXT if c == _TAG_D else _UINT_TEXT
        if pattern.fullmatch(text) is None:
            raise WireError(f"malformed wire data at byte {pos + 1}: bad number {bytes(text[:24])!r}")
        if c == _TAG_BLOB and refs is not None:
            refs.append((pos, semi + 1, int(text)))
        return semi + 1
    if c == _TAG_S:
        colon = data.find(b":", pos + 1, pos + 22)
        text = data[pos + 1:colon] if colon > 0 else b""
        end = colon + 1 + int(text) if text.isdigit() else -1
        if end < 0 or end > size:
            raise WireError(f"malformed wire data at byte {pos + 1}: bad string length {bytes(text[:24])!r}")
        return end
    if c == _TAG_OPEN:
        if depth >= MAX_DEPTH:
            raise WireError(f"malformed wire data at byte {pos + 1}: nesting deeper than {MAX_DEPTH}")
        semi = data.find(b";", pos + 1, pos + 22)
        text = data[pos + 1:semi] if semi > 0 else b""
        if not text.isdigit():
            raise WireError(f"malformed wire data at byte {pos + 1}: bad array count {bytes(text[:24])!r}")
        pos = semi + 1
        for _ in range(int(text)):
            pos = skip_value(data, pos, refs, depth + 1)
        while True:
            if pos >= size:
                raise WireError(f"malformed wire data at byte {pos + 1}: table not closed with '}}'")
            c = data[pos]
            if c == _TAG_CLOSE:
                return pos + 1
            if c == _TAG_OPEN or c == _TAG_N:
                raise WireError(f"malformed wire data at byte {pos + 1}: a table key that cannot be one")
            pos = skip_value(data, skip_value(data, pos, refs, depth + 1), refs, depth + 1)
    raise WireError(f"malformed wire data at byte {pos + 1}: unknown tag {bytes([c])!r}")


def decode_at(data: bytes | bytearray | memoryview, pos: int = 0, root: str = "value",
              blobs: list | None = None) -> tuple[Any, int]:
    """Decode one value at offset ``pos``; returns ``(value, next_offset)``.  ``blobs``: the
    payloads of the ``B`` frames that came before this one (``S<i>;`` is ``blobs[i-1]``)."""
    if isinstance(data, memoryview):
        data = data.obj if isinstance(data.obj, (bytes, bytearray)) and data.nbytes == len(data.obj) else bytes(data)
    return _decode(data, memoryview(data), pos, root, [], blobs)


def decode(data: bytes | bytearray | memoryview, root: str = "value", blobs: list | None = None) -> Any:
    """Decode exactly one value that fills ``data`` (``blobs``: see :func:`decode_at`)."""
    value, end = decode_at(data, 0, root, blobs)
    if end != len(data):
        raise WireError(f"malformed wire data at byte {end + 1}: {len(data) - end} bytes after the value")
    return value


def decode_reply(payload: bytes | bytearray, blobs: list | None = None) -> dict:
    """Decode an ``R`` payload; ``values`` is always a list (an empty one decodes as ``{}``).
    ``blobs``: the payloads of the ``B`` frames that came just before it."""
    reply = decode(payload, "reply", blobs)
    if not isinstance(reply, dict):
        raise WireError(f"a reply must be a table, got {type(reply).__name__}")
    if reply.get("ok"):
        values = reply.get("values")
        if values == {} or values is None:
            reply["values"] = []
        elif isinstance(values, dict):  # a sparse list from a non-conforming agent
            reply["values"] = [values.get(i) for i in range(1, max(values, default=0) + 1)]
    return reply


# ------------------------------------------------------------------------------------------
# Frames


def frame_parts(kind: bytes, parts: list) -> list:
    """Header plus payload pieces for one frame (for ``os.writev`` or repeated writes)."""
    size = sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in parts)
    return [kind + b"%d\n" % size, *parts]


def frame(kind: bytes, payload: bytes | bytearray) -> bytes:
    """One frame as bytes: ``<kind><length>\\n<payload>``."""
    return b"".join((kind, b"%d\n" % len(payload), payload))


def request_parts(op: str, id: int, *, send_blobs: bool = True, **fields: Any) -> list:
    """The frames of one request as pieces, for ``os.writev`` or :func:`write_parts`.

    ``args`` (if given) is encoded as a value list.  With ``send_blobs``, every string of at least
    :data:`BLOB_THRESHOLD` bytes goes first in its own ``B`` frame and the request refers to it
    (``S<i>;``): the agent then reads it straight into a Lua string, with no copy out of the
    request's payload, and nothing here copies it either.
    """
    parts: list = [b"{0;", b"s2:id", b"i%d;" % id, b"s2:op", b"s%d:" % len(op), op.encode()]
    found: list | None = [] if send_blobs else None
    for name, value in fields.items():
        key = name.encode()
        parts.append(b"s%d:" % len(key))
        parts.append(key)
        if name == "args":
            value = list(value)
        _encode_into(value, parts, [name], set(), "request", found)
    parts.append(b"}")
    frames: list = []
    for blob in found or ():
        frames += frame_parts(BLOB, [blob])
    return frames + frame_parts(REQUEST, parts)


def request(op: str, id: int, **fields: Any) -> bytes:
    """A complete request (its ``B`` frames, then the ``Q`` frame) as one bytes object."""
    return b"".join(request_parts(op, id, **fields))


def write_parts(fd: int, parts: list) -> None:
    """Write all pieces to ``fd``: runs of small pieces are joined, big ones written as they are."""
    views: list = []
    small: list = []
    for p in parts:
        n = p.nbytes if isinstance(p, memoryview) else len(p)
        if n >= 65536:
            if small:
                views.append(memoryview(b"".join(small)))
                small = []
            views.append(memoryview(p).cast("B"))
        elif n:
            small.append(p)
    if small:
        views.append(memoryview(b"".join(small)))
    i = 0
    while i < len(views):
        n = os.writev(fd, views[i : i + 512])
        while n:
            if n >= len(views[i]):
                n -= len(views[i])
                i += 1
            else:
                views[i] = views[i][n:]
                n = 0


# ------------------------------------------------------------------------------------------
# Buffers for big payloads

_BYTES_DATA_OFFSET: int | None = None  # where a bytes object's data starts; 0: not usable


def _bytes_data_offset() -> int:
    global _BYTES_DATA_OFFSET
    if _BYTES_DATA_OFFSET is None:
        offset = 0
        try:
            import ctypes
            import sys

            if sys.implementation.name == "cpython":
                candidate = bytes.__basicsize__ - 1  # offsetof(PyBytesObject, ob_sval)
                probe = bytes(64)
                cells = (ctypes.c_char * 64).from_address(id(probe) + candidate)
                cells[0], cells[63] = b"\x01", b"\x02"
                if probe[0] == 1 and probe[63] == 2 and probe[1:63] == bytes(62) and len(probe) == 64:
                    offset = candidate
        except Exception:  # any doubt: plain bytearrays
            offset = 0
        _BYTES_DATA_OFFSET = offset
    return _BYTES_DATA_OFFSET


def big_buffer(size: int) -> tuple[bytes | bytearray, memoryview]:
    """A buffer for a payload of ``size`` bytes, and a writable view of it to read into.

    On CPython the buffer is a new ``bytes`` object, filled in place before anything else can
    see it: a blob read into it *is* the final value (a Python ``bytes``, or what lupa turns
    into a Lua string), with no copy after the read.  Its pages are also left untouched until
    the read fills them (``bytes(n)`` comes from calloc, while ``bytearray(n)`` writes zeros
    first, one more pass over 100 MB).  Elsewhere, a ``bytearray``.
    """
    offset = _bytes_data_offset() if size > 1 else 0
    if offset:
        import ctypes

        buf = bytes(size)  # size > 1: a new object only this function holds
        address = id(buf) + offset
        if size >= _HUGE_BUFFER:
            _advise_huge_pages(address, size)
        cells = (ctypes.c_char * size).from_address(address)
        return buf, memoryview(cells).cast("B")
    buf = bytearray(size)
    return buf, memoryview(buf)


_HUGE_BUFFER = 8 << 20
_HUGE_PAGE = 2 << 20
_MADV_HUGEPAGE = 14
_madvise: Any = None


def _advise_huge_pages(address: int, size: int) -> None:
    """Ask for transparent huge pages in a buffer's still untouched pages (Linux, where THP is
    "madvise"): the read that fills it then takes one page fault per 2 MiB instead of one per
    4 KiB, which on a virtual machine is most of the cost of receiving 100 MB.  Best effort."""
    global _madvise
    if _madvise is None:
        _madvise = False
        try:
            import ctypes
            import sys

            if sys.platform.startswith("linux"):
                fn = ctypes.CDLL(None, use_errno=True).madvise
                fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                fn.restype = ctypes.c_int
                _madvise = fn
        except Exception:
            _madvise = False
    if _madvise:
        start = (address + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
        end = (address + size) & ~(_HUGE_PAGE - 1)
        if end > start:
            _madvise(start, end - start, _MADV_HUGEPAGE)


# ------------------------------------------------------------------------------------------
# Reading frames
#
# One reader for every stream (local pipes, SSH channels, the test clients): FrameReader.
# It never trusts a declared length: the header is checked byte by byte as it arrives (a bad
# kind, a sign, an underscore, a 17th digit fail at once, without waiting for more), the
# length against a limit per kind, and a big payload goes into a buffer that grows as its
# bytes arrive (_GrowingBuffer), so a header that lies costs nothing.

#: Agent -> host frame kinds (what the VM handle accepts).
AGENT_KINDS = b"HOBR"
#: Default limits of declared payload lengths, per kind (docs/protocol.md, "Limits").  ``O``
#: frames have none: readers that stream them (the VM handle) hand them over in pieces.
MAX_HELLO = 1 << 20
MAX_REPLY = 1 << 30
MAX_BLOB = 4 << 30
DEFAULT_LIMITS = {b"H": MAX_HELLO, b"R": MAX_REPLY, b"Q": MAX_REPLY, b"B": MAX_BLOB, b"O": None}
#: A header is the kind, at most 16 digits (2**53 has 16) and "\n".
_MAX_DIGITS = 16
_MAX_HEADER = 1 + _MAX_DIGITS + 1
#: Payloads at least this long are read into a buffer of their own (_GrowingBuffer).
BIG_PAYLOAD = 1 << 20


class FrameError(WireError):
    """A malformed frame: bad header, a length over its limit, a frame that cannot be taken."""


def _kind_text(kinds: bytes) -> str:
    names = [chr(k) for k in kinds]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def _a(kind: bytes) -> str:
    """ "an R frame", "a B frame" """
    return ("an " if kind in b"HOR" else "a ") + kind.decode()


def _size_text(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.3g} {unit}"
    return f"{n} bytes"


def check_header(head: bytes | bytearray, kinds: bytes = b"HBQOR") -> tuple[bytes, int, int] | None:
    """Parse the frame header at the start of ``head``: ``(kind, length, header size)``, or
    ``None`` while what is there is a valid beginning of a header.  Raises :class:`FrameError`
    as soon as the bytes cannot start a valid header."""
    if not head:
        return None
    end = min(len(head), _MAX_HEADER)
    nl = head.find(b"\n", 1, end)
    shown = bytes(head[:nl + 1 if nl > 0 else end])
    kind = head[0]
    if kind not in kinds:
        raise FrameError(f"malformed frame header {shown!r}: bad kind {bytes(head[:1])!r} "
                         f"(expected {_kind_text(kinds)})")
    digits = bytes(head[1:nl if nl > 0 else end])
    if not digits.isdigit() and digits:
        raise FrameError(f"malformed frame header {shown!r}: bad length {digits!r} "
                         f"(decimal digits only: no sign, spaces or '_')")
    if nl < 0:
        if len(digits) > _MAX_DIGITS:
            raise FrameError(f"malformed frame header {shown!r}: more than {_MAX_DIGITS} length digits")
        return None
    if not digits:
        raise FrameError(f"malformed frame header {shown!r}: no length")
    size = int(digits)
    if size > _MAX_FRAME:
        raise FrameError(f"malformed frame header {shown!r}: length over 2^53")
    return bytes((kind,)), size, nl + 1


def _mem_available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where unknown)."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


#: A growing buffer's first capacity (never more than the declared length) and growth factor.
_GROW_START = 128 << 20
_GROW_FACTOR = 4


class _GrowingBuffer:
    """The payload of one big frame, in a buffer that grows as its bytes arrive.

    The declared length decides how far the buffer may grow, never what is allocated before
    the bytes come: it starts at ``min(size, 128 MiB)`` and, each time it is full, is replaced
    by one four times as big (never past ``size``) into which what arrived is copied (a copy
    of at most a third of the payload in all; moving the pages with ``mremap`` instead would
    split the huge pages that make the reads fast).  Each buffer is a :func:`big_buffer`, so
    the last one, exactly ``size`` bytes, *is* the value (a Python ``bytes``, or what lupa
    turns into a Lua string): no copy after the read, and 100 MB strings need no growth."""

    __slots__ = ("size", "filled", "buf", "view")

    def __init__(self, size: int) -> None:
        self.size = size
        self.filled = 0
        self.buf, self.view = big_buffer(min(size, _GROW_START))

    def room(self) -> memoryview:
        """A writable view of the free space (grown first if full); valid until the next call."""
        if self.filled == len(self.view):
            buf, view = big_buffer(min(self.size, len(self.view) * _GROW_FACTOR))
            view[:self.filled] = self.view[:self.filled]
            self.view.release()
            self.buf, self.view = buf, view
        return self.view[self.filled:]

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` (at most the bytes still missing)."""
        mv = memoryview(data).cast("B")
        while len(mv):
            room = self.room()
            n = min(len(room), len(mv))
            room[:n] = mv[:n]
            self.filled += n
            mv = mv[n:]

    def take(self) -> bytes | bytearray:
        """The complete payload (the buffer is handed over, not copied)."""
        self.view.release()
        buf, self.buf = self.buf, None
        return buf


class FrameReader:
    """Incremental frame reader: bytes in, whole frames (or pieces of streamed frames) out.

    Feed it with :meth:`add` (or read straight into :meth:`room` and :meth:`advance`), take
    frames out with :meth:`next`; :meth:`feed` does both.  ``kinds``: the frame kinds
    accepted; ``limits``: the longest payload per kind (``None``: no limit); ``stream``: kinds
    whose payload is handed over in pieces as it arrives (the VM handle streams ``O``), so
    they need no limit.  Anything malformed raises :class:`FrameError` as soon as it is seen.
    """

    def __init__(self, kinds: bytes = b"HBQOR", limits: dict | None = None, stream: bytes = b"",
                 max_header: int | None = None, limit_names: dict | None = None) -> None:
        self.kinds = kinds
        self.limits = dict(DEFAULT_LIMITS)
        if limits:
            self.limits.update(limits)
        #: how a limit is called in messages (``{b"B": "max_blob"}``)
        self.limit_names = limit_names or {}
        self.stream = stream
        self._buf = bytearray()
        self._kind: bytes | None = None   # the frame in progress (big or streamed)
        self._big: _GrowingBuffer | None = None
        self._left = 0                    # bytes still to come of a streamed frame

    # -- bytes in ------------------------------------------------------------------------

    def room(self) -> memoryview | None:
        """Where to read the next bytes when a big payload is in progress (read straight into
        its buffer, then :meth:`advance`); ``None``: read anything and :meth:`add` it."""
        big = self._big
        if big is None:
            return None
        view = big.room()
        return view

    def advance(self, n: int) -> None:
        """``n`` bytes were read into the view :meth:`room` returned."""
        self._big.filled += n

    def add(self, data: bytes | bytearray | memoryview) -> None:
        big = self._big
        if big is not None:
            mv = memoryview(data)
            take = min(len(mv), big.size - big.filled)
            big.write(mv[:take])
            if take < len(mv):
                self._buf += mv[take:]
        else:
            self._buf += data

    def want(self) -> int:
        """How many bytes the frame in progress still needs (a hint for reads)."""
        if self._big is not None:
            return self._big.size - self._big.filled
        if self._left:
            return self._left
        return 65536

    # -- frames out ------------------------------------------------------------------------

    def next(self) -> tuple[bytes, bytes | bytearray] | None:
        """The next frame ``(kind, payload)`` from what was added, or ``None`` (need more).
        For a streamed kind, each call hands over the piece of its payload that is there."""
        big = self._big
        if big is not None:
            if big.filled < big.size:
                return None
            kind, self._kind, self._big = self._kind, None, None
            return kind, big.take()
        buf = self._buf
        if self._left:
            if not buf:
                return None
            piece = bytes(buf[:self._left])
            del buf[:len(piece)]
            self._left -= len(piece)
            kind = self._kind
            if not self._left:
                self._kind = None
            return kind, piece
        parsed = check_header(buf[:_MAX_HEADER], self.kinds)
        if parsed is None:
            return None
        kind, size, start = parsed
        limit = self.limits.get(kind)
        if kind in self.stream:
            del buf[:start]
            if size == 0:
                return kind, b""
            self._kind, self._left = kind, size
            return self.next() if buf else None
        if limit is not None and size > limit:
            name = self.limit_names.get(kind)
            raise FrameError(f"{kind.decode()} frame of {size} bytes ({_size_text(size)}) is over the "
                             f"limit of {_size_text(limit)} for {kind.decode()} frames"
                             + (f" ({name})" if name else ""))
        if len(buf) - start >= size:
            payload = bytes(buf[start:start + size])
            del buf[:start + size]
            return kind, payload
        if size >= BIG_PAYLOAD:
            if size >= 256 << 20:
                avail = _mem_available()
                if avail is not None and size > avail:
                    raise FrameError(f"{kind.decode()} frame of {size} bytes ({_size_text(size)}): the "
                                     f"host has only {_size_text(avail)} of memory available")
            self._big = _GrowingBuffer(size)
            self._kind = kind
            rest = memoryview(buf)[start:]
            self._big.write(rest)
            rest.release()
            del buf[:]
            return self.next()
        return None

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[bytes, bytes | bytearray]]:
        """Add bytes; return the frames (pieces, for streamed kinds) they complete."""
        self.add(data)
        frames = []
        while True:
            frame = self.next()
            if frame is None:
                return frames
            frames.append(frame)

    def read_from(self, fd: int, max_bytes: int = 1 << 20) -> list[tuple[bytes, bytes | bytearray]] | None:
        """One ``read`` from ``fd`` (a big payload in progress is read straight into its
        buffer); the frames that completes, or ``None`` at end of input."""
        view = self.room()
        if view is not None:
            n = os.readv(fd, [view])
            if n == 0:
                return None
            self.advance(n)
            return self.feed(b"")
        data = os.read(fd, max_bytes)
        if not data:
            return None
        return self.feed(data)

    def pending(self) -> bool:
        """True while a frame is partly received (a header, a payload, a streamed frame)."""
        return self._big is not None or self._left > 0 or bool(self._buf)

    def progress(self) -> str:
        """What of the frame in progress is here, for messages ("1048576 of 67108864 bytes of
        a B frame", "the header b'R12'")."""
        if self._big is not None:
            return f"{self._big.filled} of {self._big.size} bytes of {_a(self._kind)} frame"
        if self._left:
            return f"{_a(self._kind)} frame with {self._left} bytes still to come"
        head = bytes(self._buf[:_MAX_HEADER])
        parsed = None
        try:
            parsed = check_header(head, self.kinds)
        except FrameError:
            pass
        if parsed is not None:
            kind, size, start = parsed
            return f"{len(self._buf) - start} of {size} bytes of {_a(kind)} frame"
        return f"the frame header {head!r}" if head else "nothing"


def read_frame(fd: int, kinds: bytes = b"HBQOR", limits: dict | None = None) -> tuple[bytes, bytes | bytearray] | None:
    """Blocking read of one whole frame from a file descriptor; ``None`` at a clean EOF.

    Reads the header byte by byte (it is short) so that nothing past the frame is consumed,
    then the payload through a :class:`FrameReader` (same checks and limits)."""
    header = bytearray()
    while True:
        b = os.read(fd, 1)
        if not b:
            if header:
                raise FrameError(f"end of input inside a frame header {bytes(header)!r}")
            return None
        header += b
        if check_header(header, kinds) is not None:
            break
    reader = FrameReader(kinds, limits)
    reader.add(header)
    while True:
        frame = reader.next()
        if frame is not None:
            return frame
        view = reader.room()
        if view is not None:
            n = os.readv(fd, [view])
            if n:
                reader.advance(n)
        else:
            data = os.read(fd, reader.want())
            n = len(data)
            reader.add(data)
        if n == 0:
            raise FrameError(f"end of input inside a frame: {reader.progress()}")


def iter_frames(chunks: Iterator[bytes]) -> Iterator[tuple[bytes, bytes | bytearray]]:
    """Frames from an iterator of byte chunks (tests, tools)."""
    reader = FrameReader()
    for chunk in chunks:
        yield from reader.feed(chunk)
