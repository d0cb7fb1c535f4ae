"""The web console (/ui/) in a real browser: headless Chromium driven by Selenium, on a 3-member Cairn cluster with
the page opened on a follower. Screenshots go to CONSOLE_OUTPUT_DIR (default .build/test-output/console)."""
import base64
import json
import os
import shutil
import subprocess
import time

import pytest

from cluster import Cluster, is_etcd
from conftest import record

pytestmark = pytest.mark.skipif(is_etcd(), reason="the console is Cairn's own (etcd has none)")

CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 15
OUTPUT_DIR = os.environ.get("CONSOLE_OUTPUT_DIR") or os.path.join(
    os.path.dirname(__file__), "..", "..", ".build", "test-output", "console")


@pytest.fixture(scope="module")
def console(request):
    """(cluster, follower index, leader index, driver): one cluster and one browser for every test of this file."""
    if not os.access(CHROMEDRIVER, os.X_OK):
        pytest.fail("no chromedriver: scripts/install-deps chromium chromium-driver (scripts/test does)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("no selenium: python3 -m pip install selenium (scripts/test does)")

    c = Cluster(3)
    driver = None
    try:
        leader = c.wait_leader()
        follower = c.followers(leader)[0]
        c.put_retry("config/db", "postgres://db.internal/app")
        c.put_retry("config/cache", "redis://cache.internal")
        c.put_retry("feature/dark-mode", "on")
        c.wait_converged()
        options = webdriver.ChromeOptions()
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1200,800", "--no-first-run", "--disable-background-networking"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(WAIT_S)
        driver.set_script_timeout(WAIT_S)
        os.makedirs(OUTPUT_DIR, exist_ok=True)
        yield c, follower, leader, driver
    finally:
        if driver is not None:
            driver.quit()
        c.stop()
        if request.session.testsfailed:
            print(f"\n===== console tests: member logs in {c.dir} =====")
            c.dump_logs()
        else:
            shutil.rmtree(c.dir, ignore_errors=True)


def wait_until(driver, what, check, timeout_s=WAIT_S):
    """Polls `check(driver)` until it is truthy; bounded by `timeout_s`."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.1, ignored_exceptions=(WebDriverException,)).until(check)
    except Exception as e:
        driver.save_screenshot(os.path.join(OUTPUT_DIR, "failed.png"))
        raise AssertionError(f"{what}: not within {timeout_s}s ({type(e).__name__}); screenshot failed.png") from e


def text_of(driver, css):
    from selenium.webdriver.common.by import By
    elements = driver.find_elements(By.CSS_SELECTOR, css)
    return elements[0].text if elements else ""


def open_page(driver, member, fragment):
    driver.get(f"{member.client_url}/ui/{fragment}")


def curl_put(member, key, value):
    done = subprocess.run(["curl", "-sS", "-X", "PUT", f"{member.client_url}/v2/keys/{key}", "-d", f"value={value}"],
                          capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 0 and '"action":"set"' in done.stdout, done.stdout + done.stderr


def row_value(driver, key):
    return text_of(driver, f'tr[data-key="{key}"] td.value')


def test_deep_link_shows_the_keys_of_a_directory_and_of_a_key(console):
    c, follower, _, driver = console
    open_page(driver, c[follower], "#/keys/config")
    wait_until(driver, "the directory's keys", lambda d: row_value(d, "/config/db") == "postgres://db.internal/app"
               and row_value(d, "/config/cache") == "redis://cache.internal")
    timing = driver.execute_script("return performance.getEntriesByType('navigation')[0].toJSON()")
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').filter(r => r.name.includes('/ui/'))"
        ".map(r => [r.name, r.encodedBodySize, r.decodedBodySize])")
    decoded = timing["decodedBodySize"] + sum(r[2] for r in resources)
    encoded = timing["encodedBodySize"] + sum(r[1] for r in resources)
    record(f"console page: {decoded} bytes ({encoded} bytes as sent, gzip), loaded in "
           f"{timing['loadEventEnd'] - timing['startTime']:.0f} ms (Navigation Timing: navigation start to load end, "
           f"DOMContentLoaded {timing['domContentLoadedEventEnd'] - timing['startTime']:.0f} ms)")
    driver.save_screenshot(os.path.join(OUTPUT_DIR, "keys.png"))

    open_page(driver, c[follower], "#/keys/config/db")
    driver.refresh()  # only the fragment changed: load the page again so the deep link is what opens it
    wait_until(driver, "the key's value and indexes", lambda d: "postgres://db.internal/app" in text_of(d, "#details")
               and "Modified index" in text_of(d, "#details"))


def test_a_key_written_by_curl_appears_without_a_reload(console):
    c, follower, leader, driver = console
    open_page(driver, c[follower], "#/keys/config")
    driver.refresh()
    wait_until(driver, "the watch is live", lambda d: text_of(d, "#live") == "live")
    driver.execute_script("window.notReloaded = true")
    curl_put(c[leader], "config/live", "written-by-curl")
    wait_until(driver, "the new key in the open directory", lambda d: row_value(d, "/config/live") == "written-by-curl")
    assert driver.execute_script("return window.notReloaded === true"), "the page was reloaded"


def test_the_members_view_names_every_member_and_the_leader(console):
    c, follower, leader, driver = console
    open_page(driver, c[follower], "#/members")

    def listed(d):
        rows = {m.name: text_of(d, f'tr[data-member="{m.name}"]') for m in c.members}
        healthy = all(text_of(d, f'tr[data-member="{m.name}"] td.healthy') == "healthy" for m in c.members)
        return healthy and all(rows.values()) and rows

    rows = wait_until(driver, "every member, healthy", listed)
    for m in c.members:
        assert m.client_url in rows[m.name] and m.peer_url in rows[m.name], rows[m.name]
    wait_until(driver, "the leader marked", lambda d: text_of(d, f'tr[data-member="{c[leader].name}"] .badge') == "leader")
    badges = [m.name for m in c.members if text_of(driver, f'tr[data-member="{m.name}"] .badge')]
    assert badges == [c[leader].name]
    driver.save_screenshot(os.path.join(OUTPUT_DIR, "members.png"))


def test_a_key_created_from_the_page_is_in_the_store(console):
    from selenium.webdriver.common.by import By
    c, follower, leader, driver = console
    open_page(driver, c[follower], "#/keys/config")
    driver.refresh()
    wait_until(driver, "the create form", lambda d: d.find_elements(By.ID, "new-key"))
    driver.find_element(By.ID, "new-key").send_keys("from-the-page")
    driver.find_element(By.ID, "new-value").send_keys("made in a browser")
    driver.find_element(By.CSS_SELECTOR, "#create button[type=submit]").click()
    wait_until(driver, "the creation confirmed", lambda d: "Created /config/from-the-page" in text_of(d, "#message"))
    stored = c.get(leader, "config/from-the-page", quorum=True)
    assert stored.status == 200 and stored.json["node"]["value"] == "made in a browser", stored


def test_an_edit_that_lost_a_compare_and_swap_race_shows_the_conflict(console):
    from selenium.webdriver.common.by import By
    c, follower, leader, driver = console
    open_page(driver, c[follower], "#/keys/config/cache")
    driver.refresh()
    wait_until(driver, "the key's page", lambda d: "redis://cache.internal" in text_of(d, "#details"))
    wait_until(driver, "the watch is live", lambda d: text_of(d, "#live") == "live")
    driver.find_element(By.XPATH, "//button[text()='Edit']").click()
    editor = driver.find_element(By.ID, "edit-value")
    editor.clear()
    editor.send_keys("redis://mine")
    curl_put(c[leader], "config/cache", "redis://theirs")  # someone else saves first
    wait_until(driver, "the other write shown", lambda d: "redis://theirs" in text_of(d, "#details"))
    driver.find_element(By.CSS_SELECTOR, "#edit button[type=submit]").click()
    wait_until(driver, "the conflict reported", lambda d: text_of(d, "#message").startswith("Conflict"))
    assert "error" in driver.find_element(By.ID, "message").get_attribute("class")
    assert driver.find_element(By.ID, "edit-value").get_attribute("value") == "redis://mine", "the user's text was lost"
    stored = c.get(leader, "config/cache", quorum=True)
    assert stored.json["node"]["value"] == "redis://theirs", stored
    driver.save_screenshot(os.path.join(OUTPUT_DIR, "conflict.png"))


def test_the_metrics_view_charts_writes_reads_fsync_and_apply_lag(console):
    c, follower, leader, driver = console
    open_page(driver, c[follower], "#/metrics")
    driver.refresh()
    deadline = time.monotonic() + 5
    for k in range(20):  # writes to chart while the page samples
        c.put_retry(f"load/k{k}", str(k))
        if time.monotonic() > deadline:
            break
    for chart in ("writes", "reads", "fsync", "lag"):
        wait_until(driver, f"the {chart} chart drawn with a value",
                   lambda d: text_of(d, f"#chart-{chart} .now") not in ("", "–"))
    driver.save_screenshot(os.path.join(OUTPUT_DIR, "metrics.png"))


def accept_confirmation(driver, what):
    from selenium.webdriver.support import expected_conditions
    alert = wait_until(driver, what, expected_conditions.alert_is_present())
    alert.accept()


def test_a_member_is_added_and_removed_from_the_page_after_a_confirmation(console):
    from selenium.webdriver.common.by import By
    c, follower, leader, driver = console
    open_page(driver, c[follower], "#/members")
    driver.refresh()
    wait_until(driver, "the members", lambda d: text_of(d, f'tr[data-member="{c[leader].name}"] .badge') == "leader")
    newcomer = c.new_member()  # never started: the cluster lists it as unstarted until it is removed
    driver.find_element(By.ID, "new-peer-urls").send_keys(newcomer.peer_url)
    driver.find_element(By.CSS_SELECTOR, "#add-member button[type=submit]").click()
    accept_confirmation(driver, "the confirmation to add")
    wait_until(driver, "the addition confirmed", lambda d: text_of(d, "#message").startswith("Added member"))
    added = text_of(driver, "#message").split()[2].rstrip(":")
    members = c[leader].request("GET", "/v2/members").json["members"]
    assert any(m["id"] == added and m["peerURLs"] == [newcomer.peer_url] for m in members), members

    def click_remove(d):
        d.find_element(By.CSS_SELECTOR, f'tr[data-member="{added}"] button').click()
        return True

    wait_until(driver, "the new member's Remove button", click_remove)
    accept_confirmation(driver, "the confirmation to remove")
    wait_until(driver, "the removal confirmed", lambda d: text_of(d, "#message") == f"Removed member {added}.")
    members = c[leader].request("GET", "/v2/members").json["members"]
    assert sorted(m["name"] for m in members) == sorted(m.name for m in c.members[:3]), members


def test_pages_left_behind_give_back_their_watch_connections(console):
    """A browser opens at most 6 connections to a member; a page left for another (kept in the back-forward cache)
    must not keep its watch's, or the seventh page never loads."""
    c, follower, _, driver = console
    for k in range(8):
        driver.get(f"{c[follower].client_url}/ui/?visit={k}#/keys/config")
        wait_until(driver, f"visit {k}: the watch is live", lambda d: text_of(d, "#live") == "live")


def test_a_watch_whose_index_was_cleared_re_reads_and_goes_on(console):
    """etcd's error 401 (the asked index left the event history) cannot be provoked cheaply on Cairn, which keeps
    64 MiB of history: the page's next watch gets that answer from a stand-in for fetch, then the real member."""
    c, follower, leader, driver = console
    open_page(driver, c[follower], "#/keys/config")
    driver.refresh()
    wait_until(driver, "the watch is live", lambda d: text_of(d, "#live") == "live")
    driver.execute_script("""
        window.requestsSeen = [];
        const realFetch = window.fetch;
        let answered = false;
        window.fetch = (url, init) => {
          const watch = String(url).includes("wait=true");
          if (watch && !answered) {
            answered = true;
            window.requestsSeen.push("cleared");
            const body = {errorCode: 401, message: "The event in requested index is outdated and cleared",
                          cause: "the requested history has been cleared [1000/2]", index: 1000};
            return Promise.resolve(new Response(JSON.stringify(body), {status: 400, headers: {"X-Etcd-Index": "1000"}}));
          }
          window.requestsSeen.push(watch ? "watch" : "read");
          return realFetch(url, init);
        };""")
    curl_put(c[leader], "config/before-clear", "1")  # ends the pending watch: the next one is answered 401
    wait_until(driver, "a watch after the cleared one",
               lambda d: d.execute_script("const seen = window.requestsSeen, i = seen.indexOf('cleared');"
                                          "return i < 0 ? [] : seen.slice(i + 1, i + 3)") == ["read", "watch"])
    curl_put(c[leader], "config/after-clear", "2")
    wait_until(driver, "a key written after the re-read", lambda d: row_value(d, "/config/after-clear") == "2")
    assert text_of(driver, "#live") == "live"


def test_the_watch_resumes_after_the_member_serving_the_page_restarts(console):
    c, follower, leader, driver = console
    open_page(driver, c[follower], "#/keys/config")
    driver.refresh()
    wait_until(driver, "the watch is live", lambda d: text_of(d, "#live") == "live")
    driver.execute_script("window.notReloaded = true")
    c.kill(follower)
    wait_until(driver, "the dropped watch noticed", lambda d: text_of(d, "#live") == "reconnecting")
    curl_put(c[leader], "config/while-down", "written while the page's member was down")
    c[follower].start()
    wait_until(driver, "the key written while the member was down", timeout_s=3 * WAIT_S,
               check=lambda d: row_value(d, "/config/while-down") == "written while the page's member was down")
    assert driver.execute_script("return window.notReloaded === true"), "the page was reloaded"


def v3_call(member, endpoint, body):
    done = subprocess.run(["curl", "-sS", "-X", "POST", f"{member.client_url}/v3/{endpoint}", "-d", json.dumps(body)],
                          capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def b64(text):
    return base64.b64encode(text.encode()).decode()


def v3_put(member, key, value):
    assert "header" in v3_call(member, "kv/put", {"key": b64(key), "value": b64(value)})


def v3_value(member, key):
    kvs = v3_call(member, "kv/range", {"key": b64(key)}).get("kvs", [])
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


def test_v3_keys_by_prefix_live_created_and_a_lost_edit_shown(console):
    """The v3 view on a follower: a prefix deep link, a curl write shown live, a key created from the page, and an
    edit that lost to another writer refused by its transaction's compare, with the user's text kept."""
    from selenium.webdriver.common.by import By
    c, follower, leader, driver = console
    v3_put(c[leader], "app/db", "postgres://v3")
    v3_put(c[leader], "app/cache", "redis://v3")
    v3_put(c[leader], "other/x", "not listed")
    open_page(driver, c[follower], "#/v3/app%2F")
    driver.refresh()
    wait_until(driver, "the prefix's keys", lambda d: row_value(d, "app/db") == "postgres://v3"
               and row_value(d, "app/cache") == "redis://v3")
    assert row_value(driver, "other/x") == "", "a key outside the prefix is listed"
    wait_until(driver, "the watch is live", lambda d: text_of(d, "#live") == "live")
    v3_put(c[leader], "app/queue", "amqp://v3")
    wait_until(driver, "a curl write shown without a reload", lambda d: row_value(d, "app/queue") == "amqp://v3")

    key = driver.find_element(By.ID, "new-key")
    key.clear()
    key.send_keys("app/from-the-page")
    driver.find_element(By.ID, "new-value").send_keys("made in a browser")
    driver.find_element(By.CSS_SELECTOR, "#create button[type=submit]").click()
    wait_until(driver, "the creation confirmed", lambda d: "Created app/from-the-page" in text_of(d, "#message"))
    assert v3_value(c[leader], "app/from-the-page") == "made in a browser"

    driver.find_element(By.CSS_SELECTOR, 'tr[data-key="app/cache"] button.plain').click()
    editor = driver.find_element(By.ID, "edit-value")
    editor.clear()
    editor.send_keys("redis://mine")
    v3_put(c[leader], "app/cache", "redis://theirs")  # someone else saves first
    wait_until(driver, "the other write shown", lambda d: row_value(d, "app/cache") == "redis://theirs")
    driver.find_element(By.CSS_SELECTOR, "#edit button[type=submit]").click()
    wait_until(driver, "the conflict reported", lambda d: text_of(d, "#message").startswith("Conflict"))
    assert driver.find_element(By.ID, "edit-value").get_attribute("value") == "redis://mine", "the user's text was lost"
    assert v3_value(c[leader], "app/cache") == "redis://theirs"
    driver.save_screenshot(os.path.join(OUTPUT_DIR, "v3.png"))
