"""BodyPump returns the chunks that arrived together as one batch."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.proxy.pump import BodyPump


async def burst_then_pause() -> AsyncIterator[bytes]:
    for chunk in (b"a", b"b", b"c"):
        yield chunk
    await asyncio.sleep(0.01)
    yield b"d"


async def failing_after_one() -> AsyncIterator[bytes]:
    yield b"a"
    await asyncio.sleep(0)
    raise ConnectionResetError("reset by peer")


async def takes(chunks: AsyncIterator[bytes]) -> list[list[bytes] | None]:
    pump = BodyPump(chunks)
    found: list[list[bytes] | None] = []
    try:
        while True:
            batch = await pump.take()
            found.append(None if batch is None else [chunk for _, chunk in batch])
            if batch is None:
                return found
    finally:
        await pump.close()


def test_burst_taken_as_one_batch():
    assert asyncio.run(takes(burst_then_pause())) == [[b"a", b"b", b"c"], [b"d"], None]


def test_error_raised_after_earlier_chunks():
    async def run() -> list[bytes]:
        pump = BodyPump(failing_after_one())
        batch = await pump.take()
        with pytest.raises(ConnectionResetError):
            await pump.take()
        await pump.close()
        return [chunk for _, chunk in batch or []]

    assert asyncio.run(run()) == [b"a"]


def test_close_stops_reading():
    async def run() -> bool:
        async def endless() -> AsyncIterator[bytes]:
            while True:
                await asyncio.sleep(0.001)
                yield b"x"

        pump = BodyPump(endless())
        await pump.take()
        await pump.close()
        return pump.task.cancelled()

    assert asyncio.run(run())
