"""The web dashboard in a real browser: headless Chromium driven by Selenium.

Each test runs the whole service (``ServiceThread``: jobs plus API on a free port, state in
a temporary folder) with a generator → file job, opens the dashboard and works it like a
user: live counters, the pipeline drawing, the create form, stop/restart/delete, a refused
service delete, the token dialog, and a narrow window.

Needs Debian's ``chromium`` and ``chromium-driver`` and ``selenium`` from PyPI. Nothing is
downloaded: the driver is ``/usr/bin/chromedriver`` (Selenium Manager is never asked).
Where any of them is missing the tests skip with the reason, or fail when
``MSTREAM_REQUIRE_SERVERS=1``. Screenshots go to the test's temporary folder (or to
``$MSTREAM_DASHBOARD_SCREENSHOTS`` when set).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.service import ServiceOptions
from tests.servers.fixtures import REQUIRE_ENV, servers_required

pytestmark = pytest.mark.dashboard

KEY = "22" * 32
TOKEN = "dash-token-5f3a9c"
WAIT = 20.0  # seconds any condition may take in the browser
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER_PATHS = ("/usr/bin/chromedriver",)
UDF_SCRIPT = """
function transform(data, attributes)
  data.seen = true
  return result(data, attributes)
end
"""


# -- browser ------------------------------------------------------------------------------


def _unavailable(reason: str) -> None:
    message = f"dashboard tests need a local Chromium: {reason}"
    if servers_required():
        pytest.fail(f"{message} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(message)


def _first(paths: tuple[str, ...], name: str) -> str | None:
    for path in paths:
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per module (each test's service has its own origin)."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service as DriverService
    except ImportError:
        _unavailable("the selenium package is not installed (pip install selenium)")
    chromium = _first(CHROMIUM_PATHS, "chromium")
    driver_path = _first(DRIVER_PATHS, "chromedriver")
    if chromium is None:
        _unavailable("no chromium binary (apt-get install chromium)")
    if driver_path is None:
        _unavailable("no chromedriver binary (apt-get install chromium-driver)")
    profile = tempfile.mkdtemp(prefix="mstream-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=DriverService(driver_path), options=options)
    except WebDriverException as exc:
        shutil.rmtree(profile, ignore_errors=True)
        _unavailable(f"chromium did not start: {exc.msg}")
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """The browser, checked afterwards for script errors (failed requests are expected)."""
    browser.set_window_size(1280, 900)
    browser.get_log("browser")  # drop what earlier tests left
    yield browser
    problems = [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
    ]
    browser.get("about:blank")
    assert not problems, problems


def wait(driver: Any, condition: Callable[[Any], Any], timeout: float = WAIT) -> Any:
    """Wait until ``condition(driver)`` is truthy and return its value."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(
        driver, timeout, ignored_exceptions=(StaleElementReferenceException,)
    ).until(condition)


def css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def one(driver: Any, selector: str) -> Any:
    """The first visible element matching ``selector`` (waits for it)."""
    return wait(driver, lambda d: next((e for e in css(d, selector) if e.is_displayed()), None))


def text_of(driver: Any, selector: str) -> str:
    found = css(driver, selector)
    return found[0].text if found else ""


def number(text: str) -> int:
    digits = "".join(c for c in text if c.isdigit())
    return int(digits) if digits else -1


def screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("MSTREAM_DASHBOARD_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def confirm(driver: Any) -> None:
    """Press the confirmation dialog's destructive button."""
    dialog = one(driver, "#confirm-dialog")
    assert dialog.get_attribute("open") is not None
    one(driver, "#confirm-yes").click()
    wait(driver, lambda d: not css(d, "#confirm-dialog[open]"))


# -- the service --------------------------------------------------------------------------


def make_config(tmp: Path) -> Any:
    """Services for every provider the tests draw, and one endless generator → file job."""
    scripts = tmp / "scripts"
    scripts.mkdir()
    (scripts / "tag.lua").write_text(UDF_SCRIPT)
    raw = {
        "services": [
            {"name": "gen", "provider": "generator", "rate": 200},
            {"name": "files", "provider": "file", "base_dir": str(tmp / "out")},
            {"name": "spare", "provider": "stdout"},
            {
                "name": "scripts",
                "provider": "udf",
                "engine": {"kind": "lua"},
                "script_path": str(scripts),
            },
            {
                "name": "hook",
                "provider": "http",
                "host": "http://127.0.0.1:9",
                "headers": {"Authorization": "Bearer hook-secret-value"},
            },
        ],
        "connectors": [
            {
                "name": "live",
                "source": {"service_name": "gen", "resource": "counter", "output_encoding": "json"},
                "middlewares": [
                    {"service_name": "scripts", "resource": "tag.lua", "output_encoding": "json"}
                ],
                "sinks": [
                    {"service_name": "files", "resource": "live.jsonl", "output_encoding": "json"},
                    {"service_name": "files", "resource": "copy.jsonl", "output_encoding": "json"},
                ],
                "batch": {"kind": "count", "size": 20, "max_wait_ms": 200},
                "checkpoint": {"enabled": True, "interval_ms": 200},
                "dead_letter": {"service_name": "files", "resource": "dead.jsonl"},
            }
        ],
        "system": {"data_dir": str(tmp / "data"), "encryption_key_path": str(tmp / "key")},
    }
    return parse_config(raw, "dashboard.toml", {})


def start(tmp: Path, token: str | None = None) -> ServiceThread:
    environ = {"MSTREAM_ENC_KEY": KEY, "MSTREAM_API_PORT": "0"}
    if token:
        environ["MSTREAM_API_TOKEN"] = token
    options = ServiceOptions.from_env(environ, progress_interval=600, stop_timeout=10)
    return ServiceThread(make_config(tmp), options).start()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceThread]:
    svc = start(tmp_path)
    try:
        yield svc
    finally:
        svc.stop()


def api(service: ServiceThread, method: str, path: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, service.url + path, headers=headers, timeout=30)


# -- tests --------------------------------------------------------------------------------


def test_root_serves_the_dashboard_to_browsers(service: ServiceThread) -> None:
    html = requests.get(service.url + "/", headers={"Accept": "text/html"}, timeout=30)
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    assert 'src="static/app.js"' in html.text
    for asset in ("app.js", "style.css"):
        assert requests.get(f"{service.url}/static/{asset}", timeout=30).status_code == 200
    # API clients still get the JSON index
    assert requests.get(service.url + "/", timeout=30).json()["api"]["jobs"] == "/jobs"


def test_overview_lists_jobs_with_live_counters(
    page: Any, service: ServiceThread, tmp_path: Path
) -> None:
    page.get(service.url + "/")
    row = '#jobs-table tr[data-job="live"]'
    one(page, row)
    assert wait(page, lambda d: text_of(d, f"{row} .badge") == "RUNNING")
    first = wait(page, lambda d: max(number(text_of(d, f"{row} .counter-out")), 0))
    assert wait(page, lambda d: number(text_of(d, f"{row} .counter-out")) > first)
    assert number(text_of(page, f"{row} .counter-in")) >= first
    assert text_of(page, f"{row} .counter-errors") == "0"
    assert text_of(page, f"{row} .counter-dead") == "0"
    assert wait(page, lambda d: "ev/s" in text_of(d, f"{row} .counter-rate"))
    started = one(page, f"{row} td[data-label=Started] time")
    assert started.get_attribute("datetime")

    services = [e.get_attribute("data-service") for e in css(page, "#services-table tbody tr")]
    assert services == ["files", "gen", "hook", "scripts", "spare"]
    assert "live" in text_of(page, '#services-table tr[data-service="files"]')
    # the secret header is masked by the API and never reaches the page
    one(page, '#services-table tr[data-service="hook"] summary').click()
    assert "****" in text_of(page, '#services-table tr[data-service="hook"] dl')
    assert "hook-secret-value" not in page.page_source
    screenshot(page, tmp_path, "overview")


