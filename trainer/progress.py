"""What a person sees while a run trains: one progress bar with a few numbers, instead of TRL's metric dicts
(every metric still goes to the run's metrics.jsonl)."""

from __future__ import annotations

from typing import Any

# The numbers worth a glance, by the names TRL and our builder log them under, and how the bar shows them.
SHOWN = {
    "loss": "loss",
    "reward": "reward",
    "self_distillation/reward_mean": "reward",
    "stepalign/masked_fraction": "masked",
    "stepalign/mean_token_advantage": "adv",
}


def quiet_progress(trainer: Any) -> None:
    """Replace transformers' printer/progress callbacks of `trainer` with `StepProgress` (rank 0 only draws)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not trainer.args.disable_tqdm:
        trainer.add_callback(step_progress_class()())


def step_progress_class() -> type:
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):  # type: ignore[misc]
        """A tqdm bar over optimizer steps; its postfix holds the latest of `SHOWN`."""

        def __init__(self) -> None:
            self.bar: Any = None
            self.shown: dict[str, str] = {}

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:
                self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", unit="step")

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
            if self.bar is None or not logs:
                return
            for key, label in SHOWN.items():
                if isinstance(logs.get(key), int | float):
                    self.shown[label] = f"{logs[key]:.3g}"
            self.bar.set_postfix(self.shown, refresh=True)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return StepProgress
