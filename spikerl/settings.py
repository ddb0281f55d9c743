"""The settings of a preset (``envs/<EnvId>.yaml``): one typed class per section, each field
with its default and meaning, checked when built (see ``spikerl.schema``).

To add a setting, add a field to its section's class, with its type, ``setting(default=...,
low=..., high=...)`` and a docstring below it, and read it where it is used. For example
``sticky_actions: float = setting(default=0.0, low=0, high=1)`` in ``EvaluateSettings``: presets
then accept ``evaluate: {sticky_actions: 0.25}``, refuse other types and values in one line,
and ``spikerl.config.with_overrides`` merges a command-line value into it.
``spikerl.config`` reads preset files into these classes.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Literal, get_args

from spikerl.errors import UsageError
from spikerl.schema import Record, build, check_number, check_plain, quoted, setting

#: Evaluation episodes are seeded from here upwards; training seeds must stay below it.
EVAL_SEED_BASE = 1_000_000
#: Bounds that keep numbers from the user within what a run can hold.
MAX_TIMESTEPS = 64
MAX_LAYERS = 16  # hidden layers of a policy's net_arch
MAX_LAYER_SIZE = 8192  # units per layer (CartPole's: 256, NatureCNN's features: 512)
MAX_STEPS = 10**10
MAX_EPISODES = 1_000_000
MAX_SAMPLES = 10_000_000
MAX_THREADS = 1024  # fixed, not this machine's cores: a run's config.yaml must read back on any machine
#: Retraining objectives of ``spikerl compress`` (``spikerl.retrain``).
Objective = Literal["distill", "td"]
SCHEDULE_HINT = f"give decreasing timesteps up to {MAX_TIMESTEPS} such as 5,4,3,2,1"
STEPS_HINT = "give one number, or one per objective such as {distill: 3000, td: 10000}"
EVAL_SEED_HINT = f"evaluation seeds start at {EVAL_SEED_BASE} (training uses the ones below)"
OBJECTIVES: tuple[str, ...] = get_args(Objective)
#: ALE's recommended sticky-action probability (Machado et al. 2018; the default of ``ALE/...-v5``).
STICKY_ACTIONS = 0.25
#: How image observations enter a spiking network (``spikerl.encoding``).
Encoding = Literal["direct", "threshold", "event", "threshold+event"]
ENCODINGS: tuple[str, ...] = get_args(Encoding)
#: Which network gives ``td``'s bootstrap targets (``spikerl.retrain.TDRetrainer``).
TDTarget = Literal["student", "teacher"]


class EnvSettings(Record):
    """``env``: how the environment is built (``spikerl.envs.make_env``)."""

    atari: bool = False
    """SB3's Atari wrappers (noop reset, frame skip, 84x84 grayscale, clipped reward)."""
    frame_stack: int = setting(default=1, low=1, high=64)
    """Frames stacked per observation (Atari)."""
    wrapper_kwargs: dict[str, Any] = setting(factory=dict)
    """Keyword arguments of SB3's ``AtariWrapper``, e.g. ``frame_skip``."""
    env_kwargs: dict[str, Any] = setting(factory=dict)
    """Keyword arguments of ``gymnasium.make``, e.g. ``max_episode_steps``."""
    num_threads: int | None = setting(default=None, low=1, high=MAX_THREADS)
    """Torch CPU threads (None: torch's default)."""

    @property
    def frames_per_step(self) -> int:
        """Emulator frames per agent step: the Atari wrapper's ``frame_skip`` (SB3's default 4), else 1."""
        return int(self.wrapper_kwargs.get("frame_skip", 4)) if self.atari else 1


