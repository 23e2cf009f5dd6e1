"""Tolerant Likert parsing: models answer "4", "I'd say 4 — often.", "Often", "four", or JSON.

Every answer gets a status: `ok` (a value on the scale), `refused` (the model declined) or
`invalid` (no usable value: nothing found, ambiguous, or off the scale). The caller keeps the
raw text next to the parsed value, so every decision here can be audited later.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

NUMBER_WORDS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
_WORD_RE = re.compile(r"\b(" + "|".join(NUMBER_WORDS) + r")\b", re.IGNORECASE)
_INT_RE = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w])")
# Mentions of the scale itself ("out of 5", "on a scale of 1 to 7", "1-5") are not answers.
_SCALE_MENTION_RE = re.compile(
    r"(out of|/)\s*\d+|(scale|range)\s+(of|from)\s+\d+\s*(to|-|–)\s*\d+|"
    r"\bfrom\s+\d+\s*(to|-|–)\s*\d+|\bbetween\s+\d+\s+and\s+\d+|\b\d+\s*(-|–)\s*\d+\s+scale",
    re.IGNORECASE,
)
_REFUSAL_RE = re.compile(
    r"\b(as an ai|as a language model|i am an ai|i'm an ai|i (?:can ?not|can't|won't|am unable"
    r"|'m unable|am not able|'m not able|do not|don't) (?:answer|provide|respond|share|give|have "
    r"(?:personal|feelings|opinions|experiences|preferences))|i (?:don't|do not) have personal|"
    r"i'd rather not|i prefer not|decline to)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Parsed:
    value: int | None
    status: str  # ok | invalid | refused
    reason: str = ""


def parse_answer(text: str, options: list[tuple[int, str]]) -> Parsed:
    """One answer from free text. `options` are (value, label) pairs of the scale."""
    lo, hi = options[0][0], options[-1][0]
    text = (text or "").strip()
    if (  # the usual reply, a bare option number: what the rules below make of it, sooner
        text.isdigit()
        and text.isascii()
        and lo <= int(text) <= hi
        and not any(phrase == text for phrase, _ in _label_phrases(tuple(options)))
    ):
        return Parsed(int(text), "ok")
    return _parse(text, lo, hi, options)


def _parse(text: str, lo: int, hi: int, options: list[tuple[int, str]]) -> Parsed:
    if not text:
        return Parsed(None, "invalid", "empty reply")
    from_json = _json_answers(text)
    if from_json is not None:
        return _check(from_json[0] if len(from_json) == 1 else None, lo, hi, "JSON answer")
    numbers = _numbers(text)
    in_range = [n for n in numbers if lo <= n <= hi]
    if numbers:
        leading = _leading_number(text)
        if leading is not None:
            labelled = _labels(text, options)
            if labelled and leading not in labelled:  # "1. Strongly agree": which one?
                return Parsed(None, "invalid", "ambiguous: the number and the label disagree")
            return _check(leading, lo, hi, "leading number")
        if len(set(in_range)) == 1:
            return Parsed(in_range[0], "ok")
        if len(set(numbers)) == 1:
            return _check(numbers[0], lo, hi, "number")
    labelled = _labels(text, options)
    if len(labelled) == 1:
        return Parsed(labelled.pop(), "ok")
    if _REFUSAL_RE.search(text):
        return Parsed(None, "refused", "refusal")
    if numbers or labelled:
        return Parsed(None, "invalid", "ambiguous: several different answers")
    return Parsed(None, "invalid", "no answer found")


def parse_block(text: str, n: int, options: list[tuple[int, str]]) -> list[Parsed]:
    """Answers to n numbered items in one reply: JSON {"answers": [...]}, "1. 4" lines, or
    exactly n bare answers in order."""
    lo, hi = options[0][0], options[-1][0]
    from_json = _json_answers(text or "")
    if from_json is not None and len(from_json) == n:
        return [_check(v, lo, hi, "JSON answer") for v in from_json]
    numbered: dict[int, str] = {}
    for line in (text or "").splitlines():
        m = re.match(r"\s*(?:item\s*)?(\d+)\s*[.):\-]\s*(.+)", line, re.IGNORECASE)
        if m and 1 <= int(m.group(1)) <= n and int(m.group(1)) not in numbered:
            numbered[int(m.group(1))] = m.group(2)
    if numbered:
        return [
            parse_answer(numbered[i], options)
            if i in numbered
            else Parsed(None, "invalid", "missing")
            for i in range(1, n + 1)
        ]
    numbers = _numbers(text or "")
    if len(numbers) == n:
        return [_check(v, lo, hi, "number") for v in numbers]
    single = parse_answer(text, options)
    status = "refused" if single.status == "refused" else "invalid"
    return [Parsed(None, status, f"expected {n} answers") for _ in range(n)]


def _check(value, lo: int, hi: int, what: str) -> Parsed:
    if value is None:
        return Parsed(None, "invalid", f"{what}: not a single value")
    if isinstance(value, float) and not value.is_integer():
        return Parsed(None, "invalid", f"{what}: {value} is not a whole option")
    value = int(value)
    if not lo <= value <= hi:
        return Parsed(None, "invalid", f"{what}: {value} is outside the scale {lo}..{hi}")
    return Parsed(value, "ok")


def _json_answers(text: str) -> list | None:
    body = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    if not body.startswith("{"):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("answers"), list):
        values = data["answers"]
    elif "answer" in data:
        values = [data["answer"]]
    else:
        return None
    out = []
    for v in values:
        if isinstance(v, bool):
            return None
        if isinstance(v, str) and v.strip().lstrip("+-").isdigit():
            v = int(v)
        if not isinstance(v, int | float):
            out.append(None)
        else:
            out.append(v)
    return out


def _numbers(text: str) -> list[float]:
    cleaned = _SCALE_MENTION_RE.sub(" ", text)
    found = [float(m.group(0)) for m in _INT_RE.finditer(cleaned)]
    found += [float(NUMBER_WORDS[m.group(1).lower()]) for m in _WORD_RE.finditer(cleaned)]
    return [int(v) if v.is_integer() else v for v in found]


def _leading_number(text: str):
    """'4', '4.', '4 — often', '**4**', 'Answer: 4' count as a deliberate answer."""
    m = re.match(
        r"[\s*_`\"'(\[]*(?:answer\s*[:=-]?\s*)?([-+]?\d+(?:\.\d+)?)(?![\w.]\d)", text, re.I
    )
    if not m:
        return None
    rest = text[m.end() :]
    if re.match(r"\s*(out of|/|to\b|-\s*\d)", rest, re.IGNORECASE):
        return None
    v = float(m.group(1))
    return int(v) if v.is_integer() else v


def _labels(text: str, options: list[tuple[int, str]]) -> set[int]:
    """Values whose label appears; longer labels are matched first and masked out, so
    'Strongly disagree' is not also read as 'disagree' or 'agree'."""
    lowered = text.lower()
    found = set()
    for pattern, value in _label_patterns(tuple(options)):
        if pattern.search(lowered):
            found.add(value)
            lowered = pattern.sub(" ", lowered)
    return found


@functools.lru_cache(maxsize=64)
def _label_phrases(options: tuple[tuple[int, str], ...]) -> list[tuple[str, int]]:
    """Each label (and each part of 'A/B' labels), lowercased, with its value, longest first."""
    variants = {
        (part.strip().lower(), value)
        for value, label in options
        for part in {label, *label.split("/")}
        if part.strip()
    }
    return sorted(variants, key=lambda pv: (-len(pv[0]), pv[0]))


@functools.lru_cache(maxsize=64)
def _label_patterns(options: tuple[tuple[int, str], ...]) -> list[tuple[re.Pattern, int]]:
    """Each label phrase as a whole-word pattern, longest first."""
    return [
        (re.compile(r"(?<![\w])" + re.escape(phrase) + r"(?![\w])"), value)
        for phrase, value in _label_phrases(options)
    ]
