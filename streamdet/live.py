"""Live input with sounddevice: ``Detector.listen`` returns a :class:`LiveStream`.

The PortAudio callback (:meth:`LiveStream.capture`) only copies the block into a preallocated
:class:`RingBuffer` (no buffer allocation, no lock, no waiting) at the block's absolute frame position.
The detector's :class:`~streamdet.scheduler.LiveScheduler` thread drains the ring into the
:class:`~streamdet.stream.Stream`, runs the due windows of all live streams in one batched call and
delivers updates to the iterator queue and the ``on_event`` callback. A LiveStream is built from its
stream and the scheduler (:meth:`streamdet.Detector.listen` does it) and implements the scheduler's
:class:`~streamdet.scheduler.LiveSource` protocol (``stream``, ``drain``, ``deliver``, ``fail``).

Device settings: PortAudio's "high" input latency (about 35 ms of device buffering) with the block size
left to PortAudio (one host period), not its "low" latency: through PulseAudio's ALSA plugin the low setting
woke the capture thread about 480 times a second at 48 kHz (100-frame periods; about 900 polls and 6 000
getpid calls a second) for a latency gain of ~25 ms against the hop's 500 ms (benchmarks/live_cpu.py,
benchmarks/RESULTS.md). A fixed ``blocksize`` is not the default: PortAudio's ALSA host then re-blocks the
periods and its input timestamps run up to 1.4x faster than the audio, which the rule below would read as
lost input. ``blocksize`` / ``latency`` override them.

Clock and lost input:

- The position of a block is normally the previous position plus the previous block's length.
  When PortAudio provides input timestamps (``inputBufferAdcTime``), the time since the previous
  block is compared with the previous block's duration; a shortfall of more than
  ``max(one block, 20 ms)`` of frames (an overflow, a suspended device) is lost input: the block is
  written that many frames later, the gap reads as zeros and is counted in ``lost_samples``. So the
  stream clock stays aligned with real time and never shifts. Overflow flags are counted in
  ``overflows`` (even when the host API gives no timestamps to size the gap).
- A reader that falls more than the ring's capacity behind loses the overwritten frames, also
  counted as lost and replaced by zeros (see :mod:`streamdet.ring_buffer`).
- A frozen audio system (a stopped PulseAudio server, a hung driver) can block PortAudio's ``start``,
  ``stop`` and ``close`` for ever. They run on a helper thread with a deadline (:func:`call_with_deadline`,
  ``device_timeout`` seconds); a call that misses it is abandoned (:attr:`LiveStream.device_abandoned`),
  :meth:`LiveStream.close` still flushes the stream (open events get their offset), and sounddevice's exit
  handler (which would call PortAudio again) is unregistered so the process can still exit.
- Wall-clock times: each callback anchors its first frame to ``time.time()`` at the block's ADC
  time (``now − (currentTime − inputBufferAdcTime)``, or ``now − block duration`` without
  timestamps); an update's ``wall_time`` is the newest anchor plus the onset's offset from it.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .events import Update
from .ring_buffer import RingBuffer

if TYPE_CHECKING:
    from .scheduler import LiveScheduler
    from .stream import Stream, UpdateCallback

_DONE = object()
_wall_clock = time.time  # epoch seconds; a module attribute so tests can substitute a clock
DEVICE_LATENCY = "high"  # default PortAudio input latency setting
DEVICE_TIMEOUT = 2.0  # seconds a PortAudio start/stop/close may take before it is abandoned
T = TypeVar("T")


class DeviceTimeoutError(TimeoutError):
    """A call into the audio system did not return in time (the audio server or driver is frozen)."""


def call_with_deadline(fn: Callable[[], T], seconds: float, what: str) -> T:
    """Run ``fn()`` on a daemon thread and return its result (or raise its exception) if it ends within
    ``seconds``; else raise :class:`DeviceTimeoutError` naming ``what`` and leave the thread behind (it may
    never return). The caller's thread only waits on an event, so Ctrl-C reaches it meanwhile."""
    done = threading.Event()
    result: list[Any] = []

    def call() -> None:
        try:
            result.append((True, fn()))
        except BaseException as exc:  # re-raised in the caller's thread
            result.append((False, exc))
        done.set()

    threading.Thread(target=call, name=f"streamdet-audio: {what}", daemon=True).start()
    if not done.wait(seconds):
        raise DeviceTimeoutError(f"{what} did not return within {seconds:g} s (is the audio server frozen?)")
    ok, value = result[0]
    if not ok:
        raise value
    return value


