import click
import pytest

from modelyard.cli import format_table, parse_options, parse_value


@pytest.mark.parametrize("text, value", [
    ("3", 3), ("2.5", 2.5), ("true", True), ("null", None), ('["a", 1]', ["a", 1]), ('{"k": 1}', {"k": 1}),
    ("hello", "hello"), ("I feel nice", "I feel nice"), ('"quoted"', "quoted"),
])
def test_values_are_json_when_they_parse(text, value):
    assert parse_value(text) == value


def test_options_pairs():
    assert parse_options(["--n-gpu", "auto", "--pos=[\"good\"]", "--k", "3"]) == {
        "n_gpu": "auto", "pos": ["good"], "k": 3}
    with pytest.raises(click.UsageError, match="needs a value"):
        parse_options(["--alone"])
    with pytest.raises(click.UsageError, match="Expected --key value"):
        parse_options(["stray"])


def test_table_aligns_columns():
    table = format_table([{"id": "a", "n": 1}, {"id": "longer", "n": None, "extra": "ignored"}], ["id", "n"])
    assert table.splitlines() == ["ID      N", "------  -", "a       1", "longer"]
