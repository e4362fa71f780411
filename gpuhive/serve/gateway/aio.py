"""``within(awaitable, seconds)``: asyncio.timeout where it exists (3.11+, no extra task per
call, which matters once per streamed token), asyncio.wait_for before that. Raises
``asyncio.TimeoutError`` either way."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(aw: Awaitable[T], seconds: float) -> T:
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await aw
    return await asyncio.wait_for(aw, seconds)  # pragma: no cover (3.10)
