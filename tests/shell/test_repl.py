"""The prompt_toolkit front end, driven through prompt_toolkit's pipe input."""
from __future__ import annotations

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from bioxen_shell.repl.app import run_repl
from bioxen_shell.repl.completer import LuaCompleter
from bioxen_shell.repl.history import history_path, last_entries, open_history
from bioxen_shell.repl.lexer import ShellLexer
from tests.waiting import when

ENTER, CTRL_C, CTRL_D = "\r", "\x03", "\x04"


def drive(engine, keys: str, history=None) -> int:
    """Type ``keys`` into the REPL, then Ctrl-C (clear) and Ctrl-D; return the exit status.
    (Attached to a VM, the first Ctrl-D detaches and the second ends the REPL.)"""
    with create_pipe_input() as pipe:
        pipe.send_text(keys + CTRL_C + CTRL_D + CTRL_D)
        return run_repl(engine, input=pipe, output=DummyOutput(),
                        history=history if history is not None else InMemoryHistory(),
                        banner=False, color=False)


def printed(repl) -> bytes:
    """What the typed lines printed (attached, drive's first Ctrl-D then says it detached)."""
    return repl.take_output().removesuffix(b"detached from w\n")


@pytest.fixture
def engine(make_engine):
    return make_engine("luajit")


@pytest.fixture(params=["luajit", "vm:lua54", "vm:luajit"])
def repl(request, make_engine):
    """The REPL, and the REPL attached to a local VM (tests/shell/conftest.py)."""
    return make_engine(request.param)


def test_expression_prints_and_ctrl_d_exits(repl):
    assert drive(repl, "1 + 1" + ENTER) == 0
    assert printed(repl) == b"2\n"


def test_enter_on_incomplete_input_opens_an_indented_line(repl):
    keys = "for i = 1, 2 do" + ENTER + "print(i * 10)" + ENTER + "end" + ENTER
    drive(repl, keys)
    assert printed(repl) == b"10\n20\n"


def test_a_half_typed_block_waits_for_its_end_as_the_vms_lua_judges(make_engine):
    # LuaJIT (the shell's Lua here) has no `<const>` and no `//`: only the VM's Lua 5.4 can
    # tell that the block is unfinished rather than wrong.
    repl = make_engine("vm:lua54")
    keys = "for i = 1, 3 do" + ENTER + "local y <const> = i // 2" + ENTER + "print(y)" + ENTER + "end" + ENTER
    drive(repl, keys)
    assert printed(repl) == b"0\n1\n1\n"


def test_ctrl_d_while_attached_detaches(make_engine):
    repl = make_engine("vm:luajit")
    with create_pipe_input() as pipe:
        pipe.send_text(CTRL_D + "'back home'" + ENTER + CTRL_D)
        assert run_repl(repl, input=pipe, output=DummyOutput(), history=InMemoryHistory(),
                        banner=False, color=False) == 0
    assert repl.take_output() == b'detached from w\n"back home"\n'
    assert repl.prompt_name() is None


def test_locals_persist_between_prompts(repl):
    drive(repl, "local n = 6" + ENTER + "n * 7" + ENTER)
    assert printed(repl) == b"42\n"


def test_ctrl_c_at_the_prompt_clears_the_input(engine):
    drive(engine, "this is not lua (" + CTRL_C + "'after'" + ENTER)
    assert engine.take_output() == b'"after"\n'


def test_errors_go_to_stderr_and_the_loop_continues(repl, capfd):
    drive(repl, "error('bad')" + ENTER + "'still here'" + ENTER)
    assert printed(repl) == b'"still here"\n'
    assert f"{repl.chunk_stem}[1]:1: bad" in capfd.readouterr().err


def test_invalid_input_is_submitted_to_show_the_error(engine, capfd):
    drive(engine, "x = = 1" + ENTER + "3" + ENTER)
    assert engine.take_output() == b"3\n"
    assert "near '='" in capfd.readouterr().err


def test_bracketed_paste_of_a_multiline_chunk(engine):
    paste = "\x1b[200~function sq(x)\n  return x * x\nend\n\x1b[201~"
    drive(engine, paste + ENTER + "sq(9)" + ENTER)
    assert engine.take_output() == b"81\n"


