"""Shared builders for the tests."""
import contextlib
import importlib.util
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time
from typing import Optional

import torch
from mmdet.registry import MODELS
from mmengine.config import Config

import rap_sam  # noqa: F401  (registers modules)
# The tests' weights and batches, shared with the benchmark.
from rap_sam.testing import image_batch, randomize_, video_batch  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

# A tiny OpenCLIP architecture (timm ConvNeXt-atto image tower, 2-layer text
# tower) for tests that need CLIP without its weights.
TINY_CLIP_CFG = dict(
    embed_dim=32,
    vision_cfg=dict(
        timm_model_name='convnext_atto',
        timm_pool='',
        timm_proj='mlp',
        image_size=64),
    text_cfg=dict(
        context_length=77, vocab_size=49408, width=64, heads=2, layers=2))


def tiny_clip_checkpoint(folder, seed: int = 0, name: str = 'tiny_clip.pth'):
    """A seeded tiny OpenCLIP (:data:`TINY_CLIP_CFG`) and the path of its
    state dict saved in ``folder``: ``(model, path)``."""
    from rap_sam.utils.openclip_loader import build_clip_model
    torch.manual_seed(seed)
    model = build_clip_model('tiny_clip', TINY_CLIP_CFG)
    path = osp.join(str(folder), name)
    torch.save(model.state_dict(), path)
    return model, path


