"""The one prompt template, shared by training and inference.

A single template keeps the base model, every brick and the engine in agreement: a brick
trained on this text format sees the very same format when the engine runs it.
"""

TEMPLATE = "Task: {instruction}\nIn: {input}\nOut: "


def render(instruction: str, input: str) -> str:
    """The prompt for one step; the model continues it with the answer and then EOS."""
    return TEMPLATE.format(instruction=instruction.strip(), input=input.strip())