def test_job_details_draw_the_pipeline(page: Any, service: ServiceThread, tmp_path: Path) -> None:
    page.get(service.url + "/")
    one(page, '#jobs-table a[href="#/jobs/live"]').click()
    one(page, "#pipeline .box")
    boxes = css(page, "#pipeline .box")
    assert [b.get_attribute("data-role") for b in boxes] == ["source", "middleware", "sink", "sink"]
    assert [b.get_attribute("data-service") for b in boxes] == ["gen", "scripts", "files", "files"]
    source, middleware, sink1, sink2 = (b.text for b in boxes)
    assert "generator" in source and "counter" in source and "json" in source
    assert "udf" in middleware and "tag.lua" in middleware
    assert "live.jsonl" in sink1 and "copy.jsonl" in sink2
    # boxes are laid out left to right on a wide screen
    xs = [b.location["x"] for b in boxes[:3]]
    assert xs == sorted(xs) and len(set(xs)) == 3
    assert "20" in text_of(page, "#setting-batch") and "200 ms" in text_of(page, "#setting-batch")
    assert "yes" in text_of(page, "#setting-checkpoint")
    assert "dead.jsonl" in text_of(page, "#setting-dead-letter")

    # counters grow, checkpoints are listed newest first
    counter = '#job-counters [data-counter="events_out"]'
    first = wait(page, lambda d: max(number(text_of(d, counter)), 0))
    assert wait(page, lambda d: number(text_of(d, counter)) > first)
    wait(page, lambda d: len(css(d, "#checkpoints-table tbody tr")) >= 2)
    stamps = [e.get_attribute("datetime") for e in css(page, "#checkpoints-table tbody tr time")]
    assert stamps == sorted(stamps, reverse=True)
    assert one(page, "#stop-job").is_enabled() and not one(page, "#delete-job").is_enabled()
    screenshot(page, tmp_path, "job-details")

    # its definition starts a new job's form
    one(page, "#copy-job").click()
    editor = one(page, "#job-form-json")
    copied = json.loads(editor.get_attribute("value"))
    assert copied["name"] == "live-copy" and copied["middlewares"][0]["resource"] == "tag.lua"


def test_create_a_job_through_the_form(page: Any, service: ServiceThread, tmp_path: Path) -> None:
    page.get(service.url + "/#/new-job")
    editor = one(page, "#job-form-json")
    example = json.loads(editor.get_attribute("value"))
    assert example["source"]["service_name"] == "gen"
    assert example["sinks"][0]["service_name"] == "files"

    def submit(text: str) -> None:
        page.execute_script("arguments[0].value = arguments[1];", editor, text)
        one(page, "#job-form-submit").click()

    # not JSON: said so before anything is sent
    submit("{ nope")
    assert "not valid JSON" in one(page, "#job-form-errors").text
    # the API's field errors are listed
    bad = {**example, "sinks": [{**example["sinks"][0], "output_encoding": "xml"}]}
    submit(json.dumps(bad))
    errors = wait(page, lambda d: "sinks[0].output_encoding" in text_of(d, "#job-form-errors"))
    assert errors
    assert "json, bson, avro" in text_of(page, "#job-form-errors .field-errors")

    submit(json.dumps({**example, "name": "from-form"}))
    wait(page, lambda d: d.current_url.endswith("#/jobs/from-form"))
    assert wait(page, lambda d: text_of(d, "h1 .badge") == "RUNNING")
    assert 'Job "from-form" created.' in text_of(page, "#notices")
    assert api(service, "GET", "/jobs/from-form").json()["state"] == "running"

    one(page, 'nav a[href="#/"]').click()
    one(page, '#jobs-table tr[data-job="from-form"]')
    assert [e.get_attribute("data-job") for e in css(page, "#jobs-table tbody tr")] == [
        "from-form",
        "live",
    ]


def test_stop_restart_and_delete_buttons(page: Any, service: ServiceThread, tmp_path: Path) -> None:
    page.get(service.url + "/#/jobs/live")
    badge = "h1 .badge"
    assert wait(page, lambda d: text_of(d, badge) == "RUNNING")

    one(page, "#stop-job").click()
    assert wait(page, lambda d: text_of(d, badge) == "STOPPED")
    assert wait(page, lambda d: one(d, "#delete-job").is_enabled())
    assert not one(page, "#stop-job").is_enabled()
    assert api(service, "GET", "/jobs/live").json()["state"] == "stopped"
    started = one(page, 'time[data-meta="started"]').get_attribute("datetime")
    assert wait(page, lambda d: one(d, 'time[data-meta="stopped"]').get_attribute("datetime"))

    one(page, "#restart-job").click()
    assert wait(page, lambda d: text_of(d, badge) == "RUNNING")
    assert wait(page, lambda d: not one(d, "#delete-job").is_enabled())
    assert wait(
        page, lambda d: one(d, 'time[data-meta="started"]').get_attribute("datetime") > started
    )
    assert "restarted" in text_of(page, "#notices")

    one(page, "#stop-job").click()
    assert wait(page, lambda d: text_of(d, badge) == "STOPPED")
    one(page, "#delete-job").click()
    confirm(page)
    wait(page, lambda d: d.current_url.endswith("#/"))
    wait(page, lambda d: 'Job "live" deleted.' in text_of(d, "#notices"))
    assert api(service, "GET", "/jobs/live").status_code == 404
    assert wait(page, lambda d: not css(d, '#jobs-table tr[data-job="live"]'))


