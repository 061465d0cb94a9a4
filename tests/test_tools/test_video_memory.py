"""tools/analysis/video_memory.py --dataset, as the README runs it (tiny
frames): it writes a YouTube-VIS video, evaluates it with tools/test.py and
prints a row per length."""
import subprocess
import sys

from helpers import REPO


def test_dataset_rows():
    proc = subprocess.run([
        sys.executable, 'tools/analysis/video_memory.py', '--frames', '3',
        '--size', '40', '64', '--scale', '64', '40', '--dataset'
    ],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    header, row = proc.stdout.strip().splitlines()
    assert header.split() == [
        'frames', 'peak', 'MB', 'seconds', 'MB/frame', 'video', 'MB', 'x',
        'first', 'masks', 'MB'
    ]
    frames, peak, seconds, video_mb, ratio, masks_mb = row.split()
    assert frames == '3' and int(peak) > 100 and float(seconds) > 0
    assert video_mb == '0' and ratio == '1.00' and int(masks_mb) >= 0
