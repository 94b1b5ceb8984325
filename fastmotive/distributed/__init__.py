"""Multi-process data-parallel training over torch.distributed (docs/distributed.md).

Every process (rank) holds the whole pair (one arena) and trains the active model on its share of each global
batch (rows [r*b, (r+1)*b) of a global batch of b*world images: the data layer's split). After backward,
`Distributed.average_gradients` all-reduces the active model's gradient segment, one contiguous 1-D view of the
arena, in ONE collective, instead of DDP's per-parameter buckets (docs/distributed.md has the measurements and
why it is not bucketed). Decisions are identical on every rank: `Distributed.agree` hands the condition the
loss averaged over ranks and checks, in the same small collective, that every rank is at the same step with the
same active model.

`Distributed.single()` (one process, no process group) is what a plain run uses: every method is a cheap no-op
returning its input, so the trainer calls the same methods always.

Every collective runs under the process group's finite timeout (`FASTMOTIVE_DIST_TIMEOUT` seconds, default
600); a peer that died, hung or took another code path ends in a `DistributedError` naming this rank, the
operation and the step, never in a hang.

Modules: `group` (`Distributed`, `Agreement`, `synced_view`), `sync_bn` (`convert_sync_bn`). The launcher for
``fastmotive train --nproc N`` is `fastmotive.distributed.launch`; sharded evaluation and calibration across ranks are
`fastmotive.training.evaluation.evaluate(..., dist=)` and `fastmotive.training.calibration.calibrate_bn(..., dist=)`;
rank-0 checkpoints are `fastmotive.run.checkpoint.save_on_main` and `for_rank`.
"""
from fastmotive.distributed.group import (BN_MODES, DEFAULT_TIMEOUT_S, TIMEOUT_ENV, Agreement, Distributed,
                                          synced_view)
from fastmotive.distributed.sync_bn import convert_sync_bn

__all__ = ["BN_MODES", "DEFAULT_TIMEOUT_S", "TIMEOUT_ENV", "Agreement", "Distributed", "convert_sync_bn",
           "synced_view"]
