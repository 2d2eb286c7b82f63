"""Several audio sources feeding one :class:`~streamdet.Detector`, batched together.

Each source is decoded by its own :class:`~streamdet.sources.reader.SourceReader` thread; one pump
thread takes what they decode, in order, and hands it to one :class:`~streamdet.Stream` per source, which
it registers with the detector's live scheduler (:class:`~streamdet.scheduler.LiveScheduler`): every cycle
the scheduler feeds what arrived (samples; lost audio, read as silence; the wall-clock anchor) into the
streams and evaluates the windows due on all of them, and on every audio input of the same detector
(``Detector.listen``), in one batched inference call. Unlike an audio device's, a source's backlog is never
dropped (its producer paces it; standard input may run faster than real time). A source that ends has its
stream closed (open events end). The updates and the connection statuses come out of the group in order (a
status after the updates of the audio before it): iterate it, call :meth:`SourceGroup.get`, or pass
``on_update`` / ``on_status`` callbacks (an MQTT publisher, for instance).

Back-pressure: a source that is not on the network (a local file, standard input) waits while more than
``MAX_QUEUED_SECONDS`` of its decoded audio waits for the detector, so a file played faster than the
detector follows (``--pace``) or a fast pipe holds memory bounded instead of queueing the whole input. A
network source never waits (its server would drop the connection): it is as fast as real time anyway.

    with SourceGroup(det, ["cam1=rtsp://10.0.0.5/live", "door=http://10.0.0.6/audio.mp3"]) as group:
        for item in group:                       # Update or SourceStatus
            print(item.to_dict())
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..events import Update
from .reader import ReaderSettings, SourceReader, SourceStatus
from .urls import SourceSpec, parse_source

if TYPE_CHECKING:
    from ..detector import Detector, Stream
    from ..scheduler import LiveScheduler

_DONE = object()
Item = Update | SourceStatus
MAX_QUEUED_SECONDS = 10.0  # decoded audio of a local file or pipe that may wait for the detector


class ScheduledSource:
    """One source's stream as a live source of the detector's scheduler: what its reader decoded (samples,
    lost frames, the clock anchor) and its connection statuses wait here, in order, until the scheduler's
    next cycle drains them. A ``connected`` status drained before any of the cycle's audio is emitted before the
    cycle's updates (they come from the audio of that connection); every other status after them."""

    drop_backlog = False  # paced by its producer: evaluated in full

    def __init__(self, group: SourceGroup, stream: Stream) -> None:
        self.group = group
        self.stream = stream
        self._pending: deque[tuple[str, Any]] = deque()
        self._early: list[SourceStatus] = []  # connected, before any audio of this cycle
        self._audio_seen = False  # audio or lost frames drained since the last delivery
        self._statuses: list[SourceStatus] = []

    def put(self, kind: str, value: Any) -> None:
        """Queue ``audio`` samples, ``lost`` frames, an ``origin`` or a ``status`` (from the pump thread)."""
        self._pending.append((kind, value))

    def drain(self) -> None:
        """Feed what is queued into the stream (its lock held; the scheduler's protocol)."""
        while True:
            try:
                kind, value = self._pending.popleft()
            except IndexError:
                return
            if kind == "audio":
                self.stream.feed(value)
                self.group._consumed(self.stream.name, value.size)
                self._audio_seen = True
            elif kind == "lost":
                self.stream.feed_lost(value)
                self._audio_seen = True
            elif kind == "origin":
                self.stream.wall_origin = value
            elif value.type == "connected" and not self._statuses and not self._audio_seen:
                self._early.append(value)
            else:
                self._statuses.append(value)

    def deliver(self, updates: list[Update]) -> None:
        """A cycle's early ``connected`` statuses, its updates, then the other statuses drained in it."""
        early, self._early = self._early, []
        for status in early:
            self.group._emit_status(status)
        self.group._deliver(updates)
        statuses, self._statuses = self._statuses, []
        self._audio_seen = False
        for status in statuses:
            self.group._emit_status(status)

    def fail(self, exc: BaseException) -> None:
        """An inference error: the group's consumer raises it."""
        self.group._outbox.put(exc)


