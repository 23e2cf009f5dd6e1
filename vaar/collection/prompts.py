"""The words a model sees: item prompts, the corrective re-ask and the JSON answer schema.

Item texts are quoted verbatim on a line of their own (`Item: "..."` or `3. "..."`), so the
published wording is never altered and the simulated provider can recognise the item asked.
"""

from __future__ import annotations


def options_line(instrument) -> str:
    return "Response options: " + "; ".join(f"{o.value} = {o.label}" for o in instrument.options)


def item_prompt(instrument, items, with_instructions: bool) -> str:
    """One chat turn asking one item (or a block of items) of one instrument."""
    lines = [instrument.instructions.strip(), ""] if with_instructions else []
    if len(items) == 1:
        lines.append(f'Item: "{items[0].text}"')
        lines.append(options_line(instrument))
        lines.append("Answer with the number of the option that fits you best.")
    else:
        lines.append("Items:")
        lines += [f'{n}. "{item.text}"' for n, item in enumerate(items, 1)]
        lines.append(options_line(instrument))
        lines.append(
            "Answer each item with the number of the option that fits you best, one line per "
            'item in the form "<item number>. <option number>".'
        )
    return "\n".join(lines)


def corrective_prompt(instrument, n_items: int) -> str:
    lo, hi = instrument.scale_min, instrument.scale_max
    if n_items == 1:
        return f"Please answer with a single number from {lo} to {hi}. {options_line(instrument)}"
    return (
        f"Please answer every item with a number from {lo} to {hi}, one line per item in the form "
        f'"<item number>. <option number>". {options_line(instrument)}'
    )


def answer_schema(instrument, n_items: int) -> dict:
    """JSON schema for structured output: {"answer": v} or {"answers": [v, ...]}."""
    value = {"type": "integer", "enum": [o.value for o in instrument.options]}
    if n_items == 1:
        props, required = {"answer": value}, ["answer"]
    else:
        props = {
            "answers": {"type": "array", "items": value, "minItems": n_items, "maxItems": n_items}
        }
        required = ["answers"]
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


def extract_items(text: str) -> list[str]:
    """The quoted item texts of an item prompt, in order (used by the simulated provider)."""
    found = []
    for line in text.splitlines():
        head = line.split('"', 1)[0].strip()
        if (head == "Item:" or (head.endswith(".") and head[:-1].isdigit())) and line.count(
            '"'
        ) >= 2:
            found.append(line[line.index('"') + 1 : line.rindex('"')])
    return found
