"""Training pieces every recipe shares: the batch order, the learning-rate schedule, one optimizer step, which
weights train (LoRA, all, the last blocks), their state in a checkpoint, and resuming with the run's logs trimmed.

Every piece is a pure function of (seed, step) where it can be, so a run resumed from a checkpoint repeats an
uninterrupted one exactly.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from .errors import DetoxkitError


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> list[int]:
    """Row indices of a step's batch: epochs of seeded permutations, read as one endless stream."""
    out = []
    for pos in range(step * batch_size, (step + 1) * batch_size):
        epoch, k = divmod(pos, n)
        perm = list(range(n))
        random.Random(seed * 1_000_003 + epoch).shuffle(perm)
        out.append(perm[k])
    return out


def lr_at(step: int, cfg) -> float:
    """Learning rate for the update that takes the model from `step` to `step + 1` (cfg: learning_rate,
    warmup_steps, lr_scheduler_type "constant" | "linear", max_steps)."""
    warmup = getattr(cfg, "warmup_steps", 0)
    if warmup and step < warmup:
        return cfg.learning_rate * (step + 1) / warmup
    if getattr(cfg, "lr_scheduler_type", "constant") == "linear":
        span = max(1, cfg.max_steps - warmup)
        return cfg.learning_rate * max(0.0, 1 - (step - warmup) / span)
    return cfg.learning_rate


def optimizer_step(model, optimizer, accelerator, loss_fn: Callable, max_grad_norm: float, lr: float):
    """One update: loss_fn() -> per-example losses (B,), backward of their mean, clipping, step; returns them
    detached."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    losses = loss_fn()
    accelerator.backward(losses.mean())
    if max_grad_norm:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return losses.detach()


def lora_targets(spec: str):
    """PEFT's target_modules from a config string: "all-linear" or a comma-separated list of module names."""
    return spec if spec == "all-linear" else [t.strip() for t in spec.split(",") if t.strip()]


def lora_config(r: int = 16, alpha: int = 32, target_modules: str = "all-linear"):
    """PEFT's LoraConfig with dropout 0, so training is a pure function of the seed."""
    from peft import LoraConfig

    return LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=0.0, task_type="CAUSAL_LM", target_modules=lora_targets(target_modules)
    )


def apply_lora(model, r: int = 16, alpha: int = 32, target_modules: str = "all-linear"):
    """The model wrapped with a fresh LoRA adapter (PEFT, adapter name "default")."""
    from peft import get_peft_model

    return get_peft_model(model, lora_config(r, alpha, target_modules))


def prepare_trainable(
    model,
    mode: str,
    lora_r: int = 16,
    lora_alpha: int = 32,
    lora_target_modules: str = "all-linear",
    num_train_layers: int = 2,
):
    """Mark the parameters a fine-tune updates: "lora" (returns the PEFT-wrapped model), "full", "last_layers"
    (the last num_train_layers blocks and the final norm) or "none"."""
    if mode == "lora":
        return apply_lora(model, lora_r, lora_alpha, lora_target_modules)
    if mode not in ("full", "last_layers", "none"):
        raise DetoxkitError(f"unknown train mode {mode!r} (lora, full, last_layers, none)")
    for p in model.parameters():
        p.requires_grad_(mode == "full")
    if mode == "last_layers":
        decoder = model.get_decoder()
        if not hasattr(decoder, "layers"):
            raise DetoxkitError(f"train mode last_layers: {type(model).__name__} has no decoder .layers")
        for module in [*decoder.layers[-num_train_layers:], getattr(decoder, "norm", None)]:
            for p in module.parameters() if module is not None else []:
                p.requires_grad_(True)
    return model


def trainable_tensors(model) -> dict:
    """{name: parameter} of the trainable parameters: what a checkpoint stores for a model.

    named_parameters() lists tied weights once, so the dict never holds shared storage (safetensors refuses it)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_tensors(model, tensors: dict, where) -> None:
    """Copy checkpoint tensors into the model's trainable parameters; the names must match exactly."""
    import torch

    params = trainable_tensors(model)
    if set(params) != set(tensors):
        extra = sorted(set(tensors) - set(params))[:1] or sorted(set(params) - set(tensors))[:1]
        raise DetoxkitError(
            f"{where}: checkpoint tensors do not match this model's trainable parameters (e.g. "
            f"{extra[0] if extra else '?'}): written with another base model or train mode?"
        )
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(tensors[n].to(p.device, p.dtype))