def test_refused_service_delete_shows_the_409_message(
    page: Any, service: ServiceThread, tmp_path: Path
) -> None:
    page.get(service.url + "/")
    row = '#services-table tr[data-service="files"]'
    one(page, f"{row} button.danger").click()
    confirm(page)
    message = one(page, "#notices .notice-error").text
    expected = api(service, "DELETE", "/services/files").json()["error"]["message"]
    assert expected in message and "live" in message
    assert expected in one(page, f"{row} .field-error").text
    screenshot(page, tmp_path, "service-409")
    assert css(page, row)  # still there

    # an unused one goes
    one(page, '#services-table tr[data-service="spare"] button.danger').click()
    confirm(page)
    wait(page, lambda d: not css(d, '#services-table tr[data-service="spare"]'))
    assert api(service, "GET", "/services/spare").status_code == 404


def test_create_a_service_through_the_form(
    page: Any, service: ServiceThread, tmp_path: Path
) -> None:
    page.get(service.url + "/#/new-service")
    editor = one(page, "#service-form-json")
    assert '"provider": "generator"' in editor.get_attribute("value")
    from selenium.webdriver.support.ui import Select

    Select(one(page, "#service-template")).select_by_value("stdout")
    assert '"provider": "stdout"' in editor.get_attribute("value")
    page.execute_script(
        "arguments[0].value = arguments[1];", editor, '{"name": "gen", "provider": "stdout"}'
    )
    one(page, "#service-form-submit").click()
    assert "already exists" in one(page, "#service-form-errors").text
    page.execute_script(
        "arguments[0].value = arguments[1];", editor, '{"name": "console", "provider": "stdout"}'
    )
    one(page, "#service-form-submit").click()
    one(page, '#services-table tr[data-service="console"]')
    assert api(service, "GET", "/services/console").status_code == 200


def test_token_dialog_when_the_api_needs_a_token(page: Any, tmp_path: Path) -> None:
    svc = start(tmp_path, token=TOKEN)
    try:
        assert api(svc, "GET", "/jobs").status_code == 401
        page.get(svc.url + "/")
        field = one(page, "#token-dialog[open] #token-input")
        field.send_keys("wrong-token")
        one(page, "#token-dialog button.primary").click()
        # refused: asked again, saying so
        assert "refused" in one(page, "#token-dialog[open] #token-error").text
        field = one(page, "#token-input")
        field.send_keys(TOKEN)
        one(page, "#token-dialog button.primary").click()
        wait(page, lambda d: not css(d, "#token-dialog[open]"))
        one(page, '#jobs-table tr[data-job="live"]')
        first = wait(page, lambda d: max(number(text_of(d, "#jobs-table .counter-out")), 0))
        assert wait(page, lambda d: number(text_of(d, "#jobs-table .counter-out")) > first)
        # kept for the tab, not in the page
        assert page.execute_script("return sessionStorage.getItem('mstream.api-token')") == TOKEN
        assert TOKEN not in page.page_source
        # a reload uses the stored token: no dialog
        page.refresh()
        one(page, '#jobs-table tr[data-job="live"]')
        assert not css(page, "#token-dialog[open]")
        screenshot(page, tmp_path, "token")
    finally:
        svc.stop()


def test_token_link_is_kept_for_the_tab_and_stripped_from_the_address(
    page: Any, tmp_path: Path
) -> None:
    svc = start(tmp_path, token=TOKEN)
    try:
        page.get(f"{svc.url}/?token={TOKEN}#/")
        one(page, '#jobs-table tr[data-job="live"]')
        assert not css(page, "#token-dialog[open]")
        assert TOKEN not in page.current_url
        assert page.execute_script("return sessionStorage.getItem('mstream.api-token')") == TOKEN
    finally:
        svc.stop()


def test_cancelled_token_dialog_offers_to_ask_again(page: Any, tmp_path: Path) -> None:
    svc = start(tmp_path, token=TOKEN)
    try:
        page.get(svc.url + "/")
        one(page, "#token-dialog[open]")
        one(page, "#token-cancel").click()
        button = one(page, "#token-needed button.primary")
        assert not css(page, "#token-dialog[open]")  # not asked again by the polling
        button.click()
        one(page, "#token-dialog[open] #token-input").send_keys(TOKEN)
        one(page, "#token-dialog button.primary").click()
        one(page, '#jobs-table tr[data-job="live"]')
    finally:
        svc.stop()