class TrainSettings(Record):
    """``train``: the ANN's training by ``spikerl train``."""

    policy: str
    """SB3 DQN policy: MlpPolicy or CnnPolicy."""
    n_timesteps: int = setting(low=1, high=MAX_STEPS)
    """Agent steps to train for."""
    eval_freq: int = setting(default=10_000, low=1, high=MAX_STEPS)
    """Evaluate (and keep the best model) every this many agent steps."""
    eval_episodes: int = setting(default=10, low=1, high=MAX_EPISODES)
    """Episodes per evaluation during training."""
    checkpoint_freq: int = setting(default=10_000, low=1, high=MAX_STEPS)
    """Write a resumable checkpoint every this many agent steps (and after every evaluation)."""
    save_replay_buffer: bool = True
    """Keep the replay buffer when the run stops, for resuming."""
    sticky_actions: float | None = setting(default=None, low=0, high=0.99)
    """Atari: train (and run the training-time evaluations) with ALE's sticky actions, the
    previous action repeated with this probability at every frame (None: the env's own)."""
    bfloat16: bool = False
    """Run the gradient steps under bfloat16 autocast (``spikerl.train.BFloat16DQN``): about half
    the time per Pong gradient step on a CPU with bfloat16 arithmetic (AMX; ``bench/train_step.py``;
    Pong training ran 48 agent steps/s against about 40), 12x the time on one without (AVX2 only:
    ``spikerl train`` warns), and other arithmetic, so a recipe learns differently with it."""
    dqn: dict[str, Any] = setting(factory=dict)
    """Keyword arguments of ``stable_baselines3.DQN`` (as in rl-baselines3-zoo)."""

    def check(self) -> None:
        from stable_baselines3 import DQN

        ann_policies = [name for name in DQN.policy_aliases if not name.startswith("Spiking")]  # spikerl's own: compress's
        if self.policy not in ann_policies:
            raise UsageError(
                f"policy must be one of {', '.join(ann_policies)} (spiking policies are made by 'spikerl compress'), "
                f"got {self.policy!r}",
                parameter="policy",
            )
        check_dqn_kwargs(self.dqn, "dqn")


class DistillSettings(Record):
    """``compress.distill``: the distillation objective (``spikerl.retrain.DistillationRetrainer``)."""

    student_states: int = setting(default=5000, low=0, high=MAX_SAMPLES)
    """States added to the pool from student rollouts before each stage."""
    epsilon: float = setting(default=0.2, low=0, high=1)
    """Exploration rate of those student rollouts."""
    batch_size: int = setting(default=256, low=1, high=MAX_SAMPLES)
    """States per gradient step."""
    learning_rate: float = setting(default=1e-3, above=0, high=1)
    """Adam learning rate at the start of each stage."""
    temperature: float = setting(default=0.1, above=0)
    """Softmax temperature of the student's Q-values, in units of the teacher advantages' std."""
    advantage_weight: float = setting(default=0.0, low=0)
    """Weight of the advantage MSE term (0: cross-entropy alone)."""
    max_pool: int = setting(default=100_000, low=1, high=MAX_SAMPLES)
    """Most states kept in the pool (the oldest leave first)."""
    cosine: bool = True
    """Anneal the learning rate to 0 over each stage."""


class TDSettings(Record):
    """``compress.td``: the paper's TD objective (``spikerl.retrain.TDRetrainer``)."""

    dqn: dict[str, Any] = setting(factory=dict)
    """Keyword arguments of ``stable_baselines3.DQN`` for the student (learning rate, target network, ...)."""
    teacher_transitions: int = setting(default=0, low=0, high=MAX_SAMPLES)
    """Transitions of teacher rollouts put in the replay buffer before the first stage."""
    teacher_epsilon: float = setting(default=0.1, low=0, high=1)
    """Exploration rate of those teacher rollouts."""
    fresh_optimizer: bool = False
    """Start every stage with fresh Adam moments (as the authors do)."""
    keep_best: bool = False
    """End each stage with the weights that scored best in its evaluations, not the last ones."""
    target: TDTarget = "student"
    """Network of the bootstrap target ``r + gamma * max_a Q(s', a)``: ``student`` (DQN's target
    network, a copy of the student synced every ``dqn.target_update_interval`` steps) or
    ``teacher`` (the ANN, frozen: the student learns the ANN's Q-function by TD)."""
    eval_freq: int = setting(default=1000, low=1, high=MAX_STEPS)
    """Agent steps between those evaluations (``keep_best``)."""
    eval_episodes: int = setting(default=5, low=1, high=MAX_EPISODES)
    """Greedy episodes per evaluation (``keep_best``), on training seeds apart from the evaluation seeds."""

    def check(self) -> None:
        check_dqn_kwargs(self.dqn, "dqn")


