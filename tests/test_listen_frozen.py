"""Issue 18 item 1: `streamdet listen` on an audio server that freezes (PulseAudio stopped with SIGSTOP) ends by
itself within seconds, with the summary, the open event closed and a clear error, and Ctrl-C works during the
freeze. Each test starts its own PulseAudio server (own runtime directory, socket and null sink), so the shared
server of the ``live`` tests is never frozen."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf
from private_pulse import SINK, PrivatePulse
from test_cli_listen import Lines


@pytest.fixture
def private_pulse() -> Iterator[PrivatePulse]:
    """A private PulseAudio server for one test (a missing PulseAudio is a failure, not a skip)."""
    server = PrivatePulse.start()
    try:
        yield server
    finally:
        server.stop()


def _listen_with_an_open_event(cli, cli_case, pulse: PrivatePulse, tmp_path: Path):
    """Start listen on the private server, play a long tone and wait for its onset: ``(proc, out, err, player,
    onset)``."""
    x, truth = cli_case.scene([(1, 0.3, 40.0)], 40.5, 48000)
    wav = tmp_path / "long.wav"
    sf.write(wav, x, 48000)
    proc = subprocess.Popen([*cli.command, "listen", "--input", "pulse", "--model", str(cli_case.model),
                             "--format", "jsonl", "--hop", "0.25"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=pulse.env, **cli.interruptible)
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    player = subprocess.Popen(["paplay", "-d", SINK, str(wav)], env=pulse.env)
    try:
        err.wait_for(lambda line: line.startswith("listening on pulse"), timeout=30)
        onset = json.loads(out.wait_for(lambda line: '"onset"' in line, timeout=20))
    except BaseException:
        proc.kill()
        player.kill()
        raise
    assert onset["label"] == truth[0][0]
    return proc, out, err, player, onset


def _ended(proc: subprocess.Popen, player: subprocess.Popen, within: float) -> int:
    """listen's exit code, if it ends within ``within`` seconds (else it is killed and the test fails)."""
    try:
        return proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"listen still running {within} s after the freeze") from None
    finally:
        player.kill()


def _closed_and_summarised(out: Lines, err: Lines, onset: dict) -> str:
    updates = [json.loads(line) for line in out.rest()]
    assert [u["type"] for u in updates] == ["onset", "offset"], updates
    assert (updates[1]["label"], updates[1]["onset"]) == (onset["label"], onset["onset"])
    assert updates[1]["offset"] > updates[1]["onset"]
    stderr = "".join(err.rest())
    assert "listened " in stderr and "1 event(s)" in stderr, stderr
    assert "1 open event(s) closed at the stop" in stderr, stderr
    assert "error: pulse: the audio system is not answering" in stderr, stderr
    assert "Traceback" not in stderr and "leaked" not in stderr, stderr
    return stderr


@pytest.mark.slow
def test_frozen_audio_server_ends_listen_with_a_clear_error(cli, cli_case, private_pulse: PrivatePulse,
                                                            tmp_path: Path) -> None:
    """Before the fix the process hung for ever in PortAudio's stop() (only SIGKILL ended it)."""
    proc, out, err, player, onset = _listen_with_an_open_event(cli, cli_case, private_pulse, tmp_path)
    private_pulse.freeze()
    code = _ended(proc, player, within=15)  # 3 s stall + 2 s stop deadline, on a busy machine
    assert code == 1, err.rest()
    stderr = _closed_and_summarised(out, err, onset)
    assert "error: pulse: no audio from the device for" in stderr


@pytest.mark.slow
def test_ctrl_c_during_a_freeze_ends_listen_promptly(cli, cli_case, private_pulse: PrivatePulse,
                                                     tmp_path: Path) -> None:
    proc, out, err, player, onset = _listen_with_an_open_event(cli, cli_case, private_pulse, tmp_path)
    private_pulse.freeze()
    time.sleep(1.0)  # frozen, not yet noticed (the stall rule waits 3 s)
    proc.send_signal(signal.SIGINT)
    code = _ended(proc, player, within=10)  # 2 s stop deadline
    assert code == 130, err.rest()
    stderr = _closed_and_summarised(out, err, onset)
    assert "interrupted" in stderr
