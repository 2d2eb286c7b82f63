"""Shared pytest fixtures. Each owner keeps their fixtures in a clearly named section."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/ helpers: onnx_test_model


# --- running in parallel (pytest-xdist, `-n 2 --dist loadgroup`) ---------------------------------------------
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that play real-time audio (marked ``live``) run one after another on one worker, so that they never
    compete with each other for the audio server or the clock; the other worker runs everything else meanwhile
    (most of a live test's time is waiting for the audio to play)."""
    for item in items:
        if item.get_closest_marker("live") is not None:
            item.add_marker(pytest.mark.xdist_group("live"))


# --- engine (issue 5): the band-energy test model ---------------------------------------------
@pytest.fixture(scope="session")
def band_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to the band-energy ONNX test model (16 kHz, 1 s window, 20 steps of 50 ms; see onnx_test_model)."""
    from onnx_test_model import build_band_model

    return build_band_model(tmp_path_factory.mktemp("models") / "band.onnx")


@pytest.fixture(scope="session")
def band_detector(band_model: Path):
    """A CPU Detector on the band model with hop 0.25 s (shared: Detector is thread-safe and stateless)."""
    import streamdet

    return streamdet.Detector(band_model, device="cpu", hop=0.25, threads=1)


# --- live audio (PulseAudio) ---------------------------------------------------------------------
# Tests marked ``live`` get a running PulseAudio server with a null sink named ``virt`` (started here
# when none runs: CI has no sound hardware). Tests that play audio should use their own sink
# (``pulse_sink``) so that concurrent test runs on one server do not hear each other.
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

PULSE_START = ["pulseaudio", "-D", "--exit-idle-time=-1", "-n", "--load=module-null-sink sink_name=virt",
               "--load=module-native-protocol-unix"]


def _pactl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=15)


def _pulse_up() -> bool:
    return _pactl("info").returncode == 0


@pytest.fixture(scope="session")
def pulse_server() -> str:
    """A running PulseAudio server with a null sink ``virt``; returns ``"virt"``.

    Starts ``pulseaudio -D ... -n --load=module-null-sink ...`` when no server answers (as root too:
    PulseAudio warns that it runs in per-user mode as root, which is fine here). Skips only when
    PulseAudio is not installed; a server that is installed but does not start is a failure.
    """
    if not shutil.which("pulseaudio") or not shutil.which("pactl"):
        pytest.skip("PulseAudio is not installed (apt-get install pulseaudio pulseaudio-utils)")
    if not _pulse_up():
        started = subprocess.run(PULSE_START, capture_output=True, text=True, timeout=30)
        deadline = time.monotonic() + 15
        while not _pulse_up():
            if time.monotonic() > deadline:
                pytest.fail(f"PulseAudio did not start: rc {started.returncode}: {started.stderr.strip()}")
            time.sleep(0.2)
    if "virt" not in _pactl("list", "short", "sinks").stdout:
        _pactl("load-module", "module-null-sink", "sink_name=virt")
    return "virt"


@pytest.fixture(autouse=True)
def _live_audio_server(request: pytest.FixtureRequest) -> None:
    """Tests marked ``live`` start the PulseAudio server first (so they run, not skip, on CI)."""
    if request.node.get_closest_marker("live") is not None:
        request.getfixturevalue("pulse_server")


@pytest.fixture
def pulse_sink(pulse_server: str):
    """A private null sink for one test; yields its name (record from ``<name>.monitor``)."""
    name = f"streamdet_test_{uuid.uuid4().hex[:8]}"
    loaded = _pactl("load-module", "module-null-sink", f"sink_name={name}")
    assert loaded.returncode == 0, loaded.stderr
    try:
        yield name
    finally:
        _pactl("unload-module", loaded.stdout.strip())


# --- CLI (issue 6): the model the CLI tests detect with, and scenes with known events ------------
class DetectionCase:
    """A model plus a way to make audio with known events of three of its classes.

    ``scene([(i, start, length), ...], total, sr)`` returns ``(audio, truth)``: class ``labels[i]``
    sounds from ``start`` for about ``length`` seconds (cut at ``total``); ``truth`` holds ``(label, onset, offset)``.
    """

    def __init__(self, model: Path, labels: tuple[str, str, str], tolerance: float, bundled: bool) -> None:
        self.model, self.labels, self.tolerance, self.bundled = model, labels, tolerance, bundled

    def scene(self, spec, total: float, sample_rate: int):
        import numpy as np

        if not self.bundled:
            from onnx_test_model import scene

            truth = [(self.labels[i], start, min(start + length, total)) for i, start, length in spec]
            return scene(truth, total, sample_rate), truth
        from streamdet.train.synth.registry import generate_event

        rng = np.random.default_rng(0)
        audio = np.zeros(round(total * sample_rate), np.float32)
        truth = []
        for i, start, _ in spec:
            sound = generate_event(self.labels[i], rng, sample_rate)
            a = round(start * sample_rate)
            x = sound.audio[: len(audio) - a]
            audio[a : a + len(x)] += 0.3 * x / max(1e-9, float(np.abs(x).max()))
            truth.append((self.labels[i], start + sound.onset, min(start + sound.offset, total)))
        return audio, truth


@pytest.fixture(scope="session")
def cli_case(band_model: Path) -> DetectionCase:
    """The model the CLI tests run: the band test model, whose events are known exactly, so the tests can
    check the CLI's timing to 0.1 s. The bundled model runs through the same paths in the tests named
    ``bundled`` (test_cli_listen, test_cli_commands); ``DetectionCase(BUNDLED_MODEL, ("alarm", "siren",
    "doorbell"), 0.5, bundled=True)`` runs every CLI test on it instead."""
    return DetectionCase(band_model, ("low", "mid", "high"), 0.1, bundled=False)


def _streamdet_command() -> list[str]:
    script = Path(sys.executable).with_name("streamdet")
    return [str(script)] if script.exists() else [sys.executable, "-m", "streamdet"]


def _default_sigint() -> None:
    # A test run started as a background job of a non-interactive shell inherits SIGINT ignored, and so would the
    # CLI it starts: give the child the default disposition so the Ctrl-C tests test the CLI, not the launcher.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def cli():
    """Run the installed ``streamdet`` entry point: ``cli("file", path, ...) -> CompletedProcess`` (text).
    ``cli.command`` is the command line; ``cli.interruptible`` the ``Popen`` keywords of a process a test
    interrupts with SIGINT."""

    def run(*args: object, timeout: float = 120, **kwargs):
        return subprocess.run([*_streamdet_command(), *map(str, args)], capture_output=True, text=True,
                              timeout=timeout, **kwargs)

    run.command = _streamdet_command()
    run.interruptible = {"preexec_fn": _default_sigint}
    return run
