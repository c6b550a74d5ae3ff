"""The rendered book, tested like a web page: headless Chromium over a localhost server."""
import functools
import http.server
import threading
from urllib.parse import unquote, urldefrag, urljoin, urlparse

import pytest

from diaropt.core.constants import REPO_ROOT

pytestmark = pytest.mark.browser
HTML = REPO_ROOT / "_build" / "html"
SHOTS = REPO_ROOT / "_build" / "screenshots"


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").exists():
        pytest.fail("no built book: run `make book` (or `python -m diaropt.book build`) first")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def book_pages():
    return sorted(str(p.relative_to(HTML)) for p in HTML.rglob("*.html")
                  if not p.name.startswith(("genindex", "search")) and "_static" not in p.parts
                  and "mathjax" not in p.parts)


def test_every_page_renders_with_working_links_images_and_no_errors(server, browser):
    pages = book_pages()
    assert {"index.html", "notebooks/00_baseline.html", "book/status.html"} <= set(pages)
    problems = []
    for page in pages:
        url = urljoin(server, page)
        browser.get(url)
        for href in browser.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"):
            target, _ = urldefrag(href)
            if target.startswith(server):
                path = HTML / unquote(urlparse(target).path).lstrip("/")
                if path.is_dir():
                    path = path / "index.html"
                if not path.exists():
                    problems.append(f"{page}: broken link {href}")
        broken = browser.execute_script(
            "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        problems += [f"{page}: image did not load {src}" for src in broken]
        errors = browser.execute_script(
            "return Array.from(document.querySelectorAll('.output.error, .output.traceback')).length")
        if errors:
            problems.append(f"{page}: {errors} error output cells")
        remote = browser.execute_script(
            "return Array.from(document.querySelectorAll('script[src], link[rel=stylesheet]'))"
            ".map(e => e.src || e.href).filter(u => !u.startsWith(location.origin))")
        problems += [f"{page}: loads a remote resource {u}" for u in remote]
    assert not problems, "\n".join(problems)


def test_benchmark_tables_hold_numbers_and_glue_resolved(server, browser):
    browser.get(urljoin(server, "notebooks/00_baseline.html"))
    text = browser.find_element("tag name", "body").text
    assert "DER strict" in text
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('table.dataframe td')).map(td => td.innerText)")
    numeric = [c for c in cells if c.replace(".", "", 1).replace("-", "", 1).isdigit()]
    assert len(numeric) >= 20, cells[:40]
    pasted = browser.execute_script(
        "return Array.from(document.querySelectorAll('.pasted-text')).map(e => e.innerText)")
    assert len(pasted) >= 10 and all(p.strip() for p in pasted)
    assert any(ch.isdigit() for ch in "".join(pasted))


def test_screenshots(server, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    for page, name in [("index.html", "index.png"), ("notebooks/00_baseline.html", "baseline.png")]:
        browser.get(urljoin(server, page))
        assert browser.save_screenshot(str(SHOTS / name))
        assert (SHOTS / name).stat().st_size > 10_000
