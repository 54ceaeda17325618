#!/usr/bin/env python3
"""The README's console pictures, taken from a running demo server (`make demo` at a terminal
keeps it up and prints the keys). Needs `make setup` (selenium, Debian's chromium).

Usage: .tenantry/venv/bin/python scripts/console_screenshots.py BASE_URL ADMIN_KEY TENANT_KEY [OUT_DIR]
The upload picture uploads fixtures/docs/guide.md (and a copy of it cut short, which fails)
into the key's tenant.
Pictures are 1280 x 800; OUT_DIR defaults to docs/console. The committed ones were then reduced
to 64-colour palettes (Pillow's quantize), which keeps each under 40 KB."""
import os, sys, time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BASE, ADMIN, TENANT = sys.argv[1:4]
OUT = sys.argv[4] if len(sys.argv) > 4 else "docs/console"
os.makedirs(OUT, exist_ok=True)

opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,800", "--hide-scrollbars"):
    opts.add_argument(a)
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
wait = WebDriverWait(d, 60)


def find(css):
    return wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))


def sign_in(key):
    d.get(BASE + "/console#/signin")
    d.execute_script("sessionStorage.clear()")
    d.refresh()
    find("#key").send_keys(key)
    d.find_element(By.ID, "signin").click()
    find("nav a")


def page(route, ready, name, before=None):
    d.get(f"{BASE}/console#/{route}")
    d.refresh()
    find(ready)
    if before:
        before()
    time.sleep(0.5)
    d.save_screenshot(f"{OUT}/{name}.png")
    print(f"{OUT}/{name}.png")


try:
    sign_in(TENANT)
    page("documents", "tr[data-doc]", "documents")

    def upload():
        broken = os.path.abspath(os.path.join(OUT, "cut-short.pdf"))
        with open(broken, "wb") as f:
            f.write(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer")
        find("#files").send_keys(f"{os.path.abspath('fixtures/docs/guide.md')}\n{broken}")
        wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#upload-summary"), "of 2 succeeded"))
        os.remove(broken)
    page("upload", "#files", "upload", upload)
    page("jobs", "#jobs tr", "jobs")

    def search():
        find("#q").send_keys("How do I report a bug?")
        d.find_element(By.ID, "search").click()
        find("#results .hit")
    page("search", "#q", "search", search)

    def open_hit():
        search()
        find("#results .hit a.open-doc").click()
        find(".doc .chunk.target")
    page("search", "#q", "document", open_hit)

    def ask():
        find("#question").send_keys("Where can I report a bug in Debian?")
        d.find_element(By.ID, "ask").click()
        find("#citations .citation")
    page("answer", "#question", "answer", ask)
    page("threads", "#threads tr", "threads")
    page("usage", "svg.chart rect", "usage")

    sign_in(ADMIN)
    page("tenants", "#tenants tr[data-tenant]", "tenants")
    page("activity/15", "#activity tr", "activity")
    page("queue", "#recent tr", "queue")
    page("tenant/debian", "#limits", "tenant")
    page("reports", "#report-frame", "report")
finally:
    d.quit()
