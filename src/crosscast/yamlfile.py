"""YAML files read as node trees, so every message can say FILE:LINE:COLUMN.

Shared by both file formats crosscast reads (the relay's rule file, relay/rules.py, and the
topology file, topology/load.py): one composer, one wording for "this is not YAML", one way of
naming a position. It sits at the top of the package rather than under relay/ or topology/
because both products use it and neither may import the other's shell; it is not network code,
so it does not belong in net/.

Pure: text in, nodes and messages out; reading the file is the caller's job.
"""

from __future__ import annotations

import yaml

NULL_TAG = "tag:yaml.org,2002:null"


class YamlSyntaxError(ValueError):
    """The text is not YAML; `str()` is one line, "FILE:LINE:COLUMN: not valid YAML: ..."."""


def position(node: yaml.Node) -> tuple[int, int]:
    """(line, column) of the start of `node`, both counted from 1 as editors do."""
    return int(node.start_mark.line) + 1, int(node.start_mark.column) + 1


def where(filename: str, node: yaml.Node) -> str:
    """ "FILE:LINE:COLUMN" of `node`."""
    line, column = position(node)
    return f"{filename}:{line}:{column}"


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG


def compose(text: str, filename: str) -> yaml.Node | None:
    """The node tree of `text` (None for an empty document); raises YamlSyntaxError."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise YamlSyntaxError(syntax_message(e, filename)) from None


def syntax_message(e: yaml.YAMLError, filename: str) -> str:
    """One line for a YAML error: where the parser stopped, and what it was doing then."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = getattr(e, "problem", None) or str(e)
    context = getattr(e, "context", None)
    context_mark = getattr(e, "context_mark", None)
    if context and context_mark is not None and context_mark.line != line - 1:
        context = f"{context} (line {context_mark.line + 1})"
    message = f"{context}, {problem}" if context else str(problem)
    return f"{filename}:{line}:{column}: not valid YAML: {' '.join(message.split())}"


class Constructor:
    """Turns scalar, sequence and mapping nodes into Python values with the safe tags only.

    One per file read; `close()` (or `with`) releases the loader's state.
    """

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._loader = yaml.SafeLoader("")

    def __enter__(self) -> Constructor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._loader.dispose()

    def value(self, node: yaml.Node, problems: list[str]) -> object:
        """The value of `node`, or None with a problem added when a tag cannot be built."""
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            problems.append(syntax_message(e, self.filename))
            return None
