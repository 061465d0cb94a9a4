"""Several processes and nodes, launched as a user launches them:
``tools/dist_test.sh CONFIG CKPT 2`` gives exactly the metrics of
``tools/test.py CONFIG CKPT`` for the three evaluations (COCO panoptic PQ,
YouTube-VIS AP, COCO-SAM clicks), ``tools/dist_train.sh`` trains the toy
recipe on 2 processes, and two torchrun invocations make one two-node job.
All on CPU processes (gloo), with the toy model.

A model with seeded random weights scores 0 PQ and 0 AP, and 0 equals 0
however many images a run drops or counts twice. So part of the ground
truth is the model's own prediction (images / videos 1 and 2, made here
in-process): the metrics land strictly between their bounds, and every
image and video moves them.
"""
import glob
import json
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from helpers import (REPO, assert_user_error, config_path, randomize_,
                     run_script)
from mmdet.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.runner import save_checkpoint

from rap_sam.testing import (make_coco_panoptic, make_youtube_vis, mask_bbox,
                             track_annotation)
from rap_sam.testing.toy_datasets import write_panoptic_png

sys.path.insert(0, osp.join(REPO, 'tools'))
from make_toy_data import make_toy_data  # noqa: E402
from toy_train_eval import epoch_options  # noqa: E402
from toy_train_eval import write_toy_class_embeddings  # noqa: E402

