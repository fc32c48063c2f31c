"""Math answers: the one a response commits to, and whether it matches a reference.

Shared by `switchyard label --method math` and `switchyard thinkswitch-collect`. A response's answer is its
last `\\boxed{...}` (braces balanced), else its last number. Both sides are normalised before comparing:
LaTeX spacing, `\\text{...}`, dollar and percent signs (escaped or not), degrees and `dfrac`/`tfrac` go; then
two numbers (including `\\frac{a}{b}` and thousands separators) match within a relative 1e-6, anything else as
equal strings.
"""

from __future__ import annotations

import re

NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")  # "1,234.5"; in "42, then" just "42"
_PLAIN_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
_FRACTION = re.compile(r"(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}")
_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_DROPPED = ("\\!", "\\,", "\\;", "\\:", "\\$", "\\%", "$", "%", "^\\circ", "^{\\circ}", "\\circ", "\\left", "\\right")


def boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, braces balanced; None without one (or with one left open)."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    return None


def extract_answer(response: str) -> str | None:
    """The last \\boxed{...}, else the last number, else None."""
    found = boxed(response)
    if found is not None:
        return found.strip()
    numbers = NUMBER.findall(response)
    return numbers[-1] if numbers else None


def normalise_answer(answer: str) -> str:
    """The answer without what does not change its value: spacing, text wrappers, units signs, trailing dots."""
    answer = _TEXT.sub(r"\1", answer)
    for token in _DROPPED:
        answer = answer.replace(token, "")
    answer = "".join(answer.split()).replace("dfrac", "frac").replace("tfrac", "frac")
    return answer.strip(".")


def as_number(answer: str) -> float | None:
    """The value of a normalised answer that is a plain number or a numeric \\frac; else None."""
    if _PLAIN_NUMBER.fullmatch(answer):
        return float(answer.replace(",", ""))
    fraction = _FRACTION.fullmatch(answer)
    if fraction:
        sign, numerator, denominator = fraction.groups()
        if float(denominator) != 0:
            return (-1 if sign else 1) * float(numerator) / float(denominator)
    return None


def answers_match(answer: str, reference: str) -> bool:
    """Whether two answers are the same: numerically where both are numbers, else as normalised strings."""
    a, b = normalise_answer(answer), normalise_answer(reference)
    x, y = as_number(a), as_number(b)
    if x is not None and y is not None:
        return abs(x - y) <= 1e-6 * max(1.0, abs(y))
    return a == b


def is_correct(response: str, reference: str) -> bool:
    """Whether the answer `response` commits to matches `reference`."""
    answer = extract_answer(response)
    return answer is not None and answers_match(answer, reference)