def test_narrow_window(page: Any, service: ServiceThread, tmp_path: Path) -> None:
    page.set_window_size(400, 900)
    overflow = "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    page.get(service.url + "/")
    one(page, '#jobs-table tr[data-job="live"]')
    assert page.execute_script(overflow) <= 0
    screenshot(page, tmp_path, "overview-narrow")
    page.get(service.url + "/#/jobs/live")
    boxes = [one(page, "#pipeline .box"), *css(page, "#pipeline .box")[1:]]
    ys = [b.location["y"] for b in boxes]
    assert ys == sorted(ys) and len(set(ys)) == len(ys)  # stacked top to bottom
    assert page.execute_script(overflow) <= 0
    screenshot(page, tmp_path, "job-narrow")


def test_a_retrying_job_shows_its_attempt_and_error(
    page: Any, service: ServiceThread, tmp_path: Path
) -> None:
    definition = {
        "name": "waiting",
        "source": {"service_name": "files", "resource": "later.jsonl", "output_encoding": "json"},
        "sinks": [{"service_name": "spare", "output_encoding": "json"}],
    }
    created = requests.post(f"{service.url}/jobs", json=definition, timeout=30)
    assert created.status_code == 201, created.text
    page.get(service.url + "/")
    row = '#jobs-table tr[data-job="waiting"]'
    assert wait(page, lambda d: text_of(d, f"{row} .badge") == "RETRYING")
    reason = text_of(page, f"{row} .reason")
    assert "attempt" in reason and "later.jsonl" in reason
    one(page, '#jobs-table a[href="#/jobs/waiting"]').click()
    assert wait(page, lambda d: text_of(d, "h1 .badge") == "RETRYING")
    assert wait(page, lambda d: "Retrying:" in text_of(d, "#job-reason"))


def test_the_job_page_follows_its_live_log(page: Any, service: ServiceThread) -> None:
    page.get(service.url + "/#/jobs/live")
    one(page, "#job-log")
    logging.getLogger("mstream.connector.live").warning("live log line %d", 1)
    assert wait(page, lambda d: "live log line 1" in text_of(d, "#job-log"))
    logging.getLogger("mstream.connector.other").warning("not this job's line")
    logging.getLogger("mstream.connector.live").warning("live log line %d", 2)
    assert wait(page, lambda d: "live log line 2" in text_of(d, "#job-log"))
    assert "not this job's line" not in text_of(page, "#job-log")
    assert "WARN" in text_of(page, "#job-log li.log-warn .log-level")


STRICT_SCRIPT = """
function transform(data, attributes)
  if data.n == 2 then error("n = 2 is not allowed") end
  return result(data, attributes)
end
"""


def test_replay_dead_letters_after_fixing_the_cause(
    page: Any, service: ServiceThread, tmp_path: Path
) -> None:
    scripts = tmp_path / "scripts"
    (scripts / "strict.lua").write_text(STRICT_SCRIPT)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    (out / "three.jsonl").write_text('{"n": 1}\n{"n": 2}\n{"n": 3}\n')
    definition = {
        "name": "strict",
        "source": {"service_name": "files", "resource": "three.jsonl", "output_encoding": "json"},
        "middlewares": [
            {"service_name": "scripts", "resource": "strict.lua", "output_encoding": "json"}
        ],
        "sinks": [
            {"service_name": "files", "resource": "strict-out.jsonl", "output_encoding": "json"}
        ],
    }
    created = requests.post(f"{service.url}/jobs", json=definition, timeout=30)
    assert created.status_code == 201, created.text
    page.get(service.url + "/#/jobs/strict")
    row = "#dead-letters-table tr[data-dead-letter]"
    assert wait(page, lambda d: len(css(d, row)) == 1)
    assert "n = 2 is not allowed" in text_of(page, "#dead-letter-reasons")
    assert "middlewares[0]" in text_of(page, row)
    counter = '#job-counters [data-counter="events_out"]'
    assert wait(page, lambda d: number(text_of(d, counter)) == 2)

    page.execute_script("document.getElementById('dead-letters-heading').scrollIntoView()")
    screenshot(page, tmp_path, "dead-letters")
    (scripts / "strict.lua").write_text(UDF_SCRIPT)  # the fix: the script accepts every event
    one(page, "#replay-dead-letters").click()
    assert wait(page, lambda d: "1 delivered" in text_of(d, "#replay-result"))
    assert wait(page, lambda d: not css(d, row))
    assert wait(page, lambda d: number(text_of(d, counter)) == 3)
    lines = [json.loads(line) for line in (out / "strict-out.jsonl").read_text().splitlines()]
    assert sorted(doc["n"] for doc in lines) == [1, 2, 3]


