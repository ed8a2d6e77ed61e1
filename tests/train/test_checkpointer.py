"""The train state and checkpointer: both formats, verification, recovery, disk space, locks."""

import errno
import json
import logging
import os
import time

import pytest
import torch

from astrobio_lib import fsutil
from astrobio_lib.train import checkpoint as ckpt
from astrobio_lib.train.data_order import ResumableOrder


def make_state(seed: int = 0, config=None) -> ckpt.TrainState:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return ckpt.TrainState(model, opt, sched, ResumableOrder(10, 2, 0), dict(config or {"seed": 0}))


def step(state: ckpt.TrainState) -> None:
    loss = state.model(torch.randn(4, 8)).pow(2).mean()
    loss.backward()
    state.optimizer.step()
    state.optimizer.zero_grad()
    state.scheduler.step()
    state.order.next_batch(10)
    state.counters["step"] += 1


def params_of(state):
    return [p.detach().clone() for p in state.model.parameters()]


def saved_run(tmp_path, steps=4, keep=5, **kw):
    state = make_state()
    cp = ckpt.Checkpointer(tmp_path, keep=keep, **kw)
    for _ in range(steps):
        step(state)
        cp.save(state)
    cp.close()
    return state, cp


def test_keep_last_k_plus_best_and_resume_restores_every_part(tmp_path):
    state = make_state()
    cp = ckpt.Checkpointer(tmp_path, keep=2)
    for i in range(1, 8):
        step(state)
        cp.save(state, best=i == 3)
    kept = [e["file"] for e in cp.entries()]
    assert kept == ["step_00000003.pt", "step_00000006.pt", "step_00000007.pt"]
    assert sorted(p.name for p in tmp_path.glob("step_*.pt")) == kept
    assert sorted(p.name for p in tmp_path.glob("*.sha256")) == [k + ".sha256" for k in kept]
    fresh = make_state(seed=1)
    assert cp.load(fresh).endswith("step_00000007.pt")
    assert all(torch.equal(a, b) for a, b in zip(params_of(fresh), params_of(state), strict=True))
    assert fresh.step == 7 and fresh.order.position == state.order.position
    assert fresh.optimizer.state_dict()["state"][0]["step"] == state.optimizer.state_dict()["state"][0]["step"]


def test_async_save_writes_the_same_checkpoint_as_a_blocking_one(tmp_path):
    state = make_state()
    step(state)
    sync_cp = ckpt.Checkpointer(tmp_path / "sync", keep=2)
    async_cp = ckpt.Checkpointer(tmp_path / "async", keep=2, async_save=True)
    sync_cp.save(state)
    async_cp.save(state)
    before = params_of(state)
    step(state)  # training goes on while the background save writes the snapshot
    async_cp.close()
    a = ckpt.load_file(tmp_path / "async" / "step_00000001.pt")
    b = ckpt.load_file(tmp_path / "sync" / "step_00000001.pt")
    assert all(torch.equal(x, y) for x, y in zip(a["model"].values(), b["model"].values(), strict=True))
    assert torch.equal(a["model"]["0.weight"], before[0]) and a["counters"]["step"] == 1
    assert ckpt.verify(tmp_path / "async", async_cp.entries()[0]) is None


@pytest.mark.parametrize("damage", ["deleted", "list", "no_step", "garbage"])
def test_a_lost_or_malformed_manifest_is_rebuilt_from_the_files(tmp_path, caplog, damage):
    """Fault findings: a deleted manifest restarted at step 0; `[1,2,3]` or an entry without "step"
    gave raw tracebacks."""
    _, cp = saved_run(tmp_path)
    manifest = tmp_path / ckpt.MANIFEST
    if damage == "deleted":
        manifest.unlink()
    elif damage == "list":
        manifest.write_text("[1, 2, 3]")
    elif damage == "no_step":
        manifest.write_text(json.dumps({"checkpoints": [{"file": "step_00000004.pt"}]}))
    else:
        manifest.write_text("{not json")
    fresh = make_state(seed=3)
    with caplog.at_level(logging.WARNING, "astrobio.train"):
        path = ckpt.Checkpointer(tmp_path, keep=5).load(fresh)
    assert path.endswith("step_00000004.pt") and fresh.step == 4
    assert "rebuilt from the 4 checkpoint(s) present" in caplog.text


