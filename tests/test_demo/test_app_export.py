"""demo/app.py on an export folder (``--export DIR``): the image tabs run
the folder's graphs on a runtime, the page has no video tab (videos are
tracked on PyTorch), and the options the folder fixes are refused in one
line before anything loads."""
import os

import cv2
import numpy as np
import pytest
from helpers import assert_usage_error, run_logging_imports, run_script

APP = 'demo/app.py'
COCO = 'configs/rap_sam/eval_rap_sam_coco.py'
YT19 = 'configs/rap_sam/eval_rap_sam_yt19.py'


@pytest.mark.parametrize('args, message', [
    (f'--config {COCO}', f'give --config ({COCO}) or --export DIR '
     '(DIR), not both'),
    (f'--video-config {YT19}', '--export serves the image tabs only '
     '(videos are tracked on PyTorch): leave out --video-config'),
    ('--weights w.pth --scale 96 64', '--export runs an export folder '
     'as it is: leave out --weights and --scale'),
    ('--backend torch', 'leave out --backend torch'),
])
def test_refused_before_loading(args, message, tmp_path):
    # DIR need not exist: the options are checked first.
    folder = str(tmp_path / 'none')
    proc = run_script(APP, '--export', folder, *args.split(), timeout=120)
    assert_usage_error(proc, message.replace('(DIR)', f'({folder})'))


def test_refusals_import_no_torch(tmp_path):
    proc, imported = run_logging_imports(APP, '--export', tmp_path,
                                         '--video-config', YT19)
    assert_usage_error(proc, 'leave out --video-config')
    assert not {'torch', 'mmdet', 'rap_sam', 'gradio'} & imported


@pytest.fixture(scope='module')
def export_app(fp32_export, tmp_path_factory):
    """The app as ``python demo/app.py --export DIR`` builds it."""
    import app
    args = app.parse_args(['--export', str(fp32_export), '--threads', '1'])
    predictor, video_predictor = app.load_predictors(args)
    # Random weights are never 0.8 sure of a class.
    predictor.model.panoptic_fusion_head.test_cfg['object_mask_thr'] = 0.5
    return app.RapSAMApp(predictor, video_predictor,
                         str(tmp_path_factory.mktemp('app')))


def test_the_image_tabs_run_the_folder(export_app, fp32_export, small_photo):
    from app import panoptic_segments

    from rap_sam.apis import RapSAMPredictor
    assert export_app.predictor.backend == 'onnxruntime'
    assert export_app.predictor.runtime is not None
    bgr = cv2.imread(small_photo)
    rgb = bgr[..., ::-1].copy()
    shown, table = export_app.panoptic(rgb)
    same = RapSAMPredictor.from_export(str(fp32_export), num_threads=1)
    same.model.panoptic_fusion_head.test_cfg['object_mask_thr'] = 0.5
    segments = panoptic_segments(same.segment_image(bgr), same.class_names)
    assert segments, 'the seeded model finds segments'
    assert table.startswith(f'**{len(segments)} segment')
    for segment in segments:
        assert f"| {segment['category']} | {segment['score']:.2f} | " \
            f"{segment['area']} |" in table
    assert shown.shape == rgb.shape
    # The prompt tab: a click decodes on the folder's prompt graph.
    _, note, state = export_app.load_image(rgb)
    assert 'Click on the image' in note
    drawn, text, state = export_app.click(rgb, state, 'point', 75, 50)
    assert '**1 prompt**' in text and not np.array_equal(drawn, rgb)


def test_no_video_tab(export_app):
    import gradio as gr
    from app import build_ui
    assert not export_app.serves_videos
    with pytest.raises(gr.Error, match='start the app without --export'):
        export_app.video_predictor()
    ui = build_ui(export_app)
    tabs = [
        block.id for block in ui.blocks.values() if isinstance(block, gr.Tab)
    ]
    assert tabs == ['prompts', 'panoptic']
    ids = {getattr(block, 'elem_id', None) for block in ui.blocks.values()}
    assert 'no-video-tab' in ids and 'video-input' not in ids
    # What the page can call: no video handler.
    names = {fn.name for fn in ui.fns.values()}
    assert not names & {'on_track', 'on_track_clicks', 'load_video'}
    assert {'panoptic', 'load_image'} <= names


def test_the_served_app_on_an_export(fp32_export, small_photo, tmp_path,
                                     monkeypatch):
    """As a user starts it: ``python demo/app.py --export DIR``; the page
    segments over HTTP, offers no video call, and stops quietly, leaving no
    folder for videos it cannot make."""
    from gradio_client import Client, handle_file
    from test_app_inputs import served_app
    monkeypatch.setenv('TMPDIR', str(tmp_path))  # the app's folder
    monkeypatch.setenv('GRADIO_TEMP_DIR', str(tmp_path / 'gradio'))
    with served_app(['--export', fp32_export, '--backend',
                     'openvino']) as (url, ended):
        client = Client(url, verbose=False)
        _, table = client.predict(
            handle_file(small_photo), api_name='/panoptic')
        assert table.startswith('**') or table == 'No segment found.'
        _, note = client.predict(
            handle_file(small_photo), api_name='/load_image')
        assert note.startswith('Click on the image to add a point')
        calls = client.view_api(
            print_info=False, return_format='dict')['named_endpoints']
        assert '/panoptic' in calls and '/on_track' not in calls
    assert ended['status'] == 0, ended['err']
    assert 'Traceback' not in ended['err'], ended['err']
    assert 'videos' not in ended['out']
    assert not [n for n in os.listdir(tmp_path) if n.startswith('rap_sam_app')]