def test_the_job_page_charts_the_last_hour(page: Any, service: ServiceThread) -> None:
    history = f"{service.url}/jobs/live/metrics/history"
    # one point every 10 s while the job runs: wait for two, then draw
    points = wait(
        page, lambda d: len(requests.get(history, timeout=10).json()["points"]) >= 2 and 1, 40
    )
    assert points
    page.get(service.url + "/#/jobs/live")
    one(page, "#history-chart")
    assert wait(page, lambda d: css(d, "#history-chart polyline.chart-rate"))
    assert "events/s" in text_of(page, "#history-legend")


PLAYGROUND_SCRIPT = """function transform(data, attributes)
  data.checked = true
  return result(data, attributes)
end
"""


def test_the_playground_runs_a_script_on_a_real_sample_and_keeps_a_passing_test(
    page: Any, service: ServiceThread, tmp_path: Path
) -> None:
    live = tmp_path / "out" / "live.jsonl"
    wait(page, lambda d: live.exists() and live.stat().st_size > 0)
    page.get(service.url + "/#/playground")
    assert wait(page, lambda d: "live.jsonl" in text_of(d, "#pg-resource"))
    page.execute_script(
        "const s = document.getElementById('pg-service'); s.value = 'files';"
        "s.dispatchEvent(new Event('change'));"
    )
    assert wait(page, lambda d: "live.jsonl" in text_of(d, "#pg-resource"))
    page.execute_script("document.getElementById('pg-resource').value = 'live.jsonl'")
    one(page, "#pg-load").click()
    assert wait(
        page,
        lambda d: '"seen"' in d.execute_script("return document.getElementById('pg-input').value"),
    )
    page.execute_script(
        "document.getElementById('pg-script').value = arguments[0]", PLAYGROUND_SCRIPT
    )
    one(page, "#pg-run").click()
    assert wait(page, lambda d: '"checked": true' in text_of(d, "#pg-output"))
    assert "added" in text_of(page, "#pg-diff") and "checked" in text_of(page, "#pg-diff")
    one(page, "#pg-save-test").click()
    assert "case 1" in text_of(page, "#pg-tests")
    one(page, "#pg-run-tests").click()
    assert wait(page, lambda d: text_of(d, "#pg-summary") == "1 passed, 0 failed")
    screenshot(page, tmp_path, "playground")
    one(page, "#pg-save-suite").click()
    assert wait(page, lambda d: "saved" in text_of(d, "#notices"))
    suites = api(service, "GET", "/test-suites").json()["test_suites"]
    assert [s["cases"] for s in suites] == [1]


def test_the_resource_browser_shows_samples_and_fields(
    page: Any, service: ServiceThread, tmp_path: Path
) -> None:
    live = tmp_path / "out" / "live.jsonl"
    wait(page, lambda d: live.exists() and live.stat().st_size > 0)
    page.get(service.url + "/#/resources")
    page.execute_script(
        "const s = document.getElementById('rb-service'); s.value = 'files';"
        "s.dispatchEvent(new Event('change'));"
    )
    button = '#rb-list button[data-resource="live.jsonl"]'
    wait(page, lambda d: css(d, button))
    one(page, button).click()
    assert wait(page, lambda d: '"seen": true' in text_of(d, "#rb-samples"))
    assert wait(
        page, lambda d: "seen" in text_of(d, "#rb-fields") and "boolean" in text_of(d, "#rb-fields")
    )
    screenshot(page, tmp_path, "resources")


def test_the_service_form_shows_failed_online_checks(page: Any, service: ServiceThread) -> None:
    page.get(service.url + "/#/new-service")
    body = json.dumps(
        {"name": "unreachable", "provider": "kafka", "bootstrap.servers": "127.0.0.1:1"}
    )
    page.execute_script("document.getElementById('service-form-json').value = arguments[0]", body)
    one(page, "#service-form-online").click()
    one(page, "#service-form-submit").click()
    assert wait(
        page, lambda d: "bootstrap servers 127.0.0.1:1 answer" in text_of(d, "#service-form-errors")
    )
    assert api(service, "GET", "/services/unreachable").status_code == 404
