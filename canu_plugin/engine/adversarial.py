"""Camera-adversarial training inside fast-reid's trainer (CANU-ReID and ACAN).

:class:`AdversarialTrainer` replaces fast-reid's ``SimpleTrainer`` step. The model returns its
loss dict and one ``(features (B', D), condition (B', D') or None[, camids (B',)])`` tuple per
discriminator (``model(data, return_adv_inputs=True)``); the discriminators predict the tuple's
camids, or ``data["camids"]`` when it has none (then B' = B).

Schemes (``scheme``):
- ``"minmax"`` (CANU-ReID, Eq. 4/8): alternating updates. (1) each discriminator minimises the
  camera cross-entropy on *detached* features; (2) the encoder and ID classifiers minimise
  ``L_ID - w * L_CAM`` against the updated discriminators, whose parameters get no update from
  this term. The condition (centroid) never receives an adversarial gradient.
- ``"oce"`` / ``"ace"`` (ACAN): as minmax, the encoder term being ``w * OCE`` (probability mass on
  the other cameras, Eq. 9) or ``w * ACE`` (uniform over all cameras).
- ``"grl"``: one pass through a gradient-reversal layer (Ganin & Lempitsky): the discriminator
  minimises the camera cross-entropy and the encoder receives ``-w`` times its gradient. For CANU
  this is the documented single-pass variant of the min-max; for ACAN it is the paper's GRL scheme.
"""

import logging

import torch
from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm
from fastreid.utils.events import get_event_storage
from torch.func import functional_call

from canu_plugin.distributed import unwrap, wrap
from canu_plugin.engine.precision import PrecisionTrainer, amp_enabled, make_scaler
from canu_plugin.errors import CanuError
from canu_plugin.modeling.contract import AdversarialModel
from canu_plugin.modeling import losses as L
from canu_plugin.modeling.discriminators import build_discriminator
from canu_plugin.modeling.layers import grad_reverse

SCHEMES = ("minmax", "oce", "ace", "grl")
D_LR_SCHEDULES = ("encoder", "constant")  # MODEL.CANU / MODEL.ACAN .D_LR_SCHEDULE


def encoder_adversarial_loss(scheme, logits, camids):
    """The encoder's adversarial term for one discriminator's logits (B, C) and cameras (B,)."""
    if scheme == "minmax":
        return -L.camera_cross_entropy(logits, camids)
    if scheme == "oce":
        return L.other_camera_equiprobability(logits, camids)
    if scheme == "ace":
        return L.all_camera_equiprobability(logits)
    raise ValueError(f"unknown adversarial scheme {scheme!r}; expected one of {SCHEMES}")


def _frozen(module):
    """Call ``module`` with detached copies of its parameters and buffers (no update, no grad)."""
    module = unwrap(module)
    state = {k: v.detach().clone() if k.endswith(("running_mean", "running_var", "num_batches_tracked"))
             else v.detach() for k, v in list(module.named_parameters()) + list(module.named_buffers())}
    return lambda *args: functional_call(module, state, args)