class CompressSettings(Record):
    """``compress``: conversion and the IIR schedule of ``spikerl compress``."""

    steps_per_stage: int | dict[str, int] = setting(low=0, high=MAX_STEPS, hint=STEPS_HINT)
    """Retraining per stage: gradient steps (distill) or agent steps (td). One number for either
    objective, or one per objective (``{distill: 3000, td: 10000}``); ``stage_steps`` is the one used."""
    schedule: tuple[int, ...] = setting(default=(5, 4, 3, 2, 1), low=1, high=MAX_TIMESTEPS, hint=SCHEDULE_HINT)
    """T of each stage, strictly decreasing."""
    objective: Objective = "distill"
    """Retraining objective: distill or td (the paper's TD loss)."""
    percentile: float = setting(default=90.0, above=0, high=100)
    """Percentile of each layer's input currents taken as its threshold."""
    encoding: Encoding = "direct"
    """Input of image observations: direct (analog pixels), threshold, event or threshold+event (spikes)."""
    input_margin: float = setting(default=0.1, above=0, high=0.99)
    """Spiking input: a pixel fires this much (of 0..1) above its channel's most common value, a change by this much."""
    calibration_samples: int = setting(default=512, low=1, high=MAX_SAMPLES)
    """ANN rollout states that set the thresholds."""
    stage_eval_episodes: int | None = setting(default=None, low=1, high=MAX_EPISODES)
    """Evaluation episodes per stage (None: evaluate.episodes)."""
    teacher_states: int = setting(default=5000, low=1, high=MAX_SAMPLES)
    """States from teacher rollouts in the initial distillation pool."""
    sticky_actions: float | None = setting(default=None, low=0, high=0.99)
    """Atari: retrain under ALE's sticky actions at this probability (calibration, the teacher's and
    the student's rollouts, td's transitions and in-stage evaluations); the stage evaluations keep
    the ``evaluate`` protocol (None: the env's own)."""
    neuron_kwargs: dict[str, Any] = setting(factory=dict)
    """Keyword arguments of ``spikerl.neurons.IFNeuron`` (threshold, leak, learn_leak, surrogate_scale)."""
    distill: DistillSettings = setting(factory=DistillSettings)
    """Settings of the distill objective."""
    td: TDSettings = setting(factory=TDSettings)
    """Settings of the td objective."""

    @property
    def stage_steps(self) -> int:
        """Retraining steps per stage of ``objective``: gradient steps (distill) or agent steps (td)."""
        steps = self.steps_per_stage
        return steps if isinstance(steps, int) else steps[self.objective]

    def check(self) -> None:
        if isinstance(self.steps_per_stage, dict):
            unknown = sorted(set(self.steps_per_stage) - set(OBJECTIVES))
            if unknown:
                raise UsageError(f"steps_per_stage has unknown objective {unknown[0]}; {STEPS_HINT}",
                                 parameter="steps_per_stage")
            if self.objective not in self.steps_per_stage:  # the objective may come from --objective: no flag named
                raise UsageError(f"compress.steps_per_stage has no entry for objective {self.objective}; {STEPS_HINT}")
        schedule = self.schedule
        if not schedule:
            raise UsageError(f"schedule is empty; {SCHEDULE_HINT}", parameter="schedule")
        if any(later >= earlier for earlier, later in zip(schedule, schedule[1:])):
            raise UsageError(
                f"schedule must decrease strictly (IIR lowers T stage by stage), got {','.join(map(str, schedule))}",
                parameter="schedule",
            )
        from spikerl.neurons import MIN_THRESHOLD, IFNeuron  # torch: imported when a compress section is checked

        _check_keywords(self.neuron_kwargs, IFNeuron, "neuron_kwargs", "spikerl.neurons.IFNeuron")
        numbers: dict[str, dict[str, Any]] = {  # as IFNeuron.constrain keeps them: threshold >= MIN_THRESHOLD, leak <= 1
            "threshold": {"low": MIN_THRESHOLD, "high": 1e6}, "leak": {"low": 0, "high": 1},
            "surrogate_scale": {"above": 0, "high": 1e6},
        }
        for key, value in self.neuron_kwargs.items():
            if key == "learn_leak" and not isinstance(value, bool):
                raise UsageError(f"neuron_kwargs.learn_leak must be true or false, got {quoted(value)}",
                                 parameter="neuron_kwargs.learn_leak")
            if key in numbers:
                check_number(value, f"neuron_kwargs.{key}", float, numbers[key])
        if self.objective == "td" and self.stage_steps > 0:
            self._check_td_learns()

    def _check_td_learns(self) -> None:
        """Refuse td settings under which the student makes no gradient step in any stage: SB3's
        DQN learns only past ``learning_starts`` agent steps, counted over all the stages."""
        from stable_baselines3 import DQN

        learning_starts = self.td.dqn.get("learning_starts", inspect.signature(DQN).parameters["learning_starts"].default)
        total = self.stage_steps * len(self.schedule)
        if learning_starts >= total:
            raise UsageError(
                f"the td objective would make no gradient step: compress.td.dqn.learning_starts ({learning_starts}) is "
                f"not below the schedule's {total} agent steps ({len(self.schedule)} stages x {self.stage_steps}); "
                "raise --steps-per-stage or lower compress.td.dqn.learning_starts"
            )