def resume(output_dir: str | Path, spec: str | None, optimizers: dict | None = None) -> tuple[dict, dict] | None:
    """(tensors, trainer state) of the checkpoint `spec` names ('latest' or a folder), with optimizer and RNG
    states restored in place; None when there is nothing to resume."""
    from .runs import load_checkpoint, resolve_resume

    path = resolve_resume(output_dir, spec)
    if path is None:
        return None
    tensors, state = load_checkpoint(path, optimizers)
    state["path"] = str(path)
    return tensors, state


def trim_log(path: str | Path, keep: Callable[[dict], bool]) -> None:
    """Keep only the rows of a JSONL log that `keep` accepts: rows written after the checkpoint a run resumes from
    would otherwise be written twice."""
    from .runs import atomic_write_text, json_line, read_jsonl

    path = Path(path)
    atomic_write_text(path, "".join(json_line(r) for r in read_jsonl(path) if keep(r)))


def micro_batches(idx: list[int], lengths: list[int], max_rows: int | None, max_tokens: int | None) -> list[list[int]]:
    """One step's rows (`idx`, with their token `lengths`) cut into micro-batches: sorted by length so that rows of
    like length share padding, each batch at most max_rows rows and at most max_tokens padded tokens (rows x its
    longest row; a row longer than that goes alone). None: no limit. The rows' order within a step does not change
    the step, only which rows are padded together."""
    order = sorted(range(len(idx)), key=lambda k: lengths[k])
    out: list[list[int]] = []
    for k in order:
        part = out[-1] if out else None
        fits = part is not None and (max_rows is None or len(part) < max_rows)
        # sorted ascending, so this row is the longest of the batch it would join
        fits = fits and (max_tokens is None or (len(part) + 1) * lengths[k] <= max_tokens)
        if fits:
            part.append(idx[k])
        else:
            out.append([idx[k]])
    return out


