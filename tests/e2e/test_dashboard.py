"""The fleet dashboard on a real fleet: in Debian's chromium driven by Playwright (sign in
with the key form, every model listed, the drifted one marked, a model's histograms, a
promote from the page changing the champion), and over plain HTTP (who may see and do what,
the cookie and the CSRF token, the validation report)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from mlfleet.settings import Settings, get_settings
from mlfleet.spec import load_spec
from mlfleet.training.run import train
from tests.support import REPO
from tests.support.browser import CHROMIUM_ARGS, ensure_chromium
from tests.support.fleet import (
    DUMMY,
    LOGREG,
    Model,
    api_key,
    loans_spec,
    predict_all,
    rows_of,
    serving,
    stop_monitor,
    train_fleet,
    write_loans_fleet,
)
from tests.support.messy import loans_frame
from tests.support.waiting import wait_for

pytestmark = pytest.mark.ray

ADMIN, VIEWER, PREDICT = "mlf_dash_admin_key", "mlf_dash_viewer_key", "mlf_dash_predict_key"
DRIFTING, STEADY = "dash-drifting", "dash-steady"
FLEET: dict[str, Model] = {DRIFTING: (*LOGREG, "pool"), STEADY: (*LOGREG, "dedicated")}
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def chromium() -> Path:
    try:
        return ensure_chromium()
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def fleet(
    ray_session: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Settings]]:
    """Two models, the steady one with a challenger (v2) that its gate did not promote;
    the other driven into drift by shifted traffic."""
    root = tmp_path_factory.mktemp("dashboard-fleet")
    specs = write_loans_fleet(root, FLEET, rows=1600, seed=11)
    settings = get_settings(
        home=root / "home",
        api_keys=[
            api_key("ops", ADMIN, "predict", "admin"),
            api_key("viewer", VIEWER, "dashboard"),
            api_key("app", PREDICT, "predict"),
        ],
        alias_refresh_seconds=0.5,
        monitor_flush_seconds=0.3,
        monitor_evaluate_seconds=2.0,
    )
    train_fleet(settings, specs, FLEET)
    weak = root / "weak.yaml"
    weak.write_text(
        yaml.safe_dump(
            {
                **loans_spec(STEADY, *DUMMY, "dedicated"),
                "contract": str(specs / "contract.yaml"),
                "sources": [str(specs / "loans.csv")],
            }
        )
    )
    assert not train(load_spec(weak), settings).promoted
    stop_monitor()  # another module's, with its own store
    with serving(settings, specs) as url:
        with httpx.Client(base_url=url, timeout=60, headers=bearer(PREDICT)) as client:
            live = loans_frame(1200, seed=12)
            shifted = live.assign(debt_ratio=np.clip(live["debt_ratio"] + 1.8, 0, 5))
            predict_all(client, DRIFTING, rows_of(shifted), per_request=20)
            predict_all(client, STEADY, rows_of(live), per_request=20)
            bad = client.post(f"/v1/models/{STEADY}/predict", json={"instances": [{"x": 1}]})
            assert bad.status_code == 422  # one error for the dashboard to count
            seen: list[dict[str, str]] = [{}]

            def settled() -> bool:
                seen[0] = statuses(client)
                return seen[0] == {DRIFTING: "drift", STEADY: "ok"}

            try:
                # Generous: on a loaded 2-core host the first evaluations come late.
                wait_for(settled, timeout=240, what=f"{DRIFTING} to drift, {STEADY} ok")
            except TimeoutError as exc:
                raise AssertionError(f"{exc}; the monitor says {seen[0]}") from None
        yield url, settings
    stop_monitor()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def statuses(client: httpx.Client) -> dict[str, str]:
    r = client.get("/v1/monitoring")
    return {m["model"]: m["status"] for m in r.json()["models"]} if r.status_code == 200 else {}


def champion(url: str, name: str) -> str:
    r = httpx.get(f"{url}/v1/models/{name}", headers=bearer(PREDICT), timeout=60)
    assert r.status_code == 200, r.text
    return str(r.json()["champion"])


def test_in_a_browser_sign_in_see_the_fleet_and_promote_from_the_page(
    fleet: tuple[str, Settings], chromium: Path
) -> None:
    from playwright.sync_api import sync_playwright

    url, _ = fleet
    ARTIFACTS.mkdir(exist_ok=True)
    assert champion(url, STEADY) == "1"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 900})
            page = context.new_page()

            # No key yet: the key form.
            page.goto(f"{url}/")
            page.fill("#key", ADMIN)
            page.click("#sign-in")
            page.wait_for_selector("table#models")
            cookie = next(c for c in context.cookies() if c["name"] == "mlfleet_key")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            assert ADMIN not in page.content()  # the key is never written into a page

            # Every model, the drifted one marked (and listed first).
            listed = page.locator("tr[data-model]").evaluate_all(
                "rows => rows.map(r => [r.dataset.model, r.dataset.status])"
            )
            assert listed == [[DRIFTING, "drift"], [STEADY, "ok"]]
            drifting = page.locator(f'tr[data-model="{DRIFTING}"]')
            assert "debt_ratio" in drifting.inner_text()
            assert drifting.locator(".badge.drift").is_visible()
            steady = page.locator(f'tr[data-model="{STEADY}"]').inner_text()
            assert "v1" in steady and "v2" in steady and "dedicated" in steady
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            # A model's page: reference vs current histograms per feature, the statistic.
            page.click(f'a:text-is("{DRIFTING}")')
            page.wait_for_selector("section#drift")
            features = page.locator("[data-feature]").evaluate_all(
                "els => els.map(e => [e.dataset.feature, e.dataset.verdict])"
            )
            assert ["debt_ratio", "drift"] in features and len(features) >= 3
            debt = page.locator('[data-feature="debt_ratio"]')
            assert debt.locator("svg.hist rect.reference").count() > 0
            assert debt.locator("svg.hist rect.current").count() > 0
            assert debt.locator("svg.trend polyline").count() >= 1
            assert page.locator("#dataset-report").count() == 1
            assert "drift" in page.locator("section#history").inner_text()  # the alert
            page.screenshot(path=str(ARTIFACTS / "dashboard-model.png"), full_page=True)

            # Promote the challenger, with a confirmation step.
            page.goto(f"{url}/dashboard/models/{STEADY}")
            page.click("#promote-challenger")
            page.wait_for_selector("#confirm-button")
            assert champion(url, STEADY) == "1"  # nothing happens before the confirmation
            page.click("#confirm-button")
            page.wait_for_selector(".notice")
            assert "v2 is now the champion" in page.locator(".notice").inner_text()
        finally:
            browser.close()
    assert champion(url, STEADY) == "2"


def test_without_a_key_browsers_get_the_key_form_and_clients_a_401(
    fleet: tuple[str, Settings],
) -> None:
    url, _ = fleet
    with httpx.Client(base_url=url, timeout=60) as client:
        r = client.get("/", headers={"Accept": "text/html"})
        assert r.status_code == 401 and 'id="key"' in r.text
        r = client.get("/", headers={"Accept": "application/json"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        for path in (
            f"/dashboard/models/{DRIFTING}",
            "/dashboard/datasets/0123456789abcdef/report",
        ):
            assert client.get(path).status_code == 401
        r = client.post(
            "/dashboard/login", data={"key": "mlf_not_a_key"}, headers={"Accept": "text/html"}
        )
        assert r.status_code == 401 and "mlf_not_a_key" not in r.text
        assert "mlfleet_key" not in r.headers.get("set-cookie", "")


def test_a_predict_key_is_refused_and_a_dashboard_key_only_views(
    fleet: tuple[str, Settings],
) -> None:
    url, _ = fleet
    with httpx.Client(base_url=url, timeout=60) as client:
        r = client.get("/", headers=bearer(PREDICT))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        r = client.get("/", headers=bearer(VIEWER))
        assert r.status_code == 200 and DRIFTING in r.text and STEADY in r.text
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        page = client.get(f"/dashboard/models/{STEADY}", headers=bearer(VIEWER))
        assert page.status_code == 200 and "need an admin key" in page.text
        before = champion(url, STEADY)
        confirm = client.get(
            f"/dashboard/models/{STEADY}/confirm?action=rollback", headers=bearer(VIEWER)
        )
        assert confirm.status_code == 403
        for action in ("promote", "rollback"):
            r = client.post(
                f"/dashboard/models/{STEADY}/{action}",
                data={"version": "1", "csrf": "x"},
                headers=bearer(VIEWER),
            )
            assert r.status_code == 403, r.text
        assert champion(url, STEADY) == before


def test_the_cookie_serves_the_dashboard_only_and_forms_need_their_csrf_token(
    fleet: tuple[str, Settings],
) -> None:
    url, _ = fleet
    with httpx.Client(base_url=url, timeout=60) as browser:
        r = browser.post("/dashboard/login", data={"key": ADMIN})
        assert r.status_code == 303 and r.headers["location"] == "/"
        session = r.headers["set-cookie"].lower()
        assert "httponly" in session and "samesite=strict" in session
        # The API never takes the cookie as a credential.
        assert browser.get("/v1/models").status_code == 401
        before = champion(url, STEADY)
        confirm = browser.get(f"/dashboard/models/{STEADY}/confirm?action=rollback")
        assert confirm.status_code == 200
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', confirm.text)
        assert token is not None
        target = f"/dashboard/models/{STEADY}/rollback"
        assert browser.post(target, data={"csrf": ""}).status_code == 403  # no token
        assert browser.post(target, data={"csrf": "0" * 64}).status_code == 403
        r = browser.post(
            target, data={"csrf": token.group(1)}, headers={"Origin": "https://evil.example"}
        )
        assert r.status_code == 403
        assert champion(url, STEADY) == before
        # Another session (a new CSRF cookie) cannot reuse this page's token.
        with httpx.Client(base_url=url, timeout=60, headers=bearer(ADMIN)) as other:
            r = other.post(target, data={"csrf": token.group(1)})
            assert r.status_code == 403
        assert champion(url, STEADY) == before


def test_the_champions_validation_report_is_served_read_only(
    fleet: tuple[str, Settings],
) -> None:
    url, settings = fleet
    with httpx.Client(base_url=url, timeout=60, headers=bearer(VIEWER)) as client:
        page = client.get(f"/dashboard/models/{DRIFTING}")
        link = re.search(
            r'href="(/dashboard/datasets/([0-9a-f]+)/report)" id="dataset-report"', page.text
        )
        assert link is not None, "the lineage links the dataset version's report"
        report = client.get(link.group(1))
        assert report.status_code == 200
        on_disk = next(settings.datasets_dir.glob(f"*/{link.group(2)}/report.html"))
        assert report.text == on_disk.read_text()
        assert "sandbox" in report.headers["content-security-policy"]
        for bad in ("..%2F..%2Fmlflow.db", "0123456789abcdef", "ZZZ", "%2E%2E"):
            r = client.get(f"/dashboard/datasets/{bad}/report")
            assert r.status_code == 404, (bad, r.status_code)
