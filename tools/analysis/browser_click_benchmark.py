"""Decode time per click of the browser demo, measured in headless Chromium.

    python tools/analysis/browser_click_benchmark.py \
        [--weights CKPT | --export DIR] [--scale 864 512 1333 800] \
        [--threads 1 2] [--graph-opt all basic] [--clicks 30] \
        [--image demo/demo.jpg] [--screenshot assets/web_demo.png \
        [--overwrite]]

For each scale, demo/web_server.py is started (a subprocess, as a user
starts it) and the page opened in headless Chromium (Debian's chromium and
chromedriver, demo/browser.py); the image is encoded once, then --clicks
clicks at seeded random pixels are decoded by the page itself
(onnxruntime-web, wasm) for each --threads (its ``?threads=N``) and
--graph-opt (its session's graphOptimizationLevel, ``?opt=``), after
--warmup clicks that are not counted. Printed per row: the median and 90th
percentile of the decode time (``session.run``, measured with
performance.now() in the page) and of the mask's upsampling to the image
(the model's post-processing, in JavaScript). Without --weights the server
runs random weights (their time is the trained model's) with its export in
a temporary folder. --screenshot saves the page with a few masks drawn
(an existing file is replaced only with --overwrite). Everything it needs
(the files named, Chromium and chromedriver, onnxruntime-web) is checked
before the browser starts; what is missing is said in one line.
"""
import argparse
import itertools
import os
import os.path as osp
import runpy
import socket
import sys
import tempfile

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'demo'))

#: onnxruntime-web, which the page decodes with (demo/web_server.py's).
ORT_DIR = osp.join(ROOT, 'demo', 'web', 'node_modules', 'onnxruntime-web',
                   'dist')

# By its path (importing rap_sam would import torch before --help); run as
# a program, a Ctrl+C or SIGTERM from here on is one line.
CLI = runpy.run_path(
    osp.join(ROOT, 'rap_sam', 'utils', 'arg_types.py'), run_name=__name__)
add_trust_checkpoint = CLI['add_trust_checkpoint']
positive_int = CLI['positive_int']
non_negative_int = CLI['non_negative_int']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--weights', default=None)
    add_trust_checkpoint(parser)
    parser.add_argument(
        '--export',
        default=None,
        help='an export folder instead (its own scale: no --scale)')
    parser.add_argument(
        '--scale',
        type=positive_int,
        nargs='+',
        default=None,
        help='W H pairs (default: the server default, 864 512)')
    parser.add_argument(
        '--threads',
        type=positive_int,
        nargs='+',
        default=[1],
        help="onnxruntime-web's threads in the page (1 = the default on a "
        '2-core machine)')
    parser.add_argument(
        '--graph-opt',
        nargs='+',
        default=['all'],
        choices=('disabled', 'basic', 'extended', 'all'),
        help="onnxruntime-web's graphOptimizationLevel (default all)")
    parser.add_argument('--clicks', type=positive_int, default=30)
    parser.add_argument('--warmup', type=non_negative_int, default=3)
    parser.add_argument('--image', default=osp.join(ROOT, 'demo', 'demo.jpg'))
    parser.add_argument('--screenshot', default=None)
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace an existing --screenshot (without it the tool '
        'refuses to)')
    args = parser.parse_args(argv)
    if args.export:
        if args.scale or args.weights:
            parser.error('--export runs at the scale and with the weights '
                         'it was exported with: leave out --scale and '
                         '--weights')
        args.scale = [None, None]  # the export's
    elif args.scale is None:
        args.scale = [864, 512]
    elif len(args.scale) % 2:
        parser.error('--scale takes W H pairs')
    return args


if __name__ == '__main__':
    # Before the imports below (torch, mmdet: seconds): --help and a usage
    # error answer at once.
    parse_args()

import numpy as np

from rap_sam.utils.output_files import (atomic_output, check_outputs,
                                        make_out_dir)
from rap_sam.utils.user_errors import UserError, cli_errors


def check_inputs(args) -> None:
    """Refuse, before Chromium or a server starts, what would fail later:
    the files named, where the screenshot goes, what the page needs."""
    from rap_sam.apis import read_image
    if args.weights and not osp.isfile(args.weights):
        raise UserError(f'Checkpoint file not found: {args.weights}.')
    if args.export and not osp.isdir(args.export):
        raise UserError(f'--export {args.export} is not a folder: give the '
                        'folder tools/deploy/export.py wrote.')
    # The server runs from the repository root.
    for name in ('weights', 'export'):
        if getattr(args, name):
            setattr(args, name, osp.abspath(getattr(args, name)))
    read_image(args.image)
    # The page's file input takes absolute paths only.
    args.image = osp.abspath(args.image)
    if args.screenshot:
        if osp.isdir(args.screenshot):
            raise UserError(f'--screenshot {args.screenshot} is a folder: '
                            'give a file name (.png).')
        make_out_dir(osp.dirname(osp.abspath(args.screenshot)))
        check_outputs([args.screenshot], [args.image], args.overwrite)
    if not osp.isdir(ORT_DIR):
        raise UserError('onnxruntime-web is not installed, and the page '
                        'decodes with it: run `make web-deps` (npm ci in '
                        'demo/web).')
    try:
        from browser import chromium_paths
    except ImportError as err:
        raise UserError(f'Cannot drive a browser: {err} (install the '
                        "project's requirements: make env).")
    if chromium_paths() is None:
        raise UserError('chromium / chromedriver not found: install them '
                        '(apt-get install chromium chromium-driver).')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def measure(driver, url, image, threads, opt, clicks, warmup, rng):
    from browser import add_web_prompt, open_in_web_demo, wait_web_idle
    driver.get(f'{url}/?threads={threads}&opt={opt}')
    wait_web_idle(driver, 300, 'the prompt decoder to load')
    open_in_web_demo(driver, image, 300)
    width, height = driver.execute_script(
        'const c = document.getElementById("mask-canvas");'
        'return [c.width, c.height];')
    runs = []
    for i in range(warmup + clicks):
        x, y = int(rng.integers(width)), int(rng.integers(height))
        result = add_web_prompt(driver, dict(kind='click', x=x, y=y), 300)
        if result is None:
            message = driver.find_element('id', 'message').text
            raise UserError(f'The page refused a click: {message}')
        if i >= warmup:
            runs.append((result['decodeMs'], result['postMs']))
        # One mask on the page at a time: drawing many would be timed too.
        driver.execute_script('document.getElementById("undo-button")'
                              '.click()')
    return np.array(runs), (
        width,
        height), driver.execute_script('return window.rapSam.numThreads()')


