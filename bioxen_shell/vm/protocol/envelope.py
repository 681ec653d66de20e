"""Requests and replies: the envelope around encoded values (docs/protocol.md, "Requests",
"Replies").

A request is a table ``{id=…, op=…, fields…}``; :func:`request_parts` builds its ``Q``
payload so that values already encoded (the shell's Lua side encodes with ``bioxen.wire``,
``vm.map`` passes encoded items) are spliced in as they are, and :func:`request_frames` adds
the ``B`` frames of its big strings.  A reply is ``{id=…, ok=…, values=…}`` or an error;
:func:`reply_span` reads its small fields and finds where its values are without decoding
them, so they can be decoded in place (:func:`reply_values`) or passed on still encoded.
"""
from __future__ import annotations

import re
TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import Any

from . import codec
from .codec import BLOB_THRESHOLD, WireError, skip_value
from .frames import REQUEST, frame_pieces

__all__ = [
    "request_parts", "request_frames", "encode_request", "reply_span", "split_reply", "reply_problem",
    "reply_values", "encoded_values", "inline_blobs", "decode_reply", "EXIT_REPLY",
]

_NAMES: dict[str, bytes] = {}


def _name(name: str) -> bytes:
    """Field names and ops, encoded once (a handful of constant strings)."""
    b = _NAMES.get(name)
    if b is None:
        b = codec.encode_string(name)
        if len(_NAMES) < 256:
            _NAMES[name] = b
    return b


def _field(v: Any, name: str, parts: list, blobs: list | None) -> None:
    t = type(v)
    if t is bool:
        parts.append(b"t" if v else b"f")
    elif t is int:
        parts.append(b"i%d;" % v)
    elif (t is str or t is bytes) and len(v) < BLOB_THRESHOLD // 4:
        parts.append(codec.encode_string(v))
    else:  # big strings (blobs), tables (globals, preload)
        parts += codec.encode_parts(v, name, blobs)


def request_parts(req_id: int, op: str, fields: dict[str, Any], raw: dict[str, bytes | list] | None = None,
                  blobs: list | None = None) -> list:
    """The payload of a ``Q`` frame as pieces: ``{0; id=… op=… fields… raw fields…}``.

    ``raw`` values are already encoded: bytes, or a list of pieces (``codec.encode_parts``),
    written as they are, so a 100 MB argument is never copied on this side.  They may refer to
    ``blobs`` (``S<i>;``); with ``blobs`` given, big strings of ``fields`` (a 100 MB ``code``)
    are appended there too and referred to the same way.
    """
    parts = [b"{0;s2:idi%d;" % req_id, _fields(op, fields, blobs)]
    if raw:
        for k, v in raw.items():
            parts.append(_name(k))
            if isinstance(v, list):
                parts.extend(v)
            else:
                parts.append(v)
    parts.append(b"}")
    return parts


#: Encoded ``op`` and small fields of recent requests: a REPL loop, a map or a benchmark sends
#: the same code again and again, and only the id differs.
_RECENT: dict = {}
_RECENT_MAX, _RECENT_BYTES = 256, 4096


def _fields(op: str, fields: dict[str, Any], blobs: list | None) -> bytes:
    key: tuple | None = (op, *fields.items())
    for v in fields.values():  # only small strings: cheap to hash, never a blob, no True == 1
        t = type(v)
        if (t is not str and t is not bytes) or len(v) > _RECENT_BYTES:
            key = None
            break
    if key is not None:
        hit = _RECENT.get(key)
        if hit is not None:
            return hit
    parts = [b"s2:op", _name(op)]
    for k, v in fields.items():
        parts.append(_name(k))
        _field(v, k, parts, blobs)
    encoded = b"".join(parts)
    if key is not None:
        if len(_RECENT) >= _RECENT_MAX:
            _RECENT.clear()
        _RECENT[key] = encoded
    return encoded


def request_frames(req_id: int, op: str, fields: dict[str, Any], raw: dict[str, bytes | list] | None = None,
                   blobs: list | None = None) -> list:
    """One request as pieces to write in order: its blobs as ``B`` frames (``raw`` refers to
    ``blobs[i-1]`` as ``S<i>;``; big strings of ``fields`` are added after them), then the
    ``Q`` frame."""
    blobs = list(blobs) if blobs else []
    parts = request_parts(req_id, op, fields, raw, blobs)
    return frame_pieces(REQUEST, parts, blobs)


def encode_request(op: str, id: int, *, send_blobs: bool = True, **fields: Any) -> list:
    """A request from Python values, as :func:`request_frames` pieces (test clients, tools):
    ``args`` is sent as a value list; with ``send_blobs``, every string of at least
    ``BLOB_THRESHOLD`` bytes goes in its own ``B`` frame."""
    blobs: list | None = [] if send_blobs else None
    raw = {}
    for name, value in fields.items():
        raw[name] = (codec.encode_list_parts(list(value), blobs) if name == "args"
                     else codec.encode_parts(value, name, blobs))
    return frame_pieces(REQUEST, request_parts(id, op, {}, raw), blobs)


#: ``{0;s2:id i<n>; s2:ok t s6:values …}``: how the agent writes a successful reply.
_OK_REPLY = re.compile(rb"\{0;s2:idi(-?\d+);s2:okts6:values(?=[{n])")

#: The reply an ``exit`` request gets when the agent just exits (its stream ends).
EXIT_REPLY = codec.encode({"ok": True})


