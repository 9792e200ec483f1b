"""Embeddings for the dedup service, batched under load.

Items in flight each ask for one vector; while a call to the model server is out, the texts that arrive
wait, and go out together in the next call (at most `max_batch`). One item alone goes out at once, so
batching costs nothing when the tape is quiet. When the server refuses a batch (ModelRejected: it did
not like some input), each text of it is sent alone, so only the offending item fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import numpy as np
import numpy.typing as npt

from services.model_client import ModelRejected

EmbedMany = Callable[[Sequence[str]], Awaitable[npt.NDArray[np.float32]]]


class EmbedBatcher:
    def __init__(self, embed_many: EmbedMany, max_batch: int = 64) -> None:
        self.embed_many = embed_many
        self.max_batch = max_batch
        self.calls = 0
        self.texts = 0
        self._pending: list[tuple[str, asyncio.Future[npt.NDArray[np.float32]]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def embed(self, text: str) -> npt.NDArray[np.float32]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="dedup-embed-batcher")
        future: asyncio.Future[npt.NDArray[np.float32]] = asyncio.get_running_loop().create_future()
        self._pending.append((text, future))
        self._wake.set()
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0)  # items handed over in the same loop turn join this batch
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                live = [(t, f) for t, f in batch if not f.done()]
                if not live:
                    continue
                if await self._call(live):
                    for one in live:
                        await self._call([one])

    async def _call(self, batch: list[tuple[str, asyncio.Future[npt.NDArray[np.float32]]]]) -> bool:
        """One embed call: its waiters get their rows or its error. True when the server refused a batch of
        several texts, which is then to be split."""
        self.calls += 1
        self.texts += len(batch)
        try:
            vectors = await self.embed_many([t for t, _ in batch])
        except Exception as exc:  # the waiters get the model's error; the batcher lives on
            if isinstance(exc, ModelRejected) and len(batch) > 1:
                return True
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return False
        for (_, future), vec in zip(batch, vectors, strict=True):
            if not future.done():
                future.set_result(vec)
        return False