def screenshot(driver, url, image, path, rng):
    from browser import add_web_prompt, open_in_web_demo, wait_web_idle
    driver.get(url)
    wait_web_idle(driver, 300)
    open_in_web_demo(driver, image, 300)
    width, height = driver.execute_script(
        'const c = document.getElementById("mask-canvas");'
        'return [c.width, c.height];')
    add_web_prompt(driver, dict(kind='click', x=width // 4, y=height // 2))
    add_web_prompt(
        driver,
        dict(
            kind='box',
            box=[width // 2, height // 4, width * 9 // 10, height * 3 // 4]))
    # 256 colours: a third of the bytes, for the README.
    from PIL import Image
    with atomic_output(path) as tmp:
        driver.save_screenshot(tmp)
        with Image.open(tmp) as shot:
            small = shot.convert('RGB').quantize(256)
        small.save(tmp, optimize=True)


def main(argv=None):
    args = parse_args(argv)
    with cli_errors():
        check_inputs(args)
        benchmark(args)


def benchmark(args) -> None:
    from browser import serve_web_demo, start_browser
    rng = np.random.default_rng(0)
    tmp = tempfile.TemporaryDirectory()
    env = dict(os.environ)
    if args.weights is None:
        env['RAP_SAM_EXPORT_CACHE'] = osp.join(tmp.name, 'cache')
    try:
        driver = start_browser(1200, 780)
    except Exception as err:  # selenium's, with the driver's log after
        tmp.cleanup()
        first = (getattr(err, 'msg', None) or str(err)).strip()
        raise UserError('Chromium did not start: '
                        f'{first.splitlines()[0] if first else err!r}')
    # A shared machine's other jobs slow every figure: say how busy it was.
    print('load average before: %.1f' % os.getloadavg()[0])
    print(
        f'{"scale":>10} {"image":>9} {"threads":>7} {"decode ms median":>16} '
        f'{"p90":>6} {"upsample ms median":>18} {"p90":>6} {"graph opt":>9}')
    try:
        pairs = list(zip(args.scale[0::2], args.scale[1::2]))
        for n, (w, h) in enumerate(pairs):
            port = _free_port()
            server_args = ['--port', str(port)]
            if args.export:
                server_args += ['--export', args.export]
            else:
                server_args += ['--scale', str(w), str(h)]
            if args.weights:
                server_args += ['--weights', args.weights]
            if args.trust_checkpoint:
                server_args.append('--trust-checkpoint')
            log = osp.join(tmp.name, f'server{n}.log')
            try:
                proc, url = serve_web_demo(server_args, log, env)
            except RuntimeError as err:
                # The server's own `error:` line says what to fix (a
                # missing checkpoint, class embeddings, ...).
                said = [
                    line[len('error:'):].strip()
                    for line in str(err).splitlines()
                    if line.startswith('error:')
                ]
                raise UserError(said[-1] if said else str(err))
            try:
                for threads, opt in itertools.product(args.threads,
                                                      args.graph_opt):
                    runs, size, used = measure(driver, url, args.image,
                                               threads, opt, args.clicks,
                                               args.warmup, rng)
                    dec, post = runs[:, 0], runs[:, 1]
                    if args.export:
                        w, h = driver.execute_script(
                            'return window.rapSam.scale()')
                    print(
                        f'{w:>5}x{h:<4} {size[0]:>4}x{size[1]:<4} '
                        f'{used:>7} {np.median(dec):>16.1f} '
                        f'{np.percentile(dec, 90):>6.1f} '
                        f'{np.median(post):>18.1f} '
                        f'{np.percentile(post, 90):>6.1f} {opt:>9}',
                        flush=True)
                if args.screenshot and n == 0:
                    screenshot(driver, url, args.image, args.screenshot, rng)
                    print(f'screenshot: {args.screenshot}')
            finally:
                proc.kill()
                proc.wait()
    except TimeoutError as err:
        raise UserError(f'{err} (the page did not answer: run the server, '
                        'demo/web_server.py, by hand and open it to see '
                        'why).')
    finally:
        try:
            driver.quit()
        except Exception:  # noqa: BLE001
            pass  # on Ctrl+C, chromedriver has had the signal too
        tmp.cleanup()
    print('load average after: %.1f' % os.getloadavg()[0])


if __name__ == '__main__':
    main()