def finetune_completions(
    model,
    tokenizer,
    contexts: list[str],
    completions: list[str],
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
    desc: str = "fine-tuning",
    micro_batch_size: int | None = None,
    micro_batch_tokens: int | None = None,
) -> list[float]:
    """AdamW on the mean completion cross-entropy (SFT on {"prompt", "completion"} pairs), `epochs` shuffled
    passes; returns the loss of every step. A step's rows run as micro-batches (see `micro_batches`: at most
    micro_batch_size rows and micro_batch_tokens padded tokens each), their gradients summed into the step's: the
    same batch mean up to rounding, with the activations of fewer rows in memory at once."""
    import torch

    from .lm.batch import encode, pad_id
    from .lm.score import completion_logprobs
    from .memory import release_freed_memory
    from .runs import progress

    params = [p for p in model.parameters() if p.requires_grad]
    if not contexts or not params:
        return []
    opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    ctx_ids, comp_ids, pad = encode(tokenizer, contexts), encode(tokenizer, completions), pad_id(tokenizer)
    losses = []
    model.train()
    bar = progress(total=epochs * ((len(contexts) + batch_size - 1) // batch_size), desc=desc, unit="step", leave=False)
    for _ in range(epochs):
        order = torch.randperm(len(contexts), generator=gen).tolist()
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = 0.0
            lengths = [len(ctx_ids[i]) + len(comp_ids[i]) for i in idx]
            for part in micro_batches(idx, lengths, micro_batch_size, micro_batch_tokens):
                lp = completion_logprobs(
                    model, [ctx_ids[i] for i in part], [comp_ids[i] for i in part], pad, average=True
                )
                part_loss = -lp.sum() / len(idx)
                part_loss.backward()
                loss += part_loss.item()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(loss)
            bar.update(1)
    bar.close()
    model.eval()
    release_freed_memory()
    return losses


def is_peft(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "set_adapter")


def rename_adapter(tensors: dict, old: str, new: str) -> dict:
    """{name: tensor} with the adapter-name component `old` of every name replaced by `new` (PEFT names LoRA weights
    ...lora_A.<adapter>.weight): a shared-base role stores its adapter under "default", as a standalone model does."""
    if old == new:
        return dict(tensors)
    return {".".join(new if part == old else part for part in n.split(".")): t for n, t in tensors.items()}


class TrainableLM:
    """A causal LM (possibly PEFT-wrapped) with its tokenizer and how it was built (meta): the adversarial loop's
    judge and attacker.

    Roles can share one base model (:meth:`on_base`): each then owns a named LoRA adapter of the same PEFT model
    (`adapter`), or uses the bare base weights with every adapter disabled (`base_only`). Everything that runs the
    model goes through :meth:`using`, which activates the role's weights first."""

    adapter: str | None = None  # the role's adapter on a shared PEFT model (None: a model of its own)
    base_only: bool = False  # a frozen role on a shared PEFT model: the base weights, adapters disabled
    disabled: bool = False  # inside reference(): adapters disabled for this role too
    trained: bool = False  # fine-tuned or loaded from a checkpoint since it was built
    micro_batch_size: int | None = None  # rows per forward/backward of a fine-tuning step (None: the whole batch)
    micro_batch_tokens: int | None = None  # padded tokens per forward/backward (None: no limit)

    def __init__(self, model, tokenizer, meta: dict):
        self.model, self.tokenizer, self.meta = model, tokenizer, dict(meta)
        self.model.eval()

    @classmethod
    def load(
        cls,
        base_model: str,
        train_mode: str = "lora",
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_target_modules: str = "all-linear",
        num_train_layers: int = 2,
        dtype: str = "float32",
        device: str = "cpu",
        **kwargs,
    ):
        from .lm.load import load_model_and_tokenizer

        model, tok = load_model_and_tokenizer(base_model, dtype, device)
        meta = dict(
            base_model=str(base_model),
            train_mode=train_mode,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            lora_target_modules=lora_target_modules,
            num_train_layers=num_train_layers,
        )
        model = prepare_trainable(model, train_mode, lora_r, lora_alpha, lora_target_modules, num_train_layers)
        return cls(model, tok, meta, **kwargs)

    @classmethod
    def on_base(
        cls,
        other: "TrainableLM",
        adapter: str,
        train_mode: str = "lora",
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_target_modules: str = "all-linear",
        **kwargs,
    ):
        """A second role on `other`'s model, with no copy of its weights: a new LoRA adapter named `adapter`
        (train_mode "lora") or the frozen base with adapters disabled ("none"). `other` must be a LoRA role: full and
        last_layers fine-tunes change the base weights, so they cannot share them."""
        if train_mode not in ("lora", "none"):
            raise DetoxkitError(f"train mode {train_mode!r} changes the base weights: it cannot share a base model")
        if not is_peft(other.model) or other.base_only:
            raise DetoxkitError("only a LoRA role's model can be shared (load the first role with train_mode lora)")
        other.adapter = other.adapter or other.model.active_adapter
        meta = dict(other.meta, train_mode=train_mode, lora_r=lora_r, lora_alpha=lora_alpha)
        meta["lora_target_modules"] = lora_target_modules
        if train_mode == "lora":
            other.model.add_adapter(adapter, lora_config(lora_r, lora_alpha, lora_target_modules))
        role = cls(other.model, other.tokenizer, meta, **kwargs)
        role.adapter, role.base_only = (adapter, False) if train_mode == "lora" else (None, True)
        return role

    @contextmanager
    def using(self):
        """The model with this role's weights active: its adapter (the only trainable one), or the base weights."""
        if self.base_only or self.disabled:
            with self.model.disable_adapter():
                yield self.model
            return
        if self.adapter is not None:
            self.model.set_adapter(self.adapter)
        yield self.model

    def finetune_pairs(self, contexts, completions, epochs, learning_rate, batch_size, seed, desc) -> list[float]:
        """finetune_completions on this role's trainable weights (none for a frozen role on a shared base)."""
        if self.base_only:
            return []
        self.trained = True
        with self.using() as model:
            return finetune_completions(
                model,
                self.tokenizer,
                contexts,
                completions,
                epochs,
                learning_rate,
                batch_size,
                seed,
                desc=desc,
                micro_batch_size=self.micro_batch_size,
                micro_batch_tokens=self.micro_batch_tokens,
            )

    def trainable_state(self) -> dict:
        """{name: tensor} copies of the trainable weights (what a round's checkpoint stores); a shared-base role's
        adapter is stored under PEFT's "default" name, so a standalone model loads it."""
        if self.base_only:
            return {}
        with self.using() as model:
            state = {n: p.detach().clone() for n, p in trainable_tensors(model).items()}
        return rename_adapter(state, self.adapter, "default") if self.adapter else state

    def load_trainable(self, tensors: dict, where: str = "checkpoint") -> None:
        if self.base_only:
            if tensors:
                raise DetoxkitError(f"{where}: weights for a frozen role (train mode none)")
            return
        self.trained = True
        with self.using() as model:
            load_trainable_tensors(model, rename_adapter(tensors, "default", self.adapter or "default"), where)