def forget_portaudio_at_exit() -> None:
    """After an abandoned call PortAudio may be stuck: do not let sounddevice's exit handler call it again
    (Pa_Terminate would block the interpreter's exit)."""
    import sounddevice as sd

    handler = getattr(sd, "_exit_handler", None)
    if handler is not None:
        atexit.unregister(handler)


def default_input_rate(device: int | str | None) -> float:
    """The default sample rate of the sounddevice input ``device`` (None: the system's default input)."""
    import sounddevice as sd

    return float(sd.query_devices(device, "input")["default_samplerate"])


class LiveStream:
    """A running live input; a context manager and an iterator of :class:`Update`.

    ``stream`` is the underlying :class:`~streamdet.stream.Stream` (scores, counters); ``device_stream`` the
    sounddevice ``InputStream`` (None with ``open_device=False``: feed :meth:`capture` yourself, e.g. from
    custom capture code or a test). ``blocksize`` (frames; 0: PortAudio's choice) and
    ``latency`` (a PortAudio setting or seconds) configure the device (see "Device settings").
    ``device_timeout``: seconds PortAudio's start/stop/close may take before the call is abandoned
    (``device_abandoned`` becomes True; :meth:`start` then raises :class:`DeviceTimeoutError`, :meth:`close`
    carries on and closes the stream).
    """

    drop_backlog = True  # the scheduler's lag rule applies: a device does not wait for inference

    def __init__(
        self,
        stream: Stream,
        scheduler: LiveScheduler,
        device: int | str | None = None,
        *,
        blocksize: int = 0,
        on_event: UpdateCallback | None = None,
        ring_seconds: float = 30.0,
        latency: str | float = DEVICE_LATENCY,
        open_device: bool = True,
        device_timeout: float = DEVICE_TIMEOUT,
    ) -> None:
        self.stream = stream
        self.scheduler = scheduler
        self.device = device
        self.device_stream: Any = None
        self.sample_rate = stream.sample_rate
        self.channels = stream.channels
        self.on_event = on_event
        capacity = max(int(ring_seconds * self.sample_rate), 4096)
        guard = min(max(blocksize, 8192), capacity // 4)
        self.ring = RingBuffer(capacity, self.channels, guard=guard)
        self.overflows = 0
        self.latencies: deque[float] = deque(maxlen=10000)  # emission time − wall time of the onset, s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._read_pos = 0
        self._gap_seen = 0
        self._next_pos = 0  # producer: absolute frame of the next expected block
        self._prev_adc = 0.0
        self._prev_frames = 0
        self._anchor: tuple[int, float] | None = None  # (frame position, wall time) of the newest block
        self._tolerance = max(1, int(0.02 * self.sample_rate))
        self._started = False
        self.closed = False
        self._close_lock = threading.Lock()
        self.final_updates: list[Update] = []
        self.device_timeout = float(device_timeout)
        self.device_abandoned = False  # a PortAudio call missed its deadline (see the module docstring)
        self.close_error: BaseException | None = None  # what stopping the device raised, if anything
        if open_device:
            import sounddevice as sd

            self.device_stream = sd.InputStream(
                device=device,
                samplerate=self.sample_rate,
                channels=self.channels,
                dtype="float32",
                blocksize=blocksize,
                latency=latency,
                callback=self.capture,
            )
            # a timestamp jump within the device's buffer is jitter of the host's clock, not an overrun
            self._tolerance = max(self._tolerance, int(float(self.device_stream.latency) * self.sample_rate))

    # --- producer side (PortAudio thread) ----------------------------------------------------
    def capture(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """The PortAudio callback: place the block on the timeline and copy it into the ring.

        ``time_info`` may carry ``inputBufferAdcTime`` / ``currentTime`` (PortAudio's stream clock), ``status``
        ``input_overflow``; either may be None."""
        now = _wall_clock()
        if status and getattr(status, "input_overflow", False):
            self.overflows += 1
        adc = float(getattr(time_info, "inputBufferAdcTime", 0.0) or 0.0)
        current = float(getattr(time_info, "currentTime", 0.0) or 0.0)
        pos = self._next_pos
        if adc > 0.0 and self._prev_adc > 0.0 and self._prev_frames:
            elapsed = round((adc - self._prev_adc) * self.sample_rate)
            gap = elapsed - self._prev_frames
            if gap > max(self._prev_frames, self._tolerance):
                pos += gap
        block_wall = now - (current - adc) if adc > 0.0 and current > 0.0 else now - frames / self.sample_rate
        self._anchor = (pos, block_wall)
        self.ring.write(indata, at=pos)
        self._next_pos = pos + frames
        self._prev_adc = adc
        self._prev_frames = frames

    # --- consumer side (the scheduler's LiveSource protocol; stream lock held) -------------------
    def drain(self) -> None:
        """Move the captured audio from the ring into the stream, counting what was lost."""
        end = self.ring.end
        start = max(self._read_pos, end - self.ring.capacity)
        if start > self._read_pos:  # overwritten before we could read it
            self.stream.feed_lost(start - self._read_pos)
        if end > start:
            buf = np.empty((end - start, self.channels), np.float32)
            zeroed = self.ring.read_into(buf, start)
            self.stream.feed(buf)
            self.stream.add_lost(zeroed)
        gaps = self.ring.gap_frames - self._gap_seen  # zero-filled by the producer, fed above
        self._gap_seen += gaps
        self.stream.add_lost(gaps)
        self._read_pos = end
        anchor = self._anchor
        if anchor is not None:
            self.stream.wall_origin = anchor[1] - anchor[0] / self.sample_rate

    def deliver(self, updates: list[Update]) -> None:
        """Queue ``updates`` for the iterator and pass them to ``on_event`` (recording onset latencies)."""
        now = _wall_clock()
        for u in updates:
            if u.type == "onset" and u.wall_time is not None:
                self.latencies.append(now - u.wall_time)
            self._queue.put(u)
            if self.on_event is not None:
                self.on_event(u)

    def fail(self, exc: BaseException) -> None:
        """Raise ``exc`` (an error of the scheduler thread) in the consumer's next ``get`` / iteration."""
        self._queue.put(exc)

    # --- public ------------------------------------------------------------------------------
    def start(self) -> LiveStream:
        """Start capturing (``with`` does it for you)."""
        if not self._started:
            self._started = True
            self.scheduler.add(self)
            if self.device_stream is not None:
                self._device_call(self.device_stream.start, "starting the audio input")
        return self

    def _device_call(self, fn: Callable[[], object], what: str) -> None:
        """``fn()`` with the device deadline; marks the device abandoned when it misses it."""
        try:
            call_with_deadline(fn, self.device_timeout, what)
        except DeviceTimeoutError:
            self.device_abandoned = True
            forget_portaudio_at_exit()
            raise

    def _stop_device(self) -> None:
        """Stop and close the device within the deadline; a failure or a timeout is recorded, not raised."""
        stream = self.device_stream

        def stop_and_close() -> None:
            try:
                stream.stop()
            finally:
                stream.close()

        try:
            self._device_call(stop_and_close, "stopping the audio input")
        except Exception as exc:  # DeviceTimeoutError, PortAudioError (device gone): close the stream anyway
            self.close_error = exc

    def close(self) -> list[Update]:
        """Stop capturing, evaluate the remaining audio, close open events; return the last updates.

        Never blocks on a frozen audio system for more than ``device_timeout`` seconds (see the class)."""
        with self._close_lock:
            if self.closed:
                return []
            self.closed = True
            if self.device_stream is not None and not self.device_abandoned:
                self._stop_device()
            self.scheduler.remove(self)
            with self.stream.lock:
                if not self.stream.closed:
                    self.drain()
                    final = self.stream.close()
                else:
                    final = []
            self.deliver(final)
            self.final_updates = final
            self._queue.put(_DONE)
            return final

    def __enter__(self) -> LiveStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, timeout: float | None = None) -> Update | None:
        """Next update, waiting up to ``timeout`` seconds; None on timeout or after the end."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _DONE:
            self._queue.put(_DONE)
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def __iter__(self) -> Iterator[Update]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                self._queue.put(_DONE)
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    @property
    def device_stopped(self) -> bool:
        """True when the audio device's stream stopped by itself (device unplugged) before :meth:`close`."""
        return self.device_stream is not None and not self.device_stream.active and not self.closed

    @property
    def lost_samples(self) -> int:
        """Input frames lost so far (zero-filled on the timeline)."""
        return self.stream.lost_samples

    @property
    def lag(self) -> float:
        """Seconds of captured audio not yet evaluated (ring backlog plus stream backlog)."""
        ring_backlog = (self.ring.end - self._read_pos) / self.sample_rate
        return ring_backlog + self.stream.backlog_seconds()

    def latency_percentiles(self, *qs: float) -> list[float]:
        """Percentiles (0–100) of onset latency: emission time minus the onset's wall time."""
        if not self.latencies:
            return [float("nan")] * len(qs)
        return [float(v) for v in np.percentile(np.asarray(self.latencies), qs or (50, 95))]

    def stats(self) -> dict[str, Any]:
        """The stream's counters plus overflows, lag and latency percentiles."""
        stats = self.stream.stats()
        p50, p95 = self.latency_percentiles(50, 95)
        stats.update(overflows=self.overflows, lag_s=self.lag, latency_p50_s=p50, latency_p95_s=p95)
        return stats
