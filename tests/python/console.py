#!/usr/bin/env python3
"""The web console in a real browser (headless Chromium through Selenium).

Usage:
  console.py dev    BASE_URL MAPREG_BIN API_ID STAGE SCREENSHOT
  console.py tokens BASE_URL READER_TOKEN ADMIN_TOKEN

dev: the AWS console flow on a dev-mode server that already has an API (API_ID) with a stage
(STAGE): create the custom domain name api.example.com, then Configure API mappings -> Add new
mapping -> API, Stage, Path v1 -> Save; add the same path again and read the rule's error next
to the form; create path v2 with the CLI (MAPREG_BIN) and watch it appear without a reload;
save a screenshot.

tokens: sign in with the reader token: no write buttons; a POST with a forged CSRF token and
one with the reader's real token are both refused with 403; sign in as admin: a POST with a
forged CSRF token is refused with 403.

Prints one JSON object with what it saw (the calling test checks it against gRPC) and exits 0,
or prints the failure and exits 1.
"""

import json
import subprocess
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait


class Failure(Exception):
    pass


def browser():
    opts = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        try:
            open(path).close()
            opts.binary_location = path
            break
        except OSError:
            pass
    service = None
    for path in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"):
        try:
            open(path).close()
            service = Service(executable_path=path)
            break
        except OSError:
            pass
    return webdriver.Chrome(options=opts, service=service) if service else webdriver.Chrome(options=opts)


def browser_at(url):
    """A browser showing `url`. Headless Chromium on a loaded 2-core machine has crashed its
    renderer on the very first load ("Unable to receive message from renderer"): the page load
    is tried once more in a fresh browser then, as nothing has been done yet."""
    for attempt in (1, 2):
        d = browser()
        try:
            d.get(url)
            return d
        except WebDriverException as e:
            d.quit()
            if attempt == 2:
                raise
            print(f"first page load failed, once more in a new browser: {e.msg}", file=sys.stderr)


def wait(d, cond, what, timeout=15):
    try:
        return WebDriverWait(d, timeout).until(cond)
    except TimeoutException:
        raise Failure(f"timed out waiting for {what} on {d.current_url}:\n{d.page_source[:3000]}")


def css(d, selector):
    return d.find_elements(By.CSS_SELECTOR, selector)


def add_mapping(d, api_id, stage, path):
    wait(d, ec.element_to_be_clickable((By.ID, "configure-mappings")), "Configure API mappings").click()
    wait(d, ec.element_to_be_clickable((By.ID, "add-mapping")), "Add new mapping").click()
    form = d.find_element(By.ID, "new-mapping")
    Select(form.find_element(By.NAME, "api_id")).select_by_value(api_id)
    Select(form.find_element(By.NAME, "stage")).select_by_value(stage)
    key = form.find_element(By.NAME, "api_mapping_key")
    key.clear()
    key.send_keys(path)
    form.find_element(By.ID, "save-mapping").click()


def post_status(d, action, fields):
    """POSTs a form from the page's own origin (with its cookies) and answers the status."""
    return d.execute_async_script(
        """
        const [action, fields, done] = arguments;
        fetch(action, {method: 'POST', credentials: 'same-origin',
                       headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                       body: new URLSearchParams(fields)})
          .then(r => done(r.status), e => done(String(e)));
        """,
        action, fields)


