"""The dashboard on a real 2-node cluster, through its JSON API and in a real headless
browser (Debian's chromium and chromium-driver, driven by Selenium; `make test-setup`
installs them). Every wait has a generous deadline: the pages poll each
dashboard_poll_ms (1 s) and redraw without reloading, so a test waits for what it
expects to appear, never for a fixed time. Each page's screenshot lands in the test's
tmp dir."""
import json
import shutil
import urllib.error
import urllib.request

import pytest

import ray_core as ray

from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(300)
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT_S = 60


def get_json(url: str, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                timeout=30) as reply:
        return json.loads(reply.read())


@pytest.fixture(scope="module")
def browser(tmp_path_factory, dashboard_cluster):
    """A headless Chromium; quit (chromedriver and its browser end) when the module ends,
    before the cluster stops (its fixture counts what is left of its processes)."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (make test-setup installs "
                    "them as root: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def logged_in(browser, dashboard_cluster):
    """The browser after opening the one-time login link (the cookie it sets stays)."""
    browser.get(dashboard_cluster.head_node.dashboard_login_link())
    return browser


def show(browser, hash_: str, tmp_path, shot: str):
    """Open the page at `hash_` (no reload when already on the dashboard)."""
    browser.execute_script("window.location.hash = arguments[0]", hash_)
    wait_for(lambda: browser.execute_script(
        "return document.getElementById('page').dataset.page") == hash_.split("?")[0],
        f"page {hash_}", WAIT_S)
    return lambda: browser.save_screenshot(str(tmp_path / f"{shot}.png"))


# The pages redraw each second, replacing their elements: read them in one script call,
# never through element handles that a redraw can leave stale.
def text_of(browser, css: str) -> str:
    return browser.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", css)


def attributes_of(browser, css: str, name: str) -> list:
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.getAttribute("
        "arguments[1]))", css, name)


def present(browser, css: str) -> bool:
    return browser.execute_script("return document.querySelector(arguments[0]) !== null", css)


def test_overview_shows_the_node_count(logged_in, dashboard_cluster, tmp_path):
    screenshot = show(logged_in, "overview", tmp_path, "overview")
    wait_for(lambda: text_of(logged_in, "#node-count") == "2", "2 alive nodes shown", WAIT_S)
    assert set(attributes_of(logged_in, "#nodes-table tr[data-node-id]", "data-node-id")) == \
        {n.node_id for n in dashboard_cluster.list_all_nodes()}
    screenshot()


@ray.remote(num_cpus=0)
class Pinger:
    def ping(self):
        return "pong"


def test_a_running_actor_appears_without_reload(logged_in, dashboard_cluster, tmp_path):
    screenshot = show(logged_in, "actors", tmp_path, "actors")
    logged_in.execute_script("window.notReloaded = true")
    actor = Pinger.remote()
    assert ray.get(actor.ping.remote()) == "pong"
    actor_id = actor._actor_id.hex()
    row = f"#actors-table tr[data-actor-id='{actor_id}']"
    wait_for(lambda: present(logged_in, f"{row}[data-state='ALIVE']"),
             "the actor's row, ALIVE", WAIT_S)
    assert logged_in.execute_script("return window.notReloaded") is True
    cells = text_of(logged_in, row)
    assert "Pinger" in cells and "logs" in cells
    screenshot()
    ray.kill(actor)


@ray.remote(max_retries=0)
def raises_value_error():
    raise ValueError("the dashboard shows this")


def test_a_failed_task_shows_its_error_type(logged_in, tmp_path):
    ref = raises_value_error.remote()
    with pytest.raises(ray.exceptions.RayTaskError):
        ray.get(ref)
    task_id = ref.task_id().hex()
    screenshot = show(logged_in, "tasks?state=FAILED", tmp_path, "tasks")
    row = f"#tasks-table tr[data-task-id='{task_id}']"
    wait_for(lambda: text_of(logged_in, f"{row} td.error-type") == "TASK_EXECUTION_EXCEPTION",
             "the failed task's error type", WAIT_S)
    assert "ValueError" in text_of(logged_in, row)
    assert present(logged_in, "svg#task-chart polyline[data-state=FAILED]")
    screenshot()


@ray.remote
def prints(marker):
    print(marker)
    return marker


def test_the_log_viewer_shows_what_a_task_printed(logged_in, tmp_path):
    marker = "dashboard-log-line-7d3f"
    ref = prints.remote(marker)
    assert ray.get(ref) == marker
    screenshot = show(logged_in, f"logs?task_id={ref.task_id().hex()}", tmp_path, "logs")
    wait_for(lambda: marker in text_of(logged_in, "pre#log-text"),
             "the printed line in the log viewer", WAIT_S)
    screenshot()


def test_the_other_pages_draw(logged_in, tmp_path):
    for page, element in (("jobs", "#jobs-table"), ("placement_groups",
                                                    "#placement-groups-table"),
                          ("objects", "#stores-table"), ("logs", "#log-files")):
        screenshot = show(logged_in, page, tmp_path, page)
        wait_for(lambda: present(logged_in, element), f"the {page} page's table", WAIT_S)
        screenshot()
    assert attributes_of(logged_in, "a#timeline-download", "download") == \
        ["ray_core_timeline.json"]


def test_a_request_without_the_token_is_refused(browser, dashboard_cluster, tmp_path):
    url = dashboard_cluster.head_node.dashboard_url
    with pytest.raises(urllib.error.HTTPError) as refused:
        get_json(f"{url}/api/cluster")
    assert refused.value.code == 401
    assert get_json(f"{url}/api/cluster", dashboard_cluster.head_node.token)["num_alive"] == 2
    browser.delete_all_cookies()
    browser.get(f"{url}/#overview")
    wait_for(lambda: "request refused" in text_of(browser, "#error"),
             "the page saying it was refused", WAIT_S)
    assert not present(browser, "#node-count")
    browser.save_screenshot(str(tmp_path / "refused.png"))


def test_a_login_link_works_once(dashboard_cluster):
    link = dashboard_cluster.head_node.dashboard_login_link()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with opener.open(link, timeout=30) as reply:      # sets the cookie, then the page
        assert reply.status == 200
    with opener.open(f"{dashboard_cluster.head_node.dashboard_url}/api/jobs",
                     timeout=30) as reply:
        assert reply.status == 200
    with pytest.raises(urllib.error.HTTPError) as again:
        urllib.request.urlopen(link, timeout=30)
    assert again.value.code == 401
