"""Monorepo CI: which blocks a change affects (``affected``) and the GitHub Actions workflow
that tests them on many runners (``pipeline``). See docs/ci.md."""
