"""Reading a streamed upstream body ahead of the client.

A model server often writes several events at once, or faster than the proxy
forwards them one by one. Each body message costs the client connection a
write system call, the largest single cost in the proxy's profile of a stream.
A BodyPump reads the upstream in a task of its own, and the relay takes every
chunk that arrived since its last turn as one batch. Events that arrive
together leave together, and an event that arrives alone leaves at once.
"""

import asyncio
import time
from collections.abc import AsyncIterator


class BodyPump:
    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks
        self.arrived: list[tuple[float, bytes]] = []
        self.finished = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.task = asyncio.ensure_future(self.read())

    async def read(self) -> None:
        try:
            async for chunk in self.chunks:
                self.arrived.append((time.perf_counter(), chunk))
                self.wake()
        except Exception as error:  # noqa: BLE001 - the relay raises it in its task
            self.error = error
        finally:
            self.finished = True
            self.wake()

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def take(self) -> list[tuple[float, bytes]] | None:
        """Return the chunks read since the last call, each with its arrival time.

        Returns None at the end of the body, and raises the read's error once
        the chunks before it were taken.
        """
        while not self.arrived:
            if self.finished:
                if self.error is not None:
                    raise self.error
                return None
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        batch, self.arrived = self.arrived, []
        return batch

    async def close(self) -> None:
        """Stop reading. The body's stream may be closed once this returns."""
        self.task.cancel()
        # asyncio.wait neither raises the task's cancellation nor swallows one
        # aimed at the caller.
        await asyncio.wait([self.task])
