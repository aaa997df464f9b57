"""Wake-ups: one listening thread per store, fanned out to whoever waits in this process.

PostgreSQL pushes notifications (LISTEN/NOTIFY); SQLite has none. Waiters never rely
on them alone: every wait has a timeout after which the caller polls the store, so
a lost notification (a dropped connection, a restart) only delays, never hangs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable

from treadle.errors import StoreError
from treadle.store import Store
from treadle.store.queue import CHANNELS

__all__ = ["Notifier", "Subscription", "close_notifier", "notifier_for"]

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
    """Listens on every treadle channel of one store, in a daemon thread."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pushes = False  # does the backend push notifications at all?
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            listener = store.listener(CHANNELS)
        except StoreError as exc:
            log.warning("cannot listen for notifications (%s); polling instead", exc)
            listener = None
        if listener is not None:
            self.pushes = True
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
            self._subs.append(sub)
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

        def fire(_c: str, _p: str) -> None:
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # the loop has closed
                pass

        return ev, self.subscribe(channels, fire, key)

    def emit(self, channel: str, payload: str) -> None:
        """Deliver a notification to this process's subscribers now.

        Writers call it after a commit that other parts of the same process wait for
        (an embedded server and its in-process workers): SQLite has no push, and even
        on PostgreSQL this skips the round trip through the listening connection."""
        self._deliver([(channel, payload)])

    def _deliver(self, received: list[tuple[str, str]]) -> None:
        with self._lock:
            subs = list(self._subs)
        for channel, payload in received:
            for sub in subs:
                if channel in sub.channels and (sub.key is None or sub.key == payload):
                    try:
                        sub.callback(channel, payload)
                    except Exception:  # a subscriber's bug must not stop the others
                        log.exception("notification callback failed")

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            try:
                self._subs.remove(sub)
            except ValueError:
                pass

    def _loop(self, listener: object) -> None:
        from treadle.store.queue import Listener

        assert isinstance(listener, Listener)
        try:
            while not self._stop.is_set():
                try:
                    received = listener.wait(0.5)
                except Exception as exc:  # never let the wake-up thread die
                    log.warning("notification listener failed (%s); polling meanwhile", exc)
                    self._stop.wait(1.0)
                    continue
                if received:
                    self._deliver(received)
        finally:
            listener.close()  # type: ignore[attr-defined]

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


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