def dev(base, mapreg, api_id, stage, screenshot):
    out = {}
    d = browser_at(base + "/")
    try:
        form = wait(d, ec.presence_of_element_located((By.ID, "create-domain")), "the create form")
        form.find_element(By.NAME, "domain_name").send_keys("api.example.com")
        Select(form.find_element(By.NAME, "endpoint_type")).select_by_value("REGIONAL")
        Select(form.find_element(By.NAME, "security_policy")).select_by_value("TLS_1_2")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait(d, ec.title_contains("api.example.com"), "the domain's page")

        add_mapping(d, api_id, stage, "v1")
        wait(d, lambda d: css(d, "#mappings tr[data-key='v1']"), "mapping v1 in the table")
        out["created"] = css(d, "#mappings tr[data-key='v1']")[0].get_attribute("data-mapping")

        # The same path again: the rule's message, next to the form.
        add_mapping(d, api_id, stage, "v1")
        err = wait(d, lambda d: css(d, "#new-mapping .error"), "the error next to the form")
        out["error"] = err[0].text

        # Live: a mapping made with the CLI appears without a reload.
        d.get(base + "/console/domains/api.example.com")
        wait(d, lambda d: d.find_element(By.ID, "mappings").get_attribute("data-following") == "true",
             "the live stream to open")
        d.execute_script("window.__notReloaded = true;")
        cli = subprocess.run(
            [mapreg, "create-api-mapping", "--domain-name", "api.example.com",
             "--api-mapping-key", "v2", "--api-id", api_id, "--stage", stage,
             "--endpoint", base],
            capture_output=True, text=True, timeout=60)
        if cli.returncode != 0:
            raise Failure(f"mapreg create-api-mapping failed: {cli.stderr}")
        wait(d, lambda d: css(d, "#mappings tr[data-key='v2']"), "mapping v2 to appear live")
        out["live"] = bool(d.execute_script("return window.__notReloaded === true;"))

        # The screenshot the README shows: the mappings, with the AWS flow open.
        d.find_element(By.ID, "configure-mappings").click()
        d.find_element(By.ID, "add-mapping").click()
        time.sleep(0.3)
        d.save_screenshot(screenshot)
        out["screenshot"] = screenshot
    finally:
        d.quit()
    return out


def tokens(base, reader, admin):
    out = {}
    d = browser_at(base + "/")
    try:
        wait(d, ec.presence_of_element_located((By.ID, "login")), "the login form")
        d.find_element(By.NAME, "token").send_keys(reader)
        d.find_element(By.CSS_SELECTOR, "#login button").click()
        wait(d, ec.presence_of_element_located((By.ID, "domains")), "the domains page")
        cookies = {c["name"]: c for c in d.get_cookies()}
        session = cookies.get("mapreg_session", {})
        out["cookie_http_only"] = bool(session.get("httpOnly"))
        out["cookie_same_site"] = session.get("sameSite")
        out["reader_write_buttons"] = len(css(d, "form#create-domain, button.danger"))
        d.get(base + "/console/domains/shared.example.com")
        out["reader_configure_buttons"] = len(css(d, "#configure-mappings, #new-mapping"))
        out["reader_sees_mapping"] = len(css(d, "#mappings tr[data-key='seen']"))
        real_csrf = d.find_element(By.CSS_SELECTOR, "form[action='/console/logout'] input[name=csrf]").get_attribute("value")
        out["reader_forged_post"] = post_status(d, "/console/domains", {"domain_name": "forged.example.com", "csrf": "forged"})
        out["reader_real_csrf_post"] = post_status(d, "/console/domains", {"domain_name": "reader.example.com", "csrf": real_csrf})
        d.find_element(By.ID, "sign-out").click()
        wait(d, ec.presence_of_element_located((By.ID, "login")), "the login form again")

        d.find_element(By.NAME, "token").send_keys(admin)
        d.find_element(By.CSS_SELECTOR, "#login button").click()
        wait(d, ec.presence_of_element_located((By.ID, "create-domain")), "the admin's create form")
        out["admin_forged_post"] = post_status(d, "/console/domains", {"domain_name": "forged2.example.com", "csrf": "forged"})
    finally:
        d.quit()
    return out


def main():
    try:
        if len(sys.argv) == 7 and sys.argv[1] == "dev":
            result = dev(*sys.argv[2:])
        elif len(sys.argv) == 5 and sys.argv[1] == "tokens":
            result = tokens(*sys.argv[2:])
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
