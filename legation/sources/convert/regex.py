"""Is a regex valid RE2? Envoy compiles every `safe_regex` with Google RE2.

Istio documents its regex fields as "RE2 style regex-based match
(https://github.com/google/re2/wiki/Syntax)"; a pattern RE2 rejects makes
Envoy reject the whole route configuration. Python has no RE2, so
`check_re2` does two things: it scans for the constructs the RE2 syntax
page marks NOT SUPPORTED (lookaround, backreferences, atomic groups,
possessive quantifiers, conditionals, recursion, `\\Z`, `\\G`, comments, the
`x` flag, repeat counts over 1000), and it compiles a Python translation of
RE2-only syntax (`(?<name>`, `\\z`, `\\Q..\\E`, `\\x{..}`, `\\pL`, POSIX
classes, the `U` flag) with `re` to catch everything else (unbalanced
parentheses, bad ranges, nothing to repeat). Then it compiles the pattern
with RE2 itself (Google's `re2` bindings), as Envoy does, and refuses a
program larger than Envoy's limit: Envoy rejects a regex whose RE2 program
size exceeds `re2.max_program_size.error_level`, 100 unless an operator
raised it (envoy/source/common/common/regex.cc), and with it the whole route
configuration, so `a{1000}` (size 1004) would freeze every proxy sharing it.
"""

from __future__ import annotations

import re
import warnings

import re2  # type: ignore[import-untyped]

RE2_SYNTAX = "https://github.com/google/re2/wiki/Syntax"
MAX_PROGRAM_SIZE = 100  # Envoy's default re2.max_program_size.error_level
MAX_REPEAT = 1000  # RE2: "repetition count > 1000" is rejected

_RE2_LETTER_ESCAPES = set("aftnrvxdDsSwWbBApPCQz")
_POSIX = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
    "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z",
    "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
}
_REPEAT = re.compile(r"\{(\d+)(,(\d*))?\}")
_FLAGS = re.compile(r"\(\?([imsU]*)(-[imsU]*)?([:)])")


_QUIET = re2.Options()
_QUIET.log_errors = False  # Envoy compiles with RE2::Quiet too


class Re2Error(ValueError):
    """Not valid RE2; the message is a sentence fragment naming the construct."""


def check_re2(pattern: str) -> str | None:
    """None when `pattern` is valid RE2, else what is wrong (for a diagnostic message)."""
    try:
        translated = _Scanner(pattern).translate()
    except Re2Error as exc:
        return f"{exc} (RE2 syntax: {RE2_SYNTAX})"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            re.compile(translated)
        except re.error as exc:
            return f"it is not a valid regular expression: {exc.msg} (RE2 syntax: {RE2_SYNTAX})"
        except (OverflowError, RecursionError):
            return "it is too large or too deeply nested to compile"
    return _program_problem(pattern)


def _program_problem(pattern: str) -> str | None:
    try:
        size = int(re2.compile(pattern, options=_QUIET).programsize)
    except re2.error as exc:
        return f"RE2 rejects it: {_re2_reason(exc)} (RE2 syntax: {RE2_SYNTAX})"
    if size > MAX_PROGRAM_SIZE:
        return (f"its RE2 program size is {size}, over Envoy's limit of {MAX_PROGRAM_SIZE} "
                "(re2.max_program_size.error_level): Envoy would reject the whole route "
                "configuration holding it, for every proxy that uses it. Use a smaller "
                "pattern (fewer or smaller repeat counts, e.g. [0-9]+ for [0-9]{1,50})")
    return None


def _re2_reason(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else exc
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)