def test_unreadable_manifest_and_a_flipped_byte_falls_back_by_the_sidecar_checksum(tmp_path, caplog):
    """Fault finding: resumed from a corrupt file without a warning when the manifest was unreadable."""
    saved_run(tmp_path)
    (tmp_path / ckpt.MANIFEST).write_text("{")
    newest = tmp_path / "step_00000004.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    fresh = make_state(seed=3)
    with caplog.at_level(logging.WARNING, "astrobio.train"):
        path = ckpt.Checkpointer(tmp_path).load(fresh)
    assert path.endswith("step_00000003.pt") and fresh.step == 3
    assert "step_00000004.pt is sha256 mismatch" in caplog.text


def test_every_checkpoint_corrupt_stops_instead_of_restarting(tmp_path):
    """Fault finding: four fallback warnings, then a fresh start at step 0 and exit 0."""
    saved_run(tmp_path)
    for p in tmp_path.glob("step_*.pt"):
        p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(ckpt.CheckpointError, match=r"4 checkpoint\(s\) in .*none valid.*step_00000004.pt: sha256 "
                                                   r"mismatch.*resume: never"):
        ckpt.Checkpointer(tmp_path).load(make_state())


def test_another_configuration_is_refused_not_fallen_back_from(tmp_path):
    state, cp = saved_run(tmp_path, steps=2)
    other = make_state(config={"seed": 0, "micro_batch_size": 3})
    with pytest.raises(ckpt.ConfigMismatch, match="micro_batch_size: 32 -> 3"):  # absent: the default (32)
        cp.load(other)


def test_a_full_disk_names_the_path_and_bytes_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """Fault finding: a raw `OSError: [Errno 28]` traceback and partial *.tmp files left behind."""
    state, cp = saved_run(tmp_path, steps=2)
    real_save = torch.save

    def full(obj, f, *a, **k):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    step(state)
    with pytest.raises(fsutil.DiskFullError) as err:
        cp.save(state)
    msg = str(err.value)
    assert "step_00000003.pt" in msg and "MB free" in msg and "previous checkpoint step_00000002.pt" in msg
    monkeypatch.setattr(torch, "save", real_save)
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "no partial file remains"
    fresh = make_state(seed=5)
    assert cp.load(fresh).endswith("step_00000002.pt") and fresh.step == 2


def test_disk_space_is_checked_before_training(tmp_path, monkeypatch):
    cp = ckpt.Checkpointer(tmp_path, keep=3)
    monkeypatch.setattr(ckpt, "free_bytes", lambda p: 10_000_000)
    with pytest.raises(ckpt.CheckpointError, match=r"each is ~0.01 GB and keep_checkpoints=3 \(\+2 while writing\) "
                                                   r"needs 0.05 GB, but 0.01 GB are free"):
        cp.check_space(10_000_000)
    cp.check_space(1_000_000)


