"""torch.compile'd branches never recompile across switches: parameters stay where they are."""
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