# The ground truth replaced by the model's prediction. Not image 0: with 3
# images on 2 processes the sampler repeats it, and its segments (which the
# random model misses) would change PQ if the duplicate were counted.
OWN_PREDICTION = (1, 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch_env(**extra):
    # One thread per process: two processes share the CI machine's 2 cores.
    return dict(
        os.environ,
        PYTHON=sys.executable,
        OMP_NUM_THREADS='1',
        MKL_NUM_THREADS='1',
        **extra)


def check(proc):
    # pytest.fail: an assertion's message is cut in the middle, where the
    # launcher's line and the process's own last lines are.
    out, err = proc.stdout, proc.stderr
    if proc.returncode != 0 or 'Traceback' in err:
        pytest.fail(f'exit status {proc.returncode}\n--- stdout (end) ---\n'
                    f'{out[-2000:]}\n--- stderr (end) ---\n{err[-4000:]}')


def eval_options(toy, name):
    opts = [f'model.panoptic_head.ov_classifier_dir={toy["embd"]}']
    if name == 'yt19':
        opts += [
            f'test_dataloader.dataset.data_root={toy["ytvis"]}',
            f'test_evaluator.outfile_prefix={toy["root"]}/yt19_results'
        ]
    else:
        opts.append(f'test_dataloader.dataset.data_root={toy["coco"]}')
    if name == 'coco':
        opts.append(f'test_evaluator.seg_prefix={toy["coco"]}'
                    'annotations/panoptic_val2017/')
    if name == 'prompt':
        # The paper's averaging beside ours: it depends on how the
        # reference split the images, never on how this run does.
        opts.append('test_evaluator.reference_averaging.num_processes=2')
    return opts


def run_test(toy, name, work_dir, processes=None, ckpt=None, env=None):
    """``python tools/test.py`` (``processes=None``) or
    ``tools/dist_test.sh ... processes``, as the README writes them."""
    config = f'configs/rap_sam/toy_eval_{name}.py'
    ckpt = ckpt or toy['ckpt']
    if processes is None:
        cmd = [sys.executable, 'tools/test.py', config, ckpt]
    else:
        cmd = ['bash', 'tools/dist_test.sh', config, ckpt, str(processes)]
    cmd += ['--work-dir', str(work_dir), '--cfg-options']
    cmd += eval_options(toy, name)
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        env=env or launch_env(PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=600)
    check(proc)
    return read_metrics(work_dir)


def read_metrics(work_dir):
    """The metrics of the run's log: full precision from its json, whose
    integers mmengine writes as null, those from the text log."""
    logs = glob.glob(osp.join(str(work_dir), '*', '*.log'))
    assert len(logs) == 1, logs
    with open(logs[0]) as f:
        line = [s for s in f if 'Epoch(test)' in s][-1]
    with open(logs[0][:-4] + '.json') as f:
        metrics = json.loads(f.read().strip().splitlines()[-1])
    logged = dict(re.findall(r'(\S+): (\S+)', line.split('Epoch(test)')[1]))
    for key, value in metrics.items():
        if value is None:
            metrics[key] = float(logged[key])
    # Timings differ from run to run.
    metrics.pop('time')
    metrics.pop('data_time')
    return metrics


def predict(config, options, state_dict):
    """The model's outputs for each sample of the config's test set."""
    cfg = Config.fromfile(config_path(config))
    cfg.merge_from_dict(options)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    model = MODELS.build(cfg.model)
    model.load_state_dict(state_dict)
    model.eval()
    with torch.no_grad():
        return dataset, [
            model.test_step(pseudo_collate([dataset[i]]))[0]
            for i in range(len(dataset))
        ]


def _options(toy, name):
    return dict(kv.split('=', 1) for kv in eval_options(toy, name))


def coco_truth_from_predictions(toy, state_dict):
    dataset, outputs = predict('rap_sam/toy_eval_coco.py',
                               _options(toy, 'coco'), state_dict)
    ann_file = osp.join(toy['coco'], 'annotations', 'panoptic_val2017.json')
    with open(ann_file) as f:
        content = json.load(f)
    num_classes = len(dataset.metainfo['classes'])
    for k in OWN_PREDICTION:
        pan = outputs[k].pred_panoptic_seg.sem_seg[0].numpy()
        ids = np.zeros(pan.shape, dtype=np.int64)
        segments = []
        for value in np.unique(pan):
            label = int(value) % 1000
            if label >= num_classes:
                continue  # VOID
            mask = pan == value
            ids[mask] = len(segments) + 1
            segments.append(
                dict(
                    id=len(segments) + 1,
                    category_id=dataset.cat_ids[label],
                    iscrowd=0,
                    area=int(mask.sum()),
                    bbox=mask_bbox(mask)))
        ann = content['annotations'][k]
        ann['segments_info'] = segments
        write_panoptic_png(
            osp.join(toy['coco'], 'annotations', 'panoptic_val2017',
                     ann['file_name']), ids)
    with open(ann_file, 'w') as f:
        json.dump(content, f)


def ytvis_truth_from_predictions(toy, state_dict):
    dataset, outputs = predict('rap_sam/toy_eval_yt19.py',
                               _options(toy, 'yt19'), state_dict)
    ann_file = osp.join(toy['ytvis'], 'train.json')
    with open(ann_file) as f:
        content = json.load(f)
    keep = [content['videos'][k]['id'] for k in OWN_PREDICTION]
    anns = [a for a in content['annotations'] if a['video_id'] not in keep]
    for k in OWN_PREDICTION:
        frames = outputs[k].video_data_samples
        video = content['videos'][k]
        tracks = {}
        for t, frame in enumerate(frames):
            pred = frame.pred_track_instances
            for j, track in enumerate(pred.instances_id.tolist()):
                tracks.setdefault(
                    track,
                    dict(
                        label=int(pred.labels[j]),
                        score=float(pred.scores[j]),
                        masks=[None] * len(frames)))
                mask = mask_utils.decode(pred.masks[j]).astype(bool)
                if mask.any():
                    tracks[track]['masks'][t] = mask
        best = sorted(
            (tr for tr in tracks.values() if any(m is not None
                                                 for m in tr['masks'])),
            key=lambda tr: -tr['score'])[:3]
        for track in best:
            anns.append(
                track_annotation(
                    len(anns) + 100, video['id'],
                    dataset.cat_ids[track['label']], track['masks'],
                    video['height'], video['width']))
    content['annotations'] = anns
    with open(ann_file, 'w') as f:
        json.dump(content, f)


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """Class embeddings, a seeded checkpoint of the toy model, 3 COCO
    images and 3 videos (odd, so 2 processes get unequal shares)."""
    root = tmp_path_factory.mktemp('dist')
    toy = dict(
        root=str(root),
        embd=str(root / 'embd'),
        coco=str(root / 'coco') + '/',
        ytvis=str(root / 'ytvis') + '/',
        ckpt=str(root / 'toy.pth'))
    write_toy_class_embeddings(toy['embd'])
    make_coco_panoptic(toy['coco'], num_images=3, seed=0, image_size=(96, 128))
    make_youtube_vis(toy['ytvis'], num_videos=3, num_frames=3, seed=0)
    cfg = Config.fromfile(config_path('rap_sam/toy_eval_coco.py'))
    cfg.model.panoptic_head.ov_classifier_dir = toy['embd']
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    randomize_(model, 0)
    save_checkpoint(
        dict(meta=dict(epoch=1), state_dict=model.state_dict()), toy['ckpt'])
    coco_truth_from_predictions(toy, model.state_dict())
    ytvis_truth_from_predictions(toy, model.state_dict())
    return toy


@pytest.fixture(scope='module')
def prompt_one_process(toy, tmp_path_factory):
    return run_test(toy, 'prompt', tmp_path_factory.mktemp('prompt_1'))


def test_coco_panoptic_two_processes(toy, tmp_path):
    one = run_test(toy, 'coco', tmp_path / 'one')
    assert 0 < one['coco_panoptic/PQ'] < 100
    assert 0 < one['coco_panoptic/PQ_th'] < 100
    two = run_test(toy, 'coco', tmp_path / 'two', processes=2)
    assert two == one


def test_youtube_vis_two_processes(toy, tmp_path):
    one = run_test(toy, 'yt19', tmp_path / 'one')
    assert 0 < one['youtube_vis/segm_mAP'] < 1
    two = run_test(toy, 'yt19', tmp_path / 'two', processes=2)
    assert two == one


def test_coco_sam_two_processes(toy, prompt_one_process, tmp_path):
    one = prompt_one_process
    assert 0 < one['coco_sam/mIoU'] < 1
    assert one['coco_sam/num_clicks'] > 3  # more segments than images
    # The reference's figure averages as many segments as images.
    assert one['coco_sam/reference_num_clicks'] == 3
    assert one['coco_sam/reference_mIoU'] != one['coco_sam/mIoU']
    two = run_test(toy, 'prompt', tmp_path / 'two', processes=2)
    assert two == one


def test_two_nodes_on_one_machine(toy, prompt_one_process, tmp_path):
    """Node 0 and node 1 of one job, one process each, as on two machines
    (each runs the same command with its NODE_RANK)."""
    port = str(free_port())
    config = 'configs/rap_sam/toy_eval_prompt.py'
    cmd = [
        'bash', 'tools/dist_test.sh', config, toy['ckpt'], '1', '--work-dir',
        str(tmp_path / 'work'), '--cfg-options'
    ] + eval_options(toy, 'prompt')
    nodes = [
        subprocess.Popen(
            cmd,
            cwd=REPO,
            env=launch_env(
                NNODES='2',
                NODE_RANK=str(rank),
                MASTER_ADDR='127.0.0.1',
                PORT=port),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True) for rank in (0, 1)
    ]
    for node in nodes:
        out, err = node.communicate(timeout=600)
        check(
            subprocess.CompletedProcess(node.args, node.returncode, out, err))
    assert read_metrics(tmp_path / 'work') == prompt_one_process


def test_dist_train_two_processes(toy, tmp_path):
    """The toy recipe on 2 processes for one short epoch; its checkpoint
    evaluates with tools/test.py."""
    data = tmp_path / 'data'
    make_toy_data(str(data), coco_train=4, coco_val=2, videos=2)
    options = epoch_options(1) + [
        f'model.panoptic_head.ov_classifier_dir={toy["embd"]}',
        f'train_dataloader.dataset.datasets.0.data_root={data}/coco/',
        'train_dataloader.dataset.datasets.1.dataset.data_root='
        f'{data}/youtube_vis_2019/',
        f'train_dataloader.dataset.datasets.2.dataset.data_root={data}/coco/',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
    ]
    work_dir = tmp_path / 'train'
    proc = subprocess.run([
        'bash', 'tools/dist_train.sh', 'configs/rap_sam/toy_rap_sam_train.py',
        '2', '--work-dir',
        str(work_dir), '--cfg-options', *options
    ],
                          cwd=REPO,
                          env=launch_env(PORT=str(free_port())),
                          capture_output=True,
                          text=True,
                          timeout=600)
    check(proc)
    log = glob.glob(str(work_dir / '*' / '*.log'))[0]
    with open(log) as f:
        text = f.read()
    assert 'Distributed training: True' in text
    # 22 samples (4 images, 2 videos, 4 x 4 prompt images), batches of 2
    # per process: about 6 iterations, each on both processes.
    iters = re.findall(r'Epoch\(train\) \[1\]\[\s*(\d+)/(\d+)\]', text)
    assert iters and 3 <= int(iters[-1][1]) <= 8, iters
    with open(work_dir / 'last_checkpoint') as f:
        ckpt = f.read().strip()
    trained = torch.load(ckpt, map_location='cpu', weights_only=False)
    assert trained['meta']['epoch'] == 1
    metrics = run_test(
        dict(toy, coco=f'{data}/coco/'),
        'prompt',
        tmp_path / 'eval',
        ckpt=ckpt)
    assert 0 <= metrics['coco_sam/mIoU'] <= 1
    assert metrics['coco_sam/num_clicks'] > 0


def test_user_error_under_torchrun_is_one_line_each(tmp_path):
    """A user error under torchrun: the processes' own `error:` lines, the
    launcher's one-line summary and exit status 2, no stack trace (torchrun's
    own ends in ChildFailedError's). Once one process has failed torchrun
    stops the other (SIGTERM), so the other's line may be missing."""
    proc = subprocess.run([
        'bash', 'tools/dist_test.sh', 'configs/rap_sam/eval_rap_sam_coco.py',
        str(tmp_path / 'missing.pth'), '2'
    ],
                          cwd=REPO,
                          env=launch_env(PORT=str(free_port())),
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 2, proc.stderr[-4000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-4000:]
    errors = [
        line for line in proc.stderr.splitlines() if line.startswith('error: ')
    ]
    assert 1 <= len(errors) - 1 <= 2, errors
    assert set(errors[:-1]) == {
        f'error: Checkpoint file not found: {tmp_path / "missing.pth"} '
        '(give the path of a .pth file, e.g. the released '
        'rapsam_r50_12e.pth)'
    }
    test_py = re.escape(os.path.join(REPO, 'tools', 'test.py'))
    assert re.fullmatch(
        rf'error: process (0|1|0, 1) of {test_py} failed \(exit status '
        r'(2|2, -15|-15, 2|2, 2)\); its messages are above\.', errors[-1])


def _launch(*args, env=None):
    return subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), *args],
        env=dict(os.environ, PYTHON=sys.executable, **(env or {})),
        capture_output=True,
        text=True,
        timeout=300)


