"""Colours: the default style reads on black and on white, printed values are values, and
``[shell] style`` / ``:set style`` pick any Pygments style."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from prompt_toolkit.output.vt100 import _256ColorCache
from prompt_toolkit.styles.pygments import pygments_token_to_classname
from pygments.token import STANDARD_TYPES, Comment, Error, Number

from bioxen_shell.remote.config import ConfigError, load_config
from bioxen_shell.repl.app import ColourStyle, run_repl
from bioxen_shell.repl.lexer import ValueLexer
from bioxen_shell.repl.printer import _highlight
from bioxen_shell.repl.styles import UI_STYLE, prompt_style
from bioxen_shell.settings import SettingsError, read_shell_settings
from tests.waiting import PATIENCE

BLACK, WHITE = (0, 0, 0), (255, 255, 255)


# -- WCAG 2 contrast (https://www.w3.org/TR/WCAG21/#dfn-contrast-ratio) -----------------------

def luminance(rgb) -> float:
    def channel(c: int) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    la, lb = sorted((luminance(a), luminance(b)))
    return (lb + 0.05) / (la + 0.05)


def rgb(hex_colour: str):
    return tuple(int(hex_colour[i:i + 2], 16) for i in (0, 2, 4))


def xterm_256(index: int):
    """The RGB of an xterm 256-colour palette entry (16-255)."""
    if index >= 232:
        return (8 + 10 * (index - 232),) * 3
    levels = (0, 95, 135, 175, 215, 255)
    index -= 16
    return levels[index // 36], levels[index // 6 % 6], levels[index % 6]


def test_the_contrast_formula_gives_the_issues_figure():
    # Identifiers used to be drawn in xterm colour 18 (#000087): 1.35:1 on black.
    assert round(contrast(rgb("000087"), BLACK), 2) == 1.35
    assert xterm_256(18) == (0, 0, 0x87) and xterm_256(243) == (0x76,) * 3
    assert round(contrast(BLACK, WHITE), 1) == 21.0


def default_colours():
    """Every foreground colour the default style gives: token -> hex (tokens with none: left out)."""
    style = prompt_style("bioxen")
    classes = {f"pygments {str(t)}": "class:" + pygments_token_to_classname(t) for t in STANDARD_TYPES}
    classes.update({name: f"class:{name}" for name in UI_STYLE if not UI_STYLE[name].count("bg:")})
    out = {}
    for what, cls in classes.items():
        colour = style.get_attrs_for_style_str(cls).color
        if colour:
            out[what] = colour
    return out


def test_every_colour_of_the_default_style_reads_on_black_and_on_white():
    colours = default_colours()
    assert len(colours) > 40  # the tokens of every kind, not only a few
    cache = _256ColorCache()
    weak = []
    for what, colour in colours.items():
        assert re.fullmatch(r"[0-9a-f]{6}", colour), (what, colour)  # no ANSI name: its RGB is the terminal's
        shown = xterm_256(cache[rgb(colour)])  # what a 256-colour terminal draws
        for name, value in (("given", rgb(colour)), ("256-colour", shown)):
            for bg_name, bg in (("black", BLACK), ("white", WHITE)):
                if contrast(value, bg) < 3.0:
                    weak.append(f"{what} {colour} ({name}) on {bg_name}: {contrast(value, bg):.2f}")
    assert not weak, "\n".join(weak)


def test_identifiers_keep_the_terminals_colour_and_suggestions_are_not_numbers():
    style = prompt_style("bioxen")
    attrs = style.get_attrs_for_style_str
    assert attrs("class:pygments.name.variable").color in ("", None)
    assert attrs("class:pygments.name").color in ("", None)
    suggestion = attrs("class:auto-suggestion").color
    assert suggestion and suggestion != attrs("class:pygments.literal.number").color
    assert suggestion not in {c for w, c in default_colours().items() if w != "auto-suggestion"}


# -- printed values ------------------------------------------------------------------------

VALUES = [
    "{print, {}, io.stdout, coroutine.create(print)}",
    "(function() local t = {} for i = 1, 150 do t[i] = i end return t end)()",
    "string.rep('x', 300)",
    "(function() local t = {} t.self = t return t end)()",
    "{{{{{{1}}}}}}",
    "{0/0, -(0/0), 1/0, -1/0, 0x10, 2.5, 'a\\0b', true, nil}",
    "{nan = 1, inf = 2}",
]


@pytest.mark.parametrize("runtime", ["lua54", "luajit"])
def test_printed_values_have_no_error_tokens(make_engine, runtime):
    engine = make_engine(runtime)
    for src in VALUES:
        text = engine.show(src)
        tokens = list(ValueLexer().get_tokens(text))
        assert not [v for t, v in tokens if t in Error], (src, text, tokens)
    tokens = list(ValueLexer().get_tokens(engine.show("{print, io.stdout, string.rep('x', 300)}")))
    assert any(t in Number and (v.startswith("0x") or v.startswith("builtin#")) for t, v in tokens)
    assert (Comment, "… (300 bytes)") in tokens


def test_the_lexer_treats_addresses_and_cuts_as_values():
    kinds = {v: t for t, v in ValueLexer().get_tokens(
        "{table: 0x5555966e2bd0, cdata<int *>: 0x41b3e9f0, {…}, <cycle: table: 0x55>, x = nan, … (+3 more)}")}
    assert kinds["0x5555966e2bd0"] in Number and kinds["0x41b3e9f0"] in Number
    assert kinds["…"] in Comment and kinds["… (+3 more)"] in Comment and kinds["<cycle: table: 0x55>"] in Comment
    assert kinds["nan"] in Number
    keyed = {v: t for t, v in ValueLexer().get_tokens("{nan = 1}")}
    assert keyed["nan"] not in Number  # a key named nan is a name


def escape_colours(data: bytes) -> list[int]:
    return [int(n) for n in re.findall(rb"\x1b\[38;5;(\d+)", data)]


def test_printed_values_use_the_style_and_read_on_black_and_white():
    text = "{1, 0x10, 'x', true, print, function: 0x55, … (+3 more)}".encode()
    coloured = _highlight(text, "bioxen", "DEPTH_8_BIT")
    assert re.sub(rb"\x1b\[[\d;]*m", b"", coloured) == text  # colour only: the text is intact
    used = escape_colours(coloured)
    assert len(set(used)) >= 4
    for index in used:
        assert contrast(xterm_256(index), BLACK) >= 3 and contrast(xterm_256(index), WHITE) >= 3, index
    assert 160 not in used  # #d70000, the colour of errors
    # another style, another colour for the same number
    assert escape_colours(_highlight(b"42", "monokai", "DEPTH_8_BIT")) == [141]  # monokai's #ae81ff
    assert escape_colours(_highlight(b"42", "bioxen", "DEPTH_8_BIT")) == [136]  # #af8700
    assert _highlight(b"42", "bioxen", "DEPTH_1_BIT") == b"42"
    assert b"\x1b[38;2;175;135;0m42" in _highlight(b"42", "bioxen", "DEPTH_24_BIT")


# -- [shell] style ------------------------------------------------------------------------------

@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("BIOXEN_CONFIG_DIR", str(tmp_path))
    return tmp_path / "config.toml"


@pytest.mark.parametrize("name", ["bioxen", "monokai", "solarized-light", "default"])
def test_shell_style_accepts_pygments_names(config, name):
    config.write_text(f'[shell]\nstyle = "{name}"\n')
    assert read_shell_settings(config) == {"style": name}
    assert load_config().shell == {"style": name}


@pytest.mark.parametrize("value, expected", [
    ('"monokay"', "expected a Pygments style name (did you mean 'monokai'?), got \"monokay\""),
    ('"nope"', 'expected a Pygments style name such as "bioxen" (the default) or "monokai", got "nope"'),
    ("3", 'expected a Pygments style name such as "bioxen" (the default) or "monokai", got 3'),
    ('""', 'expected a Pygments style name such as "bioxen" (the default) or "monokai", got ""'),
])
def test_a_bad_style_names_file_key_and_expectation(config, value, expected):
    config.write_text(f"[shell]\nstyle = {value}\n")
    with pytest.raises(SettingsError) as err:
        read_shell_settings(config)
    assert str(err.value) == f"{config}: shell.style: {expected}"
    with pytest.raises(ConfigError) as err:
        load_config()
    assert str(err.value) == f"{config}: shell.style: {expected}"


def bioxen(*args, env):
    proc = subprocess.run([sys.executable, "-m", "bioxen_shell", *args], capture_output=True, text=True,
                          env=env, timeout=PATIENCE)
    return proc.returncode, proc.stdout, proc.stderr


def test_config_check_and_start_up_with_a_style(tmp_path):
    env = dict(os.environ, BIOXEN_CONFIG_DIR=str(tmp_path))
    config = tmp_path / "config.toml"
    config.write_text('[shell]\nstyle = "monokai"\n')
    code, out, err = bioxen("config", "check", env=env)
    assert code == 0 and "[shell] settings" in out, err
    assert bioxen("-e", "print(1)", env=env) == (0, "1\n", "")
    config.write_text('[shell]\nstyle = "monokay"\n')
    code, _, err = bioxen("config", "check", env=env)
    assert code == 2 and f"{config}: shell.style: expected a Pygments style name (did you mean 'monokai'?)" in err
    # the REPL stops at the start; a script or -e, which never draw, only check that it is a name
    code, _, err = bioxen("-i", env=env)
    assert code == 2 and f"{config}: shell.style: expected a Pygments style name (did you mean 'monokai'?)" in err
    assert bioxen("-e", "print(1)", env=env) == (0, "1\n", "")
    config.write_text("[shell]\nstyle = 3\n")
    code, _, err = bioxen("-e", "print(1)", env=env)
    assert code == 2 and f"{config}: shell.style: expected a Pygments style name such as" in err


def test_a_style_costs_scripts_no_pygments_import(tmp_path):
    (tmp_path / "config.toml").write_text('[shell]\nstyle = "monokai"\n')
    probe = "\n".join([
        "import sys",
        "from bioxen_shell.cli import main",
        "assert main(['-e', 'x = 1']) == 0",
        "print(sorted(m for m in sys.modules if m.startswith(('pygments', 'prompt_toolkit'))))",
    ])
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=PATIENCE,
                         env=dict(os.environ, BIOXEN_CONFIG_DIR=str(tmp_path)))
    assert (out.returncode, out.stdout.strip()) == (0, "[]"), out.stderr


# -- :set style -----------------------------------------------------------------------------------

def test_set_style_shows_changes_checks_and_completes(make_engine):
    engine = make_engine("lua54")
    colours = ColourStyle("monokai")
    colours.register(engine)
    assert engine.show(":set style") == "style monokai"
    assert "  style      monokai" in engine.show(":set").splitlines()
    assert engine.show(":set style solarized-dark") == ""
    assert colours.name == "solarized-dark"
    number = colours.prompt_toolkit.get_attrs_for_style_str("class:pygments.literal.number").color
    assert number == prompt_style("solarized-dark").get_attrs_for_style_str("class:pygments.literal.number").color
    bad = engine.eval_line(":set style monokay")
    assert not bad.ok
    assert bad.error_text() == b":set: style: expected a Pygments style name (did you mean 'monokai'?), got \"monokay\""
    assert colours.name == "solarized-dark"
    assert engine.complete(":set sty") == [("style", -3, "")]
    assert [c[0] for c in engine.complete(":set style solarized-")] == ["solarized-dark", "solarized-light"]
    assert engine.complete(":set depth ") == []
    # the numeric options still work and still say what is wrong
    assert engine.show(":set depth 3") == "" and engine.show(":set depth") == "depth 3"
    assert engine.eval_line(":set colour x").error_text().startswith(b":set: unknown option 'colour' (options: ")


def test_without_a_front_end_there_is_no_style_option(make_engine):
    engine = make_engine("lua54")
    assert "style" not in engine.show(":set")
    assert b"unknown option 'style'" in engine.eval_line(":set style monokai").error_text()


def test_set_style_in_the_repl_outlives_reset(make_engine):
    engine = make_engine("luajit")
    keys = ":set style monokai\r:reset\r:set style\r"
    with create_pipe_input() as pipe:
        pipe.send_text(keys + "\x03\x04")
        assert run_repl(engine, input=pipe, output=DummyOutput(), history=InMemoryHistory(),
                        banner=False, color=False, style="bioxen") == 0
    assert engine.take_output().decode().splitlines()[-1] == "style monokai"


# -- in a real terminal ----------------------------------------------------------------------

def spawn(tmp_path, style=None):
    pexpect = pytest.importorskip("pexpect", reason="pexpect is a test dependency (pip install pexpect)")
    (tmp_path / "config").mkdir(exist_ok=True)
    if style:
        (tmp_path / "config" / "config.toml").write_text(f'[shell]\nstyle = "{style}"\n')
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1", COLUMNS="100", LINES="30",
               BIOXEN_CONFIG_DIR=str(tmp_path / "config"), BIOXEN_STATE_DIR=str(tmp_path / "state"))
    command = shutil.which("bioxen")
    child = pexpect.spawn(command or sys.executable, [] if command else ["-m", "bioxen_shell"], env=env,
                          timeout=PATIENCE, dimensions=(30, 100))
    child.expect_exact(b"lua> ")
    return child


def test_terminal_draws_values_as_values_and_suggestions_in_grey(tmp_path):
    child = spawn(tmp_path)
    try:
        child.send("{print}\r")
        # the printed value: "function" as a type (#5f87af = 67), its address as a number (136)
        child.expect(rb"\x1b\[38;5;67mfunction\x1b\[39m: \x1b\[38;5;136m(0x[0-9a-f]+|builtin#\d+)\x1b\[39m")
        child.expect_exact(b"lua> ")
        child.send("'unique_marker'\r")
        child.expect_exact(b"lua> ")
        child.send("'uniq")  # the history suggests the rest, in grey (#767676 = 243)
        child.expect(rb"38;5;243m(\x1b\[[\d;]*m)*ue_marker'")
        child.sendintr()
        child.expect_exact(b"lua> ")
    finally:
        child.terminate(force=True)


def test_terminal_style_from_config_and_set_style(tmp_path):
    child = spawn(tmp_path, style="monokai")
    try:
        child.send("4242\r")
        child.expect_exact(b"\x1b[38;5;141m4242\x1b[39m")  # monokai's numbers (#ae81ff)
        child.expect_exact(b"lua> ")
        child.send(":set style bioxen\r")
        child.expect_exact(b"lua> ")
        child.send("4343\r")
        child.expect_exact(b"\x1b[38;5;136m4343\x1b[39m")  # the default's (#af8700)
        child.expect_exact(b"lua> ")
    finally:
        child.terminate(force=True)
