"""Colours: the default style ``bioxen``, any Pygments style by name, and the REPL's own parts.

One style colours both what you type (prompt_toolkit) and the values the REPL prints
(:mod:`.printer`).  The default's colours are all mid-tones from the xterm 256-colour
palette (so a 256-colour terminal shows them exactly): each has at least 3:1 contrast
on a black *and* on a white background (WCAG), which ``tests/shell/test_colours.py``
measures.  Plain names, operators and punctuation keep the terminal's own foreground.

``[shell] style = "NAME"`` in config.toml and ``:set style NAME`` pick another style;
the name is checked by :func:`bioxen_shell.settings.check_style`, as ``config check`` does.
"""
from __future__ import annotations

from pygments.style import Style as PygmentsStyle
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, String

from ..settings import DEFAULT_STYLE, check_style

__all__ = ["BioxenStyle", "DEFAULT_STYLE", "UI_STYLE", "pygments_style", "prompt_style", "style_names"]


class BioxenStyle(PygmentsStyle):
    """Readable on dark and light terminals alike (>= 3:1 on black and on white)."""

    name = DEFAULT_STYLE
    styles = {
        Keyword: "#af5fd7",
        Keyword.Constant: "#d75f00",      # true false nil
        Keyword.Type: "#5f87af",          # the "table" of a printed "table: 0x…"
        Operator.Word: "#af5fd7",         # and or not
        Name.Builtin: "#0087af",
        Name.Function: "#5f87ff",
        Name.Class: "#5f87af",
        Name.Label: "#d75faf",
        Name.Attribute: "#d75faf",        # <const> <close>
        Number: "#af8700",
        String: "#5f8700",
        String.Escape: "#d75f00",
        Comment: "italic #8a8a8a",        # also the "… (+N more)" of cut values
        Error: "#d70000",
    }


#: The REPL's own parts, on top of the token colours.  Suggestions from history are grey,
#: never the colour of a number (or of anything else one types).
UI_STYLE = {
    "prompt": "#5f8700 bold",
    "prompt.target": "#af5fd7 bold",
    "continuation": "#8a8a8a",
    "meta-command": "#0087af",
    "auto-suggestion": "#767676",
    "bottom-toolbar": "noreverse bg:#222222 #aaaaaa",
    "toolbar.runtime": "bg:#005f5f #ffffff",
    "toolbar.target": "bg:#5f005f #ffffff",
    "toolbar.hint": "#777777",
    # The signature of the call being typed, its current argument, and its first doc line
    # (drawn on the toolbar: each gives its background).
    "toolbar.signature": "bg:#303030 #ffffff",
    "toolbar.signature.current": "bg:#303030 #ffffff bold underline",
    "toolbar.doc": "bg:#222222 #aaaaaa",  # on the toolbar, as its other parts
}


def pygments_style(name: str) -> type[PygmentsStyle]:
    """The Pygments style class called ``name`` (``bioxen``: the default); ValueError if none."""
    name = check_style(name)
    if name == DEFAULT_STYLE:
        return BioxenStyle
    from pygments.styles import get_style_by_name

    return get_style_by_name(name)


def prompt_style(name: str):  # noqa: ANN201 - a prompt_toolkit BaseStyle
    """The prompt_toolkit style for the style called ``name``: its tokens, then our parts."""
    from prompt_toolkit.styles import Style, merge_styles, style_from_pygments_cls

    return merge_styles([style_from_pygments_cls(pygments_style(name)), Style.from_dict(UI_STYLE)])


def style_names() -> list[str]:
    """Every style name ``:set style`` accepts, sorted (Pygments' own and plug-ins')."""
    from pygments.styles import get_all_styles

    return sorted({DEFAULT_STYLE, *get_all_styles()})
