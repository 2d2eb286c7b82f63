"""The web page of ``streamdet serve`` (issue 19) in a real headless Chromium: its fake microphone plays the
bundled example clip into the page, which streams it to /v1/stream; the page's event list must show the
example's events. A file dropped on the page goes to /v1/detect. The screenshot goes to docs/images/serve.png."""

from __future__ import annotations

import base64
import csv
import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from cdp_browser import Browser, find_chromium
from serve_helpers import running_server

from streamdet.session import BUNDLED_DIR

EXAMPLE = BUNDLED_DIR / "example.wav"
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "serve.png"
CLOCK_SLACK = 2.0  # offsets: a hop, the minimum gap and the page's clock
TOLERANCE = 1.0  # onsets, once the lead-in is known: a hop and a step, plus the page's send interval
MAX_LEAD = 4.0  # the most the fake microphone may start before the page's stream clock
ROWS = "[...document.querySelectorAll('#{} tr')].map(r => [r.dataset.label, +r.dataset.onset, r.dataset.offset])"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_chromium() is None, reason="needs chromium")]


def _truth() -> list[tuple[str, float, float]]:
    with open(BUNDLED_DIR / "example.tsv", newline="") as f:
        return [(r["event_label"], float(r["onset"]), float(r["offset"])) for r in csv.DictReader(f, delimiter="\t")]


def _file_events(cli) -> list[dict]:
    result = cli("file", EXAMPLE, "--format", "jsonl", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_page_shows_the_example_events_from_the_microphone_and_a_dropped_file(cli):
    found = _file_events(cli)  # what `streamdet file` finds on the example
    # The true events the model finds in file mode (it misses the doorbell): the page must show each of them.
    truth = [t for t in _truth() if any(e["label"] == t[0] and e["onset"] < t[2] and e["offset"] > t[1]
                                        for e in found)]
    assert [t[0] for t in truth] == ["knock", "speech", "knock", "speech"]
    flags = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={EXAMPLE}%noloop"]
    with running_server(None) as (url, _), Browser(find_chromium(), flags) as browser:
        browser.goto(url + "/?autostart=1")
        browser.wait_for("document.getElementById('status').textContent === 'listening'", timeout=30)
        # 20 s of clip, then its last event's 2 s minimum gap and a hop before the offset is known
        browser.wait_for("+document.getElementById('position').textContent >= 23.5", timeout=60)
        live = browser.evaluate(ROWS.format("live-events"))
        meters = browser.evaluate("document.querySelectorAll('#meters .meter').length")
        latency = browser.evaluate("document.getElementById('latency').textContent")
        lost = browser.evaluate("document.getElementById('lost').textContent")
        # Drop the example on the page: the drop handler sends it to /v1/detect.
        data = base64.b64encode(EXAMPLE.read_bytes()).decode()
        browser.evaluate(
            f"(() => {{ const bytes = Uint8Array.from(atob('{data}'), c => c.charCodeAt(0));"
            "const dt = new DataTransfer(); dt.items.add(new File([bytes], 'example.wav', {type: 'audio/wav'}));"
            "document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt})); })()")
        dropped = browser.wait_for(f"(rows => rows.length && rows)({ROWS.format('file-events')})", timeout=60)
        time.sleep(0.3)  # let the timelines draw
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browser.screenshot(SCREENSHOT)
        browser.evaluate("stop()")
        browser.wait_for("document.getElementById('status').textContent.startsWith('closed (1000')", timeout=30)
        health = httpx.get(url + "/healthz").json()
    assert meters == 7 and float(latency) < 5 and float(lost) == 0
    # The fake microphone starts the clip before the page's stream clock starts (0.7-2.5 s, more on a busy machine):
    # find that one lead-in from the events themselves, then every event must sit at its place on the page's clock.
    def matched(events: list, shift: float) -> int:
        return sum(any(row[0] == lab and abs(row[1] - (on + shift)) <= TOLERANCE for row in live)
                   for lab, on, *_ in events)

    shift = max(np.arange(-MAX_LEAD, 0.51, 0.0625), key=lambda d: (matched(truth, d), -abs(d)))
    audible = [t for t in truth if t[1] + shift >= 0.5]  # the page's clock had started by then
    assert len(audible) >= 3, (shift, truth, live)
    for label, onset, offset in audible:  # every true event the model finds is in the page's list
        assert any(row[0] == label and abs(row[1] - (onset + shift)) <= TOLERANCE and row[2] != ""
                   and abs(float(row[2]) - (offset + shift)) <= CLOCK_SLACK for row in live), (label, shift, live)
    heard = [e for e in found if e["onset"] + shift >= 0.5]
    for event in heard:  # and so is every event of `streamdet file` that the page could hear
        assert any(row[0] == event["label"] and abs(row[1] - (event["onset"] + shift)) <= TOLERANCE
                   for row in live), (event, shift, live)
    assert sorted((r[0], r[1], float(r[2])) for r in dropped) == sorted(
        (e["label"], e["onset"], e["offset"]) for e in found)
    assert health["streams"] == 0
    assert SCREENSHOT.stat().st_size > 20_000
