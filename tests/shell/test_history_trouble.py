"""The REPL on a real terminal when its history cannot be kept: a read-only state directory,
a full disk, a symbolic link planted at the history path.  The REPL starts and works, says
so once on stderr (the path and the reason), and never touches what it must not."""
from __future__ import annotations

import io
import os
import re
import shutil
import sys

import pytest

from tests import system

pexpect = pytest.importorskip("pexpect", reason="pexpect is a test dependency (pip install pexpect)")

PROMPT = "lua> "
OLD_HISTORY = b"\n# 2024-01-01 00:00:00\n+old_entry = 1\n"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def start(state_dir):
    env = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", NO_COLOR="1",
               BIOXEN_STATE_DIR=str(state_dir))
    command = shutil.which("bioxen")
    child = pexpect.spawn(command or sys.executable, [] if command else ["-m", "bioxen_shell"], env=env,
                          encoding="utf-8", timeout=15, dimensions=(30, 200))
    child.logfile_read = io.StringIO()
    child.expect_exact(PROMPT)
    return child


def type_line(child, line, expect):
    child.send(line + "\r")
    child.expect_exact(expect)
    child.expect_exact(PROMPT)


def finish(child) -> str:
    """Ctrl-D; the whole screen output as plain text, after checking the REPL exited 0."""
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    text = _ANSI.sub("", child.logfile_read.getvalue()).replace("\r", "")
    assert "Traceback" not in text and "Press ENTER" not in text and "Unhandled exception" not in text, text
    return text


def test_read_only_state_dir_keeps_the_repl_and_the_old_entries(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    with system.tmpfs(state) as fs:
        (state / "history").write_bytes(OLD_HISTORY)
        fs.remount_read_only()
        child = start(state)
        type_line(child, "1 + 1", "2\r\n")
        type_line(child, ":history", "2  1 + 1")
        text = finish(child)
        assert (state / "history").read_bytes() == OLD_HISTORY
    notice = f"bioxen: history will not be saved: {state / 'history'}: Read-only file system\n"
    assert text.count(notice) == 1, text
    assert "1  old_entry = 1\n" in text  # what was saved before still shows


def test_state_dir_that_cannot_be_created(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    with system.tmpfs(parent) as fs:
        fs.remount_read_only()
        child = start(parent / "state")
        type_line(child, "6 * 7", "42\r\n")
        text = finish(child)
    notice = f"bioxen: history will not be saved: cannot create {parent / 'state'}: Read-only file system\n"
    assert text.count(notice) == 1, text


def test_full_disk_stops_saving_once_and_keeps_the_file_whole(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    with system.tmpfs(state) as fs:
        # Whole pages of earlier history, so the next entry needs a new block, which a full
        # disk does not have.
        page = os.sysconf("SC_PAGE_SIZE")
        old = OLD_HISTORY + b"#" * (page - len(OLD_HISTORY) - 1) + b"\n"
        (state / "history").write_bytes(old)
        fs.fill()
        child = start(state)
        type_line(child, "1 + 1", "2\r\n")
        type_line(child, "2 + 3", "5\r\n")
        type_line(child, ":history 3", "3  :history 3")
        text = finish(child)
        assert (state / "history").read_bytes() == old  # no half-written entry
    notice = f"bioxen: history is no longer saved: {state / 'history'}: No space left on device\n"
    assert text.count(notice) == 1, text
    assert "1  1 + 1\n" in text and "2  2 + 3\n" in text  # kept in memory for this session


def test_symlink_at_the_history_path_is_not_followed(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = tmp_path / "not-history"
    target.write_text("someone else's file\n")
    target.chmod(0o644)
    (state / "history").symlink_to(target)
    child = start(state)
    type_line(child, "1 + 1", "2\r\n")
    type_line(child, "'again'", '"again"')
    type_line(child, ":history", "3  :history")
    text = finish(child)
    assert target.read_text() == "someone else's file\n"
    assert target.stat().st_mode & 0o777 == 0o644
    assert (state / "history").is_symlink()
    notice = (f"bioxen: history will not be saved: {state / 'history'} is a symbolic link, which bioxen "
              f"does not follow (remove it to save history again)\n")
    assert text.count(notice) == 1, text
