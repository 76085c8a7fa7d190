"""TrainingArguments for every seqstruct Trainer, from one helper: precision, device, seeds and logging
are decided here once, so pretraining, contrastive training, distillation and fine-tuning agree."""

from __future__ import annotations

from typing import Any

import torch

from seqstruct.config import TrainConfig

# transformers schedules that take a floor (`min_lr_rate`, the share of the peak they decay to).
MIN_LR_SCHEDULERS = ("cosine_with_min_lr", "cosine_warmup_with_min_lr")


def use_bf16(precision: str) -> bool:
    """Resolve the `precision` setting: bf16 autocast pays off only where the hardware computes bf16 fast."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"train.precision must be auto, fp32 or bf16; got {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    # AMX tiles make CPU bf16 matrix products several times faster than fp32; without them bf16 is slower.
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def check_schedule(train: TrainConfig) -> None:
    """Refuse schedule settings that the Trainer would reject late or apply silently otherwise."""
    use_bf16(train.precision)
    if train.max_minutes < 0:
        raise ValueError(f"train.max_minutes must be >= 0 (0: no budget); got {train.max_minutes}")
    if not 0.0 <= train.min_lr_ratio < 1.0:
        raise ValueError(f"train.min_lr_ratio must be in [0, 1); got {train.min_lr_ratio}")
    if train.min_lr_ratio and train.lr_scheduler not in MIN_LR_SCHEDULERS:
        raise ValueError(
            f"train.min_lr_ratio={train.min_lr_ratio} needs lr_scheduler one of {MIN_LR_SCHEDULERS}; "
            f"{train.lr_scheduler!r} decays to 0"
        )
    if train.num_workers < 0:
        raise ValueError(f"train.num_workers must be >= 0; got {train.num_workers}")


def close_process_group() -> None:
    """Destroy the process group that TrainingArguments opened under torchrun, once a command has finished.
    Left to interpreter exit, Gloo's worker threads can be torn down mid-flight and abort a rank
    ("terminate called without an active exception", SIGABRT) after a run that succeeded, so torchrun
    reports it failed. Call it only on success: a rank that failed while others wait in a collective
    would hang in it."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def device_arguments(seed: int, precision: str, workers: int = 0) -> dict[str, Any]:
    """What every Trainer of seqstruct shares: seeds, precision, device and data-loader settings."""
    return dict(
        seed=seed,
        data_seed=seed,
        bf16=use_bf16(precision),
        use_cpu=not torch.cuda.is_available(),  # transformers asks for this explicitly with bf16 on CPU
        dataloader_num_workers=workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        report_to="none",  # TensorBoard is attached with a fixed directory (callbacks.tensorboard_callback)
    )


def schedule_arguments(train: TrainConfig, output_dir: str, evaluate: bool) -> dict[str, Any]:
    """The TrainingArguments of a run from its `train` section: schedule, checkpoints, precision, logging."""
    check_schedule(train)
    return dict(
        output_dir=output_dir,
        max_steps=train.max_steps,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.eval_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        learning_rate=train.learning_rate,
        warmup_steps=train.warmup_steps,
        lr_scheduler_type=train.lr_scheduler,
        lr_scheduler_kwargs={"min_lr_rate": train.min_lr_ratio} if train.min_lr_ratio else {},
        optim=train.optim,
        torch_compile=train.torch_compile,
        weight_decay=train.weight_decay,
        adam_beta2=train.adam_beta2,
        logging_steps=train.logging_steps,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=train.eval_steps,
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        disable_tqdm=False,
        **device_arguments(train.seed, train.precision, train.num_workers),
    )


def finetune_arguments(output_dir: str, seed: int, epochs: float, options: Any) -> dict[str, Any]:
    """The TrainingArguments of a fine-tuning fit of `epochs` passes, with an evaluation method's options
    (seqstruct.evaluation.methods.MethodOptions: batch_size, lr, max_steps, warmup_ratio, weight_decay,
    eval_steps, precision): validation every epoch (eval_steps 0) or every `eval_steps`, a checkpoint
    at each, and the best on valid loss kept at the end (early stopping)."""
    eval_steps = options.eval_steps
    by_epoch = eval_steps <= 0
    return dict(
        output_dir=output_dir,
        num_train_epochs=epochs,
        max_steps=options.max_steps,
        per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=options.batch_size,
        learning_rate=options.lr,
        warmup_steps=options.warmup_ratio,  # a float below 1 is a share of the steps
        weight_decay=options.weight_decay,
        eval_strategy="epoch" if by_epoch else "steps",
        save_strategy="epoch" if by_epoch else "steps",
        eval_steps=None if by_epoch else eval_steps,
        save_steps=None if by_epoch else eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="loss",
        greater_is_better=False,
        logging_steps=max(1, eval_steps // 2) if not by_epoch else 50,
        disable_tqdm=True,
        **device_arguments(seed, options.precision),
    )
