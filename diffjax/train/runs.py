"""A run's directory as an object: its config, the TrainState of its latest checkpoint, and a
trained run used as the teacher (or the initialisation) of another.

Every `mode=train` run writes `<workdir>/config.json`, so a later run can name it as
`config.teacher.workdir` without repeating its configuration: distillation (`distill`,
consistency distillation) and `reflow` chain runs this way.

Besides `experiment.build` (and the chain modes reading their own section), this is the only
place that handles ConfigDicts: it writes and reads config.json, derives each chained round's
config, and compares a teacher's sections with its student's. Building a TrainState takes the
typed Experiment.
"""

import dataclasses
import functools
import json
import os

import jax
import ml_collections
from jax import Array
from jax.tree_util import Partial

from diffjax.errors import ConfigError, WorkdirError
from diffjax.methods.base import Params
from diffjax.train import checkpoint, experiment, settings, sharding, workdirs
from diffjax.train.optim import learning_rate_schedule, make_optimizer
from diffjax.train.state import TrainState, create_train_state

CONFIG_FILE = "config.json"
# Fields that must agree between a teacher and its student: the student calls the teacher's
# weights with its own network and reads them on its own process's time axis.
_SHARED_FIELDS = ("model", "process", "data")


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Writes `<workdir>/config.json` (atomically) on the first host."""
    if jax.process_index() != 0:
        return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, CONFIG_FILE)
    with open(path + ".tmp", "w") as f:
        f.write(config.to_json(indent=2, sort_keys=True))
    os.replace(path + ".tmp", path)


def derive(config: ml_collections.ConfigDict, **updates) -> ml_collections.ConfigDict:
    """An unlocked copy of `config` with dotted fields replaced, e.g.
    `derive(config, **{"teacher.workdir": path, "loss.student_steps": 4})`."""
    derived = ml_collections.ConfigDict(config.to_dict())
    for dotted, value in updates.items():
        *parents, leaf = dotted.split(".")
        node = derived
        for name in parents:
            node = node[name]
        node[leaf] = value
    return derived


def round_config(
    config: ml_collections.ConfigDict,
    teacher_workdir: str,
    student_steps: int | None = None,
    teacher_prediction: str | None = None,
) -> ml_collections.ConfigDict:
    """The config of one round of a chain (`mode=distill`, `mode=reflow`), as the round writes
    it to its config.json.

    A round is an ordinary `mode=train` run in its own workdir, started from the previous
    round's weights. Its config.json must describe it alone: a rerun of the chain resumes the
    round from it, and the next round loads it as its teacher. So what changes from round to
    round travels as these dotted fields, and only these.

    Args:
      config: the chain's config.
      teacher_workdir: the previous round (`teacher.workdir`, with `teacher.init_student`).
      student_steps: distill rounds only: the student's sampling steps, the loss option
        `student_steps` of a recipe whose `chain_modes` hold "distill"; the student samples
        with its method's own sampler at that many steps and is scored when it finishes.
      teacher_prediction: distill rounds only: the loss option `teacher_prediction`, what the
        previous round's network predicts.
    """
    updates = {"mode": "train", "teacher.workdir": teacher_workdir, "teacher.init_student": True}
    if student_steps is not None:
        updates.update(
            {
                "loss.student_steps": student_steps,
                "loss.teacher_prediction": teacher_prediction,
                "sample.sampler": "",
                "sample.num_steps": student_steps,
                "eval.at_end": True,
            }
        )
    return derive(config, **updates)


def check_chain_mode(exp: experiment.Experiment, mode: str, teacher: str) -> None:
    """Raises a ConfigError unless `exp`'s recipe runs in the chained `mode` (distill, reflow)
    and a teacher run is named; `teacher` says what it must be.

    Raises:
      ConfigError: naming the method and `Recipe.chain_modes`, or the missing teacher field.
    """
    if mode not in exp.recipe.chain_modes:
        raise ConfigError(
            f"mode={mode} needs a method whose Recipe supports it (chain_modes); method "
            f"{exp.recipe.name!r} does not"
        )
    if not exp.teacher.workdir:
        raise ConfigError(f"mode={mode} needs --config.teacher.workdir: {teacher}")


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a `mode=train` run wrote into `workdir`.

    Raises:
      WorkdirError: if `workdir` holds no config.json.
    """
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise WorkdirError(f"{path} not found: is {workdir} the workdir of a trained run?")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def state_constructor(exp: experiment.Experiment, teacher: Params | None = None):
    """The optimizer of `exp`, its learning-rate schedule and `create(key) -> TrainState` (also
    the restore template).

    The schedule is built once here: the optimizer steps by it and the loop logs it.

    Args:
      exp: the run's Experiment.
      teacher: the teacher's network params: stored as `frozen["teacher"]` when the recipe
        reads a teacher, and the start of `params["model"]` when `exp.teacher.init_student`.
        None builds a template whose teacher has the student's shapes (for restoring).

    Returns:
      (optimizer, learning_rate, create).
    """
    recipe = exp.recipe
    learning_rate = learning_rate_schedule(exp.optim, exp.training.num_steps)
    optimizer = make_optimizer(exp.optim, learning_rate, recipe.weight_decay_mask)
    init_student = teacher is not None and exp.teacher.init_student

    def init_params(key: Array) -> Params:
        params = exp.init_params(key)
        return {**params, "model": teacher} if init_student else params

    def init_frozen(params: Params) -> Params:
        frozen = recipe.init_frozen(params)
        if recipe.teacher_prediction is not None:
            frozen["teacher"] = params["model"] if teacher is None else teacher
        return frozen

    create = functools.partial(
        create_train_state, init_params=init_params, optimizer=optimizer, init_frozen=init_frozen
    )
    return optimizer, learning_rate, create


