"""Password sources: file (permission-checked), command, environment, prompt; and Secret."""
from __future__ import annotations

import logging
import pickle
import sys

import pytest

from bioxen_shell.remote import credentials
from bioxen_shell.remote.credentials import (
    CredentialError,
    Secret,
    password_from_env,
    read_password_file,
    resolve_password,
    run_password_command,
)

VALUE = "correct-horse-battery"


def test_secret_never_shows_its_value(caplog):
    s = Secret(VALUE, "password_env X")
    assert VALUE not in repr(s) and VALUE not in str(s) and VALUE not in f"{s}" and VALUE not in f"{s!r:>40}"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").debug("got %s / %r", s, s)
    assert VALUE not in caplog.text
    assert s.reveal() == VALUE
    with pytest.raises(TypeError):
        pickle.dumps(s)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_password_file_open_to_others_is_refused(tmp_path, mode):
    f = tmp_path / "pw"
    f.write_text(VALUE + "\n")
    f.chmod(mode)
    with pytest.raises(CredentialError) as err:
        read_password_file(f)
    msg = str(err.value)
    assert f"mode {mode:04o}" in msg and f"chmod 600 {f}" in msg
    assert VALUE not in msg


def test_password_file_private_is_read(tmp_path):
    f = tmp_path / "pw"
    f.write_text(VALUE + "\nsecond line ignored\n")
    f.chmod(0o600)
    s = read_password_file(f)
    assert s.reveal() == VALUE and str(f) in s.source


def test_password_file_missing_or_empty(tmp_path):
    with pytest.raises(CredentialError, match="does not exist"):
        read_password_file(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(CredentialError, match="is empty"):
        read_password_file(empty)


def test_password_command_first_line_without_shell(tmp_path):
    s = run_password_command([sys.executable, "-c", f"print({VALUE!r}); print('x')"])
    assert s.reveal() == VALUE
    # no shell: metacharacters are plain arguments
    s2 = run_password_command(f"{sys.executable} -c 'import sys; print(sys.argv[1])' '$HOME;|'")
    assert s2.reveal() == "$HOME;|"


def test_password_command_failure_names_program_not_output():
    with pytest.raises(CredentialError) as err:
        run_password_command([sys.executable, "-c", f"print({VALUE!r}); raise SystemExit(3)"])
    assert "exit status 3" in str(err.value) and VALUE not in str(err.value)
    with pytest.raises(CredentialError, match="not found"):
        run_password_command("no-such-program-bioxen")


def test_password_env(monkeypatch):
    monkeypatch.setenv("BIOXEN_T_PW", VALUE)
    assert password_from_env("BIOXEN_T_PW").reveal() == VALUE
    monkeypatch.delenv("BIOXEN_T_PW")
    with pytest.raises(CredentialError, match="BIOXEN_T_PW"):
        password_from_env("BIOXEN_T_PW")


def test_resolve_picks_the_one_source_and_prompts_only_when_allowed(monkeypatch):
    monkeypatch.setenv("BIOXEN_T_PW", VALUE)
    assert resolve_password({"password_env": "BIOXEN_T_PW"}, "x").reveal() == VALUE
    assert resolve_password({}, "ssh host") is None  # SSH: keys unless a password is configured
    with pytest.raises(CredentialError, match="only one"):
        resolve_password({"password_env": "A", "password_command": "b"}, "x")
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(CredentialError, match="no terminal to ask on"):
        resolve_password({}, "pool lab", prompt=True)


def test_prompt_uses_getpass_on_a_terminal(monkeypatch):
    class TTY:
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdin", TTY())
    monkeypatch.setattr(credentials.getpass, "getpass", lambda prompt: VALUE)
    s = resolve_password({}, "pool lab", prompt=True)
    assert s.reveal() == VALUE and s.source == "prompt"
