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
import pytest
from cdp_browser import Browser, find_chromium
from serve_helpers import running_server

from streamdet.session import BUNDLED_DIR

EXAMPLE = BUNDLED_DIR / "example.wav"
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "serve.png"
CLOCK_SLACK = 2.0  # the fake device starts the clip up to ~1.5 s before the page's stream clock starts
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
    for label, onset, offset in truth:  # every true event the model finds is in the page's list
        assert any(row[0] == label and abs(row[1] - onset) <= CLOCK_SLACK and row[2] != ""
                   and abs(float(row[2]) - offset) <= CLOCK_SLACK for row in live), (label, onset, live)
    heard = [e for e in found if e["onset"] >= CLOCK_SLACK]  # after the page's clock started (0.7-1.5 s in)
    for event in heard:  # and so is every event of `streamdet file` that the page could hear
        assert any(row[0] == event["label"] and abs(row[1] - event["onset"]) <= CLOCK_SLACK for row in live)
    assert sorted((r[0], r[1], float(r[2])) for r in dropped) == sorted(
        (e["label"], e["onset"], e["offset"]) for e in found)
    assert health["streams"] == 0
    assert SCREENSHOT.stat().st_size > 20_000
