#!/usr/bin/env python3
"""The web console in a real headless browser (Debian's chromium and chromedriver, Python's
selenium from PyPI), against a running `tenantry serve`. Run by tests/it/console.rs.

Usage: console.py BASE_URL ADMIN_KEY SCREENSHOT_DIR PDF MARKDOWN
Exits non-zero (with the reason) on the first failed check."""
import json, os, sys, time, urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BASE, ADMIN, SHOTS, PDF, MD = sys.argv[1:6]
XSS = "<img src=x onerror=alert(1)>"


def api(method, path, key, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=120) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


class Console:
    def __init__(self, driver):
        self.d = driver
        self.wait = WebDriverWait(driver, 60)

    def shot(self, name):
        os.makedirs(SHOTS, exist_ok=True)
        self.d.save_screenshot(os.path.join(SHOTS, f"{name}.png"))

    def find(self, css):
        try:
            return self.wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))
        except TimeoutException:
            self.shot("failure")
            body = self.d.find_element(By.TAG_NAME, "body").text
            sys.exit(f"timed out waiting for {css}; the page says:\n{body}")

    def text_in(self, css, text):
        try:
            self.wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))
        except TimeoutException:
            self.shot("failure")
            body = self.d.find_element(By.TAG_NAME, "body").text
            sys.exit(f"timed out waiting for {text!r} in {css}; the page says:\n{body}")

    def sign_in(self, key):
        self.d.get(BASE + "/console#/signin")
        self.find("#key").send_keys(key)
        self.d.find_element(By.ID, "signin").click()
        self.text_in("#who", "tenant" if not key == ADMIN else "operator")

    def sign_out(self):
        self.d.find_element(By.ID, "signout").click()
        self.find("#key")

    def go(self, page):
        self.d.get(f"{BASE}/console#/{page}")
        self.d.refresh()

    def check(self, cond, msg):
        if not cond:
            self.shot("failure")
            sys.exit(msg)


def no_sideways_scroll(c, what):
    over = c.d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    c.check(over <= 1, f"{what} scrolls sideways by {over} px at phone width")