def test_os_exit_and_quit_end_the_loop_with_their_status(engine, make_engine):
    assert drive(engine, "os.exit(4)" + ENTER + "print('not reached')" + ENTER) == 4
    assert engine.take_output() == b""
    assert drive(make_engine(), ":quit" + ENTER) == 0


def test_history_persists_in_the_state_dir(make_engine):
    path = history_path()
    drive(make_engine(), "x = 1" + ENTER + "for i = 1, 1 do" + ENTER + "end" + ENTER, history=open_history())
    assert path.is_file()
    entries = last_entries(FileHistory(str(path)), 10)
    assert entries == ["x = 1", "for i = 1, 1 do\nend"]  # `end` was dedented
    engine = make_engine()
    drive(engine, ":history" + ENTER, history=open_history())
    out = engine.take_output().decode()
    assert "   1  x = 1" in out and "   3  :history" in out


def test_history_file_is_private(make_engine):
    # What users type can include hostnames and tokens: the file is 0600 like bash's,
    # and an older file with wider permissions is tightened.
    path = history_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    path.chmod(0o644)
    drive(make_engine(), "y = 2" + ENTER, history=open_history())
    assert path.stat().st_mode & 0o777 == 0o600
    assert last_entries(FileHistory(str(path)), 5) == ["y = 2"]


def test_completer_through_prompt_toolkit(engine):
    completer = LuaCompleter(engine)
    doc = Document("x = string.fo")
    completions = list(completer.get_completions(doc, CompleteEvent(completion_requested=True)))
    assert [(c.text, c.start_position) for c in completions] == [("format", -2)]
    assert completions[0].display_meta_text == "function"


def test_lexer_highlights_lua_and_meta_commands():
    lexer = ShellLexer()
    tokens = lexer.lex_document(Document("local x = 'a'"))(0)
    styles = {style for style, _ in tokens}
    assert any("keyword" in s.lower() for s in styles)
    assert any("string" in s.lower() for s in styles)
    assert lexer.lex_document(Document(":help run"))(0) == [("class:meta-command", ":help run")]


def history_with(*entries):
    history = InMemoryHistory()
    for entry in entries:
        history.append_string(entry)
    return history


def test_ctrl_r_searches_history(engine):
    history = history_with("found_it = 99", "other = 1")
    # Ctrl-R, type a fragment, Enter leaves the search with the match, Enter runs it
    drive(engine, "\x12found" + ENTER + ENTER + "found_it" + ENTER, history=history)
    assert engine.take_output() == b"99\n"


@pytest.fixture
def sessions(monkeypatch):
    """The PromptSessions run_repl makes, to watch their buffer from another thread."""
    from bioxen_shell.repl import app

    made = []
    real = app.make_session

    def make_session(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(app, "make_session", make_session)
    return made


def test_suggestion_from_history_accepted_with_right_arrow(engine, sessions):
    history = history_with("'suggested text'")

    def suggested():
        buffer = sessions[0].default_buffer if sessions else None
        return buffer is not None and buffer.text == "'sugg" and buffer.suggestion is not None

    with create_pipe_input() as pipe:
        pipe.send_text("'sugg")
        # the suggestion is computed after the keystroke: accept it once it is there
        with when(suggested, lambda: pipe.send_text("\x1b[C" + ENTER + CTRL_D), "the suggestion"):
            run_repl(engine, input=pipe, output=DummyOutput(), history=history, banner=False, color=False)
    assert engine.take_output() == b'"suggested text"\n'


def test_up_arrow_recalls_previous_input(engine, sessions):
    def history_loaded_at_the_next_prompt():
        if b"42\n" not in engine.out.getvalue() or not sessions:
            return False
        buffer = sessions[0].default_buffer
        try:
            lines = list(buffer._working_lines)
        except RuntimeError:  # the loader appended meanwhile
            return False
        return buffer.text == "" and "40 + 2" in lines[:-1]

    with create_pipe_input() as pipe:
        pipe.send_text("40 + 2" + ENTER)
        # history reloads at each prompt, in the background: press Up once it has
        with when(history_loaded_at_the_next_prompt, lambda: pipe.send_text("\x1b[A" + ENTER + CTRL_D),
                  "the history at the second prompt"):
            run_repl(engine, input=pipe, output=DummyOutput(), history=InMemoryHistory(), banner=False,
                     color=False)
    assert engine.take_output() == b"42\n42\n"
