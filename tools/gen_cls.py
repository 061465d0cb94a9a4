"""Encode a dataset's class names into an open-vocabulary classifier file.

    python tools/gen_cls.py CONFIG [--checkpoint CLIP.bin] [--out PATH]
        [--overwrite] [--classes FILE] [--model NAME] [--pretrained TAG]
        [--split SPLIT] [--trust-checkpoint]

Writes ``[num_classes, max_synonyms, dim]`` to
``~/.cache/embd/{model}_{dataset}.pth`` (``RAP_SAM_EMBD_DIR`` moves it), the
name a head's ``ov_classifier_name`` reads. The dataset is the config's test
dataset, or its training dataset when it has no test one (a training
config's joint class space). With ``--classes`` the vocabulary is the file's
and the name is fixed by its content. The class names are read before the
CLIP weights are looked for, so a config that names no classes says so
before any weights are fetched.
"""
import argparse
import os.path as osp
import runpy
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# By its path (importing rap_sam would import torch before --help); run as
# a program, a Ctrl+C or SIGTERM from here on is one line.
CLI = runpy.run_path(
    osp.join(REPO, 'rap_sam', 'utils', 'arg_types.py'), run_name=__name__)
add_trust_checkpoint = CLI['add_trust_checkpoint']
positive_int = CLI['positive_int']

# mmengine's config module, for DictAction: no torch, under a second.
from mmengine.config import DictAction  # noqa: E402

#: rap_sam.utils.openclip_loader's defaults, written out for --help:
#: importing it would import torch first (a test checks they agree).
DEFAULT_CLIP_MODEL = 'convnext_large_d_320'
DEFAULT_CLIP_PRETRAINED = 'laion2b_s29b_b131k_ft_soup'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'config',
        help='config naming the CLIP backbone and '
        'the dataset whose classes are encoded')
    parser.add_argument('--checkpoint', help='local OpenCLIP checkpoint file')
    add_trust_checkpoint(
        parser,
        help='load the checkpoint with weights_only=False (only for files '
        'from a source you trust)')
    parser.add_argument(
        '--out',
        help='output file (default: the cache, whose file is replaced); an '
        'existing one is replaced only with --overwrite')
    parser.add_argument(
        '--overwrite', action='store_true', help='replace an existing --out')
    parser.add_argument(
        '--classes',
        help='text file, one class a line, '
        'synonyms comma-separated, instead of the dataset')
    parser.add_argument(
        '--model',
        help='OpenCLIP architecture (default: '
        f'the config backbone\'s, else {DEFAULT_CLIP_MODEL})')
    parser.add_argument(
        '--pretrained',
        help='OpenCLIP pretrained tag '
        f'(default: the config\'s, else '
        f'{DEFAULT_CLIP_PRETRAINED})')
    parser.add_argument(
        '--split',
        choices=['train', 'val', 'test'],
        help='which dataloader\'s dataset names the classes (default: test '
        'when the config has a test_dataloader.dataset, else train)')
    parser.add_argument('--batch-size', type=positive_int, default=256)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


if __name__ == '__main__':
    # Before the imports below (torch, mmdet: seconds): --help and a usage
    # error answer at once.
    parse_args()

from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope

sys.path.insert(0, REPO)

import rap_sam.datasets  # noqa: E402,F401 (registers the OV datasets)
from rap_sam.utils.checkpoint import trust_all_checkpoints  # noqa: E402
from rap_sam.utils.class_embeddings import class_embedding_path  # noqa: E402
from rap_sam.utils.config_file import read_config  # noqa: E402
# yapf: disable
from rap_sam.utils.openclip_loader import (ClipWeightsNotFoundError,
                                           build_clip_model,
                                           build_clip_tokenizer,
                                           resolve_clip_checkpoint)
from rap_sam.utils.output_files import check_new_file
from rap_sam.utils.runner_cli import merge_model_options
# yapf: enable
from rap_sam.utils.text_classifier import (dataset_vocabulary,
                                           encode_class_names, read_class_file,
                                           save_class_embeddings,
                                           vocabulary_name)
from rap_sam.utils.user_errors import UserError, cli_errors


class GenClsConfigError(UserError, ValueError):
    """The config (or an option) gives gen_cls nothing to encode."""


def clip_spec(cfg, args):
    """(model_name, model_cfg, pretrained, checkpoint): CLI over config."""
    backbone = cfg.get('model', {}).get('backbone', {}) or {}
    is_clip = 'model_name' in backbone or 'model_cfg' in backbone
    spec = dict(backbone) if is_clip else {}
    init_cfg = spec.get('init_cfg') or {}
    if init_cfg.get('type') == 'clip_pretrain':
        spec.setdefault('pretrained', init_cfg.get('checkpoint'))
    model_name = args.model or spec.get('model_name', DEFAULT_CLIP_MODEL)
    model_cfg = None if args.model else spec.get('model_cfg')
    pretrained = args.pretrained or spec.get('pretrained',
                                             DEFAULT_CLIP_PRETRAINED)
    checkpoint = args.checkpoint or spec.get('checkpoint')
    return model_name, model_cfg, pretrained, checkpoint


