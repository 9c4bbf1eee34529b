"""The blocking `Client` runs `AsyncClient` on a private loop; its bridge, piece by piece."""

from __future__ import annotations

import asyncio
import gc
import inspect
import signal
import socket
import sys
import threading
import time
import types
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import murmur
from murmur._sync import EventLoopThread, _blocking, _iterating
from murmur.certs import CertificateAuthority, Role

LOOP_THREAD_NAME = "murmur-client-loop"


@pytest.fixture
def bridge() -> Iterator[EventLoopThread]:
    loop_thread = EventLoopThread()
    yield loop_thread
    loop_thread.close()


class Interrupted(Exception):
    """Stands in for KeyboardInterrupt, which would end the test run."""


@pytest.fixture
def interrupt_main_thread() -> Iterator[types.SimpleNamespace]:
    """`send()` raises Interrupted in the main thread once it blocks waiting for a result,
    as Ctrl-C raises KeyboardInterrupt there."""

    def raise_interrupted(signum: int, frame: object) -> None:
        raise Interrupted

    main = threading.main_thread().ident
    assert main is not None
    assert threading.get_ident() == main

    def main_thread_waits() -> bool:
        frame = sys._current_frames().get(main)
        return frame is not None and frame.f_code is threading.Condition.wait.__code__

    def send() -> None:
        while not main_thread_waits():
            time.sleep(0.001)
        signal.pthread_kill(main, signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, raise_interrupted)
    yield types.SimpleNamespace(send=send)
    signal.signal(signal.SIGUSR1, previous)