class EvaluateSettings(Record):
    """``evaluate``: the evaluation protocol (the same episodes for every agent compared)."""

    episodes: int = setting(default=10, low=1, high=MAX_EPISODES)
    """Greedy episodes per evaluation."""
    seed: int = setting(default=EVAL_SEED_BASE, low=EVAL_SEED_BASE, high=2**31 - 1, hint=EVAL_SEED_HINT)
    """Seed of the first evaluation environment; the others count up from it."""
    n_envs: int = setting(default=10, low=1, high=1024)
    """Environments played in parallel, each its share of the episodes in turn."""
    sticky_actions: float | None = setting(default=None, low=0, high=0.99)
    """Atari: ``spikerl compress`` also evaluates the ANN and the last stage with ALE's sticky
    actions at this probability (0.25 is ALE's protocol; None: no such rows)."""


class Settings(Record):
    """A whole preset: its four sections."""

    train: TrainSettings
    compress: CompressSettings
    env: EnvSettings = setting(factory=EnvSettings)
    evaluate: EvaluateSettings = setting(factory=EvaluateSettings)


SECTIONS = tuple(field.name for field in dataclasses.fields(Settings))
"""The preset's sections, the first part of a dotted setting such as ``compress.schedule``."""


def from_mapping(data: Any) -> Settings:
    """``Settings`` from a preset's plain mapping (as YAML gives it), or a ``UsageError`` naming the key."""
    return build(Settings, data)


#: DQN keyword arguments that spikerl sets itself.
_DQN_SET_BY_SPIKERL = frozenset({"self", "policy", "env", "seed", "device", "verbose", "_init_setup_model"})
#: Bounds of the numeric DQN keyword arguments: (type, setting(default=...) bounds).
_DQN_NUMBERS: dict[str, tuple[type, dict[str, Any]]] = {
    "learning_rate": (float, {"above": 0, "high": 1}),
    "buffer_size": (int, {"low": 1, "high": MAX_SAMPLES * 10}),
    "learning_starts": (int, {"low": 0, "high": MAX_STEPS}),
    "batch_size": (int, {"low": 1, "high": MAX_SAMPLES}),
    "tau": (float, {"above": 0, "high": 1}),
    "gamma": (float, {"low": 0, "high": 1}),
    "gradient_steps": (int, {"low": -1, "high": 10**6}),
    "n_steps": (int, {"low": 1, "high": 10**4}),
    "target_update_interval": (int, {"low": 1, "high": MAX_STEPS}),
    "exploration_fraction": (float, {"low": 0, "high": 1}),
    "exploration_initial_eps": (float, {"low": 0, "high": 1}),
    "exploration_final_eps": (float, {"low": 0, "high": 1}),
    "max_grad_norm": (float, {"above": 0}),
    "stats_window_size": (int, {"low": 1, "high": 10**6}),
}