class SourceGroup:
    """Network, file and piped sources detected on one detector; a context manager and an iterator of
    :class:`~streamdet.Update` and :class:`~streamdet.sources.SourceStatus` items.

    Args:
        detector: the Detector whose session all sources share.
        sources: ``[name=]location`` strings or :class:`SourceSpec` objects.
        on_update: called with every update (from the pump thread), e.g. an MQTT publisher.
        on_status: called with every connection change.
        settings: how the sources connect (reconnect, real-time pacing, back-off, timeouts).
    """

    def __init__(
        self,
        detector: Detector,
        sources: Sequence[str | SourceSpec],
        *,
        on_update: Callable[[Update], Any] | None = None,
        on_status: Callable[[SourceStatus], Any] | None = None,
        settings: ReaderSettings | None = None,
    ) -> None:
        self.detector = detector
        self.specs = [s if isinstance(s, SourceSpec) else parse_source(s) for s in sources]
        self.on_update = on_update
        self.on_status = on_status
        self.streams: dict[str, Stream] = {}
        self._scheduled: dict[str, ScheduledSource] = {}
        self._scheduler: LiveScheduler | None = None
        self.readers = {spec.name: SourceReader(spec, self, settings) for spec in self.specs}
        self.final_updates: list[Update] = []
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._queued: dict[str, int] = {}  # samples of each source waiting in the inbox
        self._room = threading.Condition()
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._active = set(self.readers)
        self._closing = threading.Event()
        self._pump_thread = threading.Thread(target=self._pump, name="streamdet-sources", daemon=True)
        self._started = False

    @property
    def names(self) -> list[str]:
        """The stream names, in the order the sources were given."""
        return [spec.name for spec in self.specs]

    # --- the Feed protocol (called by the reader threads) ------------------------------------
    def format(self, name: str, sample_rate: int) -> None:
        """A reader's sample rate (before its first audio)."""
        self._inbox.put(("format", name, sample_rate))

    def audio(self, name: str, samples: np.ndarray) -> None:
        """Decoded samples of one source (a local file or a pipe waits here while too much of its audio waits
        for the detector: see the module docstring)."""
        reader = self.readers[name]
        with self._room:
            if not reader.network and reader.sample_rate:
                limit = MAX_QUEUED_SECONDS * reader.sample_rate
                while self._queued.get(name, 0) > limit and not (reader.stopping or self._closing.is_set()):
                    self._room.wait(0.1)
            self._queued[name] = self._queued.get(name, 0) + samples.size
        self._inbox.put(("audio", name, samples))

    def _consumed(self, name: str, samples: int) -> None:
        """``samples`` of a source's audio reached its stream: a waiting reader may go on."""
        with self._room:
            self._queued[name] = self._queued.get(name, 0) - samples
            self._room.notify_all()

    def lost(self, name: str, frames: int) -> None:
        """Audio of one source that never arrived."""
        self._inbox.put(("lost", name, frames))

    def origin(self, name: str, wall: float) -> None:
        """The wall-clock time of one source's sample 0."""
        self._inbox.put(("origin", name, wall))

    def status(self, status: SourceStatus) -> None:
        """A connection change of one source."""
        self._inbox.put(("status", status.stream, status))

    def end(self, name: str) -> None:
        """A reader has stopped."""
        self._inbox.put(("end", name, None))

    # --- control -----------------------------------------------------------------------------
    def start(self) -> SourceGroup:
        """Start the readers and the pump (``with`` does it for you)."""
        if not self._started:
            self._started = True
            self._scheduler = self.detector.live_scheduler()
            self._pump_thread.start()
            for reader in self.readers.values():
                reader.start()
        return self

    def close(self, timeout: float = 5.0) -> list[Update]:
        """Stop the readers, push what they decoded, close every stream (open events end); return the
        updates that closing the streams produced (also those of sources that had ended before). Waits up
        to ``timeout`` seconds for readers blocked in a read."""
        for reader in self.readers.values():
            reader.stop()
        for reader in self.readers.values():
            reader.join(timeout)
        self._closing.set()
        if self._started:
            self._pump_thread.join(timeout + 5.0)
        return self.final_updates

    @property
    def finished(self) -> bool:
        """True once every source has ended and every stream is closed."""
        return self._started and not self._pump_thread.is_alive()

    def __enter__(self) -> SourceGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- consumer side -----------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Item | None:
        """The next update or status, waiting up to ``timeout`` seconds; None on timeout or after the end.
        Raises the pump's error (an inference failure) if it had one."""
        try:
            item = self._outbox.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _DONE:
            self._outbox.put(_DONE)
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def __iter__(self) -> Iterator[Item]:
        while (item := self.get()) is not None:
            yield item

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per stream: state (connecting, live, reconnecting, ended), reconnects, position, lost audio."""
        out = {}
        for name, reader in self.readers.items():
            stream = self.streams.get(name)
            out[name] = {
                "stream": name,
                "url": reader.spec.url,
                "state": reader.state,
                "reconnects": reader.reconnects,
                "sample_rate": reader.sample_rate,
                "position_s": stream.position if stream else 0.0,
                "lost_s": stream.lost_seconds if stream else 0.0,
                "error": reader.error,
            }
        return out

    # --- the pump thread ---------------------------------------------------------------------
    def _pump(self) -> None:
        try:
            while self._active:
                try:
                    first = self._inbox.get(timeout=0.1)
                except queue.Empty:
                    if self._closing.is_set():
                        break  # a reader stuck in a read past the close timeout
                    continue
                batch = [first]
                while True:
                    try:
                        batch.append(self._inbox.get_nowait())
                    except queue.Empty:
                        break
                self._process(batch)
            for name in list(self._scheduled):
                self._close_stream(name)
        except BaseException as exc:  # an inference error: the consumer raises it
            self._outbox.put(exc)
        finally:
            self._outbox.put(_DONE)

    def _process(self, batch: list[tuple[str, str, Any]]) -> None:
        for kind, name, value in batch:
            source = self._scheduled.get(name)
            if kind == "audio" and source is None:  # a source already taken off the scheduler
                self._consumed(name, value.size)
            if kind == "format":
                stream = self.detector.stream(value, 1, name=name, source=self.readers[name].spec.url)
                self.streams[name] = stream
                self._scheduled[name] = ScheduledSource(self, stream)
                assert self._scheduler is not None
                self._scheduler.add(self._scheduled[name])
            elif kind == "status":
                if source is None:  # before its first audio
                    self._emit_status(value)
                elif value.type == "ended":
                    self._close_stream(name, value)  # the last updates of a source come before its end
                else:
                    source.put(kind, value)
            elif kind == "end":
                self._active.discard(name)
                self._close_stream(name)
            elif source is not None:
                source.put(kind, value)

    def _close_stream(self, name: str, status: SourceStatus | None = None) -> None:
        """Take the source off the scheduler, feed what it still holds, close its stream (open events end),
        deliver the updates and the statuses, then ``status``."""
        source = self._scheduled.pop(name, None)
        if source is not None:
            assert self._scheduler is not None
            self._scheduler.remove(source)  # waits for a cycle in progress
            with source.stream.lock:
                source.drain()
                updates = source.stream.close()
            self.final_updates += updates
            source.deliver(updates)
        if status is not None:
            self._emit_status(status)

    def _emit_status(self, status: SourceStatus) -> None:
        self._outbox.put(status)
        if self.on_status is not None:
            self.on_status(status)

    def _deliver(self, updates: list[Update]) -> None:
        for update in updates:
            self._outbox.put(update)
            if self.on_update is not None:
                self.on_update(update)