class Countdown:
    """A small async object: a coroutine method and a stream that records its closing."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.started = threading.Event()

    async def thread_name(self) -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    async def fail(self) -> None:
        raise murmur.NotFound("no job 'j-1'")

    async def count(self, start: int, *, fail_at: int | None = None) -> AsyncIterator[int]:
        try:
            for number in range(start, 0, -1):
                if number == fail_at:
                    raise murmur.Unavailable("cannot reach node 127.0.0.1:7070: gone")
                yield number
            self.started.set()
            # A follow stream: waits for more, a few awaits deep as a gRPC call is.
            await asyncio.create_task(asyncio.Event().wait())
        finally:
            self.closed.set()


# ------------------------------------------------------------------------- coroutines


def test_a_coroutine_runs_on_the_private_loop_thread(bridge: EventLoopThread) -> None:
    assert bridge.run(Countdown().thread_name()) == LOOP_THREAD_NAME


def test_the_loop_thread_starts_on_first_use_only() -> None:
    def loop_threads() -> int:
        return sum(thread.name == LOOP_THREAD_NAME for thread in threading.enumerate())

    before = loop_threads()
    loop_thread = EventLoopThread()
    assert loop_threads() == before

    loop_thread.run(asyncio.sleep(0))
    assert loop_threads() == before + 1

    loop_thread.close()
    assert loop_threads() == before


def test_an_error_reaches_the_caller_unchanged(bridge: EventLoopThread) -> None:
    with pytest.raises(murmur.NotFound, match="no job 'j-1'"):
        bridge.run(Countdown().fail())


def test_several_threads_may_call_at_once(bridge: EventLoopThread) -> None:
    async def double(number: int) -> int:
        await asyncio.sleep(0)
        return 2 * number

    results: dict[int, int] = {}

    def call(number: int) -> None:
        results[number] = bridge.run(double(number))

    threads = [threading.Thread(target=call, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == {number: 2 * number for number in range(8)}


def test_an_interrupted_caller_cancels_its_coroutine(
    bridge: EventLoopThread, interrupt_main_thread: types.SimpleNamespace
) -> None:
    cancelled = threading.Event()

    async def wait_until_interrupted() -> None:
        interrupt_main_thread.send()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(Interrupted):
        bridge.run(wait_until_interrupted())

    assert cancelled.wait(timeout=10)


def test_the_loop_thread_cannot_wait_for_itself(bridge: EventLoopThread) -> None:
    async def call_back_into_the_bridge() -> None:
        bridge.run(asyncio.sleep(0))

    with pytest.raises(RuntimeError, match="cannot be called from its own event loop"):
        bridge.run(call_back_into_the_bridge())


def test_after_close_calls_are_refused_without_leaking_the_coroutine() -> None:
    loop_thread = EventLoopThread()
    loop_thread.run(asyncio.sleep(0))
    loop_thread.close()
    loop_thread.close()  # twice is harmless

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="client is closed"):
            loop_thread.run(asyncio.sleep(0))
        gc.collect()

    assert not [warning for warning in caught if "never awaited" in str(warning.message)]


def test_closing_cancels_calls_other_threads_still_wait_for() -> None:
    loop_thread = EventLoopThread()
    waiting = threading.Event()
    outcome: list[BaseException] = []

    async def wait_forever() -> None:
        waiting.set()
        await asyncio.Event().wait()

    def call() -> None:
        try:
            loop_thread.run(wait_forever())
        except murmur.Cancelled as err:
            outcome.append(err)

    caller = threading.Thread(target=call)
    caller.start()
    waiting.wait()
    loop_thread.close()
    caller.join()

    assert [str(err) for err in outcome] == ["the call was cancelled: its client was closed"]


def test_closing_from_the_loop_thread_itself_does_not_deadlock() -> None:
    # As when a forgotten Client is garbage-collected on its own loop's thread.
    loop_thread = EventLoopThread()

    async def close_from_inside() -> str:
        loop_thread.close()
        return "returned"

    assert loop_thread.run(close_from_inside()) == "returned"
    assert loop_thread._thread is not None
    loop_thread._thread.join(timeout=10)
    assert not loop_thread._thread.is_alive()


# -------------------------------------------------------------------------- iterators


def test_an_async_iterator_becomes_an_iterator(bridge: EventLoopThread) -> None:
    async def three() -> AsyncIterator[str]:
        for word in ("a", "b", "c"):
            yield word

    assert list(bridge.iterate(three())) == ["a", "b", "c"]


def test_closing_the_iterator_early_closes_the_async_generator(bridge: EventLoopThread) -> None:
    countdown = Countdown()
    numbers = bridge.iterate(countdown.count(5))

    assert [next(numbers), next(numbers)] == [5, 4]
    assert not countdown.closed.is_set()

    numbers.close()  # type: ignore[attr-defined]

    assert countdown.closed.is_set()


def test_breaking_out_of_a_for_loop_closes_the_async_generator(bridge: EventLoopThread) -> None:
    countdown = Countdown()

    for number in bridge.iterate(countdown.count(5)):
        if number == 3:
            break
    gc.collect()  # the abandoned iterator is closed when it is collected

    assert countdown.closed.is_set()


def test_an_error_mid_stream_reaches_the_caller_after_the_items_before_it(
    bridge: EventLoopThread,
) -> None:
    countdown = Countdown()
    received: list[int] = []

    def receive_all() -> None:
        for number in bridge.iterate(countdown.count(5, fail_at=2)):
            received.append(number)

    with pytest.raises(murmur.Unavailable, match="gone"):
        receive_all()

    assert received == [5, 4, 3]
    assert countdown.closed.is_set()


def test_an_interrupted_wait_for_the_next_item_still_closes_the_stream(
    bridge: EventLoopThread, interrupt_main_thread: types.SimpleNamespace
) -> None:
    countdown = Countdown()
    numbers = bridge.iterate(countdown.count(1))
    assert next(numbers) == 1

    # The next item never comes; Ctrl-C arrives while the caller waits for it.
    threading.Thread(
        target=lambda: countdown.started.wait() and interrupt_main_thread.send()
    ).start()
    with pytest.raises(Interrupted):
        next(numbers)
    numbers.close()  # type: ignore[attr-defined]

    assert countdown.closed.is_set()


def test_closing_the_bridge_closes_streams_left_open() -> None:
    loop_thread = EventLoopThread()
    countdown = Countdown()
    numbers = loop_thread.iterate(countdown.count(3))
    assert next(numbers) == 3

    loop_thread.close()

    assert countdown.closed.is_set()
    numbers.close()  # type: ignore[attr-defined]  # and closing it afterwards is harmless


# -------------------------------------------------------------- Client-style delegation


class Bridged:
    """Built the way `Client` is: methods generated from those of an async object."""

    def __init__(self) -> None:
        self._async_client = Countdown()
        self._loop_thread = EventLoopThread()

    thread_name = _blocking(Countdown.thread_name)  # type: ignore[arg-type]
    count = _iterating(Countdown.count)  # type: ignore[arg-type]


def test_generated_methods_run_the_async_object_and_keep_its_signature() -> None:
    bridged = Bridged()
    try:
        # (typed for Client and AsyncClient; the bridge itself works for any pair)
        assert bridged.thread_name() == LOOP_THREAD_NAME  # type: ignore[misc]
        numbers = bridged.count(3)  # type: ignore[misc]
        assert list(zip(numbers, range(2), strict=False)) == [(3, 0), (2, 1)]
        assert Bridged.count.__name__ == "count"
        assert list(inspect.signature(Bridged.count).parameters) == ["self", "start", "fail_at"]
    finally:
        bridged._loop_thread.close()


def test_the_client_offers_every_method_of_the_async_client() -> None:
    def public_methods(cls: type) -> set[str]:
        return {name for name, _ in inspect.getmembers(cls, inspect.isfunction)} - {
            name for name in dir(cls) if name.startswith("_")
        }

    assert public_methods(murmur.Client) == public_methods(murmur.AsyncClient)
    assert murmur.Client.status.__doc__ == murmur.AsyncClient.status.__doc__


@pytest.fixture(scope="module")
def identity_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("identity")
    lab_ca = CertificateAuthority.create(directory / "ca")
    path = directory / "alice.pem"
    lab_ca.issue(name="alice", role=Role.MEMBER, validity_days=30).write(path)
    return path


def test_the_client_runs_real_calls_and_translates_their_errors(identity_file: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"  # free, so nothing answers there
    config = murmur.ConnectConfig(
        address=address,
        tls=murmur.TLSConfig.from_identity_file(identity_file),
        retry=murmur.RetryConfig(max_attempts=1),
    )

    with murmur.Client(config) as client:
        assert client.address == address
        with pytest.raises(murmur.Unavailable, match=f"cannot reach node {address}"):
            client.status(timeout=5)
        with pytest.raises(murmur.Unavailable, match=f"cannot reach node {address}"):
            next(iter(client.watch_nodes(timeout=5)))

    with pytest.raises(RuntimeError, match="client is closed"):
        client.status()