@pytest.mark.parametrize('count', ['two', '0'])
def test_a_bad_process_count_is_one_line(count, tmp_path):
    """torchrun's own ValueError / AssertionError tracebacks."""
    proc = _launch(
        config_path('rap_sam/toy_rap_sam_train.py'), count, '--work-dir',
        str(tmp_path / 'work'))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ('error: the number of processes must be a '
                                   f"whole number >= 1, got '{count}'.")
    assert not (tmp_path / 'work').exists()


def test_a_port_in_use_is_one_line(tmp_path):
    """Another job on the port: a 36-line DistNetworkError (EADDRINUSE)."""
    with socket.socket() as other:
        other.bind(('127.0.0.1', 0))
        other.listen()
        port = other.getsockname()[1]
        proc = _launch(
            config_path('rap_sam/toy_rap_sam_train.py'),
            '2',
            '--work-dir',
            str(tmp_path / 'work'),
            env=dict(PORT=str(port)))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        f'error: port {port} is in use (another distributed job?): set PORT '
        f'to a free port, e.g. PORT={port + 1}.')


@pytest.mark.parametrize('launcher', ['pytorch', 'slurm', 'mpi'])
@pytest.mark.parametrize('tool', ['tools/test.py', 'tools/train.py'])
def test_a_launcher_run_by_hand_is_one_line(tool, launcher, tmp_path):
    """``--launcher pytorch`` (slurm, mpi) without the launcher that sets
    its environment: a KeyError ('RANK') traceback."""
    config = 'toy_eval_coco.py' if tool == 'tools/test.py' \
        else 'toy_rap_sam_train.py'
    ckpt = ['missing.pth'] if tool == 'tools/test.py' else []
    (tmp_path / 'missing.pth').write_bytes(b'')
    env = {
        name: None
        for name in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR',
                     'MASTER_PORT', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK')
    }
    proc = run_script(
        tool,
        config_path(f'rap_sam/{config}'),
        *[tmp_path / c for c in ckpt],
        '--launcher',
        launcher,
        '--work-dir',
        tmp_path / 'work',
        env=env)
    if launcher != 'pytorch' and not torch.cuda.is_available():
        # The line asked for torchrun's variables, which slurm and mpi never
        # set.
        usage = ('tools/dist_test.sh CONFIG CHECKPOINT N' if tool
                 == 'tools/test.py' else 'tools/dist_train.sh CONFIG N')
        assert assert_user_error(proc) == (
            f'error: --launcher {launcher} needs CUDA, and this machine has '
            f'none: CPU-only runs take --launcher pytorch, as {usage} starts '
            'them (torchrun), or leave --launcher out for one process.')
    else:
        assert_user_error(
            proc, f'--launcher {launcher} is for the processes a '
            'launcher starts (', 'not set): run tools/dist_')
    assert not (tmp_path / 'work').exists()


