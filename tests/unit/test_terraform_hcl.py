"""HCL literals for the generated backend, .tfbackend and CLI config files."""

import pytest

from infrablocks.terraform.hcl import hcl_attributes, hcl_key, hcl_string, hcl_value


def test_strings_are_escaped_and_cannot_interpolate():
    assert hcl_string('a "b" \\ c') == '"a \\"b\\" \\\\ c"'
    assert hcl_string("${var.x} %{if}") == '"$${var.x} %%{if}"'
    assert hcl_string("line\nnext") == '"line\\nnext"'
    assert hcl_string("é") == '"é"'


def test_scalars_lists_and_nested_maps():
    assert hcl_value(True) == "true" and hcl_value(False) == "false"
    assert hcl_value(3) == "3" and hcl_value(1.5) == "1.5" and hcl_value(None) == "null"
    assert hcl_value(["a", 1]) == '["a", 1]'
    assert hcl_value({}) == "{}"
    assert hcl_value({"s3": "http://x", "dynamo db": "y"}) == (
        '{\n  s3 = "http://x"\n  "dynamo db" = "y"\n}')


def test_keys_are_bare_only_when_they_are_identifiers():
    assert hcl_key("use_path_style") == "use_path_style"
    assert hcl_key("a-b") == "a-b"
    assert hcl_key("1st") == '"1st"'


def test_attributes_render_one_per_line_with_nesting():
    text = hcl_attributes({"bucket": "b", "endpoints": {"s3": "http://127.0.0.1:9"}})
    assert text == 'bucket = "b"\nendpoints = {\n  s3 = "http://127.0.0.1:9"\n}\n'
    assert hcl_attributes({"path": "/x"}, indent=2) == '    path = "/x"\n'


def test_values_without_an_hcl_form_are_refused():
    with pytest.raises(TypeError, match="cannot render object"):
        hcl_value(object())


def test_control_characters_use_the_escapes_hcl_knows():
    """HCL has no \\b or \\f (JSON has): every other control character is \\uNNNN."""
    assert hcl_string("a\bb\fc\x00\x7f") == '"a\\u0008b\\u000cc\\u0000\\u007f"'
    assert hcl_string("tab\there\r") == '"tab\\there\\r"'
    assert hcl_string("$${kept}") == '"$$${kept}"'


def test_keywords_are_quoted_as_object_keys():
    assert hcl_value({"null": 1, "true": 2}) == '{\n  "null" = 1\n  "true" = 2\n}'


def test_the_driver_masks_sensitive_inputs_as_terraform_may_print_them():
    from infrablocks.terraform.driver import Redactor

    redact = Redactor(['pa"ss\\word', "line one\nline two", "short"])
    assert redact('dsn = "x:pa\\"ss\\\\word@db"') == 'dsn = "x:(sensitive value)@db"'
    assert redact("x:pa\"ss\\word@db") == "x:(sensitive value)@db"
    assert redact("    line one\n") == "    (sensitive value)\n"
    assert redact("short stays") == "short stays"   # under MIN_LENGTH: not masked
    assert Redactor([])("anything") == "anything"
