"""The toy run: train the small recipe on CPU, then evaluate it.

    python tools/toy_train_eval.py [--root work_dirs/toy] [--epochs N]
        [--cfg-options k=v ...]

1. writes the learnable toy data (tools/make_toy_data.py) and 64-d class
   embeddings (one seeded random vector per class-name synonym, so the
   joint and the COCO vocabularies agree, as CLIP's would);
2. trains configs/rap_sam/toy_rap_sam_train.py (COCO panoptic clips,
   YouTube-VIS clips and prompts, all three sources) with tools/train.py;
3. evaluates the checkpoint with tools/test.py: PQ (CocoPanopticMetric) with
   configs/rap_sam/toy_eval_coco.py and click mIoU (InteractiveMetric) with
   configs/rap_sam/toy_eval_prompt.py, and prints both with the wall time.
"""
import argparse
import glob
import json
import os
import os.path as osp
import runpy
import subprocess
import sys
import time
import zlib

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, osp.join(REPO, 'tools'))
# By its path (importing rap_sam would import torch before --help); run as
# a program, a Ctrl+C or SIGTERM from here on is one line.
CLI = runpy.run_path(
    osp.join(REPO, 'rap_sam', 'utils', 'arg_types.py'), run_name=__name__)
positive_int = CLI['positive_int']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--root',
        default='work_dirs/toy',
        help='data, embeddings, checkpoints and logs (a relative path is '
        'under the current folder)')
    parser.add_argument(
        '--epochs',
        type=positive_int,
        help='override max_epochs (the lr step moves along with it)')
    parser.add_argument(
        '--threads',
        type=positive_int,
        default=1,
        help='torch threads per process (default 1: on a shared 2-core '
        'machine a second OpenMP thread waits on busy cores more than it '
        'helps; the data loader worker uses the other core)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        help='options of the training (tools/train.py\'s); the evaluations '
        'run the toy eval configs as they are, so model.* options are '
        'refused')
    return parser.parse_args(argv)


if __name__ == '__main__':
    # Before the imports below (torch, mmdet: seconds): --help and a usage
    # error answer at once.
    parse_args()

import torch
from make_toy_data import make_toy_data

from rap_sam.utils.interrupt_guard import (INTERRUPTED_EXIT_CODE,
                                           TERMINATED_EXIT_CODE, Terminated)
from rap_sam.utils.output_files import make_out_dir
from rap_sam.utils.runner_cli import earlier_checkpoints
from rap_sam.utils.user_errors import (USER_ERROR_EXIT_CODE, UserError,
                                       cli_errors)

TOY_VOCABULARIES = ('toy_Concat_CocoPanopticOVDataset_YouTubeVISDataset_2019',
                    'toy_CocoPanopticOVDataset', 'toy_YouTubeVISDataset_2019')

#: Cosine between two toy class embeddings. CLIP's text embeddings of
#: class prompts lie in a narrow cone (pairwise cosines around 0.5 and
#: above), which is what lets the zero background embedding win: a query
#: pointing away from the cone scores below 0 for every class. Independent
#: random vectors fill every direction (with a few hundred synonyms in 64
#: dims no query has all cosines negative), and background never wins.
SHARED_COSINE = 0.5


def _synonym_vector(name: str, dims: int) -> torch.Tensor:
    key = name.strip().replace('_', ' ')
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    own = torch.randn(dims, generator=g)
    shared = torch.randn(dims, generator=torch.Generator().manual_seed(0))
    v = (
        SHARED_COSINE**0.5 * shared / shared.norm() +
        (1 - SHARED_COSINE)**0.5 * own / own.norm())
    return v / v.norm()


def class_embeddings(classes, dims: int = 64) -> torch.Tensor:
    """``[K, max_synonyms, dims]``: a seeded vector per synonym, classes
    padded by repeating their first synonym (as tools/gen_cls.py pads)."""
    rows = [[_synonym_vector(s, dims) for s in c.split(',') if s.strip()]
            for c in classes]
    width = max(len(r) for r in rows)
    return torch.stack(
        [torch.stack(r + [r[0]] * (width - len(r))) for r in rows])


def write_toy_class_embeddings(out_dir: str, dims: int = 64) -> None:
    """The three vocabularies the toy configs name, under ``out_dir``."""
    from rap_sam.datasets import (COCO_PANOPTIC_OV_STUFF,
                                  COCO_PANOPTIC_OV_THINGS,
                                  YOUTUBE_VIS_2019_CLASSES,
                                  CocoPanopticOVDataset, merge_class_spaces)
    coco = COCO_PANOPTIC_OV_THINGS + COCO_PANOPTIC_OV_STUFF
    joint = merge_class_spaces([
        CocoPanopticOVDataset.METAINFO,
        dict(classes=YOUTUBE_VIS_2019_CLASSES)
    ]).classes
    os.makedirs(out_dir, exist_ok=True)
    for name, classes in zip(TOY_VOCABULARIES,
                             (joint, coco, YOUTUBE_VIS_2019_CLASSES)):
        torch.save(
            class_embeddings(classes, dims), osp.join(out_dir, f'{name}.pth'))


def epoch_options(epochs: int) -> list:
    """``--cfg-options`` for ``epochs`` epochs of the toy config: the lr
    step stays two epochs before the end, as in the config (whose values
    are computed before ``--cfg-options`` apply)."""
    return [
        f'train_cfg.max_epochs={epochs}',
        f'param_scheduler.1.end={epochs}',
        f'param_scheduler.1.milestones=[{max(epochs - 2, 1)}]',
    ]


def toy_train_options(root: str) -> list:
    """``--cfg-options`` pointing the toy training config at the data and
    class embeddings under ``root`` (the config computes its paths from
    ``toy_root``, so each is overridden)."""
    return [
        f'model.panoptic_head.ov_classifier_dir={root}/embd',
        f'train_dataloader.dataset.datasets.0.data_root={root}/data/coco/',
        'train_dataloader.dataset.datasets.1.dataset.data_root='
        f'{root}/data/youtube_vis_2019/',
        'train_dataloader.dataset.datasets.2.dataset.data_root='
        f'{root}/data/coco/',
    ]


def _run(cmd, env):
    print('+', ' '.join(cmd), flush=True)
    # From the user's folder, as the tool itself: relative paths in
    # --cfg-options mean what they would in a tools/train.py command there.
    with subprocess.Popen(cmd, env=env) as proc:
        try:
            status = proc.wait()
        except KeyboardInterrupt as stop:
            # A Ctrl+C reached the tool too (the terminal's process
            # group); a SIGTERM (kill PID) only this process: pass it on.
            # Either way the tool runs its cleanup and says so in its line.
            if isinstance(stop, Terminated):
                proc.terminate()
            status = proc.wait()
            if status not in (INTERRUPTED_EXIT_CODE, TERMINATED_EXIT_CODE):
                raise
            raise SystemExit(status)
    if status == USER_ERROR_EXIT_CODE:
        # The tool has said what was wrong, in one line, on stderr.
        raise SystemExit(status)
    if status:
        print(
            f'error: {cmd[1]} failed with exit status {status}; its output '
            'above says why.',
            file=sys.stderr,
            flush=True)
        raise SystemExit(status)


def _metrics(work_dir: str) -> dict:
    logs = sorted(
        glob.glob(osp.join(work_dir, '*', '*.json')), key=osp.getmtime)
    with open(logs[-1]) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    root = osp.abspath(args.root)
    with cli_errors():
        # Said before the data is written (tools/train.py would say it
        # after).
        bad = [item for item in args.cfg_options if '=' not in item]
        if bad:
            raise UserError('--cfg-options takes key=value items, e.g. '
                            f'train_dataloader.batch_size=4, got {bad[0]!r}.')
        cores = len(os.sched_getaffinity(0)) if hasattr(
            os, 'sched_getaffinity') else (os.cpu_count() or 1)
        if args.threads > 4 * cores:
            raise UserError(
                f'--threads {args.threads} is far above the {cores} cores '
                f'this process may use: give at most {4 * cores} (threads '
                'beyond the cores only wait on each other).')
        changed = [o for o in args.cfg_options if o.startswith('model.')]
        if changed:
            # Weights of another architecture: found by the evaluation
            # only, after the whole training.
            raise UserError(
                f'--cfg-options {changed[0]}: the options go to the training '
                'only, and the evaluation configs could not load a model '
                'changed so; run tools/train.py and tools/test.py with it '
                'yourself.')
        train_dir = osp.join(root, 'train')
        earlier = earlier_checkpoints(train_dir)
        if earlier:
            # The training would replace them (tools/train.py refuses it
            # without --resume, after the data is written).
            raise UserError(
                f'{root} holds an earlier toy run ({", ".join(earlier)} in '
                'train/): choose another --root, or remove that folder to '
                'run again.')
        make_out_dir(root)
        make_toy_data(osp.join(root, 'data'))
        write_toy_class_embeddings(osp.join(root, 'embd'))

        py = sys.executable
        threads = str(args.threads)
        env = dict(
            os.environ,
            PYTHONPATH=REPO,
            OMP_NUM_THREADS=threads,
            MKL_NUM_THREADS=threads)
        options = list(args.cfg_options)
        if args.epochs:
            options += epoch_options(args.epochs)
        options += toy_train_options(root)
        _run([
            py,
            osp.join(REPO, 'tools', 'train.py'),
            osp.join(REPO, 'configs', 'rap_sam', 'toy_rap_sam_train.py'),
            '--work-dir', train_dir, '--cfg-options'
        ] + options, env)
        with open(osp.join(train_dir, 'last_checkpoint')) as f:
            checkpoint = f.read().strip()

        results = {}
        for name in ('coco', 'prompt'):
            work_dir = osp.join(root, f'eval_{name}')
            eval_options = [
                f'model.panoptic_head.ov_classifier_dir={root}/embd',
                f'test_dataloader.dataset.data_root={root}/data/coco/',
            ]
            if name == 'coco':
                eval_options.append('test_evaluator.seg_prefix='
                                    f'{root}/data/coco/annotations/'
                                    'panoptic_val2017/')
            _run([
                py,
                osp.join(REPO, 'tools', 'test.py'),
                osp.join(REPO, 'configs', 'rap_sam', f'toy_eval_{name}.py'),
                checkpoint, '--work-dir', work_dir, '--cfg-options'
            ] + eval_options, env)
            results.update(_metrics(work_dir))
        pq = results.get('coco_panoptic/PQ')
        miou = results.get('coco_sam/mIoU')
        print(json.dumps(results, indent=1))
        print(f'TOY RUN: PQ {pq}, click mIoU {miou}, wall time '
              f'{time.time() - start:.0f} s')
        return results


if __name__ == '__main__':
    main()
