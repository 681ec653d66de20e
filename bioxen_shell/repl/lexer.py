"""Syntax highlighting: Pygments' Lua lexer for input, meta-command lines (``:help``) in one
colour, and :class:`ValueLexer` for the values the REPL prints."""
from __future__ import annotations

from typing import Callable

from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.lexers import Lexer, PygmentsLexer
from pygments.lexer import bygroups, inherit
from pygments.lexers.scripting import LuaLexer
from pygments.token import Comment, Keyword, Number, Punctuation, Text

__all__ = ["ShellLexer", "ValueLexer"]


class ShellLexer(Lexer):
    def __init__(self) -> None:
        self._lua = PygmentsLexer(LuaLexer)

    def lex_document(self, document: Document) -> Callable[[int], StyleAndTextTuples]:
        if document.text.lstrip().startswith(":"):
            lines = document.lines
            return lambda i: [("class:meta-command", lines[i])] if i < len(lines) else []
        return self._lua.lex_document(document)


class ValueLexer(LuaLexer):
    """Printed values (lua/bioxen/shell/pretty.lua) are Lua source plus a few things that are
    not: ``table: 0x55…`` (Lua's tostring), ``file (stdout)``, ``<cycle: …>``, ``nan``, and the
    ``…`` of a cut table or string.  Plain Lua lexing calls the ``0`` of the address and the
    ``…`` errors; here they are values (a type and a number) and notes (comments)."""

    name = "bioxen value"
    aliases: list[str] = []
    filenames: list[str] = []
    mimetypes: list[str] = []

    _address = r"0x[\da-fA-F]+|builtin#\d+"  # LuaJIT's fast functions print as function: builtin#29
    tokens = {
        "base": [
            (r"<cycle: [^>\n]*>", Comment),
            (r"… \((?:\+\d+ more|\d+ bytes)\)|…", Comment),
            (rf"\b([a-z]+(?:<[^>\n]*>)?)(: )({_address})\b",
             bygroups(Keyword.Type, Punctuation, Number.Hex)),
            (r"\b(file)( \()(stdin|stdout|stderr|closed|0x[\da-fA-F]+)(\))",
             bygroups(Keyword.Type, Punctuation, Text, Punctuation)),
            (r"(?<![\w.])-?(?:nan|inf)\b(?!\s*=)", Number.Float),  # a key named nan is "nan = …"
            inherit,
        ],
    }
