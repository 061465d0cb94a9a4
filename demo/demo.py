"""Panoptic segmentation of an image or a folder of images.

    python demo/demo.py IMG_OR_DIR CONFIG [--weights CKPT] [--out-dir DIR]
        [--device cpu|cuda] [--scale W H] [--score-thr T] [--overwrite]
        [--post exact|half]
    python demo/demo.py IMG_OR_DIR --export DIR [--backend openvino]
        [--threads N] [--post exact|half] ...     # an export folder

For each image, writes DIR/NAME.png (the segments drawn over the image) and
DIR/NAME.json (one entry per segment: class, score, area, box, COCO RLE).
Images that share a name (pic.jpg, pic.png) get pic_jpg.* and pic_png.*.
Results of an earlier run are not replaced without --overwrite, an input is
never written over, and each file appears only once complete. A folder shows
a progress bar; images in it that cannot be segmented are skipped with a
message. Without --weights the model has random weights: it still runs end
to end and says so loudly. --post half is a faster, approximate fusion of
the masks (opt-in; see docs/deploy.md). --export runs a folder written by
tools/deploy/export.py (fp32, int8 or bf16) on ONNX Runtime or OpenVINO,
with the classes and scale it was exported with.
"""
import os
import os.path as osp

from demo_cli import (base_parser, check_export_args, guard_interrupts,
                      score_threshold)


def parse_args(argv=None):
    parser = base_parser(
        __doc__, 'an image file or a folder of images', post=True, export=True)
    parser.add_argument('--out-dir', default='outputs/demo')
    parser.add_argument(
        '--score-thr',
        type=score_threshold,
        default=None,
        help='keep segments whose class score exceeds this (the config\'s '
        'object_mask_thr, 0.8, by default)')
    args = parser.parse_args(argv)
    check_export_args(parser, args)
    return args


if __name__ == '__main__':
    # Before the imports below (torch, mmdet: seconds): --help and a usage
    # error answer at once, and a Ctrl+C meanwhile is one line.
    guard_interrupts()
    parse_args()

from demo_cli import load_predictor, predictor_kwargs, user_errors
from tqdm import tqdm

from rap_sam.apis import InputError
from rap_sam.apis.inputs import IMAGE_EXTS, check_number
from rap_sam.apis.visualization import draw_panoptic, panoptic_segments
from rap_sam.utils.output_files import (OutputError, check_outputs,
                                        result_stems, run_out_dir, write_image,
                                        write_json)
from rap_sam.utils.user_errors import UserError


def list_images(inputs: str):
    if osp.isdir(inputs):
        files = sorted(
            osp.join(inputs, f) for f in os.listdir(inputs)
            if f.lower().endswith(IMAGE_EXTS))
        if not files:
            raise InputError(f'No images ({", ".join(IMAGE_EXTS)}) in '
                             f'{inputs}')
        return files
    if not osp.isfile(inputs):
        raise InputError(f'No such image or folder: {inputs}')
    return [inputs]


def segment_to_files(predictor, path: str, stem: str) -> int:
    """Segment the image at ``path``; write ``stem.png`` and ``stem.json``;
    return the number of segments."""
    img = predictor.read_image(path)
    result = predictor.segment_image(img)
    names = predictor.class_names
    drawn = draw_panoptic(img, result, names,
                          predictor.dataset_meta['palette'])
    segments = panoptic_segments(result, names)
    write_image(f'{stem}.png', drawn)
    write_json(
        f'{stem}.json',
        dict(
            image=path,
            height=img.shape[0],
            width=img.shape[1],
            segments=segments))
    return len(segments)


def _segments(count: int) -> str:
    return f'{count} segment' + 's' * (count != 1)


def main(argv=None):
    args = parse_args(argv)
    with user_errors():
        images = list_images(args.inputs)
        stems = result_stems(images, args.out_dir)
        # Earlier results are refused before the model loads (seconds).
        check_outputs(
            [f'{s}{ext}' for s in stems for ext in ('.png', '.json')], images,
            args.overwrite)
        # The predictor checks its files and options before the model
        # builds, so they are reported first and no folder is made for them.
        predictor = load_predictor(args, **predictor_kwargs(args))
        with run_out_dir(args.out_dir):
            segment_all(predictor, args, images, stems)


def segment_all(predictor, args, images, stems) -> None:
    """Each image to its result files; among several, one that fails is
    skipped with a line."""
    if args.score_thr is not None:
        predictor.model.panoptic_fusion_head.test_cfg[
            'object_mask_thr'] = check_number(args.score_thr, '--score-thr')
    if len(images) == 1:
        count = segment_to_files(predictor, images[0], stems[0])
        print(f'{images[0]}: {_segments(count)} -> {stems[0]}.png/.json')
        return
    skipped = 0
    for path, stem in zip(tqdm(images, desc='segmenting'), stems):
        try:
            count = segment_to_files(predictor, path, stem)
        except OutputError:
            raise  # the next image would fail the same way
        except Exception as err:  # one bad image must not stop the rest
            kind = '' if isinstance(err, UserError) else \
                f'{type(err).__name__}: '
            tqdm.write(f'skipping {path}: {kind}{err}')
            skipped += 1
            continue
        tqdm.write(f'{path}: {_segments(count)} -> {stem}.png/.json')
    if skipped == len(images):
        raise InputError(f'None of the {len(images)} images in '
                         f'{args.inputs} could be segmented (see above).')
    if skipped:
        tqdm.write(f'{len(images) - skipped} of {len(images)} images '
                   f'segmented, {skipped} skipped (see above).')


if __name__ == '__main__':
    main()
