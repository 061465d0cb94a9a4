"""Driving the web app and the browser demo in headless Chromium (Debian's
chromium and chromium-driver, through selenium): used by the browser
tests, app_screenshots.py and tools/analysis/browser_click_benchmark.py."""
import shutil
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys


def chromium_paths():
    """``(browser, driver)`` executables, or None when either is missing."""
    browser = shutil.which('chromium') or shutil.which('chromium-browser')
    driver = shutil.which('chromedriver')
    return (browser, driver) if browser and driver else None


def start_browser(width: int = 1280, height: int = 900):
    browser, driver = chromium_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in ('--headless=new', '--no-sandbox', '--disable-gpu',
                 '--disable-dev-shm-usage', f'--window-size={width},{height}'):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=opts)


def wait_until(condition, timeout: float = 60, what: str = 'the page'):
    """Poll ``condition()`` until it is truthy; its last value."""
    end = time.time() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # elements come and go while gradio re-renders
            value = None
        if value or time.time() > end:
            if not value:
                raise TimeoutError(f'Timed out after {timeout} s waiting for '
                                   f'{what}.')
            return value
        time.sleep(0.2)


def text_of(driver, elem_id: str) -> str:
    return driver.find_element(By.ID, elem_id).text


def upload(driver, elem_id: str, path: str) -> None:
    """Put a file into the upload component ``#elem_id``."""
    field = wait_until(
        lambda: driver.find_element(By.CSS_SELECTOR,
                                    f'#{elem_id} input[type=file]'),
        what=f'the upload field of #{elem_id}')
    field.send_keys(path)


def shown_image(driver, elem_id: str):
    """The ``<img>`` an image component displays, once it has one."""
    return wait_until(
        lambda: driver.find_element(By.CSS_SELECTOR, f'#{elem_id} img'),
        what=f'an image in #{elem_id}')


def click_image(driver, elem_id: str, x: float, y: float) -> None:
    """Click the displayed image at pixel (x, y) of the image itself."""
    img = shown_image(driver, elem_id)
    natural_w = driver.execute_script('return arguments[0].naturalWidth', img)
    natural_h = driver.execute_script('return arguments[0].naturalHeight', img)
    rect = img.rect
    dx = (x + 0.5) / natural_w * rect['width'] - rect['width'] / 2
    dy = (y + 0.5) / natural_h * rect['height'] - rect['height'] / 2
    ActionChains(driver).move_to_element_with_offset(
        img, round(dx), round(dy)).click().perform()


def open_tab(driver, label: str) -> None:
    buttons = driver.find_elements(By.CSS_SELECTOR, 'button[role=tab]')
    next(b for b in buttons if b.text.strip() == label).click()


def open_tab_when_ready(driver, label: str) -> None:
    """Open tab ``label`` once the page has drawn its tabs."""
    wait_until(lambda: open_tab(driver, label) is None, what='the tabs')


def pick_slider_value(driver, elem_id: str, value) -> None:
    """Type ``value`` into slider ``#elem_id``'s number box (what a user
    does for an exact value)."""
    field = wait_until(
        lambda: driver.find_element(By.CSS_SELECTOR,
                                    f'#{elem_id} input[type=number]'),
        what=f'the number box of #{elem_id}')
    field.clear()
    field.send_keys(str(value), Keys.TAB)


def show_video_at(driver, elem_id: str, seconds: float) -> None:
    """Show the frame at ``seconds`` of video component ``#elem_id``."""
    driver.execute_script(
        'document.querySelector(arguments[0]).currentTime = arguments[1];',
        f'#{elem_id} video', seconds)


# ----------------------------------------------------------------------
# the web demo (demo/web_server.py + demo/web/): the browser test and
# tools/analysis/browser_click_benchmark.py
# ----------------------------------------------------------------------
def serve_web_demo(args, log_path: str, env=None, timeout: float = 600):
    """Start ``demo/web_server.py ARGS`` (with ``--port`` among them) as
    a subprocess, its output in ``log_path``; ``(process, url)`` once it
    serves. A server that exits first raises RuntimeError with its log."""
    import os.path as osp
    import re
    import subprocess
    import sys
    repo = osp.dirname(osp.dirname(osp.abspath(__file__)))
    log = open(log_path, 'w')
    proc = subprocess.Popen(
        [sys.executable, osp.join('demo', 'web_server.py')] + list(args),
        cwd=repo,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT)
    log.close()

    def url():
        if proc.poll() is not None:
            return 'exited'
        with open(log_path) as f:
            found = re.search(r'Serving .* on (http://\S+)', f.read())
        return found and found.group(1)

    try:
        found = wait_until(url, timeout, 'the web demo server')
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if found == 'exited':
        with open(log_path) as f:
            raise RuntimeError('The web demo server exited with status '
                               f'{proc.returncode}:\n{f.read()}')
    return proc, found


def page_data(driver, key: str):
    """``document.body.dataset[key]``: the web demo's state (``ready``,
    ``busy``, ``masks``, ``image``)."""
    return driver.execute_script('return document.body.dataset[arguments[0]]',
                                 key)


def wait_web_idle(driver, timeout: float = 120, what: str = 'the page'):
    """Wait until the web demo has started and is not encoding or
    decoding."""
    wait_until(
        lambda: page_data(driver, 'ready') == 'yes' and page_data(
            driver, 'busy') == 'no', timeout, what)


def open_in_web_demo(driver, path: str, timeout: float = 120) -> None:
    """Open an image file in the web demo, as its "Open image" button
    does, and wait until it is encoded (or refused)."""
    driver.find_element(By.ID, 'file-input').send_keys(path)
    time.sleep(0.1)  # the change event sets the page busy
    wait_web_idle(driver, timeout, f'{path} to be encoded')


def add_web_prompt(driver, prompt: dict, timeout: float = 120):
    """Decode one prompt (``{'kind': 'click', 'x': .., 'y': ..}`` or
    ``{'kind': 'box', 'box': [x1, y1, x2, y2]}``, original pixels) in the
    page, as a mouse click or drag does; its ``decodeMs`` (measured in the
    page), ``postMs`` and ``iou``, or None when the page refused it."""
    driver.set_script_timeout(timeout)
    return driver.execute_async_script(
        'const done = arguments[arguments.length - 1];'
        'window.rapSam.addPrompt(arguments[0]).then(done);', prompt)