def main():
    alpha = api("POST", "/v1/tenants", ADMIN, {"id": "alpha"})["api_key"]
    beta = api("POST", "/v1/tenants", ADMIN, {"id": "beta"})["api_key"]
    # Untrusted tenant data in every place the console renders it.
    api("POST", "/v1/documents?wait=true", alpha, {"id": "xss", "title": XSS,
        "text": "The quokka ledger is kept in cabinet seven. " + XSS})
    os.makedirs(SHOTS, exist_ok=True)
    for old in os.listdir(SHOTS):
        if old.endswith(".png"):
            os.remove(os.path.join(SHOTS, old))
    broken = os.path.join(SHOTS, "broken.pdf")
    with open(broken, "wb") as f:
        f.write(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer garbage")

    c = Console(browser())
    try:
        c.d.get(BASE + "/console")
        c.find("#key")
        c.shot("01-sign-in")

        c.sign_in(alpha)
        c.text_in("main", "Documents")
        title = c.find('tr[data-doc="xss"] td.title')
        c.check(title.text == XSS, f"the XSS title renders as {title.text!r}")
        c.check(not c.d.find_elements(By.CSS_SELECTOR, "main img"), "an <img> from tenant data was created")
        c.check("1970" not in c.d.find_element(By.TAG_NAME, "main").text, "a timestamp was read as milliseconds")
        c.shot("02-documents")

        c.go("upload")
        c.find("#files").send_keys(f"{os.path.abspath(PDF)}\n{os.path.abspath(MD)}\n{os.path.abspath(broken)}")
        c.text_in("#upload-summary", "2 of 3 succeeded")
        c.text_in("#main", "pdf_corrupt")
        c.shot("03-upload")

        # Jobs: each upload's outcome, the failure with its stable code, and the outcome bars.
        c.go("jobs")
        c.find('#jobs tr[data-status="failed"]')
        c.check(len(c.d.find_elements(By.CSS_SELECTOR, '#jobs tr[data-status="succeeded"]')) >= 3, "fewer than 3 succeeded jobs")
        c.text_in('#jobs tr[data-status="failed"]', "pdf_corrupt")
        bars = {b.get_attribute("data-key"): int(b.get_attribute("data-value")) for b in c.d.find_elements(By.CSS_SELECTOR, "#outcomes rect")}
        c.check(bars.get("failed: pdf_corrupt") == 1 and bars.get("succeeded", 0) >= 3, f"outcome bars: {bars}")
        c.shot("04-jobs")

        c.go("search")
        c.find("#q").send_keys("quokka ledger cabinet")
        c.d.find_element(By.ID, "search").click()
        c.find("#results .hit")
        hit = c.d.find_elements(By.CSS_SELECTOR, "#results .hit")[0]
        c.check(hit.find_elements(By.CSS_SELECTOR, "mark"), "the snippet has no highlighted term")
        c.check(not c.d.find_elements(By.CSS_SELECTOR, "main img"), "a snippet created an <img>")
        hit.find_element(By.CSS_SELECTOR, "summary").click()
        c.shot("05-search")
        # The hit opens its document at the chunk, in reading order, the chunk marked.
        hit.find_element(By.CSS_SELECTOR, "a.open-doc").click()
        c.text_in(".doc .chunk.target", "quokka ledger")
        c.shot("05b-document-at-chunk")
        c.go("search")
        c.find("#q").send_keys("Vatnajokull glacier outburst floods")
        c.d.find_element(By.ID, "search").click()
        link = c.find('#results .hit a.open-doc')
        c.check("page" in link.text, f"a PDF hit's link says {link.text!r}")
        link.click()
        c.find(".doc .page-mark")
        c.find(".doc .chunk.target")

        c.go("answer")
        c.find("#question").send_keys("How do I check that the install is healthy?")
        c.find("#thread").send_keys("setup")
        c.d.find_element(By.ID, "ask").click()
        c.find("#citations .citation")
        c.check("healthz" in c.find("#answer-text").text, "the answer does not say how")
        c.shot("06-answer")
        q = c.find("#question")
        q.clear()
        c.find("#thread").clear()
        q.send_keys("What is the boiling point of tungsten in kelvin?")
        c.d.find_element(By.ID, "ask").click()
        c.find("#refusal")
        c.shot("07-refusal")

        # The thread begun above, and its turn.
        c.go("threads")
        c.find('#threads tr[data-thread="setup"] a').click()
        c.text_in("main", "How do I check that the install is healthy?")
        c.text_in("main", "healthz")
        c.shot("08-thread")

        c.go("usage")
        c.find("svg.chart rect")
        c.shot("09-usage")
        c.sign_out()

        # Another tenant sees none of alpha's data.
        c.sign_in(beta)
        c.text_in("main", "No documents yet")
        c.go("search")
        c.find("#q").send_keys("quokka ledger cabinet")
        c.d.find_element(By.ID, "search").click()
        c.text_in("#results", "No results")
        c.check("cabinet seven" not in c.d.find_element(By.TAG_NAME, "body").text, "beta saw alpha's text")
        c.go("jobs")
        c.text_in("main", "No jobs yet")
        c.go("threads")
        c.text_in("main", "No threads yet")
        c.shot("10-other-tenant")
        c.sign_out()

        # The operator sees both tenants with their usage.
        c.sign_in(ADMIN)
        row = c.find('tr[data-tenant="alpha"]')
        c.find('tr[data-tenant="beta"]')
        queries = int(row.find_element(By.CSS_SELECTOR, "td.queries").text or 0)
        c.check(queries >= 2, f"alpha's queries in the last 30 days: {queries}")
        c.shot("11-operator-tenants")

        # Latency and errors per tenant over the last minutes, drawn from the server's metrics.
        c.go("activity")
        row = c.find('#activity tr[data-tenant="alpha"]')
        c.check(int(row.find_element(By.CSS_SELECTOR, "td.queries").text) >= 1, "alpha's queries are missing")
        c.find('#activity tr[data-tenant="beta"]')
        p99 = c.find('section[data-tenant="alpha"] g[data-series="p99"]')
        c.check(int(p99.get_attribute("data-points")) >= 1, "alpha's p99 line has no point")
        c.shot("12-operator-activity")

        # The shared ingestion queue: every tenant's jobs and their outcomes.
        c.go("queue")
        c.find('#recent tr[data-status="failed"]')
        c.text_in("#recent", "alpha")
        c.find('#outcomes rect[data-key="failed: pdf_corrupt"]')
        c.shot("13-operator-queue")

        # A tenant's page: its limits can be set, and its charts.
        c.go("tenant/alpha")
        burst = c.find("#limit-query_burst")
        burst.clear()
        burst.send_keys("37")
        c.d.find_element(By.ID, "save-limits").click()
        c.find("#limits-saved")
        lim = api("GET", "/v1/tenants/alpha/limits", ADMIN)
        c.check(lim["overrides"].get("query_burst") == 37, f"limits after saving: {lim}")
        c.find('g[data-series="p50"]')
        c.shot("14-operator-tenant")

        # The last report, shown in a sandboxed frame with its chart and data.
        c.go("reports")
        c.find('#reports tr[data-report="eval-sample.html"]')
        frame = c.find("#report-frame")
        c.check(frame.get_attribute("sandbox") == "", f"the report frame's sandbox: {frame.get_attribute('sandbox')!r}")
        c.d.switch_to.frame(frame)
        values = sorted(float(b.get_attribute("data-value")) for b in c.d.find_elements(By.CSS_SELECTOR, "svg rect[data-value]"))
        c.d.switch_to.default_content()
        c.check(values == [0.86, 0.87], f"the report's bars: {values}")
        c.shot("15-operator-report")

        # Phone width: the pages reflow instead of scrolling sideways (wide tables scroll in
        # their own box).
        c.d.set_window_size(390, 844)
        c.go("activity")
        c.find('#activity tr[data-tenant="alpha"]')
        no_sideways_scroll(c, "the activity page")
        c.shot("16-phone-activity")
        c.sign_out()
        c.sign_in(alpha)
        c.find('tr[data-doc="xss"]')
        no_sideways_scroll(c, "the documents page")
        c.shot("17-phone-documents")
        c.go("answer")
        c.find("#question")
        no_sideways_scroll(c, "the answer page")

        # Nothing was blocked by the Content-Security-Policy and nothing failed in a script.
        errors = [e for e in c.d.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
        c.check(not errors, f"browser errors: {errors}")
        # The key is kept in the tab only: no cookie, nothing in the URL.
        c.check(not c.d.get_cookies(), f"cookies: {c.d.get_cookies()}")
        c.check(ADMIN not in c.d.current_url, "the key is in the URL")
    finally:
        c.d.quit()
    print("console: every check passed")


if __name__ == "__main__":
    main()
