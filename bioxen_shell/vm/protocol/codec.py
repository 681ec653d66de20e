"""The protocol's value codec, Python side: values <-> bytes (docs/protocol.md, "Value codec").

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

Python -> Lua: ``str`` is sent as UTF-8; ``bytes``/``bytearray``/``memoryview`` as they are;
``list``/``tuple`` become arrays (``None`` items kept: the count is exact); ``dict`` becomes
key/value pairs.  Anything else, a cycle, or nesting deeper than 200 raises
:class:`WireError` naming the path of the bad value (``value #2.seqs[3]``).

Big strings are the common case (sequences, whole FASTA files), so nothing here loops per
byte: text is decoded straight out of the frame buffer (``str(memoryview, "utf-8")``), and
with a ``blobs`` list the encoders leave every string of :data:`BLOB_THRESHOLD` bytes or more
out of the encoding (``S<i>;`` in its place, the string in ``blobs``, to go as a ``B`` frame)
and the decoders take them back from the ``blobs`` they are given (``S<i>;`` is
``blobs[i-1]``).  Value lists (arguments, results) and their encoded items are here too:
:func:`encode_list_parts`, :func:`join_list`, :func:`list_items`, :func:`first_item`.
"""
from __future__ import annotations

import math
import re
from sys import getsizeof as sys_getsizeof
TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "WireError", "encode", "encode_parts", "encode_list", "encode_list_parts", "encode_string",
    "decode", "decode_at", "skip_value", "as_list", "list_parts", "join_list", "list_items", "first_item",
    "MAX_DEPTH", "BLOB_THRESHOLD", "EMPTY_LIST", "NIL",
]

#: Strings at least this long travel in their own BLOB frame.
BLOB_THRESHOLD = 1 << 20
MAX_DEPTH = 200
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


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
    return b"".join(encode_list_parts(values))


def encode_list_parts(values: list | tuple, blobs: list | None = None) -> list:
    """A value list as pieces (see :func:`encode_parts`); with ``blobs``, big strings go there."""
    parts: list = [b"{%d;" % len(values)]
    for i, item in enumerate(values, 1):
        _encode_into(item, parts, [], set(), f"value #{i}", blobs)
    parts.append(b"}")
    return parts


def encode_string(s: str | bytes) -> bytes:
    """One string (``str`` as UTF-8), e.g. a field name or an op."""
    b = s.encode() if isinstance(s, str) else s
    return b"s%d:%s" % (len(b), b)


#: The empty value list, and nil.
EMPTY_LIST = b"{0;}"
NIL = b"n"


def list_parts(encoded_items: list[bytes]) -> list:
    """A value list of items that are already encoded, as pieces (no decoding, no re-encoding)."""
    return [b"{%d;" % len(encoded_items), *encoded_items, b"}"]


def join_list(encoded_items: list[bytes]) -> bytes:
    """:func:`list_parts` in one piece."""
    return b"".join(list_parts(encoded_items))


def list_items(encoded: bytes, what: str = "items") -> list[bytes]:
    """The array items of an encoded table, each still encoded; ``ValueError`` unless the
    table is a plain list (keys 1..n only)."""
    if not encoded.startswith(b"{"):
        raise ValueError(f"{what} must be a list (a table with items 1..n)")
    semi = encoded.index(b";")
    n = int(encoded[1:semi])
    pos = semi + 1
    items = []
    for _ in range(n):
        end = skip_value(encoded, pos)
        items.append(encoded[pos:end])
        pos = end
    if encoded[pos:pos + 1] != b"}":
        raise ValueError(f"{what} must be a list (a table with only keys 1..n)")
    return items


def first_item(values: bytes | None) -> bytes:
    """The first value of an encoded value list, still encoded (``n`` for none)."""
    if not values or not values.startswith(b"{"):
        return NIL
    semi = values.index(b";")
    if int(values[1:semi]) == 0:
        return NIL
    end = skip_value(values, semi + 1)
    return values[semi + 1:end]


def as_list(value: Any) -> list:
    """A decoded value list -> Python list (an empty table decodes as ``{}``, one whose array
    part ends in nils as a dict)."""
    if value is None or value == {}:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        n = max((k for k in value if isinstance(k, int)), default=0)
        return [value.get(i) for i in range(1, n + 1)]
    return [value]


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
