"""Helpers for overseer agents in Python: errors the caller can act on, and log lines.

componentize-py generates the bindings of the contract into `wit_world` (the agent is the
`WitWorld` class; `wit_world.imports` holds kv, runtime, llm, http, source and types). This
module only makes the common cases short:

    raise overseer.invalid_input("give a name")
    overseer.info("greeting number 3")
"""

from componentize_py_types import Err
from wit_world.imports import runtime, types


def invalid_input(message: str) -> Err:
    """The input was malformed or out of range: the caller's mistake (422)."""
    return Err(types.Error_InvalidInput(message))


def denied(message: str) -> Err:
    """The agent was not granted what it needed."""
    return Err(types.Error_Denied(message))


def unavailable(message: str) -> Err:
    """A service the call needed is not available right now."""
    return Err(types.Error_Unavailable(message))


def failed(message: str) -> Err:
    """The work was attempted and failed."""
    return Err(types.Error_Failed(message))


def debug(message: str) -> None:
    runtime.log(types.Level.DEBUG, message)


def info(message: str) -> None:
    runtime.log(types.Level.INFO, message)


def warn(message: str) -> None:
    runtime.log(types.Level.WARN, message)


def error(message: str) -> None:
    runtime.log(types.Level.ERROR, message)
