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
Position = tuple[int, int]  # (line, column), both counted from 1 as editors do


class YamlSyntaxError(ValueError):
    """The text is not YAML; `str()` is one line, "FILE:LINE:COLUMN: not valid YAML: ..."."""


def position(node: yaml.Node) -> Position:
    """Where `node` starts."""
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
    except RecursionError:
        # PyYAML composes recursively, a few Python frames per nesting level: some 500 "[" use
        # up the stack (found by fuzz/rules_yaml.py). No real file nests that deep.
        raise YamlSyntaxError(f"{filename}:1:1: not valid YAML: nested too deeply") from None


def syntax_message(e: yaml.YAMLError, filename: str) -> str:
    """One line for a YAML error: where the parser stopped, and what it was doing then."""
    (line, column), message = syntax_problem(e)
    return f"{filename}:{line}:{column}: {message}"


def syntax_problem(e: yaml.YAMLError) -> tuple[Position, str]:
    """The position and the message (without FILE:LINE:COLUMN) of a YAML error."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = getattr(e, "problem", None) or str(e)
    context = getattr(e, "context", None)
    context_mark = getattr(e, "context_mark", None)
    if context and context_mark is not None and context_mark.line != line - 1:
        context = f"{context} (line {context_mark.line + 1})"
    message = f"{context}, {problem}" if context else str(problem)
    return (line, column), f"not valid YAML: {' '.join(message.split())}"


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

    def value(self, node: yaml.Node, problems: Problems) -> object:
        """The value of `node`, or None with a problem added when a tag cannot be built."""
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            problems.add_error(e)
            return None


class Problems:
    """Problems found in one file, each at a position; formatted "FILE:LINE:COLUMN: message".

    Both loaders report every problem at once rather than the first one; `lines()` gives them
    in the order found (the rule file: a rule's problems together) or by position (the
    topology file: top to bottom, as an editor shows them).
    """

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._found: list[tuple[Position, str]] = []

    def __len__(self) -> int:
        return len(self._found)

    def add(self, at: yaml.Node | Position, message: str) -> None:
        self._found.append((at if isinstance(at, tuple) else position(at), message))

    def add_error(self, e: yaml.YAMLError) -> None:
        """A YAML error met while constructing a value (an unknown tag, a bad timestamp)."""
        self._found.append(syntax_problem(e))

    def lines(self, *, by_position: bool = False) -> list[str]:
        found = [
            f"{self.filename}:{line}:{column}: {message}"
            for (line, column), message in (
                sorted(self._found, key=lambda f: f[0]) if by_position else self._found
            )
        ]
        return list(dict.fromkeys(found))  # a problem reported twice is reported once
