"""Wake-ups: one listening thread per store, fanned out to whoever waits in this process.

PostgreSQL pushes notifications (LISTEN/NOTIFY); SQLite has none, so its listener detects
commits by other connections instead (CHANNEL_CHANGED; see
:mod:`treadle.store.drivers.sqlite_listen`). Writers of this process also ``emit`` what
they commit, so its own waiters wake without the database. Waiters never rely on
notifications alone: every wait has a timeout after which the caller reads the store
again, so a lost notification (a dropped connection, a restart) only delays, never hangs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable

from treadle.errors import StoreError
from treadle.store import Store
from treadle.store.queue import CHANNEL_CHANGED, CHANNELS

__all__ = ["Notifier", "Subscription", "close_notifier", "loop_callback", "notifier_for"]

log = logging.getLogger("treadle.cluster")

Callback = Callable[[str, str], None]


class Subscription:
    """A registration for notifications on ``channels`` (optionally one payload)."""

    def __init__(self, notifier: Notifier, channels: tuple[str, ...], key: str | None,
                 callback: Callback) -> None:
        self.notifier = notifier
        self.channels = channels
        self.key = key
        self.callback = callback

    def close(self) -> None:
        self.notifier._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Notifier:
    """Listens on every treadle channel of one store, in a daemon thread.

    ``pushes``: the database pushes each channel's notifications (PostgreSQL).
    ``detects_changes``: it reports CHANNEL_CHANGED after commits by other connections
    (SQLite's change detector: one per process, asked only while someone subscribes to
    CHANNEL_CHANGED). Delivery looks subscribers up by channel and payload, so an emit
    costs the same with one waiter or thousands."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pushes = False  # does the backend push each channel's notifications?
        self.detects_changes = False  # does it report CHANNEL_CHANGED (SQLite)?
        # channel -> key (None: any payload) -> subscriptions
        self._index: dict[str, dict[str | None, list[Subscription]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._demand = threading.Event()  # someone subscribes to CHANNEL_CHANGED
        self._thread: threading.Thread | None = None
        try:
            listener = store.listener(CHANNELS)
        except StoreError as exc:
            log.warning("cannot listen for notifications (%s); polling instead", exc)
            listener = None
        self.listener = listener
        if listener is not None:
            self.pushes = listener.pushes
            self.detects_changes = not listener.pushes
            self._thread = threading.Thread(
                target=self._loop, args=(listener,), name="treadle-notify", daemon=True
            )
            self._thread.start()

    def subscribe(self, channels: tuple[str, ...] | str, callback: Callback,
                  key: str | None = None) -> Subscription:
        if isinstance(channels, str):
            channels = (channels,)
        sub = Subscription(self, channels, key, callback)
        with self._lock:
            for channel in channels:
                self._index.setdefault(channel, {}).setdefault(key, []).append(sub)
            if CHANNEL_CHANGED in channels:
                self._demand.set()
        return sub

    def event(self, channels: tuple[str, ...] | str, key: str | None = None
              ) -> tuple[threading.Event, Subscription]:
        """A threading.Event set by each matching notification."""
        ev = threading.Event()
        return ev, self.subscribe(channels, lambda _c, _p: ev.set(), key)

    def async_event(self, channels: tuple[str, ...] | str, key: str | None = None
                    ) -> tuple[asyncio.Event, Subscription]:
        """An asyncio.Event (of the running loop) set by each matching notification."""
        loop = asyncio.get_running_loop()
        ev = asyncio.Event()
        return ev, self.subscribe(channels, loop_callback(loop, lambda _c, _p: ev.set()), key)

    def emit(self, channel: str, payload: str) -> None:
        """Deliver a notification to this process's subscribers now.

        Writers call it after a commit that other parts of the same process wait for
        (an embedded server and its in-process workers): SQLite has no push, and even
        on PostgreSQL this skips the round trip through the listening connection."""
        self._deliver([(channel, payload)])

    def subscribers(self, channel: str) -> int:
        """How many subscriptions listen on ``channel`` (any payload or one)."""
        with self._lock:
            return sum(len(subs) for subs in self._index.get(channel, {}).values())

    def _deliver(self, received: list[tuple[str, str]]) -> None:
        for channel, payload in received:
            with self._lock:
                keyed = self._index.get(channel)
                if not keyed:
                    continue
                subs = [*keyed.get(None, ()), *keyed.get(payload, ())]
            for sub in subs:
                try:
                    sub.callback(channel, payload)
                except Exception:  # a subscriber's bug must not stop the others
                    log.exception("notification callback failed")

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            for channel in sub.channels:
                keyed = self._index.get(channel, {})
                subs = keyed.get(sub.key, [])
                try:
                    subs.remove(sub)
                except ValueError:
                    continue
                if not subs:
                    del keyed[sub.key]
                if not keyed:
                    self._index.pop(channel, None)
            if CHANNEL_CHANGED not in self._index:
                self._demand.clear()

    def _loop(self, listener: object) -> None:
        from treadle.store.queue import Listener

        assert isinstance(listener, Listener)
        try:
            while not self._stop.is_set():
                if not listener.pushes and not self._demand.is_set():
                    self._demand.wait(0.5)  # nobody waits on changes: look at nothing
                    continue
                try:
                    received = listener.wait(0.5)
                except Exception as exc:  # never let the wake-up thread die
                    log.warning("notification listener failed (%s); polling meanwhile", exc)
                    self._stop.wait(1.0)
                    continue
                if received:
                    self._deliver(received)
        finally:
            listener.close()

    def close(self) -> None:
        self._stop.set()
        self._demand.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


def loop_callback(loop: asyncio.AbstractEventLoop, fn: Callback) -> Callback:
    """A notification callback that runs ``fn(channel, payload)`` on ``loop``: directly when
    the notification comes from inside that loop (an emit by this process's worker), else
    scheduled thread-safely; never after the loop has closed."""
    def fire(channel: str, payload: str) -> None:
        if asyncio._get_running_loop() is loop:  # on the loop's own thread, inside it
            fn(channel, payload)
            return
        try:
            loop.call_soon_threadsafe(fn, channel, payload)
        except RuntimeError:  # the loop has closed
            pass

    return fire


# Keyed by the store object itself (never by id(), which a new object may reuse).
_notifiers: weakref.WeakKeyDictionary[Store, Notifier] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def notifier_for(store: Store) -> Notifier:
    """The process's notifier for ``store`` (started on first use; its thread is a
    daemon with its own connection, so it never keeps the process alive)."""
    with _lock:
        found = _notifiers.get(store)
        if found is None:
            found = _notifiers[store] = Notifier(store)
        return found


def close_notifier(store: Store) -> None:
    with _lock:
        found = _notifiers.pop(store, None)
    if found is not None:
        found.close()