class AdversarialTrainer(PrecisionTrainer):
    """fast-reid's step (with ``SOLVER.AMP`` as :class:`PrecisionTrainer`) + camera discriminators
    with their own optimizer (see the module docstring). With AMP the model's forward runs under
    autocast; the discriminators and their losses run in float32 on float32 copies of its outputs,
    and the discriminators' separate step (min-max, OCE, ACE) has its own GradScaler."""

    def __init__(self, model, data_loader, optimizer, param_wrapper, discriminators, d_optimizer,
                 scheme="minmax", weight=0.1, amp=False):
        super().__init__(model, data_loader, optimizer, param_wrapper, amp=amp)
        if scheme not in SCHEMES:
            raise ValueError(f"unknown adversarial scheme {scheme!r}; expected one of {SCHEMES}")
        self.discriminators = discriminators  # list of modules (DDP-wrapped when distributed)
        self.d_optimizer = d_optimizer
        self.d_grad_scaler = None if self.grad_scaler is None else make_scaler(self.device_type, self.amp_dtype)
        self.scheme = scheme
        self.weight = float(weight)

    def run_step(self):
        assert self.model.training, "[AdversarialTrainer] model was changed to eval mode!"
        data, data_time = self.next_batch()
        with self.autocast():
            loss_dict, pairs = self.model(data, return_adv_inputs=True)
        if len(pairs) != len(self.discriminators):
            raise RuntimeError(f"model gave {len(pairs)} adversarial inputs for {len(self.discriminators)} discriminators")
        camids = [(p[2] if len(p) > 2 else data["camids"]).to(p[0].device) for p in pairs]
        pairs = [(f.float(), None if c is None else c.float()) for f, c, *_ in pairs]
        loss_dict = {k: v.float() for k, v in loss_dict.items()}
        if self.scheme == "grl":
            disc_loss, logits = self._grl_terms(pairs, camids, loss_dict)
        else:
            disc_loss, logits = self._discriminator_step(pairs, camids)
            adv = [encoder_adversarial_loss(self.scheme, _frozen(d)(f, None if c is None else c.detach()), cams)
                   for d, (f, c), cams in zip(self.discriminators, pairs, camids)]
            loss_dict["loss_cam_adv"] = self.weight * sum(adv)
        self._write_discriminator_metrics(disc_loss, logits, camids)
        optimizers = [self.optimizer, self.d_optimizer] if self.scheme == "grl" else [self.optimizer]
        self.backward_and_step(loss_dict, data_time, optimizers)

    def _discriminator_step(self, pairs, camids):
        """Minimise the camera cross-entropy of every discriminator on detached inputs (float32).

        Args:
            pairs: [(features, condition or None)]; camids: one (B',) tensor per pair.
        """
        logits = [d(f.detach(), None if c is None else c.detach()) for d, (f, c) in zip(self.discriminators, pairs)]
        disc_loss = sum(L.camera_cross_entropy(lg, cams) for lg, cams in zip(logits, camids))
        self.d_optimizer.zero_grad()
        scaler = self.d_grad_scaler
        (disc_loss if scaler is None else scaler.scale(disc_loss)).backward()
        if scaler is None:
            self.d_optimizer.step()
        else:
            scaler.step(self.d_optimizer)
            scaler.update()
        return disc_loss.detach(), [lg.detach() for lg in logits]

    def _grl_terms(self, pairs, camids, loss_dict):
        """One pass: D's loss through a gradient reversal (the encoder gets -weight x the gradient);
        the model's backward fills D's gradients too, and both optimizers step on them."""
        logits = [d(grad_reverse(f, self.weight), None if c is None else c.detach())
                  for d, (f, c) in zip(self.discriminators, pairs)]
        disc_loss = sum(L.camera_cross_entropy(lg, cams) for lg, cams in zip(logits, camids))
        loss_dict["loss_cam_grl"] = disc_loss
        return disc_loss.detach(), [lg.detach() for lg in logits]

    def _write_discriminator_metrics(self, disc_loss, logits, camids):
        acc = torch.stack([(lg.argmax(1) == cams).float().mean() for lg, cams in zip(logits, camids)]).mean()
        values = comm.gather({"cam_disc_loss": disc_loss.item(), "cam_disc_acc": acc.item()})
        if comm.is_main_process():
            storage = get_event_storage()
            for k in values[0]:
                storage.put_scalar(k, sum(v[k] for v in values) / len(values))


def adversarial_settings(cfg):
    """(discriminator name, scheme, weight, optimizer factory) of the enabled method, or None."""
    if cfg.MODEL.CANU.ENABLED and cfg.MODEL.ACAN.ENABLED:
        raise CanuError("MODEL.CANU.ENABLED and MODEL.ACAN.ENABLED are exclusive: enable one")
    if cfg.MODEL.CANU.ENABLED:
        c = cfg.MODEL.CANU
        name = "ConditionalCameraDiscriminator" if c.CONDITIONAL else "CameraDiscriminator"
        return name, c.SCHEME, c.MU, lambda params: torch.optim.Adam(params, lr=c.D_LR)
    if cfg.MODEL.ACAN.ENABLED and cfg.MODEL.ACAN.SCHEME != "none":
        a = cfg.MODEL.ACAN
        return "ACANDiscriminator", a.SCHEME, a.LAMBDA, lambda params: torch.optim.SGD(params, lr=a.D_LR, momentum=0.9)
    return None


def discriminator_lr_schedule(cfg):
    """``D_LR_SCHEDULE`` of the enabled adversarial method ("encoder" or "constant"), or None."""
    if adversarial_settings(cfg) is None:
        return None
    node, name = (cfg.MODEL.CANU, "MODEL.CANU") if cfg.MODEL.CANU.ENABLED else (cfg.MODEL.ACAN, "MODEL.ACAN")
    if node.D_LR_SCHEDULE not in D_LR_SCHEDULES:
        raise CanuError(f"{name}.D_LR_SCHEDULE {node.D_LR_SCHEDULE!r}: use one of {D_LR_SCHEDULES}")
    return node.D_LR_SCHEDULE


