"""The page at / in a real browser: Debian's chromium, headless, driven by Playwright (launched with
executable_path: Playwright's own browser download is not available). A FLAC upload shows the API's verdict and
timeline; the microphone (Chromium's fake capture device playing a WAV) streams over WS /v1/stream, the live
timeline grows, and recording ends with the verdict the API gives for that WAV. In CI (CI=true) a missing chromium
or Playwright fails these tests instead of skipping them."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from needs import skip_or_fail
from serve_live import LiveServer, calibrated_tiny_run, clip
from tiny_run import SAMPLE_RATE

pytestmark = pytest.mark.slow


def chromium_path() -> str:
    """Debian's chromium (the package ``chromium``; ``make system-deps`` installs it). Outside CI a machine without
    it or without Playwright skips these tests; in CI they fail."""
    found = shutil.which("chromium") or next((p for p in ("/usr/bin/chromium", "/usr/lib/chromium/chromium")
                                              if Path(p).is_file()), None)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        skip_or_fail("the page tests need the playwright package (pip install -e .[dev])")
    if found is None:
        skip_or_fail("the page tests need Debian's chromium (make system-deps)")
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory, corpus):
    live = LiveServer(calibrated_tiny_run(tmp_path_factory.mktemp("runs"), corpus))
    yield live
    live.stop()


def launch(playwright, *args: str):
    # --no-sandbox: CI runs as root; --disable-dev-shm-usage: containers often have a small /dev/shm
    flags = ["--no-sandbox", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required"]
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=[*flags, *args])


def test_uploading_a_flac_shows_the_verdict_and_the_timeline(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    path = tmp_path / "upload.flac"
    sf.write(path, np.concatenate([clip(0.5, "bonafide", seed=1), clip(0.5, "spoof", seed=2)]), SAMPLE_RATE)
    api = httpx.post(f"{server.url}/v1/score", params={"segments": "true"},
                     files={"file": ("upload.flac", path.read_bytes(), "audio/flac")}).json()
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page()
            page.goto(server.url)
            expect(page.locator("#model-description")).to_contain_text("tiny-test model")
            expect(page.locator("#model-description")).to_contain_text("trained on the asv19-la corpus")
            page.set_input_files("#file-input", str(path))
            expect(page.locator("#status")).to_contain_text("Scored upload.flac", timeout=60000)
            assert page.locator("#verdict").get_attribute("data-decision") == api["decision"]
            assert page.locator("#verdict").inner_text() == {"bonafide": "bona fide", "spoof": "spoof"}[api["decision"]]
            assert page.locator("#timeline").get_attribute("data-windows") == str(len(api["segments"])) == "19"
            assert page.locator("#duration").inner_text() == "1.00 s"
            assert float(page.locator("#p-bonafide").get_attribute("value") or page.locator("#p-bonafide")
                         .evaluate("m => m.value")) == pytest.approx(api["p_bonafide"], abs=1e-6)
            assert page.locator("#p-bonafide-text").inner_text() == f"{100 * api['p_bonafide']:.1f} %"
            expect(page.locator("#operating-point")).to_contain_text("operating point eer")
            expect(page.locator("#timeline-summary")).to_contain_text("19 windows")
            painted = page.evaluate("""() => { const c = document.getElementById('timeline');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }""")
            assert painted > 1000  # waveform, threshold line and the window scores were drawn
            page.keyboard.press("Tab")  # controls are reachable by keyboard and labelled
            assert page.evaluate("document.activeElement.id") in ("file-input", "record")
            assert page.locator("label[for=file-input]").count() == 1
        finally:
            browser.close()


def test_recording_from_the_microphone_streams_a_growing_timeline(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    wav = tmp_path / "speech.wav"
    sf.write(wav, clip(2.0, "spoof", seed=3), SAMPLE_RATE, subtype="PCM_16")
    api = httpx.post(f"{server.url}/v1/score", files={"file": ("speech.wav", wav.read_bytes(), "audio/wav")}).json()
    with sync_playwright() as playwright:
        browser = launch(playwright, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                         f"--use-file-for-fake-audio-capture={wav}")
        try:
            context = browser.new_context(permissions=["microphone"])
            page = context.new_page()
            page.goto(server.url)
            expect(page.locator("#model-description")).to_contain_text("tiny-test")
            page.click("#record")
            windows = page.locator("#timeline")
            page.wait_for_function("Number(document.getElementById('timeline').dataset.windows) >= 3", timeout=60000)
            early = int(windows.get_attribute("data-windows"))
            assert page.locator("#verdict").get_attribute("data-decision") in ("bonafide", "spoof")  # running verdict
            page.wait_for_function(f"Number(document.getElementById('timeline').dataset.windows) >= {early + 10}",
                                   timeout=60000)
            page.click("#stop")
            expect(page.locator("#status")).to_contain_text("Scored microphone", timeout=60000)
            final = int(windows.get_attribute("data-windows"))
            assert final >= early + 10
            assert page.locator("#verdict").get_attribute("data-decision") == api["decision"]
            assert page.locator("#record").get_attribute("aria-pressed") == "false"
        finally:
            browser.close()


def test_the_page_asks_for_the_api_key_once_and_follows_dark_mode(tmp_path, corpus):
    from playwright.sync_api import expect, sync_playwright

    live = LiveServer(calibrated_tiny_run(tmp_path / "runs", corpus), api_key=b"page-key")
    path = tmp_path / "a.flac"
    sf.write(path, clip(0.4, "bonafide", seed=4), SAMPLE_RATE)
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                page = browser.new_page(color_scheme="dark")
                page.goto(live.url)
                expect(page.locator("#key-section")).to_be_visible()
                expect(page.locator("#api-key")).to_be_focused()
                page.keyboard.type("page-key")
                page.keyboard.press("Enter")
                expect(page.locator("#model-description")).to_contain_text("tiny-test model")
                expect(page.locator("#key-section")).to_be_hidden()
                page.set_input_files("#file-input", str(path))
                expect(page.locator("#status")).to_contain_text("Scored a.flac", timeout=60000)
                page.reload()  # the key is kept for the tab: not asked again
                expect(page.locator("#model-description")).to_contain_text("tiny-test model")
                expect(page.locator("#key-section")).to_be_hidden()
                background = page.evaluate("getComputedStyle(document.body).backgroundColor")
                assert background == "rgb(18, 19, 23)"  # the dark palette
            finally:
                browser.close()
    finally:
        live.stop()
