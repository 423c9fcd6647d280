r"""Regular expressions a client supplies (a ValueSet's ``regex`` filters): one rule for
every engine.

* **Linear time.** A pattern is read and matched by RE2 (Google's engine, the
  ``google-re2`` package): a match costs time proportional to the value's length
  whatever the pattern, so ``(a+)+`` cannot backtrack exponentially. What only a
  backtracking engine can do (back-references ``\1``, look-around ``(?=``) is refused.
  ``\d``, ``\w`` and ``\s`` are ASCII classes (as in MongoDB); ``\p{L}``, ``\p{N}`` are
  Unicode letters and digits.
* **The whole value.** A FHIR ``regex`` filter, like an XML Schema pattern, matches the
  whole value: the pattern is wrapped in ``\A(?:...)\z`` (``$`` would also match before a
  final newline).
* **Bounded size.** A pattern longer than the caller's limit is refused before it is
  compiled, and RE2 refuses a program larger than ``MAX_MEMORY`` (``a{1000}`` nested);
  each compiled pattern's cache of DFA states is bounded by the same figure.

Every engine matches with ``matches``: SQLite as a function of its own, MongoDB and
FerretDB in this process over the generation's values (never the database's ``$regex``:
MongoDB's PCRE backtracks), each under the query's deadline (``deadline.py``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

MAX_MEMORY = 1 << 20  # bytes of RE2 program and DFA cache per compiled pattern
CACHED = 64  # compiled patterns kept per process


def _options() -> re2.Options:
    options = re2.Options()
    options.max_mem = MAX_MEMORY
    options.never_capture = True  # groups only group: nothing is extracted
    options.log_errors = False  # RE2 would print each refused pattern to stderr
    return options


_OPTIONS = _options()


def anchored(pattern: str) -> str:
    """The pattern matching whole values only."""
    return rf"\A(?:{pattern})\z"


def problem(pattern: str, *, max_length: int) -> str | None:
    """Why the pattern cannot be used (a sentence for the client, without the pattern
    itself), or None when it can."""
    if len(pattern) > max_length:
        return (f"The regular expression is {len(pattern)} characters long; this server "
                f"takes at most {max_length}")
    try:
        re2.compile(anchored(pattern), _OPTIONS)
    except re2.error as error:
        reason = error.args[0] if error.args else b""
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        return ("The regular expression is not valid RE2 syntax (back-references and "
                f"look-around are not supported): {text.split(':', 1)[0][:80]}")
    return None


@lru_cache(maxsize=CACHED)
def _compiled(pattern: str) -> Any | None:
    try:
        return re2.compile(anchored(pattern), _OPTIONS)
    except re2.error:
        return None


def matches(pattern: str, value: object) -> bool:
    """Whether a string ``value`` matches the whole pattern (a pattern that does not compile
    matches nothing: ``problem`` has refused it before any query is made)."""
    compiled = _compiled(pattern)
    return compiled is not None and isinstance(value, str) and compiled.match(value) is not None
