"""Prompt templates: sandboxed Jinja2, with the data tables a step references."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


class PromptError(ValueError):
    """A template that does not compile or does not render."""


# Sandboxed: a sheet is data, and a template must not reach Python objects.
# Immutable: `context` is shared by every prompt of a run, so a template that
# called context.update() would change the prompts rendered after it.
# StrictUndefined: a misspelt variable is an error, not an empty string.
_ENVIRONMENT = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
)


def compile_template(text: str) -> Template:
    """Compile a prompt template, raising PromptError with the line on failure."""
    try:
        return _ENVIRONMENT.from_string(text)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line} of the prompt)" if line else ""
        raise PromptError(f"template syntax error{where}: {exc.message}") from exc


class _TableShelf(dict):
    """The `data` variable: remembers which tables the template placed itself."""

    def __init__(self, tables: Mapping[str, str]):
        super().__init__(tables)
        self.placed: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.placed.add(name)
        return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:
        if name in self:
            self.placed.add(name)
        return super().get(name, default)

    def items(self):  # a loop over data.items() places every table
        self.placed.update(self.keys())
        return super().items()

    def values(self):
        self.placed.update(self.keys())
        return super().values()


def render_prompt(
    template: Template,
    *,
    tables: Mapping[str, str],
    variables: Mapping[str, Any],
) -> str:
    """Render a prompt; tables the template did not place are appended below it."""
    shelf = _TableShelf(tables)
    try:
        text = template.render(**variables, data=shelf)
    except TemplateError as exc:
        raise PromptError(_explain(exc)) from exc
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise PromptError(f"the template failed to render: {exc}") from exc

    unplaced = [name for name in tables if name not in shelf.placed]
    parts = [text.rstrip()]
    for name in unplaced:
        parts.append(f"Data: {name}\n\n{tables[name]}")
    return "\n\n".join(parts)


def _explain(exc: TemplateError) -> str:
    message = (exc.message or str(exc)).replace(
        f"'{__name__}._TableShelf object'", "'data'"
    )
    if type(exc).__name__ == "SecurityError":
        return f"the template tried something the sandbox forbids: {message}"
    if "no element" in message or "list object" in message:
        hint = "; `previous` holds only the answers of earlier steps of this task"
    elif message.startswith("'data' "):
        hint = "; `data` holds only the tables named in the data column"
    elif "dict object" in message:
        # `context` and `chapters` are both plain dicts: name what each holds.
        hint = (
            "; `context` holds the keys of [context] in report.toml, `chapters` "
            "only the objectives named in depends_on"
        )
    elif message.endswith(" is undefined"):
        hint = (
            "; a template sees title, context, objective, task, step, previous, "
            "chapters and data, and [context] keys as context.NAME"
        )
    else:
        hint = ""
    return f"the template failed to render: {message}{hint}"