def reply_span(payload: bytes | bytearray) -> tuple[dict[str, Any], tuple[int, int] | None]:
    """Decode a reply's small fields; return where its ``values`` are (``(start, end)`` in
    ``payload``, or ``None``), so values can be decoded in place or passed on still encoded.
    Raises ``WireError`` for a payload that is not a reply table."""
    m = _OK_REPLY.match(payload)
    if m is not None and payload[-1] == 0x7D:  # the common case, in one regex step
        return {"id": int(m.group(1)), "ok": True}, (m.end(), len(payload) - 1)
    if not payload.startswith(b"{"):
        raise WireError(f"a reply must be a table, got {bytes(payload[:20])!r}")
    semi = payload.find(b";", 1, 22)
    count = payload[1:semi] if semi > 0 else b""
    if not count.isdigit():
        raise WireError(f"malformed reply table header {bytes(payload[:22])!r}")
    pos = semi + 1
    for _ in range(int(count)):
        pos = skip_value(payload, pos)
    fields: dict[str, Any] = {}
    span: tuple[int, int] | None = None
    last = len(payload) - 1
    while True:
        if pos > last:
            raise WireError("reply table not closed with '}'")
        if payload[pos] == 0x7D:
            break
        kend = skip_value(payload, pos)
        key = codec.decode(payload[pos:kend])
        if key == "values" and "ok" in fields and payload[last] == 0x7D:
            # The agent writes id, ok, then ``values`` last: take the rest without walking a
            # possibly huge table.
            return fields, (kend, last)
        vend = skip_value(payload, kend)
        if key == "values":
            span = (kend, vend)
        else:
            fields[key] = codec.decode(payload[kend:vend])
        pos = vend
    if pos != last:
        raise WireError(f"{last - pos} bytes after the reply table")
    return fields, span


def split_reply(payload: bytes | bytearray) -> tuple[dict[str, Any], bytes | None]:
    """Decode a reply's small fields; return ``values`` still encoded (``None`` if absent)."""
    fields, span = reply_span(payload)
    return fields, (bytes(memoryview(payload)[span[0]:span[1]]) if span else None)


def reply_problem(request_id: int, fields: dict, payload: Any, span: tuple[int, int] | None) -> str | None:
    """What is wrong with a reply's envelope to request ``request_id`` (``None``: nothing)."""
    ok = fields.get("ok")
    if ok is not True and ok is not False:
        return f"'ok' is {ok!r}, not a boolean"
    rid = fields.get("id")
    if rid is None:
        if ok or fields.get("kind") != "interrupted":  # the one reply that may lack an id
            return "no 'id'"
    elif rid != request_id or type(rid) is not int:
        return f"'id' is {rid!r}, the request was {request_id}"
    if ok:
        if span is not None and payload[span[0]] not in b"{n":
            return "'values' is not a table"
    else:
        for key in ("kind", "error", "traceback"):
            if not isinstance(fields.get(key, ""), (str, bytes)):
                return f"{key!r} is not a string"
    return None


def reply_values(payload: bytes | bytearray, span: tuple[int, int], blobs: list | None = None) -> list:
    """The values of a reply as a Python list, decoded in place (the only copy is the Python
    object of each value).  Raises ``WireError`` (and what decoding raises) if they do not
    fill ``span`` exactly or are not a table."""
    values, end = codec.decode_at(payload, span[0], blobs=blobs)
    if end != span[1]:
        raise WireError(f"{span[1] - end} bytes after the values")
    if not isinstance(values, (list, dict)) and values is not None:
        raise WireError("the values are not a table")
    return codec.as_list(values)


def encoded_values(payload: bytes | bytearray, span: tuple[int, int], blobs: list | None = None) -> bytes:
    """The values of a reply still encoded, in one self-contained piece (checked: these bytes
    are spliced elsewhere; blob references are replaced by the strings)."""
    if blobs:
        return inline_blobs(payload, span[0], span[1], blobs)
    end = span[0]
    if end < span[1]:
        end = skip_value(payload, end)
    if end != span[1]:
        raise WireError(f"{span[1] - end} bytes after the values")
    if span == (0, len(payload)):
        return bytes(payload)
    return bytes(memoryview(payload)[span[0]:span[1]])


def inline_blobs(data: bytes | bytearray, start: int, end: int, blobs: list) -> bytes:
    """The encoded values ``data[start:end]`` with every blob reference replaced by the
    string itself (``s<len>:<bytes>``), for callers that want one self-contained encoding."""
    refs: list = []
    pos = start
    while pos < end:
        pos = skip_value(data, pos, refs)
    if pos != end:
        raise WireError(f"malformed wire data at byte {pos + 1}: the values run past the reply")
    view = memoryview(data)
    pieces: list = []
    last = start
    for ref_start, ref_end, index in refs:
        if not 1 <= index <= len(blobs):
            raise WireError(f"reference to a blob that did not come (S{index};)")
        blob = blobs[index - 1]
        pieces += (view[last:ref_start], b"s%d:" % len(blob), blob)
        last = ref_end
    pieces.append(view[last:end])
    return b"".join(pieces)


def decode_reply(payload: bytes | bytearray, blobs: list | None = None) -> dict:
    """Decode a whole ``R`` payload (test clients); ``values`` is always a list.  ``blobs``:
    the payloads of the ``B`` frames that came just before it."""
    reply = codec.decode(payload, "reply", blobs)
    if not isinstance(reply, dict):
        raise WireError(f"a reply must be a table, got {type(reply).__name__}")
    if reply.get("ok"):
        reply["values"] = codec.as_list(reply.get("values"))
    return reply