class DiscriminatorLRScheduler(HookBase):
    """Steps the discriminators' schedulers (``trainer.d_scheduler``: fast-reid's ``lr_sched`` and
    ``warmup_sched`` built for the discriminators' optimizer, ``D_LR_SCHEDULE encoder``) when and as
    fast-reid's ``LRScheduler`` hook steps the encoder's, so D's rate keeps its ratio to the encoder's;
    puts D's rate in the storage as ``d_lr``. Registered right after fast-reid's hook; it finds the
    schedulers at the start of training (they are built after the hooks)."""

    _scale = None  # the encoder's loss scale before the step (AMP): a skipped step does not advance the warm-up

    def before_train(self):
        t = self.trainer
        if t.d_scheduler["lr_sched"].last_epoch != t.scheduler["lr_sched"].last_epoch:  # stepped together
            logging.getLogger(__name__).warning(
                "the checkpoint has no discriminator learning-rate scheduler (written before D_LR_SCHEDULE existed, "
                "or with D_LR_SCHEDULE constant): D's rate goes on from the checkpoint's, its milestones counted from "
                "this epoch. Use the key the run was started with, or start the run again.")

    def before_step(self):
        scaler = self.trainer.grad_scaler
        self._scale = None if scaler is None else scaler.get_scale()

    def after_step(self):
        t = self.trainer
        t.storage.put_scalar("d_lr", t.d_optimizer.param_groups[0]["lr"], smoothing_hint=False)
        warmup = t.d_scheduler.get("warmup_sched")
        if warmup is not None and t.iter + 1 <= t.warmup_iters and (
                t.grad_scaler is None or self._scale == t.grad_scaler.get_scale()):  # as the encoder's warm-up
            warmup.step()

    def after_epoch(self):
        t = self.trainer
        if t.iter + 1 > t.warmup_iters and t.epoch + 1 > t.delay_epochs:
            t.d_scheduler["lr_sched"].step()


def install_adversarial(trainer, cfg, num_cameras):
    """Give a fast-reid ``DefaultTrainer`` camera discriminators and the adversarial step.

    Builds one discriminator per entry of ``model.adversarial_dims``, their optimizer and (with
    ``D_LR_SCHEDULE encoder``) its schedulers (``trainer.build_lr_scheduler``, the encoder's schedule),
    wraps them for DDP, swaps ``trainer._trainer`` for an :class:`AdversarialTrainer` and registers
    them with the checkpointer (so ``--resume`` restores them).
    """
    settings = adversarial_settings(cfg)
    if settings is None:
        return
    name, scheme, weight, make_optimizer = settings
    if num_cameras < 2:
        raise CanuError(f"the training set has {num_cameras} camera: a camera discriminator has nothing to learn. "
                        "Use a dataset with several cameras, or disable MODEL.CANU.ENABLED / MODEL.ACAN.ENABLED.")
    model = trainer.unwrapped_model
    if not isinstance(model, AdversarialModel):
        raise CanuError(f"MODEL.META_ARCHITECTURE {type(model).__name__} feeds no camera discriminator: CANU needs a "
                        "pseudo-label model (PseudoBaseline, MMT, SSG) and ACAN its own (ACAN)")
    discs = torch.nn.ModuleList(build_discriminator(name, cfg, f, num_cameras, c)
                                for f, c in model.adversarial_dims).to(model.device)
    d_optimizer = make_optimizer(discs.parameters())
    run = [wrap(d) for d in discs]
    old = trainer._trainer
    trainer._trainer = AdversarialTrainer(old.model, old.data_loader, old.optimizer, old.param_wrapper,
                                          run, d_optimizer, scheme=scheme, weight=weight,
                                          amp=amp_enabled(cfg, model.device))
    trainer.checkpointer.checkpointables.update(discriminators=discs, d_optimizer=d_optimizer)
    trainer.discriminators, trainer.d_optimizer = discs, d_optimizer
    trainer.d_scheduler = {}
    if discriminator_lr_schedule(cfg) == "encoder":
        trainer.d_scheduler = trainer.build_lr_scheduler(cfg, d_optimizer, trainer.iters_per_epoch)
        trainer.checkpointer.checkpointables.update({f"d_{k}": v for k, v in trainer.d_scheduler.items()})