class LaunchError(Exception):
    pass


@pytest.mark.parametrize('launcher', ['slurm', 'mpi'])
def test_slurm_or_mpi_without_cuda_runs_with_torchruns_variables(
        launcher, monkeypatch):
    """Without CUDA the process group is made from torchrun's variables:
    with them all set, slurm and mpi are checked as before (their own
    variables), not refused."""
    from rap_sam.utils.launcher import (CPU_LAUNCH_VARIABLES,
                                        LAUNCHER_VARIABLES, check_launched)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for name in CPU_LAUNCH_VARIABLES + LAUNCHER_VARIABLES[launcher]:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(LaunchError, match='needs CUDA'):
        check_launched(launcher, 'tools/dist_train.sh CONFIG N', LaunchError)
    for name in CPU_LAUNCH_VARIABLES:
        monkeypatch.setenv(name, '0')
    with pytest.raises(LaunchError) as err:
        check_launched(launcher, 'tools/dist_train.sh CONFIG N', LaunchError)
    assert str(err.value).startswith(
        f'--launcher {launcher} is for the processes a launcher starts '
        f'({", ".join(LAUNCHER_VARIABLES[launcher])} not set)')
    for name in LAUNCHER_VARIABLES[launcher]:
        monkeypatch.setenv(name, '0')
    check_launched(launcher, 'tools/dist_train.sh CONFIG N', LaunchError)
