"""Syntax highlighting: Pygments' Lua lexer, and meta-command lines (``:help``) in one colour."""
from __future__ import annotations

from typing import Callable

from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.lexers import Lexer, PygmentsLexer
from pygments.lexers.scripting import LuaLexer

__all__ = ["ShellLexer"]


class ShellLexer(Lexer):
    def __init__(self) -> None:
        self._lua = PygmentsLexer(LuaLexer)

    def lex_document(self, document: Document) -> Callable[[int], StyleAndTextTuples]:
        if document.text.lstrip().startswith(":"):
            lines = document.lines
            return lambda i: [("class:meta-command", lines[i])] if i < len(lines) else []
        return self._lua.lex_document(document)
