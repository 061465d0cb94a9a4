import os
import os.path as osp
import random

import numpy as np
import torch
from mmengine.dist import get_world_size, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from . import checkpoint_files


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's :class:`~mmengine.hooks.CheckpointHook`, safe to kill.

    mmengine's hook first deletes the checkpoint that ``max_keep_ckpts``
    retires, then writes the new one in place and then ``last_checkpoint``:
    killed in between, a run is left with no complete checkpoint and a
    ``last_checkpoint`` naming a deleted or truncated file. Here, on local
    disks, each save

    1. writes the checkpoint to a hidden temporary file in the same
       directory, fsyncs it and renames it over its final name;
    2. then points ``last_checkpoint`` at it (the same way, atomically);
    3. only then deletes the checkpoints ``max_keep_ckpts`` retires.

    A kill at any moment leaves a complete checkpoint that
    ``last_checkpoint`` names. The ids written into the checkpoint's
    message hub still list the retired checkpoints, so a run resumed after
    a kill between steps 2 and 3 deletes them (mmengine's ``before_train``
    trims that list); temporary files a kill left are removed there too.

    With ``resume=True`` (``tools/train.py --resume``) and no file given,
    the run resumes from the checkpoint ``last_checkpoint`` names when it
    is complete, else from the newest complete one (a warning says so;
    files of runs saved by mmengine's own hook end up there), see
    :func:`~rap_sam.engine.checkpoint_files.find_resumable_checkpoint`.

    The checkpoint also holds this process's random states (torch, numpy,
    ``random``), restored on resume: with the data loaded in the main
    process (``num_workers=0``) a resumed run then repeats exactly what the
    uninterrupted one did (the CPU toy run, tools/analysis/kill_resume.py).
    Data loader workers draw from their own states, seeded afresh by
    mmengine when they start, so with workers the augmentations after a
    resume differ from an uninterrupted run's.

    Other storage backends (``backend_args``) save as mmengine does.
    """

    def _checkpoint_dir(self, runner) -> str:
        """``out_dir`` as ``before_train`` will resolve it."""
        out_dir = self.out_dir or runner.work_dir
        if out_dir != runner.work_dir:
            out_dir = osp.join(out_dir,
                               osp.basename(runner.work_dir.rstrip(osp.sep)))
        return out_dir

    def before_run(self, runner) -> None:
        # Runs before Runner.load_or_resume, which would read
        # last_checkpoint blindly.
        if not (runner._resume and runner._load_from is None):
            return
        ckpt_dir = self._checkpoint_dir(runner)
        if '://' in ckpt_dir:
            return
        path = checkpoint_files.find_resumable_checkpoint(
            runner.work_dir, ckpt_dir, self.filename_tmpl)
        if path is None:
            # Nothing complete to resume from; mmengine would try the file
            # last_checkpoint names (missing or truncated) and fail.
            runner._resume = False
        else:
            runner._load_from = path

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_states'] = dict(
            torch=torch.get_rng_state(),
            numpy=np.random.get_state(),
            random=random.getstate())

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Applied in before_train: Runner.resume may still reseed after
        # loading (when the config's seed differs from the checkpoint's).
        # The states are rank 0's: ranks seeded apart keep their own.
        per_rank = (runner.cfg.get('randomness') or {}).get('diff_rank_seed')
        if runner._resume and not (per_rank and get_world_size() > 1):
            self._rng_states = checkpoint.get('rng_states')

    def _restore_rng_states(self) -> None:
        states = getattr(self, '_rng_states', None)
        if not states:
            return
        torch.set_rng_state(states['torch'].cpu())
        np.random.set_state(states['numpy'])
        random.setstate(states['random'])
        self._rng_states = None

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self._restore_rng_states()
        if self._is_local() and is_main_process():
            for dirname in {self.out_dir, runner.work_dir}:
                for name in checkpoint_files.remove_stale_tmp_files(dirname):
                    runner.logger.info(f'Removed {name}, left by a save '
                                       'that was interrupted.')

    def _is_local(self) -> bool:
        return isinstance(self.file_backend, LocalBackend)

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self._is_local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        retired = []
        keep = self.max_keep_ckpts > 0 and not (len(self.keep_ckpt_ids) > 0 and
                                                self.keep_ckpt_ids[-1] == step)
        if keep:
            ids = list(self.keep_ckpt_ids) + [step]
            retired = ids[:-self.max_keep_ckpts]
            # Saved with the retired ids: see the class docstring.
            runner.message_hub.update_info('keep_ckpt_ids', ids)
            self.keep_ckpt_ids.append(step)  # maxlen drops the oldest

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        tmp_filename = checkpoint_files.tmp_name(ckpt_filename)
        runner.save_checkpoint(
            self.out_dir,
            tmp_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if keep:
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        # Runner.save_checkpoint writes on the main process only.
        if not is_main_process():
            return

        checkpoint_files.commit_file(
            osp.join(self.out_dir, tmp_filename), self.last_ckpt)
        checkpoint_files.write_text_atomic(
            osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for old in retired:
            path = osp.join(self.out_dir, self.filename_tmpl.format(old))
            if osp.isfile(path):
                os.remove(path)
            elif osp.isdir(path):  # DeepSpeed saves directories
                self.file_backend.rmtree(path)
