"""The dashboard's Cluster view and job placement, in headless Chromium.

A real service runs in-process with its job and checkpoint stores in the session's MongoDB
stand-in, so it is a (one-instance) cluster: ``GET /cluster`` lists it with a heartbeat and
its generator → file job's lease. The Cluster view must list this instance as alive,
holding that lease, and the overview and job page must say where the job runs. A plain
service (embedded store) shows one line explaining when jobs are shared instead of tables,
and no placement label.

Browser fixtures and helpers come from ``tests/test_dashboard.py`` (same skips: no
Chromium, no chromedriver, no selenium). The screenshot lands in
``$MSTREAM_DASHBOARD_SCREENSHOTS`` when set (``docs/screenshots/cluster.png``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.service import ServiceOptions
from tests import test_dashboard
from tests.test_dashboard import KEY, css, number, one, screenshot, text_of, wait
from tests.test_mongodb_stores import mongo_config
from tests.test_service_restart import job as counter_job
from tests.waiting import wait_for

pytestmark = pytest.mark.dashboard

# the browser and plain-service fixtures of test_dashboard.py, found by pytest under these names
browser = test_dashboard.browser
page = test_dashboard.page
service = test_dashboard.service

INSTANCE = "node-ui"
SECOND = "node-ui-2"
JOB = "flow"


def start_instance(uri: str, db_name: str, tmp: Path, instance_id: str) -> ServiceThread:
    """An instance with jobs and checkpoints in MongoDB database ``db_name``, its config
    listing one generator → file job (seeded into the job store by the first to start)."""
    base = parse_config(
        {
            "services": [
                {"name": "gen", "provider": "generator", "rate": 100},
                {"name": "files", "provider": "file", "base_dir": str(tmp / "out")},
            ],
            "connectors": [counter_job(JOB, "flow.jsonl")],
            "system": {
                "data_dir": str(tmp / f"data-{instance_id}"),
                "encryption_key_path": str(tmp / "key"),
                "instance_id": instance_id,
                "cluster": {"lease_ttl_ms": 4000, "heartbeat_interval_ms": 500},
            },
        },
        "cluster-dashboard.toml",
        {},
    )
    options = ServiceOptions(
        api_port=0, environ={"MSTREAM_ENC_KEY": KEY}, progress_interval=600, stop_timeout=10
    )
    return ServiceThread(mongo_config(uri, db_name, base=base), options).start()


@pytest.fixture
def cluster_service(mongodb_uri: str, unique_name: str, tmp_path: Path) -> Iterator[ServiceThread]:
    """One instance, ``node-ui``, running the job."""
    svc = start_instance(mongodb_uri, unique_name, tmp_path, INSTANCE)
    try:
        yield svc
    finally:
        svc.stop()


def get(svc: ServiceThread, path: str) -> Any:
    reply = requests.get(svc.url + path, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.mark.mongodb
def test_cluster_view_lists_this_instance_and_its_lease(
    page: Any, cluster_service: ServiceThread, tmp_path: Path
) -> None:
    svc = cluster_service
    cluster = get(svc, "/cluster")
    assert cluster["enabled"] is True and cluster["instance_id"] == INSTANCE

    page.get(svc.url + "/#/cluster")
    assert one(page, 'nav a[data-nav="cluster"]').get_attribute("aria-current") == "page"
    instance = f'#instances-table tr[data-instance="{INSTANCE}"]'
    one(page, instance)
    assert wait(page, lambda d: text_of(d, f"{instance} td[data-label=Status]") == "ALIVE")
    assert wait(page, lambda d: f"{JOB}#0" in text_of(d, f"{instance} td[data-label='Jobs held']"))
    assert "this one" in text_of(page, instance)
    assert wait(page, lambda d: "ago" in text_of(d, f"{instance} td[data-label='Last heartbeat']"))
    age = number(text_of(page, f"{instance} td[data-label='Last heartbeat']"))
    assert 0 <= age < 10
    api_url = get(svc, "/cluster")["instances"][0]["api_url"]
    if api_url:
        link = one(page, f"{instance} td[data-label=API] a")
        assert link.get_attribute("href").rstrip("/") == api_url.rstrip("/")

    lease = f'#leases-table tr[data-lease="{JOB}#0"]'
    one(page, lease)
    assert text_of(page, f"{lease} td[data-label=Owner]") == INSTANCE
    assert wait(page, lambda d: text_of(d, f"{lease} td[data-label=Lease]") == "LIVE")
    assert wait(page, lambda d: text_of(d, f"{lease} td[data-label=State]") == "RUNNING")
    assert number(text_of(page, f"{lease} td[data-label=Token]")) >= 1
    assert one(page, f'{lease} a[href="#/jobs/{JOB}"]')
    assert not css(page, "#cluster-disabled:not([hidden])")
    assert INSTANCE in text_of(page, "#cluster-summary")

    # the overview and the job page say where the job runs
    one(page, 'nav a[href="#/"]').click()
    row = f'#jobs-table tr[data-job="{JOB}"]'
    assert wait(page, lambda d: text_of(d, f"{row} .where") == f"on {INSTANCE}")
    assert get(svc, f"/jobs/{JOB}")["instances"] == [INSTANCE]
    one(page, f'#jobs-table a[href="#/jobs/{JOB}"]').click()
    assert wait(page, lambda d: text_of(d, "#job-instance") == f"on {INSTANCE}")
    one(page, "#job-instance").click()
    one(page, instance)

    # a narrow window stacks the rows instead of scrolling sideways
    page.set_window_size(400, 900)
    one(page, lease)
    overflow = "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    assert page.execute_script(overflow) <= 0


def test_cluster_view_without_mongodb_stores_explains_itself(
    page: Any, service: ServiceThread
) -> None:
    assert get(service, "/cluster")["enabled"] is False
    assert "instance" not in get(service, "/jobs/live")

    page.get(service.url + "/#/cluster")
    message = one(page, "#cluster-disabled").text
    assert "[system.checkpoints]" in message and "[system.job_lifecycle]" in message
    assert "MongoDB" in message
    assert not [e for e in css(page, "#instances-table, #leases-table") if e.is_displayed()]

    # no placement label where the API gives none
    one(page, 'nav a[href="#/"]').click()
    one(page, '#jobs-table tr[data-job="live"]')
    assert not [e for e in css(page, "#jobs-table .where") if e.is_displayed()]
    one(page, '#jobs-table a[href="#/jobs/live"]').click()
    assert wait(page, lambda d: text_of(d, "h1 .badge") == "RUNNING")
    assert not one(page, "h1").find_elements("css selector", "#job-instance:not([hidden])")


@pytest.mark.mongodb
def test_a_second_instance_shows_where_the_job_runs(
    page: Any, cluster_service: ServiceThread, mongodb_uri: str, unique_name: str, tmp_path: Path
) -> None:
    first = cluster_service
    wait_for(lambda: get(first, f"/jobs/{JOB}").get("instance") == INSTANCE, 20, "the lease")
    second = start_instance(mongodb_uri, unique_name, tmp_path, SECOND)
    try:
        page.get(second.url + "/#/cluster")
        rows = "#instances-table tbody tr"
        assert wait(
            page,
            lambda d: (
                [e.get_attribute("data-instance") for e in css(d, rows)] == [INSTANCE, SECOND]
            ),
        )
        for name in (INSTANCE, SECOND):
            status = f'#instances-table tr[data-instance="{name}"] td[data-label=Status]'
            assert wait(page, lambda d, s=status: text_of(d, s) == "ALIVE")
        # this page is the second instance's; the job stays where its lease is
        assert "this one" in text_of(page, f'#instances-table tr[data-instance="{SECOND}"]')
        assert "none" in text_of(
            page, f"#instances-table tr[data-instance=\"{SECOND}\"] td[data-label='Jobs held']"
        )
        lease = f'#leases-table tr[data-lease="{JOB}#0"]'
        assert wait(page, lambda d: text_of(d, f"{lease} td[data-label=Owner]") == INSTANCE)
        assert len(css(page, "#leases-table tbody tr")) == 1
        screenshot(page, tmp_path, "cluster")

        one(page, 'nav a[href="#/"]').click()
        row = f'#jobs-table tr[data-job="{JOB}"]'
        assert wait(page, lambda d: text_of(d, f"{row} .where") == f"on {INSTANCE}")
        assert wait(page, lambda d: text_of(d, f"{row} .badge") == "RUNNING")
    finally:
        second.stop()
