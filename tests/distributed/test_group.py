"""Multi-process training (fastmotive/distributed.py, launch.py, the distributed parts of evaluation.py,
bn_calibration.py and checkpoint.py): 2 CPU processes over gloo, one thread each, tiny models.

The processes are forked (the parent has imported torch and fastmotive once; a spawned worker would spend
seconds importing them again) and write what they saw to files the test reads; a worker's exception is
written there too and fails the test with its traceback.
"""
import multiprocessing
import os
import signal
import socket
import textwrap
import time
import traceback
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastmotive as fm
from fastmotive.conditions import LossStreak, RandomActivation, Signal
from fastmotive.distributed import Distributed, convert_sync_bn, synced_view
from fastmotive.distributed.launch import describe_failure, launch, without_nproc
from fastmotive.distributed.sync_bn import _to_sync_bn
from fastmotive.errors import CheckpointError, ConfigError, DistributedError
from fastmotive.optim import create_optimizer
from fastmotive.run import checkpoint
from fastmotive.training.calibration import batchnorm_layers, calibrate_bn
from fastmotive.training.evaluation import evaluate, evaluate_pair

WORLD, GLOBAL, STEPS = 2, 16, 12


pytestmark = pytest.mark.usefixtures("one_thread")


# -- tiny pairs and data ------------------------------------------------------------------------------------
class Mlp(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(12, width), nn.Linear(width, 4)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class BnNet(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.Linear(width, 4)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))


def mlp_pair():
    torch.manual_seed(0)
    return fm.MotivatedPair(Mlp(8), Mlp(16))


def bn_pair():
    torch.manual_seed(0)
    return fm.MotivatedPair(BnNet(4), BnNet(6))


def global_batch(kind: str, step: int):
    g = torch.Generator().manual_seed(100 + step)
    if kind == "mlp":
        teacher = torch.randn(12, 4, generator=torch.Generator().manual_seed(7))
        x = torch.randn(GLOBAL, 12, generator=g)
        return x, (x @ teacher).argmax(1)
    return torch.randn(GLOBAL, 3, 6, 6, generator=g), torch.randint(0, 4, (GLOBAL,), generator=g)


def images(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 6, 6, generator=g) * 2 + 1, torch.randint(0, 4, (n,), generator=g)


def batched(x, y, size: int):
    return [(x[i: i + size], y[i: i + size]) for i in range(0, len(y), size)]


class Contrary:
    """A test double: LossStreak(1), except that it decides the opposite at batch `at`."""
    needs = frozenset()

    def __init__(self, at: int):
        self.inner, self.at = LossStreak(1), at

    def update(self, signal: Signal) -> bool:
        decision = self.inner.update(signal)
        return not decision if signal.batch == self.at else decision


class Trainer:
    """The step the trainer is to run, in its order: forward, backward, agree, average_gradients, optimizer
    step, condition on the averaged loss, switch."""

    def __init__(self, pair, kind, group, condition=None):
        self.pair, self.kind, self.group = pair, kind, group
        pair.set_state_rows(2)
        self.opts = {m: create_optimizer("adamw", pair.segment(m), lr=0.02, weight_decay=0.01)
                     for m in ("base", "motivated")}
        self.condition = condition or LossStreak(1)
        self.record = []

    def run(self, start: int, stop: int, *, check_every=0, perturb_at=None, after_step=None):
        g, per = self.group, GLOBAL // self.group.world_size
        for step in range(start, stop):
            x, y = global_batch(self.kind, step)
            rows = slice(g.rank * per, (g.rank + 1) * per)
            active = self.pair.active
            opt = self.opts[active]
            opt.zero_grad()
            loss = F.cross_entropy(self.pair.model(active)(x[rows]), y[rows])
            loss.backward()
            mean = g.agree(loss, active, step)
            g.average_gradients(opt.segment.grad, step)
            opt.step(0.02, step + 1)
            if step == perturb_at:   # on the active model: a switch back would overwrite the other's slices
                with torch.no_grad():
                    opt.segment.param[0] += 1e-3
            motivated = self.condition.update(Signal(mean, 0, step, STEPS)) and step < STEPS - 1
            if ("motivated" if motivated else "base") != active:
                self.pair.switch_to("motivated" if motivated else "base")
            self.record.append((active, mean))
            if check_every and (step + 1) % check_every == 0:
                g.check_sync(synced_view(self.pair), step)
            if after_step is not None:
                after_step(step)
        return self.record


