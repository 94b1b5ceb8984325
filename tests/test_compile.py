"""torch.compile'd branches never recompile across switches: parameters stay where they are."""
import torch

import fastmotive as fm
from fastmotive.conditions import RandomActivation

from .test_trainer import Net, batches


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
    trainer.epochs = 6
    trainer.fit(train, val)   # continues with many more switches
    switches = sum(s["switched"] for s in trainer.history.steps)
    assert switches >= 10
    assert len(compiled_graphs) == warm, f"{len(compiled_graphs) - warm} recompilations over {switches} switches"
