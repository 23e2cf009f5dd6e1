"""Tolerant Likert parsing: what counts as an answer, a refusal, or nothing usable."""

import pytest

from vaar.collection.parsing import _parse, parse_answer, parse_block
from vaar.collection.prompts import answer_schema, extract_items, item_prompt
from vaar.instruments import load_instrument

FREQ = [(1, "Never/almost never"), (2, "Occasionally"), (3, "Sometimes"), (4, "Often"),
        (5, "Always/almost always")]  # fmt: skip
AGREE = [(1, "Strongly disagree"), (2, "Disagree"), (3, "Neutral"), (4, "Agree"),
         (5, "Strongly agree")]  # fmt: skip


@pytest.mark.parametrize(
    "text, options, value",
    [
        ("4", FREQ, 4),
        ("I'd say 4 — often.", FREQ, 4),
        ("Often", FREQ, 4),
        ("almost never", FREQ, 1),
        ("four", FREQ, 4),
        ('{"answer": 3}', FREQ, 3),
        ('```json\n{"answer": "2"}\n```', FREQ, 2),
        ("3 out of 5", FREQ, 3),
        ("On a scale of 1 to 5, I would choose 2.", FREQ, 2),
        ("Strongly disagree", AGREE, 1),
        ("Disagree.", AGREE, 2),
        ("**5** Always", FREQ, 5),
        ("Answer: 2", FREQ, 2),
        ("I don't have personal experiences, but I would say 4.", FREQ, 4),
    ],
)
def test_answers_that_parse(text, options, value):
    parsed = parse_answer(text, options)
    assert (parsed.value, parsed.status) == (value, "ok"), parsed


@pytest.mark.parametrize(
    "text, options, status, reason",
    [
        ("", FREQ, "invalid", "empty"),
        ("7", FREQ, "invalid", "outside the scale 1..5"),
        ("3.5", FREQ, "invalid", "not a whole option"),
        ("My answer is 2 because I help 1 or 2 people", FREQ, "invalid", "ambiguous"),
        ("1. Strongly agree", AGREE, "invalid", "disagree"),
        ("It's hard to say.", FREQ, "invalid", "no answer"),
        ('{"answer": 9}', FREQ, "invalid", "outside"),
        ("As an AI language model, I don't have personal opinions.", FREQ, "refused", "refusal"),
        ("I can't answer that.", FREQ, "refused", "refusal"),
    ],
)
def test_answers_that_do_not(text, options, status, reason):
    parsed = parse_answer(text, options)
    assert parsed.value is None and parsed.status == status and reason in parsed.reason, parsed


def test_blocks_of_items():
    assert [p.value for p in parse_block("1. 4\n2. Often\n3. 2", 3, FREQ)] == [4, 4, 2]
    assert [p.value for p in parse_block('{"answers": [1, 5]}', 2, FREQ)] == [1, 5]
    assert [p.value for p in parse_block("3, 4", 2, FREQ)] == [3, 4]
    missing = parse_block("1. 4\n3. 2", 3, FREQ)
    assert [p.status for p in missing] == ["ok", "invalid", "ok"]
    assert all(p.status == "refused" for p in parse_block("As an AI, I can't answer.", 2, FREQ))


def test_prompts_quote_items_verbatim_and_the_schema_lists_the_options():
    psa = load_instrument("psa")
    one = item_prompt(psa, psa.items[:1], with_instructions=True)
    assert one.startswith(psa.instructions.strip()) and extract_items(one) == [psa.items[0].text]
    block = item_prompt(psa, psa.items[:3], with_instructions=False)
    assert extract_items(block) == [i.text for i in psa.items[:3]]
    assert answer_schema(psa, 1)["properties"]["answer"]["enum"] == [1, 2, 3, 4, 5]
    assert answer_schema(psa, 3)["properties"]["answers"]["minItems"] == 3


@pytest.mark.parametrize(
    "options",
    [
        [(1, "Strongly disagree"), (2, "Disagree"), (3, "Neutral"), (4, "Agree"), (5, "Agree!")],
        [(0, "0"), (1, "1"), (2, "2")],  # labels that are numbers
        [(1, "1/Never"), (2, "3"), (3, "Often")],  # a label that is another option's number
        [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e"), (6, "f"), (7, "g"), (10, "j")],
    ],
)
def test_the_bare_number_shortcut_agrees_with_the_general_rules(options):
    lo, hi = options[0][0], options[-1][0]
    for text in ["0", "1", "2", "3", "5", "7", "8", "03", "007", "10", "11", "００", "١", "²"]:
        for padded in (text, f" {text}\n"):
            assert parse_answer(padded, options) == _parse(text, lo, hi, options), padded
