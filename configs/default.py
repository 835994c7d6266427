"""The offline quickstart: DDPM (eps prediction) with a small UNet on scikit-learn's digits.

Trains in under 5 minutes on 2 CPU cores, then writes samples, a loss curve and metrics.json:

  python -m diffjax.main --config=configs/default.py --workdir=/tmp/diffjax_default

Override any field from the command line, e.g. `--config.training.num_steps=200`.
Every other config in this directory starts from `get_config()` here and overrides fields.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # train | sample | evaluate | eval_bpd | distill | reflow | edit | cascade
    config.mode = "train"
    config.method = "ddpm"  # a name in diffjax.methods
    config.seed = 0  # seeds init, data order, training noise and sampling

    config.data = ml_collections.ConfigDict()
    config.data.name = "digits"  # a name in diffjax.data (digits, toy2d, or a tfds name)
    config.data.kwargs = ml_collections.ConfigDict()  # extra keywords for diffjax.data.get

    config.model = ml_collections.ConfigDict()
    config.model.name = "unet_digits"  # a name in diffjax.models
    config.model.kwargs = ml_collections.ConfigDict()  # extra keywords for diffjax.models.get
    # 0: unconditional; N > 0: class-conditional on the dataset's N labels (must equal the
    # dataset's classes), passed to diffjax.models.get(..., num_classes=N); samples cycle
    # through the classes.
    config.model.num_classes = 0
    # Probability that a training label is replaced by the null class N, so the one network
    # also learns the unconditional model (classifier-free guidance training); needs N > 0.
    config.model.p_uncond = 0.0
    # Compute dtype of the network: float32 | bfloat16. Params, optimizer state, the loss, the
    # schedules and the samplers stay float32; bfloat16 pays off on TPUs and recent GPUs only.
    config.model.dtype = "float32"

    config.process = ml_collections.ConfigDict()
    config.process.name = "ddpm_linear"  # a name in diffjax.processes
    config.process.kwargs = ml_collections.ConfigDict({"num_steps": 1000})  # process parameters

    # Keywords of the method's builder, diffjax.methods.get(method)(process=..., **loss).
    config.loss = ml_collections.ConfigDict({"prediction": "eps"})

    # A trained run to learn from: the teacher of distillation methods (consistency
    # distillation, progressive distillation) and/or the initialisation of this run.
    config.teacher = ml_collections.ConfigDict()
    config.teacher.workdir = ""  # workdir of a finished mode=train run ("" for none)
    config.teacher.init_student = False  # start params["model"] from the teacher's EMA params

    # Latent diffusion: train on the latents of a trained method=autoencoder run on the same
    # data (diffjax/train/latents.py); samples are decoded to images. "" trains on the data.
    config.latent = ml_collections.ConfigDict({"autoencoder_workdir": ""})

    config.optim = ml_collections.ConfigDict()
    config.optim.optimizer = "adamw"  # adam | adamw
    config.optim.learning_rate = 2e-3  # peak learning rate after warm-up
    config.optim.schedule = "cosine"  # constant | cosine (decay to 0 at training.num_steps)
    config.optim.warmup_steps = 100  # linear warm-up from 0
    config.optim.b1 = 0.9  # Adam beta1
    config.optim.b2 = 0.999  # Adam beta2
    config.optim.weight_decay = 0.0  # decoupled weight decay (adamw)
    config.optim.grad_clip = 1.0  # global-norm clipping; 0 disables
    config.optim.ema_decay = 0.995  # EMA of the params used for sampling and evaluation

    config.training = ml_collections.ConfigDict()
    config.training.num_steps = 2000  # total optimizer steps (about 2.5 minutes on 2 CPU cores)
    config.training.batch_size = 128  # global batch; must divide by the number of devices
    config.training.log_every = 50  # steps between metric writes
    config.training.checkpoint_every = 500  # steps between checkpoints (and one at the end)
    config.training.keep_checkpoints = 3  # how many recent checkpoints to keep
    config.training.sample_every = 1000  # steps between sample grids; 0 disables
    # Resume although loss options, batch size, seed, Adam's betas, weight decay, EMA decay or
    # the teacher changed since the workdir's config.json (diffjax/train/workdirs.py).
    config.training.allow_config_change = False
    # Micro-batches per optimizer step: gradients of batch_size / grad_accum_steps examples at
    # a time are averaged, reaching a global batch larger than memory allows (must divide
    # batch_size; each micro-batch must still divide over the devices).
    config.training.grad_accum_steps = 1

    # Device mesh: the batch splits over data x fsdp, parameters and optimizer state over fsdp
    # (diffjax/train/sharding.py); -1 takes the remaining devices. A checkpoint restores onto
    # any mesh, so this may change on resume.
    config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1})

    # Cascaded super-resolution (diffjax.losses.conditioning.SuperResolution): a model
    # conditioned on the area-downsampled image, noise-augmented with the run's process.
    config.super_resolution = ml_collections.ConfigDict()
    config.super_resolution.low_res_size = 0  # side of the low-res input; 0: not an SR model
    config.super_resolution.aug_max_level = 0.0  # training augmentation s ~ U[0, this] (time)
    config.super_resolution.sample_level = 0.0  # fixed augmentation time s_0 of sampling

    # mode=cascade (diffjax/train/cascade.py): a base run, then SR runs, each a trained workdir
    config.cascade = ml_collections.ConfigDict()
    config.cascade.stages = ()  # workdirs: the base model, then each SR stage in order
    config.cascade.num_samples = 500  # images drawn through the whole cascade (and scored)

    config.sample = ml_collections.ConfigDict()
    config.sample.sampler = ""  # a name in diffjax.samplers; "" uses the method's default
    config.sample.num_steps = 100  # sampler steps (a subsequence of the T = 1000); 0: default
    config.sample.clip_x0 = True  # clip predicted x0 to [-1, 1] for discrete data (images)
    config.sample.num_samples = 64  # samples per grid / per `mode=sample` run
    config.sample.options = ml_collections.ConfigDict()  # extra sampler keywords (eta, ...)
    config.sample.labels = ()  # classes to draw (cycled) for a conditional model; () cycles all

    # mode=distill: progressive distillation rounds from teacher.workdir (diffjax/train/distill.py)
    config.distill = ml_collections.ConfigDict()
    config.distill.start_steps = 8  # student DDIM steps of the first round (its teacher: 2x)
    config.distill.end_steps = 1  # halve until the student takes this many steps

    # mode=reflow (k-rectified flow from teacher.workdir; see diffjax/train/reflow.py)
    config.reflow = ml_collections.ConfigDict()
    config.reflow.rounds = 1  # reflow rounds k (round k trains the (k + 1)-rectified flow)
    config.reflow.num_pairs = 10000  # (noise, sample) pairs simulated per round
    config.reflow.ode_steps = 100  # RK4 steps of the pair simulation and the path metrics
    config.reflow.pair_batch_size = 1000  # examples per jitted simulation batch
    config.reflow.eval_nfes = (1, 2, 4, 8)  # Euler step counts at which each flow is scored

    # Guidance of every sample the run draws (diffjax.guidance); kind "" samples unguided.
    config.guidance = ml_collections.ConfigDict()
    config.guidance.kind = ""  # "" | classifier_free | classifier
    config.guidance.scale = 0.0  # w of (1 + w) cond - w uncond, or s of eps - s sigma grad log p
    config.guidance.t_interval = (0.0, 1.0)  # classifier-free guidance only for t in [lo, hi]
    config.guidance.classifier_workdir = ""  # a method=noisy_classifier run (kind classifier)

    # mode=edit: edit test examples with the trained model (diffjax/train/edit.py)
    config.edit = ml_collections.ConfigDict()
    config.edit.kind = "inpaint"  # inpaint (RePaint) | sdedit | invert | interpolate
    config.edit.num_images = 16  # test examples (pairs of them for interpolate)
    config.edit.num_steps = 100  # reverse steps (RePaint, SDEdit); DDIM steps each way (invert)
    config.edit.mask = "lower_half"  # inpaint's region to fill: lower_half | random
    config.edit.known_fraction = 0.5  # random mask: fraction of known values
    config.edit.jump_length = 10  # RePaint's jump length j
    config.edit.resamplings = 10  # RePaint's resamplings r (1: plain replacement)
    config.edit.t0 = 0.5  # SDEdit's starting time
    config.edit.num_points = 8  # points of each interpolation path

    config.eval = ml_collections.ConfigDict()
    config.eval.num_samples = 500  # generated samples for the Frechet distance
    config.eval.at_end = True  # evaluate sample quality when training finishes
    # mode=eval_bpd: probability-flow ODE bits/dim of the EMA params on the test split.
    config.eval.bpd_batch_size = 100  # examples per jitted batch (divisible by the devices)
    config.eval.bpd_max_examples = 0  # 0: the whole test split
    config.eval.bpd_num_dequantizations = 5  # uniform dequantizations averaged per example
    config.eval.bpd_trace = "hutchinson"  # exact | hutchinson divergence
    config.eval.bpd_num_probes = 1  # Hutchinson probes per example
    config.eval.bpd_rtol = 1e-5  # Dormand-Prince relative tolerance
    config.eval.bpd_atol = 1e-5  # Dormand-Prince absolute tolerance
    config.eval.bpd_t_min = 1e-5  # start of the ODE (the data end)
    return config
