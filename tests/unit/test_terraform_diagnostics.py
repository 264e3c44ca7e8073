"""Terraform's error blocks cut out of its real output (texts captured from Terraform 1.15)."""

from infrablocks.terraform.diagnostics import extract_diagnostics, summarize_errors

PROVISIONER_FAILURE = """\

Error: execution halted


Error: execution halted


Error: local-exec provisioner error

  with terraform_data.bad,
  on main.tf line 5, in resource "terraform_data" "bad":
   5:   provisioner "local-exec" {

Error running command 'echo boom >&2; exit 3': exit status 3. Output: boom

"""

SYNTAX_AND_WARNING = """\

Warning: Deprecated attribute

  on main.tf line 3:
   3:   x = y

The attribute "y" is deprecated.

Error: Unclosed configuration block

  on bad.tf line 1, in resource "x":
   1: resource "x" {

There is no closing brace for this block before the end of the file. This may
be caused by incorrect brace nesting elsewhere in this file.

Error: Missing name for resource

  on bad.tf line 1, in resource "x":
   1: resource "x" {

All resource blocks must have 2 labels (type, name).
"""

BOXED = """\
There are some problems with the CLI configuration:
╷
│ Error: The specified plugin cache dir /tmp/x cannot be opened: stat /tmp/x: no such file
│
╵

As a result of the above problems, Terraform may not behave as intended.
"""


def lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def test_each_error_block_is_kept_whole_and_repeats_are_dropped():
    errors = extract_diagnostics(lines(PROVISIONER_FAILURE))
    assert errors[0] == "Error: execution halted"
    assert len(errors) == 2
    assert errors[1].startswith("Error: local-exec provisioner error\n")
    assert "on main.tf line 5" in errors[1]
    assert errors[1].endswith("exit status 3. Output: boom")


def test_warnings_are_not_errors_but_can_be_asked_for():
    errors = extract_diagnostics(lines(SYNTAX_AND_WARNING))
    assert [e.splitlines()[0] for e in errors] == [
        "Error: Unclosed configuration block", "Error: Missing name for resource"]
    assert "brace nesting elsewhere" in errors[0]
    assert not any("deprecated" in e for e in errors)
    warnings = extract_diagnostics(lines(SYNTAX_AND_WARNING), severity="Warning")
    assert warnings == ['Warning: Deprecated attribute\n\n  on main.tf line 3:\n   3:   x = y\n\n'
                        'The attribute "y" is deprecated.']


def test_box_drawn_diagnostics_are_read_too():
    assert extract_diagnostics(lines(BOXED)) == [
        "Error: The specified plugin cache dir /tmp/x cannot be opened: stat /tmp/x: "
        "no such file"]


def test_progress_lines_end_an_error_block():
    text = "Error: first\n\ndetail\naws_instance.a: Creating...\nmore\n"
    assert extract_diagnostics(lines(text)) == ["Error: first\n\ndetail"]


def test_summary_falls_back_to_the_last_lines_without_error_blocks():
    output = [f"line {i}\n" for i in range(30)] + ["\n"]
    summary = summarize_errors(output, fallback_tail=3)
    assert summary == "line 27\nline 28\nline 29"


def test_summary_joins_error_blocks():
    summary = summarize_errors(lines(SYNTAX_AND_WARNING))
    assert summary.count("Error: ") == 2
    assert "\n\nError: Missing name" in summary


def test_colour_codes_are_removed():
    colored = ["\x1b[31mNo state file was found!\n", "Run init first.\x1b[0m\x1b[0m\n"]
    assert summarize_errors(colored) == "No state file was found!\nRun init first."
    assert extract_diagnostics(["\x1b[31mError: \x1b[0mbad\n", "detail\n"]) == [
        "Error: bad\ndetail"]
