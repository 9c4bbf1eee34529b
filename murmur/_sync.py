"""`Client`: the blocking face of `AsyncClient`, for scripts and notebooks.

It reimplements nothing. Each method runs the `AsyncClient` method of the same name on
a private event loop in a daemon thread, and waits for it; a stream comes back as a
plain iterator. So the two clients cannot drift apart, and a `Client` works whether or
not its caller already runs an event loop (as Jupyter does).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, Final, ParamSpec, Self, TypeVar

from murmur._client import AsyncClient, FailoverHook
from murmur._config import ConnectConfig, resolve_connect_config
from murmur._errors import Cancelled

if TYPE_CHECKING:
    import os

__all__ = ["Client", "EventLoopThread"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_Y = TypeVar("_Y")

_EXHAUSTED: Final = object()
"""What a step returns at the end of an async iterator (StopAsyncIteration cannot
cross threads as a plain result)."""


class EventLoopThread:
    """An event loop of its own, running in a daemon thread that starts on first use.

    Safe to use from several threads at once; each call blocks only its caller.
    """

    def __init__(self) -> None:
        # Reentrant: a stream collected by the garbage collector may close itself
        # (`_finish`) on a thread that holds the lock already.
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def run(self, coroutine: Coroutine[Any, Any, _R]) -> _R:
        """Runs `coroutine` on the loop and returns its result (or raises its error).

        If the waiting caller is interrupted (KeyboardInterrupt), the coroutine is
        cancelled rather than left running.

        Raises:
            Cancelled: The bridge was closed while the coroutine ran.
            RuntimeError: The bridge is closed, or the caller is the loop's own thread.
        """
        future = self._submit(coroutine)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise Cancelled("the call was cancelled: its client was closed") from None
        except BaseException:
            future.cancel()
            raise

    def iterate(self, iterator: AsyncIterator[_Y]) -> Iterator[_Y]:
        """Yields the items of `iterator`, each fetched on the loop.

        Closing the returned iterator (or dropping it: a generator is closed when it
        is collected) closes `iterator` too, which for a Murmur stream cancels its RPC.
        """
        # Serializes fetching and closing: a step being cancelled (Ctrl-C) must finish
        # unwinding the async generator before `aclose()` may touch it.
        in_use = asyncio.Lock()

        async def step() -> object:
            async with in_use:
                return await anext(iterator, _EXHAUSTED)

        async def close() -> None:
            async with in_use:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()

        try:
            while (item := self.run(step())) is not _EXHAUSTED:
                yield item  # type: ignore[misc]  # not _EXHAUSTED, so a _Y
        finally:
            self._finish(close())

    def close(self, last: Coroutine[Any, Any, object] | None = None) -> None:
        """Runs `last` (if given), cancels what still runs, closes open async generators,
        and stops the loop and its thread. Further calls raise RuntimeError; closing
        twice is harmless."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._closed = True
        if loop is None or thread is None or not thread.is_alive():
            if last is not None:
                last.close()
            return
        if threading.current_thread() is thread:
            # Reached from the loop's own thread (a Client collected there): it cannot
            # wait for itself, so the loop shuts itself down once this callback returns.
            asyncio.run_coroutine_threadsafe(_shut_down(last, stop_loop=True), loop)
            return
        try:
            asyncio.run_coroutine_threadsafe(_shut_down(last, stop_loop=False), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()

    def _submit(self, coroutine: Coroutine[Any, Any, _R]) -> concurrent.futures.Future[_R]:
        """Hands `coroutine` to the loop, started if need be. Under the lock, so nothing
        is submitted after `close()` began and could wait on a stopped loop forever."""
        with self._lock:
            if self._closed:
                coroutine.close()
                raise RuntimeError("this Murmur client is closed; create a new one")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_run_until_stopped, args=(loop,), name="murmur-client-loop", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            if threading.current_thread() is self._thread:
                coroutine.close()
                raise RuntimeError("a Murmur Client cannot be called from its own event loop")
            return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def _finish(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Runs `coroutine` to its end, or only schedules it when the caller is the loop's
        own thread (a generator collected there); drops it once the bridge is closed,
        whose shutdown closes every stream left open."""
        with self._lock:
            if self._loop is None or self._closed:
                coroutine.close()
                return
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        if threading.current_thread() is not self._thread:
            # Cancelled only by a close() that began meanwhile, which closes the stream.
            with contextlib.suppress(concurrent.futures.CancelledError):
                future.result()


def _run_until_stopped(loop: asyncio.AbstractEventLoop) -> None:
    """The loop thread's whole life."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()


async def _shut_down(last: Coroutine[Any, Any, object] | None, *, stop_loop: bool) -> None:
    """Awaits `last`, then cancels every other task (so no caller waits forever) and
    closes the async generators left open, as `asyncio.run` does on its way out."""
    try:
        if last is not None:
            await last
    finally:
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        loop = asyncio.get_running_loop()
        await loop.shutdown_asyncgens()
        if stop_loop:
            loop.stop()


def _blocking(
    method: Callable[Concatenate[AsyncClient, _P], Coroutine[Any, Any, _R]],
) -> Callable[Concatenate[Client, _P], _R]:
    """The `Client` method that runs `method` of its `AsyncClient` and waits for it."""

    @functools.wraps(method)
    def call(self: Client, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return self._loop_thread.run(method(self._async_client, *args, **kwargs))

    call.__qualname__ = f"Client.{method.__name__}"
    return call


def _iterating(
    method: Callable[Concatenate[AsyncClient, _P], AsyncIterator[_Y]],
) -> Callable[Concatenate[Client, _P], Iterator[_Y]]:
    """The `Client` method that turns the stream `method` returns into an iterator."""

    @functools.wraps(method)
    def call(self: Client, /, *args: _P.args, **kwargs: _P.kwargs) -> Iterator[_Y]:
        return self._loop_thread.iterate(method(self._async_client, *args, **kwargs))

    call.__qualname__ = f"Client.{method.__name__}"
    return call


class Client:
    """A blocking Murmur client; see `AsyncClient` for what each method does.

    Use it as a context manager, or call `close()` when done::

        with Client.from_env() as client:
            for job in client.list_jobs(states=[murmur.JobState.JOB_STATE_RUNNING]):
                print(job.id, job.spec.name)

    Streams (`watch_*`, `stream_logs`) are iterators; leaving the loop early (or
    calling `close()` on one) cancels the stream on the node.
    """

    def __init__(self, config: ConnectConfig, *, on_failover: FailoverHook | None = None) -> None:
        # `on_failover` is called on the client's own loop thread, not the caller's.
        self._async_client = AsyncClient(config, on_failover=on_failover)
        self._loop_thread = EventLoopThread()
        # Also runs at interpreter exit, so a forgotten client still closes its channel.
        self._finalizer = weakref.finalize(self, _close, self._loop_thread, self._async_client)

    @classmethod
    def from_env(
        cls, *, node: str | None = None, identity: str | os.PathLike[str] | None = None
    ) -> Client:
        """A client configured from arguments, environment variables and `~/.murmur/`,
        as `resolve_connect_config` does it.

        Raises:
            ConfigError: The address is malformed or the identity cannot be read.
        """
        return cls(resolve_connect_config(node=node, identity=identity))

    @property
    def config(self) -> ConnectConfig:
        """The settings this client connects with."""
        return self._async_client.config

    @property
    def address(self) -> str:
        """The HOST:PORT of the node this client calls: `config.address`, unless the
        client has moved to another node."""
        return self._async_client.address

    @property
    def learned_addresses(self) -> tuple[str, ...]:
        """The addresses of the nodes in the last `status()` or `list_nodes()` answer;
        see `AsyncClient.learned_addresses`."""
        return self._async_client.learned_addresses

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel and stops the client's thread. Closing twice is harmless."""
        self._finalizer()

    whoami = _blocking(AsyncClient.whoami)
    status = _blocking(AsyncClient.status)
    list_nodes = _blocking(AsyncClient.list_nodes)
    get_node = _blocking(AsyncClient.get_node)
    drain_node = _blocking(AsyncClient.drain_node)
    remove_node = _blocking(AsyncClient.remove_node)
    watch_nodes = _iterating(AsyncClient.watch_nodes)
    submit_job = _blocking(AsyncClient.submit_job)
    submit_jobs = _blocking(AsyncClient.submit_jobs)
    list_jobs = _blocking(AsyncClient.list_jobs)
    get_job = _blocking(AsyncClient.get_job)
    cancel_job = _blocking(AsyncClient.cancel_job)
    watch_jobs = _iterating(AsyncClient.watch_jobs)
    stream_logs = _iterating(AsyncClient.stream_logs)
    # `on_progress` is called on the client's own loop thread, not the caller's.
    add_dataset = _blocking(AsyncClient.add_dataset)
    list_datasets = _blocking(AsyncClient.list_datasets)
    get_dataset = _blocking(AsyncClient.get_dataset)
    remove_dataset = _blocking(AsyncClient.remove_dataset)
    watch_events = _iterating(AsyncClient.watch_events)
    list_audit = _blocking(AsyncClient.list_audit)
    verify_audit = _blocking(AsyncClient.verify_audit)
    create_join_token = _blocking(AsyncClient.create_join_token)
    issue_user_certificate = _blocking(AsyncClient.issue_user_certificate)
    revoke_certificate = _blocking(AsyncClient.revoke_certificate)
    list_revocations = _blocking(AsyncClient.list_revocations)
    list_users = _blocking(AsyncClient.list_users)
    rotate_ca = _blocking(AsyncClient.rotate_ca)
    apply_policy = _blocking(AsyncClient.apply_policy)
    create_service = _blocking(AsyncClient.create_service)
    scale_service = _blocking(AsyncClient.scale_service)
    update_service = _blocking(AsyncClient.update_service)
    delete_service = _blocking(AsyncClient.delete_service)
    list_services = _blocking(AsyncClient.list_services)
    get_service = _blocking(AsyncClient.get_service)
    create_api_key = _blocking(AsyncClient.create_api_key)
    list_api_keys = _blocking(AsyncClient.list_api_keys)
    revoke_api_key = _blocking(AsyncClient.revoke_api_key)
    get_policy = _blocking(AsyncClient.get_policy)
    get_usage = _blocking(AsyncClient.get_usage)


def _close(loop_thread: EventLoopThread, async_client: AsyncClient) -> None:
    """Closes a `Client`'s parts; a function of its own so the finalizer holds no `Client`."""
    loop_thread.close(async_client.close())
