"""torch.compile'd branches never recompile across switches: parameters stay where they are."""
import pytest
import torch

import fastmotive as fm
from fastmotive.conditions import RandomActivation
from tests.helpers import Net, batches


def test_alternating_never_recompiles_after_warmup():
    compiled_graphs = []

    def counting_backend(gm, example_inputs):
        compiled_graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    torch.manual_seed(0)
    pair = fm.MotivatedPair(Net(4), Net(6))
    trainer = fm.Trainer(pair, optimizer="adamw", lr=1e-3, condition=RandomActivation(0.5, seed=0), epochs=1,
                         compile="default", compile_backend=counting_backend)
    train, val = batches(6), batches(2, seed=3)
    trainer.fit(train, val)   # warm-up: both models, train and eval
    assert {s["active"] for s in trainer.history.steps} == {"base", "motivated"}
    warm = len(compiled_graphs)
    assert 2 <= warm <= 8
    trainer.fit(train, val, epochs=6)   # continues with many more switches
    switches = sum(s["switched"] for s in trainer.history.steps)
    assert switches >= 10
    assert len(compiled_graphs) == warm, \
        f"{len(compiled_graphs) - warm} recompilations over {switches} switches"


def test_both_models_compile_with_a_real_backend():
    """aot_eager traces through AOTAutograd, whose aliasing checks see the arena layout (BN's int64 buffers
    among fp32 parameters); the compiled branches must train like eager ones."""
    torch._dynamo.reset()
    data = batches(4)
    results = []
    for compile in (None, "default"):
        torch.manual_seed(0)
        pair = fm.MotivatedPair(Net(4), Net(6))
        trainer = fm.Trainer(pair, optimizer="sgd", lr=0.05, condition=fm.LossStreak(k=1), epochs=2,
                             compile=compile, compile_backend="aot_eager")
        history = trainer.fit(data)
        assert {s["active"] for s in history.steps} == {"base", "motivated"}
        results.append(pair.arena.data[:-1].clone())
    torch.testing.assert_close(results[1], results[0], rtol=1e-5, atol=1e-6)


def test_inductor_trains_both_branches_like_eager_without_recompiling():
    """The real backend (inductor, C++ on a CPU) on the training step of a small nested CNN pair through the
    arena: both branches forward and backward, evaluation too, no graph compiled after warm-up however many
    switches follow, and the weights eager training gives."""
    from torch._inductor.compile_fx import compile_fx

    graphs = []

    def counting_inductor(gm, example_inputs):
        graphs.append(gm)
        return compile_fx(gm, example_inputs)

    data, val = batches(6), batches(2, seed=3)
    results = {}
    for compile in (None, "default"):
        torch._dynamo.reset()
        torch.manual_seed(0)
        pair = fm.MotivatedPair(Net(4), Net(6))
        trainer = fm.Trainer(pair, optimizer="sgd", lr=0.05, condition=RandomActivation(0.5, seed=1), epochs=1,
                             compile=compile, compile_backend=counting_inductor, bn_calibrate=0)
        trainer.fit(data, val)   # warm-up: both models, train and eval
        warm = len(graphs)
        trainer.fit(data, val, epochs=4)
        history = trainer.history
        assert {s["active"] for s in history.steps} == {"base", "motivated"}
        assert sum(s["switched"] for s in history.steps) >= 6
        if compile:
            assert warm >= 2 and len(graphs) == warm, f"{len(graphs) - warm} graphs compiled after warm-up"
        results[compile] = ([s["loss"] for s in history.steps], pair.arena.data[:-1].clone())
    (eager_losses, eager), (compiled_losses, compiled) = results[None], results["default"]
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-4, abs=1e-5)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
