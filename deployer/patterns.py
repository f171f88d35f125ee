"""Regular expressions from untrusted text (YAML, adapter configs), matched by RE2 in time linear
in the input: with Python's re, a pattern such as `(a+)+b` backtracks for minutes on a 40-character
name while validate or apply waits."""

from __future__ import annotations


def linear(pattern: str):
    """`pattern` compiled by RE2 (`.search`, `.fullmatch` as in `re`). Raises ValueError with RE2's
    reason for what it cannot compile: backreferences, lookaround, repetitions over 1000, a
    compiled size over 8 MiB."""
    import re2  # google-re2; imported here: most commands never match a pattern

    options = re2.Options()
    options.log_errors = False  # RE2 would write its reasons to stderr; the caller reports them
    try:
        return re2.compile(pattern, options)
    except (re2.error, UnicodeError) as exc:
        reason = exc.args[0] if exc.args else exc
        raise ValueError(reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)) from None