# -- running two processes ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(rank, port, scenario, folder, timeout_s):
    torch.set_num_threads(1)
    try:
        group = Distributed.init(rank, WORLD, init_method=f"tcp://127.0.0.1:{port}", timeout_s=timeout_s)
        result = scenario(rank, group, Path(folder))
        torch.save(result, Path(folder) / f"rank{rank}.pt")
        status = 0
    except BaseException:
        (Path(folder) / f"rank{rank}.err").write_text(traceback.format_exc())
        status = 1
    os._exit(status)   # no process-group teardown: a scenario may have left a peer dead or hung


def run_ranks(scenario, tmp_path, *, timeout_s=20.0, deadline=60.0, exits=(0, 0)):
    """Fork WORLD processes running `scenario(rank, group, folder)`; return their results, in rank order."""
    ctx, port = multiprocessing.get_context("fork"), free_port()
    procs = [ctx.Process(target=_child, args=(r, port, scenario, str(tmp_path), timeout_s)) for r in range(WORLD)]
    for p in procs:
        p.start()
    end = time.monotonic() + deadline
    for p in procs:
        p.join(max(0.1, end - time.monotonic()))
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    errors = [(tmp_path / f"rank{r}.err").read_text() for r in range(WORLD) if (tmp_path / f"rank{r}.err").exists()]
    assert not hung, f"ranks {hung} still running after {deadline} s\n" + "\n".join(errors)
    assert not errors, "\n".join(errors)
    assert tuple(p.exitcode for p in procs) == exits, [p.exitcode for p in procs]
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) if (tmp_path / f"rank{r}.pt").exists()
            else None for r in range(WORLD)]


# -- training: identical ranks, identical decisions, the single-process run --------------------------------
def _train_scenario(rank, group, folder):
    out = {}
    mlp = Trainer(mlp_pair(), "mlp", group)

    def save(step):   # a checkpoint half way: written once, by rank 0; rank 1 never builds the state
        if step == STEPS // 2 - 1:
            checkpoint.save_on_main(group, lambda: {**mlp.pair.state_dict(), "condition": mlp.condition.state_dict(),
                                                    "built_by": rank}, folder / "last.pt")
            out["saved"] = (folder / "last.pt").exists()

    out["mlp"] = mlp.run(0, STEPS, check_every=3, after_step=save)
    out["mlp_arena"] = mlp.pair.arena.data.clone()
    bn = Trainer(bn_pair(), "bn", group, condition=RandomActivation(0.5, seed=3))
    out["bn"] = bn.run(0, STEPS, check_every=4)
    out["bn_arena_own"] = bn.pair.arena.data.clone()
    group.reduce_bn([bn.pair.base, bn.pair.motivated], "reduce")
    group.check_sync(synced_view(bn.pair, buffers=True), STEPS)
    out["bn_arena_reduced"] = bn.pair.arena.data.clone()
    return out


