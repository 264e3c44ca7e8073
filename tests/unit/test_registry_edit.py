import pytest

from infrablocks.errors import ConfigError
from infrablocks.registry_edit import set_pin

REGISTRY = """\
# the registry
[defaults]
environment = "prod"

[environments.prod]
pins = { base = "1.0.0", stolon = "1.0.0" }   # production pins
subnet = "127.42.5.0/24"

[environments.staging]
"""


def test_set_pin_changes_only_that_value(tmp_path):
    path = tmp_path / "blocks.toml"
    path.write_text(REGISTRY)
    assert set_pin(path, "prod", "base", "1.1.0") == "1.0.0"
    assert path.read_text() == REGISTRY.replace('base = "1.0.0"', 'base = "1.1.0"')


def test_set_pin_adds_pins_where_there_were_none(tmp_path):
    path = tmp_path / "blocks.toml"
    path.write_text(REGISTRY)
    assert set_pin(path, "staging", "base", "1.1.0") is None
    text = path.read_text()
    assert text.startswith(REGISTRY.rstrip("\n"))
    assert 'pins = {base = "1.1.0"}' in text.replace(" = {", " = {").replace("{ ", "{") \
        .replace(" }", "}")


def test_set_pin_in_an_unknown_environment_is_a_clear_error(tmp_path):
    path = tmp_path / "blocks.toml"
    path.write_text(REGISTRY)
    with pytest.raises(ConfigError, match=r"no \[environments.qa\]"):
        set_pin(path, "qa", "base", "1.1.0")
    assert path.read_text() == REGISTRY