def random_class_embeddings(num_classes, num_synonyms=3, dim=768, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(num_classes, num_synonyms, dim, generator=g)
    return emb / emb.norm(dim=-1, keepdim=True)


@contextlib.contextmanager
def torch_threads(num: int):
    """PyTorch's intra-op threads set to ``num`` for the body."""
    before = torch.get_num_threads()
    torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def config_path(name: str) -> str:
    return osp.join(REPO, 'configs', name)


def load_config(name: str) -> Config:
    cfg = Config.fromfile(config_path(name))
    # No pretrained ResNet download: weights are seeded or loaded.
    cfg.model.backbone.init_cfg = None
    return cfg


def build_model(name: str = 'rap_sam/eval_rap_sam_coco.py', seed: int = 0):
    cfg = load_config(name)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    randomize_(model, seed)
    return model.eval()


def load_tool(path: str):
    """A script of the repository (``tools/toy_train_eval.py``) as a module:
    tools/ is not a package."""
    name = osp.splitext(path)[0].replace('/', '_')
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def toy_checkpoint(root, name: str, seed: int = 0):
    """A toy config's model (``name`` under configs/) with seeded random
    weights, saved as ROOT/toy.pth beside the toy class embeddings it reads,
    ROOT/embd (tools/toy_train_eval.py's); returns the model (eval mode).
    Tools take them with ``--cfg-options
    model.panoptic_head.ov_classifier_dir=ROOT/embd``."""
    embd = osp.join(root, 'embd')
    load_tool('tools/toy_train_eval.py').write_toy_class_embeddings(embd)
    cfg = load_config(name)
    cfg.model.panoptic_head.ov_classifier_dir = embd
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    randomize_(model, seed)
    torch.save({'state_dict': model.state_dict()}, osp.join(root, 'toy.pth'))
    return model.eval()


def random_image(h, w, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------
# deformable convolutions (tests/test_ops)
# ----------------------------------------------------------------------
def assert_rel_close(actual, expected, rel=1e-5):
    """Max error within ``rel`` of the expected tensor's largest value."""
    assert actual.shape == expected.shape
    scale = expected.abs().max().clamp(min=1e-6)
    err = (actual - expected).abs().max()
    assert err <= rel * scale, f'max error {err:.3g}, scale {scale:.3g}'


def seeded_deform_conv(cin, cout, k, stride, padding, dilation, groups, dg,
                       bias, seed):
    """mmcv's ModulatedDeformConv2d (the reference kernel) with seeded
    N(0, 1) weights."""
    from mmcv.ops import ModulatedDeformConv2d
    torch.manual_seed(seed)
    conv = ModulatedDeformConv2d(
        cin,
        cout,
        k,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        deform_groups=dg,
        bias=bias)
    with torch.no_grad():
        conv.weight.normal_()
        if bias:
            conv.bias.normal_()
    return conv


def conv_out_size(size, k, s, p, d):
    return (size + 2 * p - (d * (k - 1) + 1)) // s + 1


# ----------------------------------------------------------------------
# command-line tools and demos, and their refusing bad input
# (tests/test_demo, tests/test_tools, tests/test_training)
# ----------------------------------------------------------------------
def run_script(path: str,
               *args,
               env: Optional[dict] = None,
               timeout: float = 600,
               cwd: Optional[str] = None) -> subprocess.CompletedProcess:
    """``python PATH ARGS...`` as the README runs it: this interpreter, from
    the repository root (or from ``cwd``, ``PATH`` still under the
    repository), stdout and stderr captured as text. A ``.sh`` script
    runs under ``bash``, ``PYTHON`` naming this interpreter (the variable
    tools/dist_launch.sh runs Python with).

    ``args`` are made strings (paths, numbers); ``env`` holds variables set
    over this process's environment, a value of ``None`` removing one
    (``DISPLAY=None``: no display).
    """
    base = dict(os.environ)
    if cwd is not None:
        path = osp.join(REPO, path)
    if path.endswith('.sh'):
        command = ['bash', path]
        base['PYTHON'] = sys.executable
    else:
        command = [sys.executable, path]
    for name, value in (env or {}).items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = str(value)
    return subprocess.run(
        command + [str(a) for a in args],
        cwd=REPO if cwd is None else cwd,
        env=base,
        capture_output=True,
        text=True,
        timeout=timeout)


#: The line a tool ends with when its stdout is closed early.
STDOUT_CLOSED = ('error: stdout was closed before the run ended (the '
                 'command reading it, such as head, exited): stopped; '
                 'redirect stdout to a file to keep all it prints.')


def run_with_closed_stdout(path: str, *args) -> subprocess.CompletedProcess:
    """``python PATH ARGS...`` from the repository root, its stdout a pipe
    whose reading end is already closed (every write fails with EPIPE, as
    after ``| head -1`` has its line), stderr captured as text."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, path] + [str(a) for a in args],
            cwd=REPO,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=600)
    finally:
        os.close(write_end)


def start_in_terminal(path: str, *args) -> subprocess.Popen:
    """``python PATH ARGS...`` started as a terminal starts a command: the
    leader of its own process group (so ``os.killpg(proc.pid, SIGINT)`` is
    a Ctrl+C), from the repository root, stdout and stderr piped as
    text."""
    return subprocess.Popen(
        [sys.executable, path] + [str(a) for a in args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True)


def _exit_and_stderr(result) -> str:
    return (f'exit status {result.returncode}, stderr:\n'
            f'{result.stderr[-4000:]}')


def assert_ran(result) -> str:
    """A command that did its work: exit status 0 and no traceback on
    stderr (a warning's or a worker's would say something went wrong);
    its stdout is returned for further checks."""
    shown = _exit_and_stderr(result)
    assert result.returncode == 0, 'exit status is not 0; ' + shown
    assert 'Traceback' not in result.stderr, 'a traceback; ' + shown
    return result.stdout


def assert_user_error(result, *fragments: str) -> str:
    """The line of a command that refused its input as the tools do
    (``rap_sam.utils.user_errors.cli_errors``): exit status 2, no traceback,
    and stderr nothing but one line ``error: ...`` holding each of
    ``fragments``; that line is returned for further checks.

    ``result`` is a ``subprocess.CompletedProcess`` run with ``text=True``,
    or anything with its ``returncode`` and ``stderr``.
    """
    shown = _exit_and_stderr(result)
    assert result.returncode == 2, 'exit status is not 2; ' + shown
    assert 'Traceback' not in result.stderr, 'a traceback; ' + shown
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), (
        'stderr is not one `error: ` line; ' + shown)
    missing = [f for f in fragments if f not in lines[0]]
    assert not missing, f'{missing} not in the error line; {shown}'
    return lines[0]


def assert_usage_error(result, *fragments: str) -> str:
    """The same for a command line argparse refuses: exit status 2, no
    traceback, and stderr argparse's usage text (its first line
    ``usage: ...``, the others indented) then one ``PROG: error: ...`` line
    holding each of ``fragments``; that line is returned."""
    shown = _exit_and_stderr(result)
    assert result.returncode == 2, 'exit status is not 2; ' + shown
    assert 'Traceback' not in result.stderr, 'a traceback; ' + shown
    lines = result.stderr.splitlines()
    usage_then_error = (
        len(lines) >= 2 and lines[0].startswith('usage: ')
        and all(line.startswith(' ') for line in lines[1:-1])
        and re.match(r'\S+: error: ', lines[-1]))
    assert usage_then_error, (
        'stderr is not the usage then one `PROG: error: ` line; ' + shown)
    last = lines[-1]
    missing = [f for f in fragments if f not in last]
    assert not missing, f'{missing} not in the error line; {shown}'
    return last


def run_logging_imports(script: str, *args):
    """:func:`run_script` with Python's import log on (what ``-X
    importtime`` turns on): the result, its stderr without the log, and the
    top-level names of the modules the run imported."""
    result = run_script(script, *args, env=dict(PYTHONPROFILEIMPORTTIME=1))
    lines = result.stderr.splitlines(keepends=True)
    log = [line for line in lines if line.startswith('import time:')]
    # The log's first line is its header: "self [us] | cumulative | ...".
    assert log and 'imported package' in log[0], result.stderr[-2000:]
    result.stderr = ''.join(line for line in lines if line not in log)
    imported = {line.rsplit('|', 1)[1].strip() for line in log[1:]}
    return result, {name.split('.')[0] for name in imported}


#: Every tool's command line that runs past its imports (split at spaces;
#: ``{tmp}`` a folder the test gives), for the start-up tests.
TOOL_STARTS = [
    ('tools/train.py', 'configs/rap_sam/toy_rap_sam_train.py --work-dir '
     '{tmp}/train'),
    ('tools/test.py', 'cfg.py ckpt.pth --work-dir {tmp}/test'),
    ('tools/gen_cls.py', 'cfg.py --out {tmp}/cls.pth'),
    ('tools/dist_run.py', '--nproc-per-node 1 tools/test.py'),
    ('tools/deploy/export.py', 'configs/rap_sam/eval_rap_sam_coco.py --out '
     '{tmp}/export'),
    ('tools/make_toy_data.py', '{tmp}/toy'),
    ('tools/toy_train_eval.py', '--root {tmp}/toy'),
    ('tools/analysis/benchmark.py', 'configs/rap_sam/eval_rap_sam_coco.py'),
    ('tools/analysis/postprocess_benchmark.py', ''),
    ('tools/analysis/api_memory.py', 'image'),
    ('tools/analysis/video_memory.py', '--frames 2'),
    ('tools/analysis/prompt_latency.py', ''),
    ('tools/analysis/track_prompt_eval.py', 'cfg.py ckpt.pth --data-root '
     '{tmp}/data'),
    ('tools/analysis/browser_click_benchmark.py', ''),
    ('tools/analysis/kill_resume.py', '--root {tmp}/kill_resume'),
    ('tools/analysis/deploy_accuracy.py', 'cfg.py --checkpoint {tmp}/c.pth'),
]


def _signal_while_importing(script: str, args, module: str, send):
    """Start ``script`` as a terminal does, call ``send(proc)`` as soon as
    ``module``'s shared libraries are mapped into it (its import under
    way), and return the exit status and stderr."""
    proc = start_in_terminal(script, *args)
    try:
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, (
                f'{script} ended before importing {module}: '
                f'{proc.communicate()[1][-2000:]}')
            with open(f'/proc/{proc.pid}/maps') as maps:
                if f'/{module}/' in maps.read():
                    break
            assert time.monotonic() < deadline, f'{module} never imported'
            time.sleep(0.005)
        send(proc)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return proc.returncode, stderr


def interrupt_while_importing(script: str, *args, module: str = 'torch'):
    """The Ctrl+C of a terminal (SIGINT to the process group) while
    ``script`` imports ``module``: its exit status and stderr."""
    return _signal_while_importing(script, args, module,
                                   lambda p: os.killpg(p.pid, signal.SIGINT))


def terminate_while_importing(script: str, *args, module: str = 'torch'):
    """``kill PID`` (SIGTERM to the process alone) while ``script`` imports
    ``module``: its exit status and stderr."""
    return _signal_while_importing(script, args, module,
                                   lambda p: os.kill(p.pid, signal.SIGTERM))
