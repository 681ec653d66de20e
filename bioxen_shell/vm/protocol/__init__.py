"""The agent protocol, host side: the only place that writes wire bytes (docs/protocol.md).

Three layers, each a module:

* :mod:`.codec` — values <-> bytes (the mirror of ``lua/bioxen/wire.lua``), value lists;
* :mod:`.frames` — frames: the one reader (:class:`FrameReader`) and the one writer
  (:func:`frame_pieces`), limits on declared lengths, buffers for big payloads;
* :mod:`.envelope` — requests and replies: ids, ops, fields, blobs, reply parsing.

The VM session (``bioxen_shell/vm/handle.py``) runs on top of them.  Everything public is
re-exported here: ``from bioxen_shell.vm import protocol`` and ``protocol.encode(…)``.
"""
from __future__ import annotations

from .codec import *  # noqa: F401,F403
from .codec import __all__ as _codec_all
from .envelope import *  # noqa: F401,F403
from .envelope import __all__ as _envelope_all
from .frames import *  # noqa: F401,F403
from .frames import __all__ as _frames_all

__all__ = [*_codec_all, *_frames_all, *_envelope_all]