def state_shardings(exp: experiment.Experiment, create, mesh) -> tuple[TrainState, TrainState]:
    """The abstract TrainState of `create` (nothing allocated) and its NamedSharding per leaf on
    `mesh`, the parameters' from the network's logical axis names (`sharding.state_shardings`).

    Raises:
      ConfigError: naming `model.name` if the network names a logical axis that
        `sharding.LOGICAL_AXIS_RULES` does not map.
    """
    abstract = jax.eval_shape(create, jax.random.PRNGKey(exp.seed))
    with settings.naming("model.name"):
        return abstract, sharding.state_shardings(abstract, exp.logical_params(), mesh)


def restore_latest(
    config: ml_collections.ConfigDict, workdir: str
) -> tuple[experiment.Experiment, TrainState]:
    """The Experiment of `config` and the TrainState of the newest readable checkpoint in
    `workdir` (an unreadable newer one is skipped with a warning, and left where it is).

    Raises:
      WorkdirError: if `workdir` holds no complete checkpoint, if `config` differs from the
        workdir's config.json in a field that fixes what the checkpoints mean
        (`workdirs.FIXED`), or if no checkpoint can be read.
    """
    if os.path.exists(os.path.join(workdir, CONFIG_FILE)):
        workdirs.check_compatible(load_config(workdir), config, workdir, resuming=False)
    exp = attach_classifier(experiment.build(config))
    _, _, create = state_constructor(exp)
    abstract = checkpoint.abstract_like(*state_shardings(exp, create, sharding.make_mesh(exp.mesh)))
    manager = checkpoint.make_manager(workdir, exp.training.keep_checkpoints)
    try:
        if manager.latest_step() is None:
            raise WorkdirError(
                f"no checkpoint in {workdir}/checkpoints: train first with --config.mode=train"
            )
        return exp, checkpoint.restore(manager, abstract)
    finally:
        manager.close()


def attach_classifier(exp: experiment.Experiment) -> experiment.Experiment:
    """`exp` with the noisy classifier of `guidance.classifier_workdir` (its EMA params) as
    `exp.classifier` when the guidance kind is "classifier"; otherwise `exp` unchanged.

    Raises:
      ConfigError: if that run is not a noisy classifier or its process or data differ.
    """
    workdir = exp.guidance.classifier_workdir
    if exp.guidance.kind != "classifier":
        return exp
    classifier_config = load_config(workdir)
    classifier_exp, state = restore_latest(classifier_config, workdir)
    if classifier_exp.recipe.generative:
        raise ConfigError(
            f"guidance.classifier_workdir={workdir!r} holds a {classifier_exp.recipe.name!r} run, "
            "not a method=noisy_classifier run"
        )
    if classifier_exp.recipe.process != exp.recipe.process:
        raise ConfigError(
            f"the classifier in guidance.classifier_workdir={workdir!r} was trained on the process "
            f"{classifier_exp.recipe.process}, the model samples {exp.recipe.process}"
        )
    logits = Partial(classifier_exp.apply_fn, state.ema_params["model"])
    return dataclasses.replace(exp, classifier=logits)


def comparable(config: ml_collections.ConfigDict, field: str) -> dict:
    """config[field] as a dict, without where the data is stored (hosts may differ in that) and
    without the training-only label dropout `model.p_uncond` and the compute `model.dtype`."""
    value = config[field].to_dict()
    if field == "model":
        # The network is the same whatever labels it was trained with; older runs are
        # unconditional. Its float32 params run in any compute dtype.
        value.pop("p_uncond", None)
        value.pop("dtype", None)
        value.setdefault("num_classes", 0)
    if field == "data":
        value["kwargs"] = {k: v for k, v in value["kwargs"].items() if k != "data_dir"}
    return value


def load_teacher(config: ml_collections.ConfigDict, exp: experiment.Experiment) -> Params | None:
    """The EMA network params of the run in `exp.teacher.workdir` ("" gives None).

    Args:
      config: the student's config, whose model, process and data sections are compared with
        the teacher's config.json.
      exp: the student's Experiment.

    Raises:
      ConfigError: if the recipe needs a teacher and none is named, if the teacher's model,
        process or data differ from `config`'s (naming the differing field), or if the teacher
        does not predict the recipe's `teacher_prediction`.
    """
    workdir = exp.teacher.workdir
    expected = exp.recipe.teacher_prediction
    if not workdir:
        if expected is not None:
            raise ConfigError(
                f"method {exp.recipe.name!r} learns from a teacher: set --config.teacher.workdir "
                "to the workdir of a trained run"
            )
        return None
    teacher_config = load_config(workdir)
    for field in _SHARED_FIELDS:
        mine, theirs = (comparable(c, field) for c in (config, teacher_config))
        if json.dumps(mine, sort_keys=True) != json.dumps(theirs, sort_keys=True):
            raise ConfigError(
                f"config.{field} = {mine} differs from the teacher's {theirs} in {workdir}; "
                "a student runs its teacher's network on the same process and data"
            )
    teacher_exp, state = restore_latest(teacher_config, workdir)
    if expected is not None and teacher_exp.recipe.prediction != expected:
        raise ConfigError(
            f"the recipe's teacher_prediction={expected!r} (config.loss.teacher_prediction) but "
            f"the teacher in {workdir} predicts {teacher_exp.recipe.prediction!r}"
        )
    return state.ema_params["model"]