class _Scanner:
    """Walks a pattern once, raising Re2Error or returning Python-compatible text."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.out: list[str] = []

    def translate(self) -> str:
        while self.i < len(self.p):
            c = self.p[self.i]
            if c == "\\":
                self.out.append(self._escape(in_class=False))
            elif c == "[":
                self._char_class()
            elif c == "(":
                self._group()
            elif c in "*+?":
                self.out.append(c)
                self.i += 1
                self._after_quantifier()
            elif c == "{" and (m := _REPEAT.match(self.p, self.i)) is not None:
                self._repeat(m)
            else:
                self.out.append(c)
                self.i += 1
        return "".join(self.out)

    def _after_quantifier(self) -> None:
        nxt = self.p[self.i] if self.i < len(self.p) else ""
        if nxt == "+":
            raise Re2Error("RE2 does not support possessive quantifiers such as '*+' or '++'")
        if nxt == "?":
            self.out.append("?")
            self.i += 1

    def _repeat(self, m: re.Match[str]) -> None:
        low, high = int(m.group(1)), m.group(3)
        if low > MAX_REPEAT or (high and int(high) > MAX_REPEAT):
            raise Re2Error(f"RE2 allows repeat counts up to {MAX_REPEAT}, found {m.group(0)!r}")
        self.out.append(m.group(0))
        self.i = m.end()
        self._after_quantifier()

    def _group(self) -> None:
        rest = self.p[self.i :]
        if not rest.startswith("(?"):
            self.out.append("(")
            self.i += 1
            return
        unsupported = {
            "(?=": "lookahead '(?='", "(?!": "negative lookahead '(?!'",
            "(?<=": "lookbehind '(?<='", "(?<!": "negative lookbehind '(?<!'",
            "(?>": "atomic groups '(?>'", "(?(": "conditionals '(?('",
            "(?P=": "named backreferences '(?P='", "(?P>": "recursion '(?P>'",
            "(?R": "recursion '(?R)'", "(?#": "comments '(?#'",
        }
        for prefix, what in unsupported.items():
            if rest.startswith(prefix):
                raise Re2Error(f"RE2 does not support {what}")
        if rest.startswith(("(?P<", "(?<")):
            start = self.i + (4 if rest.startswith("(?P<") else 3)
            self.out.append("(?P<")
            self.i = start
            return
        m = _FLAGS.match(self.p, self.i)
        if m is None:
            if re.match(r"\(\?[a-zA-Z-]*x", rest):
                raise Re2Error("RE2 does not support the 'x' (verbose) flag")
            raise Re2Error(f"'{rest[:4]}' is not a group RE2 understands")
        on, off = m.group(1).replace("U", ""), (m.group(2) or "").replace("U", "")
        off = "" if off == "-" else off
        if m.group(3) == ")":
            self.out.append("")  # `(?i)`: RE2 allows it anywhere, Python only first; syntax only
        else:
            self.out.append(f"(?{on}{off}:" if on or off else "(?:")
        self.i = m.end()

    def _char_class(self) -> None:
        self.out.append("[")
        self.i += 1
        if self.p.startswith("^", self.i):
            self.out.append("^")
            self.i += 1
        if self.p.startswith("]", self.i):
            self.out.append("\\]")
            self.i += 1
        while self.i < len(self.p):
            c = self.p[self.i]
            if c == "]":
                self.out.append("]")
                self.i += 1
                return
            if c == "\\":
                self.out.append(self._escape(in_class=True))
            elif c == "[" and self.p.startswith("[:", self.i):
                end = self.p.find(":]", self.i + 2)
                name = self.p[self.i + 2 : end] if end > 0 else ""
                negated = name.startswith("^")
                base = name[1:] if negated else name
                if end < 0 or base not in _POSIX:
                    raise Re2Error(f"'[:{name}:]' is not a POSIX class RE2 knows")
                self.out.append("a" if negated else _POSIX[base])
                self.i = end + 2
            elif c == "[":
                self.out.append("\\[")
                self.i += 1
            else:
                self.out.append(c)
                self.i += 1
        raise Re2Error("a character class '[' is never closed")

    def _escape(self, *, in_class: bool) -> str:
        p, i = self.p, self.i
        if i + 1 >= len(p):
            raise Re2Error("the pattern ends with a lone backslash")
        d = p[i + 1]
        self.i = i + 2
        if d.isdigit():
            return self._octal(d)
        if not d.isascii() or not d.isalpha():
            return "\\" + d
        if d not in _RE2_LETTER_ESCAPES:
            hints = {"Z": "; use \\z or $ instead", "G": "", "k": " (a named backreference)",
                     "u": "; use \\x{...} instead", "U": "; use \\x{...} instead",
                     "e": "; use \\x1b instead", "N": "; use \\x{...} instead"}
            raise Re2Error(f"RE2 does not support the escape '\\{d}'{hints.get(d, '')}")
        if d == "z":
            return "" if in_class else "\\Z"
        if d == "C":
            return "." if not in_class else "a"
        if d == "Q":
            end = p.find("\\E", self.i)
            literal = p[self.i :] if end < 0 else p[self.i : end]
            self.i = len(p) if end < 0 else end + 2
            return re.escape(literal)
        if d in "pP":
            return self._unicode_class(in_class)
        if d == "x" and p.startswith("{", self.i):
            end = p.find("}", self.i)
            digits = p[self.i + 1 : end] if end > 0 else ""
            if not digits or not all(ch in "0123456789abcdefABCDEF" for ch in digits) or (
                int(digits, 16) > 0x10FFFF
            ):
                raise Re2Error(f"'\\x{p[self.i:end + 1] or '{'}' is not a valid hex escape")
            self.i = end + 1
            return f"\\U{int(digits, 16):08x}"
        return "\\" + d

    def _octal(self, first: str) -> str:
        digits = first
        while len(digits) < 3 and self.i < len(self.p) and self.p[self.i] in "01234567":
            digits += self.p[self.i]
            self.i += 1
        if first in "89" or (first != "0" and len(digits) == 1):
            raise Re2Error(f"RE2 does not support backreferences such as '\\{digits}'")
        if any(ch in "89" for ch in digits):
            raise Re2Error(f"'\\{digits}' is not an octal escape")
        return f"\\x{int(digits, 8):02x}" if int(digits, 8) < 256 else "."

    def _unicode_class(self, in_class: bool) -> str:
        p = self.p
        if p.startswith("{", self.i):
            end = p.find("}", self.i)
            if end < 0:
                raise Re2Error("a Unicode class '\\p{' is never closed")
            self.i = end + 1
        elif self.i < len(p):
            self.i += 1
        else:
            raise Re2Error("'\\p' needs a class name, e.g. \\pL or \\p{Greek}")
        return "a" if in_class else "."
