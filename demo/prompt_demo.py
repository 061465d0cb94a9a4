"""Masks from clicks and boxes on one image.

    python demo/prompt_demo.py IMG CONFIG [--weights CKPT] \
        --points X,Y [X,Y ...] --boxes X1,Y1,X2,Y2 [...] [--out-dir DIR]
    python demo/prompt_demo.py IMG --export DIR [--backend openvino] \
        --points X,Y ...                          # an export folder

Coordinates are in the image's own pixels. Each prompt gives one mask
(prompts do not influence each other). Writes DIR/NAME_prompts.png (the
masks, clicks and boxes over the image) and DIR/NAME_prompts.json (per
prompt: the prompt, class, class score, predicted IoU, area, box, COCO RLE).
Results of an earlier run are not replaced without --overwrite, the input is
never written over, and each file appears only once complete. --export
runs a folder written by tools/deploy/export.py on ONNX Runtime or OpenVINO.
"""
from demo_cli import base_parser, check_export_args, guard_interrupts, numbers


def parse_args(argv=None):
    parser = base_parser(__doc__, 'an image file', export=True)
    parser.add_argument(
        '--points',
        nargs='+',
        default=[],
        type=numbers(2, 'A point'),
        metavar='X,Y')
    parser.add_argument(
        '--boxes',
        nargs='+',
        default=[],
        type=numbers(4, 'A box'),
        metavar='X1,Y1,X2,Y2')
    parser.add_argument('--out-dir', default='outputs/prompt_demo')
    args = parser.parse_args(argv)
    check_export_args(parser, args)
    return args


if __name__ == '__main__':
    # Before the imports below (torch, mmdet: seconds): --help and a usage
    # error answer at once, and a Ctrl+C meanwhile is one line.
    guard_interrupts()
    parse_args()

import numpy as np
from demo_cli import load_predictor, predictor_kwargs, user_errors

from rap_sam.apis import read_image
from rap_sam.apis.inputs import check_prompts
from rap_sam.apis.visualization import (draw_masks, draw_prompts, id_color,
                                        prompt_records)
from rap_sam.utils.output_files import (check_outputs, result_stems,
                                        run_out_dir, write_image, write_json)


def main(argv=None):
    args = parse_args(argv)
    with user_errors():
        img = read_image(args.inputs)
        # Checked before the model loads, so a typo costs no waiting.
        check_prompts(args.points, args.boxes, img.shape[1], img.shape[0])
        stem = result_stems([args.inputs], args.out_dir, '_prompts')[0]
        # Earlier results are refused before the model loads (seconds).
        check_outputs([f'{stem}.png', f'{stem}.json'], [args.inputs],
                      args.overwrite)
        predictor = load_predictor(args, **predictor_kwargs(args))
        with run_out_dir(args.out_dir):
            predictor.set_image(img)
            result = predictor.predict_prompts(args.points, args.boxes)
            records = prompt_records(result, args.points, args.boxes,
                                     predictor.class_names)
            colors = [id_color(i) for i in range(len(records))]
            masks = result.pred_instances.masks.cpu().numpy()
            labels = [
                f"{r['category']} IoU {r['iou_score']:.2f}" for r in records
            ]
            shown = draw_prompts(
                draw_masks(img, masks, colors, labels), args.points,
                np.asarray(args.boxes).reshape(-1, 4), colors)
            write_image(f'{stem}.png', shown)
            write_json(
                f'{stem}.json',
                dict(
                    image=args.inputs,
                    width=img.shape[1],
                    height=img.shape[0],
                    prompts=records))
        # Inside: a stdout closed early (| head -1) is one line too.
        for r in records:
            where = r.get('xy') or r.get('xyxy')
            print(f"{r['type']} {where}: {r['category']} (score "
                  f"{r['score']:.2f}), predicted IoU {r['iou_score']:.2f}, "
                  f"{r['area']} pixels")
        print(f'-> {stem}.png/.json')


if __name__ == '__main__':
    main()