def test_ranks_train_identically_and_like_one_process(tmp_path):
    r0, r1 = run_ranks(_train_scenario, tmp_path)
    # bitwise the same arena on both ranks; the same decisions and averaged losses, bit for bit
    assert torch.equal(r0["mlp_arena"], r1["mlp_arena"])
    assert r0["mlp"] == r1["mlp"] and r0["bn"] == r1["bn"]
    assert {a for a, _ in r0["mlp"]} == {"base", "motivated"} and {a for a, _ in r0["bn"]} == {"base", "motivated"}
    # with BatchNorm: parameters and optimizer rows equal, running statistics per rank until reduced
    pair = bn_pair()
    params = synced_view(pair)
    lo = params.storage_offset()
    cols = slice(lo, lo + params.shape[1])
    assert torch.equal(r0["bn_arena_own"][:, cols], r1["bn_arena_own"][:, cols])
    assert not torch.equal(r0["bn_arena_own"], r1["bn_arena_own"])
    assert torch.equal(r0["bn_arena_reduced"], r1["bn_arena_reduced"])
    # one process over the same global batches: the same active models, losses and weights within float error
    single = Trainer(mlp_pair(), "mlp", Distributed.single())
    reference = single.run(0, STEPS)
    assert [a for a, _ in reference] == [a for a, _ in r0["mlp"]]
    assert [loss for _, loss in r0["mlp"]] == pytest.approx([loss for _, loss in reference], rel=1e-5)
    torch.testing.assert_close(r0["mlp_arena"], single.pair.arena.data, rtol=1e-4, atol=1e-5)
    # the checkpoint: written by rank 0 only, before any rank went on; it carries every rank's RNG state
    assert r0["saved"] and r1["saved"]
    saved = checkpoint.load(tmp_path / "last.pt")
    assert saved["built_by"] == 0 and saved["world_size"] == 2 and len(saved["rng_ranks"]) == 2
    assert checkpoint.for_rank(saved, 1, 2)["rng"] is saved["rng_ranks"][1]
    assert checkpoint.for_rank(saved, 0, 1) is saved   # another process count: as saved
    # ... and one process resumes it over the same global batches, like the uninterrupted run
    resumed = Trainer(mlp_pair(), "mlp", Distributed.single())
    resumed.pair.load_state_dict(saved)
    resumed.condition.load_state_dict(saved["condition"])
    tail = resumed.run(STEPS // 2, STEPS)
    assert [a for a, _ in tail] == [a for a, _ in reference[STEPS // 2:]]
    torch.testing.assert_close(resumed.pair.arena.data, single.pair.arena.data, rtol=1e-4, atol=1e-5)


# -- disagreements, divergence, a dead or hung peer ----------------------------------------------------------
def _contrary_scenario(rank, group, folder):
    trainer = Trainer(mlp_pair(), "mlp", group, condition=Contrary(3) if rank == 1 else None)
    start = time.monotonic()
    with pytest.raises(DistributedError) as caught:
        trainer.run(0, STEPS)
    return {"message": str(caught.value), "seconds": time.monotonic() - start, "steps": len(trainer.record)}


def test_a_rank_deciding_otherwise_stops_every_rank_naming_the_step(tmp_path):
    for result in run_ranks(_contrary_scenario, tmp_path, timeout_s=30):
        message = result["message"]
        assert "disagree at step 4" in message and "rank 0" in message and "rank 1" in message
        assert "base model" in message and "motivated model" in message
        assert result["steps"] == 4 and result["seconds"] < 10   # at once, not after the 30 s timeout


def _perturbed_scenario(rank, group, folder):
    trainer = Trainer(mlp_pair(), "mlp", group)
    with pytest.raises(DistributedError) as caught:
        trainer.run(0, STEPS, check_every=1, perturb_at=5 if rank == 1 else None)
    return {"message": str(caught.value), "steps": len(trainer.record)}


def test_check_sync_catches_a_perturbed_rank(tmp_path):
    for result in run_ranks(_perturbed_scenario, tmp_path):
        assert "differ across processes at step 5" in result["message"]
        assert "rank(s) 1 differ from rank 0" in result["message"]
        assert result["steps"] == 6


def _hung_or_dead_scenario(rank, group, folder):
    group.agree(1.0, "base", 0)
    if rank == 1:
        if (folder / "kill").exists():
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(8)
        return {}
    start = time.monotonic()
    with pytest.raises(DistributedError) as caught:
        group.agree(1.0, "base", 1)
    return {"message": str(caught.value), "seconds": time.monotonic() - start}


@pytest.mark.parametrize("peer", ["hung", "killed"])
def test_a_hung_or_killed_peer_is_an_error_within_the_timeout(tmp_path, peer):
    """A hung peer: an error after the 2 s timeout, long before it would answer (8 s). A killed one: at once,
    well within a 20 s timeout."""
    killed = peer == "killed"
    if killed:
        (tmp_path / "kill").touch()
    result, _ = run_ranks(_hung_or_dead_scenario, tmp_path, timeout_s=20 if killed else 2, deadline=40,
                          exits=(0, -signal.SIGKILL if killed else 0))
    assert "rank 0 of 2: the step agreement at step 1 failed" in result["message"]
    assert result["seconds"] < (5 if killed else 6)


# -- evaluation, calibration, BatchNorm, checkpoints -----------------------------------------------------------
VAL, CALIBRATION = 13, 15   # neither divisible by 2


def _calibration_stream(rank):
    x, y = images(12, seed=50 + rank)
    return batched(x, y, 5)


def _eval_scenario(rank, group, folder):
    pair = bn_pair()
    x, y = images(VAL, seed=9)
    shard = group.shard(VAL)
    val = batched(x[shard.start: shard.stop], y[shard.start: shard.stop], 4)
    out = {"evaluate": evaluate(pair.base, val, dist=group), "shard": len(shard),
           "pair": _figures(evaluate_pair(pair, val, _calibration_stream(rank), CALIBRATION, dist=group))}
    model = bn_pair().motivated
    out["calibration"] = calibrate_bn(model, _calibration_stream(rank), CALIBRATION, dist=group)
    out["stats"] = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in batchnorm_layers(model)]
    for mode in ("reduce", "bn_broadcast"):
        model = bn_pair().base
        with torch.no_grad():
            model.bn.running_mean.fill_(rank + 1.0)
            model.bn.running_var.fill_(10.0 * (rank + 1))
        group.reduce_bn(model, mode.removeprefix("bn_"))
        out[mode] = (model.bn.running_mean.clone(), model.bn.running_var.clone())
    out["mean"] = group.mean(rank + 1.0)
    out["broadcast"] = group.broadcast_(torch.full((3,), float(rank + 5)))
    # a checkpoint rank 0 cannot write: every rank raises, the others with rank 0's error class
    if rank == 0:
        (folder / "a_dir").mkdir()   # the rename over it fails
    with pytest.raises(CheckpointError) as caught:
        checkpoint.save_on_main(group, lambda: {"x": 1}, folder / "a_dir")
    out["failed_write"] = str(caught.value)
    return out


def test_sharded_evaluation_calibration_and_bn_reduction_are_exact(tmp_path):
    r0, r1 = run_ranks(_eval_scenario, tmp_path)
    assert (r0["shard"], r1["shard"]) == (6, 7)
    x, y = images(VAL, seed=9)
    single = evaluate(bn_pair().base, batched(x, y, 4))
    for r in (r0, r1):
        assert r["evaluate"][1:] == single[1:]                      # top-1, top-5: exact
        assert r["evaluate"][0] == pytest.approx(single[0], rel=1e-6)   # float32 sums per batch
    assert r0["evaluate"] == r1["evaluate"] and r0["pair"] == r1["pair"]
    # calibration over both ranks == one process over the union of their shares (7 + 8 images)
    union = [b for rank, share in ((0, 7), (1, 8)) for b in batched(*[t[:share] for t in _flat(rank)], 5)]
    model = bn_pair().motivated
    used = calibrate_bn(model, union, CALIBRATION)
    assert r0["calibration"] == r1["calibration"] == used
    for (m0, v0), (m1, v1), bn in zip(r0["stats"], r1["stats"], batchnorm_layers(model)):
        assert torch.equal(m0, m1) and torch.equal(v0, v1)
        torch.testing.assert_close(m0, bn.running_mean, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(v0, bn.running_var, rtol=1e-6, atol=1e-7)
    expected = _figures(evaluate_pair(bn_pair(), batched(x, y, 4), union, CALIBRATION))
    assert r0["pair"].keys() == expected.keys()
    assert r0["pair"] == pytest.approx(expected, rel=1e-5)
    # reduce_bn: timm's distribute_bn
    for r in (r0, r1):
        assert torch.equal(r["reduce"][0], torch.full((4,), 1.5))
        assert torch.equal(r["reduce"][1], torch.full((4,), 15.0))
        assert torch.equal(r["bn_broadcast"][0], torch.full((4,), 1.0))
        assert torch.equal(r["bn_broadcast"][1], torch.full((4,), 10.0))
        assert r["mean"] == 1.5 and torch.equal(r["broadcast"], torch.full((3,), 5.0))
    assert "could not write the checkpoint" in r0["failed_write"] and r0["failed_write"] == r1["failed_write"]


def _flat(rank):
    x, y = zip(*_calibration_stream(rank))
    return torch.cat(x), torch.cat(y)


# -- launch: kill -9 of one rank ends the job with a clear message, the checkpoint intact ----------------------
WORKER = textwrap.dedent("""
    import os, signal, sys, time
    import torch
    torch.set_num_threads(1)
    from fastmotive import checkpoint
    from fastmotive.distributed import Distributed
    group = Distributed.from_env(timeout_s=30)
    path = sys.argv[1]
    for step in range(1000):
        checkpoint.save_on_main(group, lambda: {"step": step, "weights": torch.full((1000,), float(step))}, path)
        if step == 3 and group.rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.05)
""")


def test_launch_kill_9_of_one_rank_ends_the_job_naming_it(tmp_path, capfd):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    start = time.monotonic()
    status = launch([str(tmp_path / "last.pt"), "--nproc", "2"], 2, entry=[str(script)])
    assert time.monotonic() - start < 60
    assert status == 128 + signal.SIGKILL
    err = capfd.readouterr().err
    assert "fastmotive train: rank 1 of 2" in err and "was killed by SIGKILL" in err and "--resume" in err
    saved = checkpoint.load(tmp_path / "last.pt")   # whole, and one of the steps before the kill
    assert saved["step"] == 3 and torch.equal(saved["weights"], torch.full((1000,), float(saved["step"])))


# -- single process, helpers ------------------------------------------------------------------------------------
def test_a_single_process_context_is_a_no_op():
    group = Distributed.from_env(env={})
    assert (group.rank, group.world_size, group.is_main, group.enabled) == (0, 1, True, False)
    grad = torch.arange(4.0)
    assert group.average_gradients(grad) is grad and torch.equal(grad, torch.arange(4.0))
    assert group.agree(torch.tensor(0.25), "motivated", 3) == 0.25
    group.check_sync(torch.ones(3), 0)
    pair = bn_pair()
    before = pair.arena.data.clone()
    group.reduce_bn(pair.base, "reduce")
    assert torch.equal(pair.arena.data, before)
    assert group.share(13) == 13 and group.shard(13) == range(13) and group.device_for("cpu") == torch.device("cpu")
    with pytest.raises(ValueError):
        group.agree(1.0, "large", 0)
    with pytest.raises(ConfigError):
        group.reduce_bn(pair.base, "average")


def test_shards_and_shares_cover_every_item_once():
    for n in (0, 1, 13, 100):
        for w in (1, 2, 3, 8):
            parts = [Distributed(r, w).shard(n) for r in range(w)]
            assert [i for p in parts for i in p] == list(range(n))


def test_sync_bn_is_refused_on_the_cpu_and_stays_in_the_arena():
    pair = bn_pair()
    with pytest.raises(ConfigError, match="needs CUDA"):
        convert_sync_bn(pair, Distributed.single())
    assert _to_sync_bn(pair) == 2
    assert isinstance(pair.base.bn, nn.SyncBatchNorm) and isinstance(pair.motivated.bn, nn.SyncBatchNorm)
    pair.arena.check_bound()   # the same tensors, still arena views
    with torch.no_grad():
        pair.base.bn.running_mean.fill_(3.0)
    pair.switch_to("motivated")
    assert torch.equal(pair.motivated.bn.running_mean[:4], torch.full((4,), 3.0))
    pair.motivated(torch.randn(4, 3, 6, 6))   # one process: plain BatchNorm, updating the arena in place
    assert pair.motivated.bn.running_mean.data_ptr() == pair.arena.view(pair.arena.slots["motivated", "bn.running_mean"]).data_ptr()


def test_evaluate_pair_evaluates_the_members_of_a_single_model_run():
    class Single:
        members = ("base",)

        def __init__(self):
            self.base = bn_pair().base

        def model(self, name):
            return self.base

    x, y = images(VAL, seed=9)
    row = evaluate_pair(Single(), batched(x, y, 4))
    assert set(row) == {"base_eval_loss", "base_top1", "base_top5", "base_eval_loss_raw", "base_top1_raw",
                        "base_top5_raw", "base_bn_calibrated", "bn_calibration_images", "calibration_s"}


def _figures(row: dict) -> dict:
    """An evaluation row without its timing (measured, so never equal across ranks or runs)."""
    return {k: v for k, v in row.items() if k != "calibration_s"}


def test_launch_helpers():
    assert without_nproc(["--arch", "a:b", "--nproc", "2", "--nproc=3", "-b", "8"]) == ["--arch", "a:b", "-b", "8"]

    class Failure:
        def __init__(self, exitcode, timestamp, pid):
            self.exitcode, self.timestamp, self.pid = exitcode, timestamp, pid

    message, status = describe_failure({0: Failure(-signal.SIGTERM, 5, 10), 1: Failure(-signal.SIGKILL, 5, 11)}, 2)
    assert message.startswith("fastmotive train: rank 1 of 2 (pid 11) was killed by SIGKILL; rank 0 was killed by "
                              "SIGTERM") and status == 137
    assert describe_failure({1: Failure(2, 5, 11)}, 2)[1] == 2
