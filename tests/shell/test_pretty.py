"""The pretty printer: sorted keys, array order, cycles, limits, long strings."""
from __future__ import annotations


def test_array_then_sorted_keys(engine):
    assert engine.show("{3, 1, 2, zeta = 1, alpha = 2, [10] = 'x', ['two words'] = true}") == (
        '{3, 1, 2, [10] = "x", alpha = 2, ["two words"] = true, zeta = 1}'
    )


def test_nested_and_empty(engine):
    assert engine.show("{a = {b = {}}}") == "{a = {b = {}}}"


def test_cycles_are_marked(engine):
    out = engine.show("local t = {name = 'loop'}; t.self = t; return t")
    assert out.startswith('{name = "loop", self = <cycle: table: ')


def test_shared_table_is_not_a_cycle(engine):
    assert engine.show("local s = {1}; return {a = s, b = s}") == "{a = {1}, b = {1}}"


def test_depth_limit(engine):
    engine.show(":set depth 2")
    assert engine.show("{a = {b = {c = 1}}}") == "{a = {b = {…}}}"


def test_item_limit(engine):
    engine.show(":set items 3")
    assert engine.show("{1, 2, 3, 4, 5}") == "{1, 2, 3, … (+2 more)}"


def test_long_strings_are_cut_with_their_length(engine):
    out = engine.show("('ACGT'):rep(1000)")
    assert out.endswith('"… (4000 bytes)')
    assert len(out) < 300


def test_escapes(engine):
    assert engine.show(r"'a\n\t\"b\0'") == r'"a\n\t\"b\000"'


def test_wide_tables_break_lines(engine):
    engine.show(":set width 30")
    out = engine.show("{alpha = 'aaaaaaaa', beta = 'bbbbbbbb', gamma = {1, 2}}")
    assert out == '{\n  alpha = "aaaaaaaa",\n  beta = "bbbbbbbb",\n  gamma = {1, 2}\n}'


def test_tostring_metamethod_is_used(engine):
    engine.show("Seq = setmetatable({}, {__tostring = function() return 'Seq(ACGT)' end})")
    assert engine.show("Seq") == "Seq(ACGT)"
    assert engine.show("{Seq}") == "{Seq(ACGT)}"


def test_item_limit_on_a_big_hash_shows_the_smallest_keys_in_order(engine):
    engine.show(":set items 5")
    # 60 keys inserted in a scrambled order; only the 5 smallest are shown
    engine.show("t = {} for i = 60, 1, -1 do t[string.format('key%02d', (i * 37) % 60 + 1)] = i end")
    out = engine.show("t")
    assert out.startswith("{key01 = ") and "key05 = " in out and "key06" not in out
    keys = [part.split(" = ")[0] for part in out.strip("{}").split(", ")[:5]]
    assert keys == ["key01", "key02", "key03", "key04", "key05"]
    assert out.endswith("… (+55 more)}")
    # numbers come before strings, also when the limit cuts through
    engine.show(":set items 3")
    assert engine.show("{[100] = 1, [3.5] = 2, b = 3, a = 4, [-1] = 5}") == "{[-1] = 5, [3.5] = 2, [100] = 1, … (+2 more)}"
