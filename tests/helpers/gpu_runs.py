"""The command lines the ``gpu`` tests run (``tests/gpu``): kept here so that the fast tests
compose and validate every one of them on a CPU, and a renamed key fails in CI."""

from __future__ import annotations

# ``python -m pipeline.train`` overrides, by test id: the default model and g2p, fp32 and
# bf16-mixed, CUDA graphs on.
GPU_TRAININGS = {
    f"{experiment}-{precision}": [
        "trainer=gpu", f"trainer.precision={precision}", "debug=fast", "trainer.max_epochs=2",
        "accel.cuda_graphs=true", *([] if experiment == "default" else
                                    [f"experiment={experiment}"])]
    for experiment in ("default", "g2p") for precision in ("32-true", "bf16-mixed")
}
# A two-job multirun on the GPU.
GPU_MULTIRUN = ["-m", "trainer=gpu", "debug=fast", "model.depth=1,2"]
# DDP over NCCL on two GPUs of one machine.
GPU_DDP = ["trainer=ddp", "trainer.devices=2", "debug=fast", "trainer.max_epochs=2"]
