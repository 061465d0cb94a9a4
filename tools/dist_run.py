"""torchrun for dist_launch.sh, with a failed process reported in one line.

    python tools/dist_run.py [torchrun options] SCRIPT [SCRIPT's arguments]

torchrun itself ends a run in which a process failed with its own stack
trace (``ChildFailedError``), also when the process only reported a user
error (``error: ...``, exit status 2). Here the processes' messages stay as
they printed them, and the launcher adds one line saying which processes
failed and exits with their status.
"""
import logging
import os.path as osp
import runpy
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

if __name__ == '__main__':
    # Before torch imports (seconds; torchrun's parser is torch's): a Ctrl+C
    # meanwhile is one line.
    runpy.run_path(
        osp.join(REPO, 'rap_sam', 'utils', 'interrupt_guard.py'),
        run_name='__main__')

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run


def main(argv=None):
    args = parse_args(argv)
    # The agent logs each failure over several lines; the summary below
    # says the same in one.
    logging.getLogger('torch.distributed.elastic').setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as err:
        failures = sorted(err.failures.items())
        codes = [failure.exitcode for _, failure in failures]
        ranks = ', '.join(str(rank) for rank, _ in failures)
        print(
            f'error: process {ranks} of {args.training_script} failed '
            f'(exit status {", ".join(map(str, codes))}); its messages are '
            'above.',
            file=sys.stderr)
        positive = [code for code in codes if code > 0]
        raise SystemExit(positive[0] if positive else 1)


if __name__ == '__main__':
    main()
