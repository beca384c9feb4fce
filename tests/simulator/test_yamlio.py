"""Reading YAML and JSON: repeated keys, non-UTF-8 bytes and NaN/Infinity are errors naming file and line."""

from __future__ import annotations

import pytest

from simulator.errors import InputError
from simulator.yamlio import parse_json, parse_yaml, read_yaml


@pytest.mark.parametrize(
    ("text", "field", "lines"),
    [
        ("a: 1\nb: 2\na: 3\n", "a", "lines 1 and 3"),
        ("w:\n  s: 1\n  x: [1, {k: 1, k: 2}]\n", "w.x[1].k", "lines 3 and 3"),
        ("plan:\n  replicas:\n    - count: 1\n      count: 2\n", "plan.replicas[0].count", "lines 3 and 4"),
    ],
)
def test_repeated_yaml_key_names_path_and_lines(text, field, lines):
    with pytest.raises(InputError) as info:
        parse_yaml(text, file="s.yaml")
    assert (info.value.file, info.value.field) == ("s.yaml", field)
    assert lines in str(info.value) and "written twice" in str(info.value)


def test_yaml_merge_key_may_be_overridden():
    """`<<: *anchor` then a key of the anchor is an override, not a repeat."""
    data = parse_yaml("base: &b {x: 1, y: 2}\nmine:\n  <<: *b\n  x: 3\n")
    assert data["mine"] == {"x": 3, "y": 2}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1, "a": 2}', "written twice"),
        ('{"a": NaN}', "NaN is not a JSON number"),
        ('{"a": Infinity}', "Infinity is not a JSON number"),
        ('{"a": 1e999}', "overflows to infinity"),
        ('{"a": ', "invalid JSON at line 1"),
    ],
)
def test_json_repeats_and_non_finite_numbers_refused(text, message):
    with pytest.raises(InputError, match=message) as info:
        parse_json(text, file="config.json")
    assert info.value.file == "config.json"


def test_non_utf8_file_names_the_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"model: llama\ncluster: caf\xe9\n")
    with pytest.raises(InputError, match="line 2: byte 0xe9 is not UTF-8") as info:
        read_yaml(path)
    assert info.value.file == str(path)