def check_dqn_kwargs(kwargs: dict[str, Any], name: str) -> None:
    """Refuse keys that ``stable_baselines3.DQN`` does not take, and insane numbers."""
    from stable_baselines3 import DQN

    if "tensorboard_log" in kwargs:  # SB3 would write there, and fail inside learn() where it cannot
        raise UsageError(f"{name}.tensorboard_log is spikerl's --tensorboard DIR; drop the setting and pass the flag",
                         parameter=f"{name}.tensorboard_log")
    _check_keywords(kwargs, DQN, name, "stable_baselines3.DQN", excluded=_DQN_SET_BY_SPIKERL)
    for key, value in kwargs.items():
        if key in _DQN_NUMBERS:
            kind, bounds = _DQN_NUMBERS[key]
            check_number(value, f"{name}.{key}", kind, bounds)
    train_freq = kwargs.get("train_freq", 1)
    hint = "give steps, or [steps, episode]"
    if isinstance(train_freq, list) and (len(train_freq) != 2 or train_freq[1] not in ("step", "episode")):
        raise UsageError(f"{name}.train_freq must be steps or [steps, step|episode], got {train_freq!r}",
                         parameter=f"{name}.train_freq")
    frequency = train_freq[0] if isinstance(train_freq, list) else train_freq
    check_number(frequency, f"{name}.train_freq", int, {"low": 1, "high": MAX_STEPS, "hint": hint})
    if not isinstance(kwargs.get("policy_kwargs", {}), dict):
        key = f"{name}.policy_kwargs"
        raise UsageError(f"{key} must be a mapping such as {{net_arch: [256, 256]}}", parameter=key)
    check_network_size(kwargs.get("policy_kwargs", {}), f"{name}.policy_kwargs")


def sb3_dqn_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` (checked ``train.dqn``-like settings) as ``stable_baselines3.DQN`` takes them:
    YAML's ``train_freq: [4, episode]`` list becomes the tuple SB3 requires."""
    train_freq = kwargs.get("train_freq")
    return {**kwargs, "train_freq": tuple(train_freq)} if isinstance(train_freq, list) else dict(kwargs)


def check_network_size(policy_kwargs: dict[str, Any], name: str) -> None:
    """Refuse ``policy_kwargs`` whose ``net_arch``, ``features_dim`` or ``timesteps`` are not
    integers within ``MAX_LAYERS`` layers of at most ``MAX_LAYER_SIZE`` units and ``MAX_TIMESTEPS``
    (presets and untrusted agents alike)."""
    net_arch = policy_kwargs.get("net_arch", [])
    if not isinstance(net_arch, list) or len(net_arch) > MAX_LAYERS:
        message = f"{name}.net_arch must be a list of at most {MAX_LAYERS} layer sizes such as [256, 256], got {net_arch!r}"
        raise UsageError(message, parameter=f"{name}.net_arch")
    for index, size in enumerate(net_arch):
        check_number(size, f"{name}.net_arch[{index}]", int, {"low": 1, "high": MAX_LAYER_SIZE})
    features = policy_kwargs.get("features_extractor_kwargs", {})
    if not isinstance(features, dict):
        key = f"{name}.features_extractor_kwargs"
        raise UsageError(f"{key} must be a mapping such as {{features_dim: 512}}", parameter=key)
    if "features_dim" in features:
        bounds = {"low": 1, "high": MAX_LAYER_SIZE}
        check_number(features["features_dim"], f"{name}.features_extractor_kwargs.features_dim", int, bounds)
    if "timesteps" in policy_kwargs:
        check_number(policy_kwargs["timesteps"], f"{name}.timesteps", int, {"low": 1, "high": MAX_TIMESTEPS})


def _check_keywords(
    kwargs: dict[str, Any], target: Any, name: str, target_name: str, excluded: frozenset[str] = frozenset()
) -> None:
    """Refuse keys of ``kwargs`` that are not keyword parameters of ``target`` (minus ``excluded``)."""
    check_plain(kwargs, name)
    known = [parameter for parameter in inspect.signature(target).parameters if parameter not in excluded]
    for key in kwargs:
        if key not in known:
            takes = f"{name} takes keyword arguments of {target_name}: {', '.join(known)}"
            raise UsageError(f"unknown key {name}.{key}; {takes}", parameter=f"{name}.{key}")

