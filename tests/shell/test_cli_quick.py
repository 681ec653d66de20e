"""cli._quick_parse (the start-up fast path) must agree with the argparse parser it stands in for."""
from __future__ import annotations

import pytest

from bioxen_shell import cli

# Command lines the quick parser handles itself: it must give argparse's answer exactly.
HANDLED = [
    [], ["-e", "print(1)"], ["-e", "a", "-e", "b"], ["-e", ""], ["f.lua"], ["f.lua", "a", "-e", "x"],
    ["--", "f.lua", "a"], ["--", "f.lua", "--", "x"], ["--", "-x"], ["--", "-"], ["-i"], ["-i", "f.lua"],
    ["-i", "-e", "x"], ["--runtime", "lua54", "-e", "x"], ["--runtime=lua54", "f.lua"], ["--runtime=", "-e", "1"],
    ["--runtime", "a", "--runtime", "b"], ["--path", "d", "--path=e", "-l", "m", "-l", "n=m2"], ["--path=", "-e", "1"],
    ["-"], ["-", "a"], ["-e", "x", "-"], ["--version"], ["f.lua", "--version"], ["-e", "x", "--", "f", "-i"],
    ["-l", "a", "-i", "--", "s.lua", "x", "--", "y"], ["--", "--", "f"], ["f.lua", "-", "--runtime", "x"],
    ["f.lua", "--"], ["f.lua", "--", "x"], ["-", "--", "a"], ["f.lua", "a", "--", "b"],
    ["-l", "a", "-i", "s.lua", "x", "--", "y"], ["-e", "x", "f.lua", "--", "--"],
]

# Command lines it must leave to argparse (help, abbreviations, errors, argparse's own quirks).
DEFERRED = [
    ["--help"], ["-h"], ["--run", "lua54"], ["--vers"], ["-eprint(1)"], ["-e"], ["-e", "-1"], ["--path"],
    ["--bogus"], ["-x", "f.lua"], ["-ie", "x"], ["--run", "lua54", "f.lua", "--", "y"],
]


@pytest.mark.parametrize("argv", HANDLED, ids=lambda a: " ".join(a) or "(none)")
def test_quick_parse_agrees_with_argparse(argv):
    quick = cli._quick_parse(list(argv))
    assert quick is not None, "expected the quick parser to handle this command line"
    assert vars(quick) == vars(cli._argparse(list(argv)))


# argparse drops a "--" right after the script; lua passes it on, and so does cli._argparse.
@pytest.mark.parametrize("argv, args", [
    (["--run", "lua54", "f.lua", "--", "y"], ["--", "y"]), (["-ie", "x", "f.lua", "--"], ["--"]),
    (["-eprint(1)", "-", "--", "--"], ["--", "--"]), (["--run", "x", "f.lua", "a", "--"], ["a", "--"]),
    (["--run", "x", "--", "f.lua", "--"], ["--"]), (["--run", "x", "f.lua"], []),
])
def test_argparse_keeps_the_script_arguments(argv, args):
    assert cli._argparse(list(argv)).args == args


@pytest.mark.parametrize("argv", DEFERRED, ids=lambda a: " ".join(a))
def test_quick_parse_leaves_the_rest_to_argparse(argv):
    assert cli._quick_parse(list(argv)) is None
