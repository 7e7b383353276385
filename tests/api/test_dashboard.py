"""The dashboard in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium) against a
database filled by a real `streamer run`: the page loads without console errors and its numbers equal SQL."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from testkit.clients import query
from testkit.pipeline import MODELS, StreamerProcess, caught_up
from testkit.workload import workload
from tests.api.support import Serve, serve_env
from tests.test_replay import small_model, streamer_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
EVENTS = 3000
SEVERITIES = ("critical", "high", "medium", "low")


@pytest.fixture
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:  # CI installs them (.ci/run); a missing browser is a failure, not a skip
        pytest.fail(f"{', '.join(missing)} missing: apt-get install chromium chromium-driver", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1440,2400",
        "--disable-extensions",
        "--no-first-run",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver and browser: Selenium Manager never looks anything up or downloads.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _run_until_caught_up(streamer_env, topics, kafka_bootstrap, log_path, *args: str) -> None:
    streamer = StreamerProcess(streamer_env, log_path, *args)
    try:
        streamer.wait_ready()
        deadline = time.monotonic() + 120
        while not caught_up(kafka_bootstrap, topics.group, topics.raw, 6):
            assert streamer.alive() and time.monotonic() < deadline, streamer.output()[-3000:]
            time.sleep(0.3)
        assert streamer.terminate() == 0
    finally:
        streamer.close()


def _fill_with_a_real_run_and_a_replay(streamer_env, topics, kafka_bootstrap, tmp_path) -> str:
    """The shipped model scores the workload; then a second version re-scores it after `streamer replay`.
    Returns the second version."""
    values, keys, _ = workload(EVENTS, 0.01, seed=11)
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "linger.ms": 10, "message.max.bytes": 16 * 1024 * 1024}
    )  # the workload has too-large inputs too
    for v, k in zip(values, keys, strict=True):
        producer.produce(topics.raw, v, k)
    assert producer.flush(30) == 0
    _run_until_caught_up(streamer_env, topics, kafka_bootstrap, tmp_path / "first.log")
    second = tmp_path / "model-b"
    version = small_model(second, 12)
    streamer_cli(streamer_env, "replay", "--group", topics.group, "--to-earliest")
    _run_until_caught_up(streamer_env, topics, kafka_bootstrap, tmp_path / "replay.log", "--models", str(second))
    return version


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_the_dashboard_shows_what_sql_says_without_console_errors(
    browser, streamer_env, topics, kafka_bootstrap, migrated_db_url, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    replayed = _fill_with_a_real_run_and_a_replay(streamer_env, topics, kafka_bootstrap, tmp_path)
    serve = Serve(serve_env(migrated_db_url, streamer_env))
    try:
        browser.get(serve.url + "?refresh=2")
        WebDriverWait(browser, 30).until(
            lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded")) >= 1
        )
        text = lambda testid: browser.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]').text  # noqa: E731

        # The figures are the version that scored last: the replay's.
        assert browser.find_element(By.ID, "version-shown").text == replayed
        rows, anomalies = query(
            migrated_db_url,
            "SELECT count(*), count(*) FILTER (WHERE is_anomaly) FROM ml_predictions "
            "WHERE predicted_at >= now() - interval '1 hour' AND model_version = %s",
            (replayed,),
        )[0]
        assert rows > EVENTS * 0.9  # the run stored the valid events (some inputs were invalid on purpose)
        assert _number(text("total-rows")) == rows
        assert _number(text("total-anomalies")) == anomalies
        assert text("anomaly-rate") == f"{anomalies / rows * 100:.2f} %"
        by_severity = dict(
            query(
                migrated_db_url,
                "SELECT severity, count(*) FROM ml_predictions WHERE model_version = %s GROUP BY 1",
                (replayed,),
            )
        )
        assert len(by_severity) >= 3
        for severity in SEVERITIES:
            assert _number(text(f"sev-{severity}")) == by_severity.get(severity, 0), severity
        # Both versions side by side, each with its own rows and anomaly rate from SQL.
        per_version = query(
            migrated_db_url,
            "SELECT model_version, count(*), count(*) FILTER (WHERE is_anomaly) FROM ml_predictions GROUP BY 1",
        )
        shipped = json.loads((MODELS / "metadata.json").read_text())["model_version"]
        assert {v for v, _, _ in per_version} == {shipped, replayed}
        for v, n, a in per_version:
            tr = browser.find_element(By.CSS_SELECTOR, f'#versions tr[data-version="{v}"]')
            cells = [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            assert _number(cells[1]) == n == rows, v  # one prediction per event per version
            assert (_number(cells[6]), cells[7]) == (a, f"{a / n * 100:.2f} %"), v
        assert _number(text("lag-total")) == 0  # the run committed everything it read
        assert len(browser.find_elements(By.CSS_SELECTOR, "#lag tbody tr")) == 6

        # The latest critical/high events, in the order and with the coordinates and messages SQL gives.
        latest = query(
            migrated_db_url,
            """
            SELECT kafka_topic || '/' || kafka_partition || '/' || kafka_offset || '/' || record_index, message
            FROM ml_predictions JOIN log_entries USING (kafka_topic, kafka_partition, kafka_offset, record_index)
            WHERE severity IN ('critical', 'high') AND model_version = %s ORDER BY predicted_at DESC, kafka_topic DESC,
                  kafka_partition DESC, kafka_offset DESC, record_index DESC LIMIT 15""",
            (replayed,),
        )
        shown = browser.execute_script(
            "return [...document.querySelectorAll('#latest tbody tr')].map(r => "
            "[r.dataset.source, r.querySelector('td.message').innerText])"
        )
        assert [tuple(r) for r in shown] == [(src, " ".join(msg.split())) for src, msg in latest]

        # One chart per service (up to 8, the rest as "other"), each headed with its row count from SQL.
        services = dict(query(migrated_db_url, "SELECT coalesce(service, '-'), count(*) FROM log_entries GROUP BY 1"))
        # Read in one script: the page re-renders every 2 s, which makes element handles stale between calls.
        charts = browser.execute_script(
            "return [...document.querySelectorAll('#services [data-service]')].map(c => [c.dataset.service, "
            "c.querySelector('h3') ? c.querySelector('h3').innerText : null, c.querySelectorAll('svg rect').length])"
        )
        assert len(charts) == min(len(services), 8) + (len(services) > 8)
        for name, heading, bars in charts:
            if name != "other":
                assert heading == f"{name} · {services[name]:,}"
            assert bars, name

        # It refreshes on its own.
        loaded = int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))
        WebDriverWait(browser, 15).until(
            lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded")) > loaded
        )
        errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert errors == []
        assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None

        out = Path(os.environ.get("STREAMER_SCREENSHOT_DIR") or tmp_path) / "dashboard.png"
        assert browser.save_screenshot(str(out)) and out.stat().st_size > 20_000
    finally:
        assert serve.stop() == 0
