"""Data for data-parallel maps: make a shard's file reachable where its VM runs.

A *shard* is a plain Lua table naming a byte range of a local sequence file::

    {path = "/data/genome.fa", offset = 0, length = 1048576, format = "fasta"}
    {path = "/data/reads.fq.gz", offset = 0, length = 65536, format = "fastq",
     bgzf = true, block = 123456, skip = 17}

A local VM opens ``path`` as it is.  An SSH or XCP-ng VM needs the file on its host:
:func:`prepare_item` stages it there once (``backend.stage_file``: content-addressed in the
host's cache, see "Data for maps" in docs/ssh.md) and hands the VM the same shard with
``path`` replaced by the staged copy.  Everything else in the item — offsets, BGZF fields,
other keys — is passed on byte for byte, never decoded.

``vm.map`` calls ``prepare_item(h, item, stage=...)`` for each item before sending it to VM
``h``.  ``stage=False`` says the hosts already have the file at that path (a shared
filesystem): the item goes unchanged.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import Any

from ..remote.upload import StageError
from .protocol.codec import encode_string, skip_value

__all__ = ["prepare_item", "shard_path_span", "StageError"]

_TABLE_OF_FIELDS = b"{0;"
_PATH_KEY = b"s4:path"


def prepare_item(handle: Any, encoded_item: bytes, *, stage: bool = True) -> bytes:
    """The item to send to ``handle``'s VM: a shard with its file staged on that VM's host.

    Returns ``encoded_item`` itself when there is nothing to do: ``stage`` is false, the
    backend has no ``stage_file`` (local VMs), or the item is not a shard (a table with a
    string ``path`` and integer ``offset`` and ``length``).  Otherwise the file is staged
    (once per host and file: the backend remembers it) and the item comes back with ``path``
    replaced.  Raises :class:`StageError` (a ``BackendError``) naming the file and the host.
    """
    if not stage:
        return encoded_item
    stage_file = getattr(getattr(handle, "backend", None), "stage_file", None)
    if stage_file is None:
        return encoded_item
    span = shard_path_span(encoded_item)
    if span is None:
        return encoded_item
    start, end, path = span
    remote = stage_file(path)
    if remote == path:
        return encoded_item
    new = os.fsencode(remote)
    return b"".join((encoded_item[:start], encode_string(new), encoded_item[end:]))


def shard_path_span(item: bytes) -> tuple[int, int, str] | None:
    """``(start, end, path)`` of the ``path`` value if ``item`` encodes a shard, else ``None``.

    Cheap for anything else: only a table of named fields (``{0;``) that contains the bytes
    ``s4:path`` is looked at, and then only its top-level keys are read; values are skipped by
    their lengths (a big sequence string costs nothing), and the walk stops as soon as
    ``path``, ``offset`` and ``length`` have been seen.
    """
    if not item.startswith(_TABLE_OF_FIELDS) or _PATH_KEY not in item:
        return None
    try:
        return _scan(item)
    except (ValueError, IndexError):
        return None  # not valid wire data (WireError is a ValueError): the VM will say


def _scan(data: bytes) -> tuple[int, int, str] | None:
    pos = len(_TABLE_OF_FIELDS)
    path: tuple[int, int, str] | None = None
    offset = length = False
    while data[pos] != 0x7D:  # "}"
        key_end = skip_value(data, pos)
        key = data[pos:key_end]
        value_end = skip_value(data, key_end)
        if key == _PATH_KEY:
            if data[key_end] != 0x73:  # "s": the path must be a string
                return None
            colon = data.index(b":", key_end)
            path = (key_end, value_end, os.fsdecode(data[colon + 1:value_end]))
        elif key in (b"s6:offset", b"s6:length"):
            if data[key_end] != 0x69:  # "i": an integer
                return None
            int(data[key_end + 1:value_end - 1])
            if key == b"s6:offset":
                offset = True
            else:
                length = True
        if path is not None and offset and length:
            return path
        pos = value_end
    return None