def test_atomic_writes_use_unique_temp_names_and_leave_nothing_on_failure(tmp_path):
    a, b = fsutil.temp_path(tmp_path / "x.json"), fsutil.temp_path(tmp_path / "x.json")
    assert a != b and str(os.getpid()) in a.name
    target = tmp_path / "state.json"
    fsutil.atomic_write(target, "old")
    with pytest.raises(RuntimeError):
        with fsutil.atomic_open(target) as fh:
            fh.write(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_run_lock_refuses_a_second_holder_and_takes_over_a_stale_one(tmp_path):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom astrobio_lib import fsutil\n"
                               f"fsutil.RunLock({str(tmp_path)!r}).acquire()\nprint('held', flush=True)\n"
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(fsutil.RunLockedError, match=rf"in use by another run: pid {holder.pid} on .* since"):
            fsutil.RunLock(tmp_path).acquire()
    finally:
        holder.kill()  # killed: its lock file stays behind, nobody holds it
        holder.wait()
    lock = fsutil.RunLock(tmp_path)
    assert json.loads(lock.path.read_text())["pid"] == holder.pid
    lock.acquire()
    assert lock.took_over["pid"] == holder.pid and json.loads(lock.path.read_text())["pid"] == os.getpid()
    with pytest.raises(fsutil.RunLockedError, match="already held by this process"):
        fsutil.RunLock(tmp_path).acquire()
    lock.release()
    assert not lock.path.exists()


def _contend(directory, start, inside, most, taken) -> None:
    """One contender of the race test: take the lock (or be refused), hold it briefly, release."""
    start.wait()
    lock = fsutil.RunLock(directory)
    try:
        lock.acquire()
    except fsutil.RunLockedError:
        return
    with inside.get_lock():
        inside.value += 1
        most.value = max(most.value, inside.value)
    taken.value += 1
    time.sleep(0.02)
    with inside.get_lock():
        inside.value -= 1
    lock.release()


def test_a_stale_lock_raced_by_three_processes_has_exactly_one_holder(tmp_path):
    """Issue 23, finding 2: with a stale run.lock present, three processes took it at once in 81 of 100
    trials (each unlinked the file another had just created). flock: never two holders."""
    import multiprocessing as mp
    import socket

    ctx = mp.get_context("fork")
    most, inside, taken = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Value("i", 0)
    trials = 60
    for trial in range(trials):
        folder = tmp_path / f"t{trial}"
        folder.mkdir()
        (folder / "run.lock").write_text(json.dumps({"pid": 2**22 + trial, "host": socket.gethostname(),
                                                     "started": "2026-01-01T00:00:00"}))
        start = ctx.Barrier(3)
        procs = [ctx.Process(target=_contend, args=(folder, start, inside, most, taken)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        assert all(p.exitcode == 0 for p in procs)
    assert most.value == 1, f"{most.value} processes held one lock at once"
    assert taken.value >= trials  # every trial had a holder (a later one may take it after a release)


def test_sharded_checkpoints_carry_checksums_and_are_recovered_without_a_manifest(tmp_path):
    """DCP format in a one-process group (what fsdp2 without torchrun gets)."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from astrobio_lib.train import distributed

    info = distributed.init("fsdp2")
    try:
        assert dist.is_initialized() and info.world_size == 1
        state = make_state()
        fully_shard(state.model)
        state.optimizer = torch.optim.AdamW(state.model.parameters(), lr=1e-2)
        state.scheduler = torch.optim.lr_scheduler.LambdaLR(state.optimizer, lambda s: 1.0)
        cp = ckpt.Checkpointer(tmp_path, keep=3, info=info, sharded=True)
        for _ in range(2):
            step(state)
            cp.save(state)
        newest = tmp_path / "step_00000002.dcp"
        sums = json.loads((newest / ckpt.CHECKSUMS).read_text())
        assert "rank_0.pt" in sums and any(n.endswith(".distcp") for n in sums)
        (tmp_path / ckpt.MANIFEST).unlink()
        (newest / "rank_0.pt").write_bytes(b"corrupt")
        fresh = make_state(seed=7)
        fully_shard(fresh.model)
        fresh.optimizer = torch.optim.AdamW(fresh.model.parameters(), lr=1e-2)
        fresh.scheduler = torch.optim.lr_scheduler.LambdaLR(fresh.optimizer, lambda s: 1.0)
        path = ckpt.Checkpointer(tmp_path, keep=3, info=info, sharded=True).load(fresh)
        assert path.endswith("step_00000001.dcp") and fresh.step == 1
        weights, config, used = ckpt.load_model_weights(tmp_path, "newest")
        assert used.name == "step_00000001.dcp" and set(weights) == set(state.model.state_dict())
    finally:
        distributed.cleanup()
