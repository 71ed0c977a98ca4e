"""Helpers for overseer agents in Python: errors the caller can act on, log lines, and
randomness, ids and time taken from the host on every call.

componentize-py generates the bindings of the contract into `wit_world` (the agent is the
`WitWorld` class; `wit_world.imports` holds kv, runtime, llm, http, source and types). This
module only makes the common cases short:

    raise overseer.invalid_input("give a name")
    overseer.info("greeting number 3")
    order_id = overseer.new_id()

What runs at build time: componentize-py runs the module's top level once, when the
component is built, and every call starts from a snapshot of the result. A value made at the
top level (`random.Random()`, `random.random()`, `uuid.uuid4()`, `time.time()`) is the same on
every call, of every instance, for the life of the version. Make such values inside `handle`:
`random()`, `rng()`, `new_id()` and `now_ms()` below read WASI's random source and clock on
each call. `overseer build` warns about the top-level cases it can see.
"""

import os
import random as _random
import time
import uuid

from componentize_py_types import Err
from wit_world.imports import runtime, types


def random() -> float:
    """A float in [0, 1), 53 random bits from the host (WASI random), fresh on every call."""
    return (int.from_bytes(os.urandom(8), "big") >> 11) / float(1 << 53)


def rng() -> _random.Random:
    """A `random.Random` seeded from the host for this call: for `shuffle`, `sample`,
    `choice`, `gauss`. Unlike a `Random()` made at the top level, it differs on every call."""
    return _random.Random(int.from_bytes(os.urandom(16), "big"))


def new_id() -> str:
    """A random UUID (version 4) from the host's random source, as text."""
    return str(uuid.UUID(bytes=os.urandom(16), version=4))


def now_ms() -> int:
    """The host's wall clock, in milliseconds since the Unix epoch (a backtest's virtual time
    when the agent is replayed)."""
    return time.time_ns() // 1_000_000


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