def head_num_classes(cfg):
    head = cfg.get('model', {}).get('panoptic_head', {}) or {}
    if 'num_things_classes' not in head:
        return None
    return head['num_things_classes'] + head.get('num_stuff_classes', 0)


def default_split(cfg) -> str:
    """'test' where the config has a test dataset, else 'train': a training
    config's head reads the classifier of its training datasets."""
    loader = cfg.get('test_dataloader')
    return 'test' if loader and 'dataset' in loader else 'train'


def vocabulary(cfg, args, model_name, pretrained, checkpoint, logger):
    """``(classes, name)``: the class names to encode and the file name."""
    if args.classes:
        classes = read_class_file(args.classes)
        weights = pretrained if checkpoint is None else osp.abspath(checkpoint)
        return classes, vocabulary_name(classes, model_name, weights)
    split = args.split or default_split(cfg)
    loader = cfg.get(f'{split}_dataloader')
    if (not loader or 'dataset' not in loader) and not args.split:
        raise GenClsConfigError(
            f'{args.config} has neither a test_dataloader.dataset nor a '
            'train_dataloader.dataset to take class names from: give '
            '--classes FILE or --split val.')
    if not loader or 'dataset' not in loader:
        raise GenClsConfigError(
            f'{args.config} has no {split}_dataloader.dataset to take class '
            'names from: choose another --split or give --classes FILE.')
    dataset_name, classes = dataset_vocabulary(loader['dataset'])
    logger.info(f'class names of the {split} dataset {dataset_name}')
    expected = head_num_classes(cfg)
    if expected is not None and expected != len(classes):
        logger.warning(
            f'{dataset_name} has {len(classes)} classes but the config\'s '
            f'head has {expected}: the file fits a head of '
            f'{len(classes)} classes.')
    return classes, f'{model_name}_{dataset_name}'


def check_out(args) -> None:
    """An explicit ``--out`` can be written without losing a file: checked
    before CLIP loads (it replaced any file, the CLIP weights given as
    --checkpoint included, or failed after the encoding)."""
    out = args.out
    if out is None:
        if args.overwrite:
            raise GenClsConfigError('--overwrite goes with --out FILE.')
        return
    inputs = [p for p in (args.checkpoint, args.classes, args.config) if p]
    if any(osp.realpath(out) == osp.realpath(p) for p in inputs):
        raise GenClsConfigError(
            f'--out {out} is one of the inputs: name another file for the '
            'class embeddings.')
    check_new_file(out, args.overwrite, kind='.pth')


def main(argv=None):
    args = parse_args(argv)
    check_out(args)
    if args.trust_checkpoint:
        trust_all_checkpoints()
    cfg = read_config(args.config)
    merge_model_options(cfg, args.cfg_options, GenClsConfigError)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    logger = MMLogger.get_instance('gen_cls')
    model_name, model_cfg, pretrained, checkpoint = clip_spec(cfg, args)
    # Before the weights: a config without class names should not send the
    # user to fetch gigabytes first.
    classes, name = vocabulary(cfg, args, model_name, pretrained, checkpoint,
                               logger)
    ckpt = resolve_clip_checkpoint(model_name, pretrained, checkpoint)
    if ckpt is None:
        raise ClipWeightsNotFoundError(
            f'{args.config} names no CLIP weights (no pretrained tag) and no '
            '--checkpoint was given: random weights make no classifier; '
            'pass --checkpoint PATH (a local OpenCLIP file) or --pretrained '
            'TAG.')
    out = args.out or class_embedding_path(name)
    logger.info(f'{len(classes)} classes; CLIP {model_name} from {ckpt}')

    model = build_clip_model(
        model_name, model_cfg, ckpt, pretrained=pretrained)
    tokenizer = build_clip_tokenizer(model_name, model_cfg)
    embeddings = encode_class_names(
        model, tokenizer, classes, batch_size=args.batch_size, logger=logger)
    if embeddings.size(0) != len(classes):
        raise RuntimeError(f'wrote {embeddings.size(0)} class embeddings for '
                           f'{len(classes)} classes.')
    save_class_embeddings(embeddings, out)
    logger.info(f'saved {tuple(embeddings.shape)} to {out} (name: {name})')
    return out


if __name__ == '__main__':
    with cli_errors():
        main()
